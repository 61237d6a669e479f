// safetensors <-> at::Tensor: Python-written fixtures, zero-copy views, round trips.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "peft/core/error.h"
#include "peft/core/file_util.h"
#include "peft/io/tensor_bridge.h"
#include "test_utils.h"

namespace {

using nlohmann::json;

TEST(TensorBridge, PythonFixturesMatchBits) {
  const json exp = json::parse(peft::read_file(peft::test::fixture("safetensors/expected.json")));
  const auto f = peft::io::SafetensorsFile::open(peft::test::fixture("safetensors/all_dtypes.safetensors"));
  for (const auto& name : f.names()) {
    const at::Tensor view = peft::io::to_tensor(f, name);
    const at::Tensor copy = peft::io::to_tensor(f, name, /*copy=*/true);
    const auto& e = exp["all_dtypes.safetensors"][name];
    EXPECT_EQ(view.sizes().vec(), e["shape"].get<std::vector<int64_t>>());
    EXPECT_EQ(peft::io::to_dtype(view.scalar_type()), peft::io::to_dtype(copy.scalar_type()));
    ASSERT_EQ(view.numel(), copy.numel());
    if (view.numel())
      EXPECT_EQ(0, std::memcmp(view.data_ptr(), copy.data_ptr(), view.numel() * view.element_size())) << name;
  }
  // A known value, through ATen arithmetic: F32 matrix element 2 is 1.0, element 3 is -2.5.
  const at::Tensor m = peft::io::to_tensor(f, "f32.matrix").flatten();
  EXPECT_EQ(m[2].item<float>(), 1.0f);
  EXPECT_EQ(m[3].item<float>(), -2.5f);
  EXPECT_TRUE(std::isnan(peft::io::to_tensor(f, "bf16.matrix").flatten()[6].item<float>()));
}

TEST(TensorBridge, ZeroCopyViewOutlivesFileObject) {
  at::Tensor t;
  {
    const auto f = peft::io::SafetensorsFile::open(peft::test::fixture("safetensors/dtype_F64.safetensors"));
    t = peft::io::to_tensor(f, "cube");
  }
  EXPECT_EQ(t.sizes(), (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(t.flatten()[2].item<double>(), 1.0);  // the mapping is still alive
}

TEST(TensorBridge, SaveLoadRoundTripEveryDtype) {
  const auto dir = peft::test::tmp_dir("bridge");
  std::map<std::string, at::Tensor> ts;
  const auto base = torch::linspace(-3, 3, 24).reshape({2, 3, 4});
  for (auto st : {at::kDouble, at::kFloat, at::kHalf, at::kBFloat16, at::kLong, at::kInt, at::kShort,
                  at::kChar, at::kByte, at::kBool})
    ts[std::string("t_") + c10::toString(st)] = base.to(st);
  ts["noncontig"] = base.transpose(0, 2);
  peft::io::save_safetensors(dir + "/r.safetensors", ts);
  const auto back = peft::io::load_safetensors(dir + "/r.safetensors");
  ASSERT_EQ(back.size(), ts.size());
  for (const auto& [k, v] : ts) {
    EXPECT_EQ(back.at(k).scalar_type(), v.scalar_type()) << k;
    EXPECT_TRUE(torch::equal(back.at(k), v.contiguous())) << k;
  }
}

TEST(TensorBridge, UnsupportedDtypeIsNotSupported) {
  std::map<std::string, at::Tensor> ts{{"c", torch::zeros({2}, at::kComplexFloat)}};
  EXPECT_THROW(peft::io::save_safetensors("/tmp/never.safetensors", ts), peft::NotSupported);
}

}  // namespace
