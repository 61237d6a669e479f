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

std::shared_ptr<Compiled> compile(const std::string& pattern, bool full) {
  static std::mutex mu;
  static std::map<std::pair<std::string, bool>, std::shared_ptr<Compiled>> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find({pattern, full});
  if (it != cache.end()) return it->second;
  int err = 0;
  PCRE2_SIZE off = 0;
  auto fail = [&] {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(err, buf, sizeof(buf));
    throw ConfigError("[regex] pattern '" + pattern + "' does not compile: " + reinterpret_cast<char*>(buf));
  };
  // fullmatch: anchored at both ends; search: as written. The pattern must compile on its own
  // first: "a)|(?:b" wrapped as "(?:a)|(?:b)\z" would compile and match any text starting with a.
  if (full) {
    pcre2_code* alone = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.c_str()), pattern.size(), PCRE2_UTF, &err,
                                      &off, nullptr);
    if (alone == nullptr) fail();
    pcre2_code_free(alone);
  }
  const std::string src = full ? "(?:" + pattern + ")\\z" : pattern;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(src.c_str()), src.size(),
                                   (full ? PCRE2_ANCHORED : 0) | PCRE2_UTF, &err, &off, nullptr);
  if (code == nullptr) fail();
  auto c = std::make_shared<Compiled>();
  c->code = code;
  cache.emplace(std::make_pair(pattern, full), c);
  return c;
}

}  // namespace

bool regex_fullmatch(const std::string& pattern, const std::string& text) {
  const auto c = compile(pattern, true);
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(c->code, nullptr);
  const int rc = pcre2_match(c->code, reinterpret_cast<PCRE2_SPTR>(text.c_str()), text.size(), 0, 0, md, nullptr);
  pcre2_match_data_free(md);
  return rc >= 0;
}

std::optional<std::string> regex_search(const std::string& pattern, const std::string& text) {
  const auto c = compile(pattern, false);
  uint32_t groups = 0;
  pcre2_pattern_info(c->code, PCRE2_INFO_CAPTURECOUNT, &groups);
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(c->code, nullptr);
  const int rc = pcre2_match(c->code, reinterpret_cast<PCRE2_SPTR>(text.c_str()), text.size(), 0, 0, md, nullptr);
  std::optional<std::string> out;
  if (rc >= 0) {
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const uint32_t g = groups > 0 ? 1 : 0;
    if (static_cast<uint32_t>(rc) > g && ov[2 * g] != PCRE2_UNSET)
      out = text.substr(ov[2 * g], ov[2 * g + 1] - ov[2 * g]);
  }
  pcre2_match_data_free(md);
  return out;
}

}  // namespace peft
