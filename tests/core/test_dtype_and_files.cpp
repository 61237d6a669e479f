#include <gtest/gtest.h>

#include <filesystem>

#include "peft/core/check.h"
#include "peft/core/dtype.h"
#include "peft/core/file_util.h"
#include "test_utils.h"

namespace {

TEST(DType, NamesSizesRoundTrip) {
  for (auto t : {peft::DType::F64, peft::DType::F32, peft::DType::F16, peft::DType::BF16,
                 peft::DType::I64, peft::DType::I32, peft::DType::I16, peft::DType::I8,
                 peft::DType::U8, peft::DType::Bool}) {
    EXPECT_EQ(peft::parse_dtype(peft::dtype_name(t)), t);
  }
  EXPECT_EQ(peft::dtype_size(peft::DType::BF16), 2u);
  EXPECT_EQ(peft::dtype_size(peft::DType::I64), 8u);
  EXPECT_EQ(peft::dtype_name(peft::DType::Bool), "BOOL");
  EXPECT_FALSE(peft::parse_dtype("f32").has_value());
}

TEST(Check, BuildsMessageOnlyOnFailure) {
  int evaluated = 0;
  auto costly = [&] { return ++evaluated; };
  PEFT_CHECK(true, peft::ConfigError, "[x] ", costly());
  EXPECT_EQ(evaluated, 0);
  peft::test::expect_throw_with<peft::ConfigError>(
      [&] { PEFT_CHECK(1 == 2, peft::ConfigError, "[x] value ", 42, " bad"); }, {"[x] value 42 bad"});
}

TEST(AtomicFile, ReplacesWholeFileAndLeavesNoTemp) {
  const auto dir = peft::test::tmp_dir("atomic");
  const auto p = dir + "/f.txt";
  peft::write_file_atomic(p, "first");
  peft::write_file_atomic(p, "second version");
  EXPECT_EQ(peft::read_file(p), "second version");
  // A body that throws leaves the previous content and no temp file.
  EXPECT_THROW(peft::write_file_atomic(p, [](const peft::ByteSink& s) {
                 s("partial", 7);
                 throw std::runtime_error("boom");
               }),
               std::runtime_error);
  EXPECT_EQ(peft::read_file(p), "second version");
  int n = 0;
  for (auto& e : std::filesystem::directory_iterator(dir)) n += e.is_regular_file();
  EXPECT_EQ(n, 1);
  EXPECT_THROW(peft::read_file(dir + "/missing"), peft::FormatError);
}

}  // namespace
