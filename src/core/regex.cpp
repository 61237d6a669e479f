#include "peft/core/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <map>
#include <memory>
#include <mutex>

#include "peft/core/error.h"

namespace peft {

namespace {

struct Compiled {
  pcre2_code* code = nullptr;
  ~Compiled() { pcre2_code_free(code); }
};

std::shared_ptr<Compiled> compile(const std::string& pattern) {
  static std::mutex mu;
  static std::map<std::string, std::shared_ptr<Compiled>> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(pattern);
  if (it != cache.end()) return it->second;
  int err = 0;
  PCRE2_SIZE off = 0;
  // Anchored at both ends: fullmatch semantics.
  const std::string anchored = "(?:" + pattern + ")\\z";
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(anchored.c_str()), anchored.size(),
                                   PCRE2_ANCHORED | PCRE2_UTF, &err, &off, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(err, buf, sizeof(buf));
    throw ConfigError("[regex] pattern '" + pattern + "' does not compile: " + reinterpret_cast<char*>(buf));
  }
  auto c = std::make_shared<Compiled>();
  c->code = code;
  cache.emplace(pattern, c);
  return c;
}

}  // namespace

bool regex_fullmatch(const std::string& pattern, const std::string& text) {
  const auto c = compile(pattern);
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(c->code, nullptr);
  const int rc = pcre2_match(c->code, reinterpret_cast<PCRE2_SPTR>(text.c_str()), text.size(), 0, 0, md, nullptr);
  pcre2_match_data_free(md);
  return rc >= 0;
}

}  // namespace peft
