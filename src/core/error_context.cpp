#include "peft/core/error_context.h"

#include <new>
#include <stdexcept>

#include "peft/core/error.h"
#include "peft/core/utf8.h"

namespace peft {

namespace {
thread_local std::vector<std::string> t_unwound;  // innermost first (destructors run inside out)
}

ErrorContext::ErrorContext(std::string what) : what_(std::move(what)), uncaught_(std::uncaught_exceptions()) {
  // Steps recorded by an exception that was caught and handled since are not this one's.
  if (uncaught_ == 0) t_unwound.clear();
}

ErrorContext::~ErrorContext() {
  if (std::uncaught_exceptions() > uncaught_) {
    try {
      t_unwound.push_back(std::move(what_));
    } catch (...) {  // out of memory while unwinding: the step goes unnamed
    }
  }
}

std::vector<std::string> take_error_context() {
  std::vector<std::string> out(t_unwound.rbegin(), t_unwound.rend());
  t_unwound.clear();
  return out;
}

namespace {

bool own_error(const std::exception& e) {
  if (dynamic_cast<const ConfigError*>(&e) || dynamic_cast<const FormatError*>(&e) ||
      dynamic_cast<const NotSupported*>(&e))
    return true;
  // Messages the project writes itself start with "[component] ".
  const std::string m = e.what();
  return m.size() > 1 && m[0] == '[' && m.compare(0, 15, "[json.exception") != 0;
}

// LibTorch appends "Exception raised from <function> at <file>:<line>" and a backtrace; the
// first line is the message.
std::string first_line(const std::string& m) {
  std::string s = m.substr(0, m.find('\n'));
  const auto raised = s.find("Exception raised from ");
  if (raised != std::string::npos) s.erase(raised);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s.empty() ? "unknown error" : s;
}

// One printable line: control characters and bytes that are not UTF-8 (a binary file's content
// quoted by a parser) as \xNN, line breaks as spaces.
std::string printable(const std::string& m) {
  std::string out;
  out.reserve(m.size());
  auto hex = [&](unsigned char c) {
    static const char* d = "0123456789abcdef";
    out += "\\x";
    out += d[c >> 4];
    out += d[c & 15];
  };
  for (std::size_t i = 0; i < m.size();) {
    const auto c = static_cast<unsigned char>(m[i]);
    if (c == '\n' || c == '\r' || c == '\t') {
      out += ' ';
      ++i;
      continue;
    }
    if (c < 0x20 || c == 0x7f) {
      hex(c);
      ++i;
      continue;
    }
    if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    // A well-formed UTF-8 sequence (no overlongs, surrogates or values past U+10FFFF) stays.
    const std::size_t n = utf8_sequence_length(m, i);
    const bool ok = n != 0;
    if (!ok) {
      hex(c);
      ++i;
      continue;
    }
    out.append(m, i, n);
    i += n;
  }
  return out;
}

}  // namespace

std::string describe_error(const std::exception& e) {
  const auto ctx = take_error_context();
  if (own_error(e)) return printable(e.what());
  std::string msg;
  if (dynamic_cast<const std::bad_alloc*>(&e)) msg = "out of memory";
  else msg = first_line(e.what());
  if (ctx.empty()) return printable(msg);
  std::string where = "while ";
  for (std::size_t i = 0; i < ctx.size(); ++i) where += (i ? ", " : "") + ctx[i];
  return printable(where + ": " + msg);
}

}  // namespace peft
