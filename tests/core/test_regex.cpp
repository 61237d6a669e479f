// Config patterns (core/regex.h): Python re's fullmatch and search over PCRE2.
#include <gtest/gtest.h>

#include "peft/core/error.h"
#include "peft/core/regex.h"
#include "test_utils.h"

namespace {

TEST(Regex, FullmatchAndSearchAsPythonRe) {
  EXPECT_TRUE(peft::regex_fullmatch(".*\\.(q_proj|v_proj)", "model.layers.0.self_attn.q_proj"));
  EXPECT_FALSE(peft::regex_fullmatch("q_proj", "model.layers.0.self_attn.q_proj"));
  EXPECT_FALSE(peft::regex_fullmatch("a|ab", "abc"));
  EXPECT_TRUE(peft::regex_fullmatch("a|ab", "ab"));
  EXPECT_EQ(peft::regex_search("familyFriendly\\[(\\w+)\\]", "name[X], familyFriendly[yes]"), "yes");
  EXPECT_EQ(peft::regex_search("x+", "aaxxb"), "xx");
  EXPECT_EQ(peft::regex_search("z", "abc"), std::nullopt);
}

// A pattern that does not compile on its own is refused, as Python's re refuses it; wrapped for
// fullmatch as "(?:a)|(?:b)\z" it used to compile and match any text starting with "a".
TEST(Regex, UnbalancedPatternsDoNotEscapeTheFullmatchWrapper) {
  for (const char* p : {"a)|(?:b", "q_proj)|(?:.*", "abc\\"}) {
    peft::test::expect_throw_with<peft::ConfigError>([&] { peft::regex_fullmatch(p, "abc"); },
                                                     {"[regex] pattern '", "does not compile"});
  }
  EXPECT_THROW(peft::regex_fullmatch("(unclosed", "x"), peft::ConfigError);
}

}  // namespace
