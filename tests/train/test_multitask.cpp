// Multi-task prompts (P-Tuning v2 paper, §4.2 "multi-task learning"): one shared prefix trained on
// mixed batches of several classification tasks, one head per task, then one adapter per task to
// continue from. The heads are slices of one classifier; these tests check that each row's loss and
// prediction use its own task's head only, that every task trains the shared prefix while a head
// learns from its own task alone, and that a per-task adapter reproduces the multi-task model.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "golden.h"
#include "peft/core/error.h"
#include "peft/core/json_file.h"
#include "peft/models/model.h"
#include "peft/peft_model.h"
#include "peft/train/trainer.h"
#include "peft/tuners/prefix_tuning/config.h"
#include "peft/tuners/prompt_learning/model.h"

namespace {

namespace fs = std::filesystem;
namespace pt = peft::train;

// Task "a": 2 labels, task "b": 3 labels (the fixture model's own head size).
constexpr int64_t kA = 2, kB = 3;

// The tiny Llama classifier (sequence or token) with a fresh head of `num_labels` rows; the rest are
// the fixture's weights.
std::shared_ptr<peft::models::PretrainedModel> llama_with_head(
    int64_t num_labels, peft::models::TaskHead head = peft::models::TaskHead::SeqCls) {
  const std::string dir =
      peft::test::fixture(head == peft::models::TaskHead::SeqCls ? "models/llama_seqcls" : "models/llama_tokcls");
  auto src = peft::models::load_model(dir);
  nlohmann::json j = peft::read_json_file(dir + "/config.json");
  j["num_labels"] = num_labels;
  j.erase("id2label");
  j.erase("label2id");
  auto m = peft::models::create_model(peft::models::ModelConfig(j, dir + "/config.json"), head);
  torch::NoGradGuard ng;
  const auto theirs = src->named_parameters();
  for (auto& p : m->named_parameters())
    if (p.key().rfind("score.", 0) != 0) p.value().copy_(theirs[p.key()]);
  m->eval();
  return m;
}

pt::Example ex(std::vector<int64_t> ids, int64_t label) {
  pt::Example e;
  e.input_ids = std::move(ids);
  e.label = label;
  return e;
}

// Two small tasks, joined.
pt::Dataset two_tasks() {
  pt::Dataset a, b;
  a.label_names = {"no", "yes"};
  b.label_names = {"pub", "restaurant", "coffee shop"};
  a.examples = {ex({5, 9, 13, 2}, 1), ex({7, 4, 11}, 0), ex({8, 8, 3, 6, 2}, 1), ex({12, 3}, 0)};
  b.examples = {ex({6, 2, 9}, 2), ex({3, 14, 5, 7}, 0), ex({10, 4}, 1), ex({9, 9, 9, 1}, 2)};
  return pt::merge_tasks({"a", "b"}, {a, b});
}

std::shared_ptr<peft::PeftModel> shared_prefix(std::shared_ptr<peft::models::PretrainedModel> base,
                                               peft::TaskType task = peft::TaskType::SeqCls) {
  peft::PrefixTuningConfig c;  // P-Tuning v2: a prefix on every layer, no projection
  c.task_type = task;
  c.num_virtual_tokens = 3;
  torch::manual_seed(3);
  return peft::get_peft_model(std::move(base), c);
}

peft::models::ModelInputs inputs(const pt::Batch& b) {
  peft::models::ModelInputs in;
  in.input_ids = at::tensor(b.input_ids, at::kLong).view({b.rows, b.cols});
  in.attention_mask = at::tensor(b.attention_mask, at::kLong).view({b.rows, b.cols});
  return in;
}

// Four quiet AdamW steps of batch 4 into a test folder.
pt::TrainingArguments short_run(const std::string& name) {
  pt::TrainingArguments args;
  args.output_dir = peft::test::tmp_dir(name);
  args.learning_rate = 0.05;
  args.max_steps = 4;
  args.per_device_train_batch_size = 4;
  args.progress_bar = false;
  args.tensorboard = false;
  args.logging_steps = 0;
  return args;
}

at::Tensor head_weight(peft::PeftModel& pm) {
  for (const auto& p : pm.base_model().named_parameters())
    if (p.value().requires_grad() && p.key().find("score") != std::string::npos) return p.value();
  return {};
}

TEST(MultiTask, MergeTasksJoinsLabelSetsAndKeepsTasks) {
  const auto d = two_tasks();
  ASSERT_EQ(d.tasks.size(), 2u);
  EXPECT_EQ(d.tasks[0].label_offset, 0);
  EXPECT_EQ(d.tasks[1].label_offset, kA);
  EXPECT_EQ(d.tasks[1].num_labels, kB);
  EXPECT_EQ(d.label_names, (std::vector<std::string>{"a:no", "a:yes", "b:pub", "b:restaurant", "b:coffee shop"}));
  EXPECT_EQ(d.examples[4].task, 1);
  EXPECT_EQ(d.examples[4].label, kA + 2);  // shifted by task b's offset
  const auto batch = pt::collate(d, {0, 4, 1, 5}, 0);
  EXPECT_EQ(batch.seq_tasks, (std::vector<int64_t>{0, 1, 0, 1}));
  pt::Dataset reg;
  reg.label_names = {pt::kRegressionLabel};
  reg.examples = {ex({1}, -100)};
  EXPECT_THROW(pt::merge_tasks({"a", "a"}, {d, d}), peft::ConfigError);
  EXPECT_THROW(pt::merge_tasks({"r"}, {reg}), peft::ConfigError);
}

// A mixed batch: each row's loss is the cross-entropy of its own task's head, i.e. of the head's
// rows of the classifier applied to the row's pooled state, and its gradient reaches that head only.
TEST(MultiTask, EachRowUsesItsOwnHead) {
  auto pm = shared_prefix(llama_with_head(kA + kB));
  const auto d = two_tasks();
  const pt::Batch b = pt::collate(d, {0, 4, 1, 5}, 0);
  const auto in = inputs(b);
  const auto out = pm->forward(in);
  const at::Tensor masked = pt::mask_to_tasks(out.logits, b.seq_tasks, d.tasks);
  const at::Tensor labels = at::tensor(b.seq_labels, at::kLong);
  const at::Tensor loss = at::cross_entropy_loss(masked, labels);
  // By hand, with the heads as separate matrices.
  const at::Tensor W = head_weight(*pm);
  ASSERT_TRUE(W.defined());
  ASSERT_EQ(W.size(0), kA + kB);
  double want = 0;
  for (int64_t r = 0; r < b.rows; ++r) {
    const auto& t = d.tasks[b.seq_tasks[r]];
    const at::Tensor own = out.logits[r].narrow(0, t.label_offset, t.num_labels);
    const at::Tensor logp = at::log_softmax(own, 0);
    want -= logp[b.seq_labels[r] - t.label_offset].item<double>() / b.rows;
    for (int64_t c = 0; c < kA + kB; ++c) {
      const bool mine = c >= t.label_offset && c < t.label_offset + t.num_labels;
      EXPECT_EQ(std::isinf(masked[r][c].item<float>()), !mine) << "row " << r << " class " << c;
    }
  }
  EXPECT_NEAR(loss.item<double>(), want, 1e-6);
  // The pooled state times the task's head rows is the row's logits (the head is a slice).
  const at::Tensor pooled = out.last_hidden_state.index(
      {at::arange(b.rows), peft::models::last_token_index(in.input_ids, in.attention_mask, 0)});
  EXPECT_TRUE(at::allclose(at::matmul(pooled, W.t()), out.logits, 1e-5, 1e-6));

  // Gradients: a batch of task a alone trains the prefix and head a, and leaves head b at zero.
  const pt::Batch ba = pt::collate(d, {0, 1, 2}, 0);
  for (int task = 0; task < 2; ++task) {
    const pt::Batch bt = task == 0 ? ba : pt::collate(d, {4, 5, 6}, 0);
    for (auto& p : pm->trainable_parameters()) p.mutable_grad() = at::Tensor();
    const auto o = pm->forward(inputs(bt));
    at::cross_entropy_loss(pt::mask_to_tasks(o.logits, bt.seq_tasks, d.tasks), at::tensor(bt.seq_labels, at::kLong))
        .backward();
    const at::Tensor g = W.grad();
    const auto& mine = d.tasks[task];
    const auto& other = d.tasks[1 - task];
    EXPECT_GT(g.narrow(0, mine.label_offset, mine.num_labels).abs().sum().item<double>(), 0) << "task " << task;
    EXPECT_EQ(g.narrow(0, other.label_offset, other.num_labels).abs().sum().item<double>(), 0) << "task " << task;
    const at::Tensor prefix = pm->tuner_as<peft::prompt::PromptLearningModel>().prompt_encoder_state()["embedding.weight"];
    ASSERT_TRUE(prefix.grad().defined());
    EXPECT_GT(prefix.grad().abs().sum().item<double>(), 0) << "task " << task << " must train the shared prefix";
  }
}

// The Trainer on joined data, then one adapter per task: task b's adapter on a base with 3 labels
// gives the multi-task model's task-b logits, and carries b's label names.
TEST(MultiTask, TrainerTrainsSharedPrefixAndSplitsHeads) {
  auto pm = shared_prefix(llama_with_head(kA + kB));
  const auto d = two_tasks();
  const at::Tensor prefix0 = pm->tuner_as<peft::prompt::PromptLearningModel>().prompt_encoder_state()["embedding.weight"].detach().clone();
  const pt::TrainingArguments args = short_run("multitask");
  pt::Trainer trainer(pm, args, d, &d, 0);
  const double before = trainer.evaluate().loss;
  const auto r = trainer.train();
  ASSERT_TRUE(r.eval_loss.has_value());
  EXPECT_LT(*r.eval_loss, before);
  EXPECT_FALSE(at::equal(pm->tuner_as<peft::prompt::PromptLearningModel>().prompt_encoder_state()["embedding.weight"], prefix0));

  const std::string dir = args.output_dir + "/tasks";
  pt::save_task_adapters(*pm, d.tasks, dir);
  for (const auto& t : d.tasks) {
    ASSERT_TRUE(fs::exists(dir + "/" + t.name + "/adapter_model.safetensors")) << t.name;
    const auto j = peft::read_json_file(dir + "/" + t.name + "/task.json");
    EXPECT_EQ(j.at("label_names").get<std::vector<std::string>>(), t.label_names);
  }
  auto single = peft::PeftModel::from_pretrained(llama_with_head(kB), dir + "/b");
  pm->base_model().eval();
  torch::NoGradGuard ng;
  const pt::Batch b = pt::collate(d, {4, 5, 6, 7}, 0);
  const at::Tensor joint = pm->forward(inputs(b)).logits.narrow(1, kA, kB);
  EXPECT_TRUE(at::allclose(single->forward(inputs(b)).logits, joint, 1e-5, 1e-6));
  // A 2-label base for task b: the adapter's head does not fit, and loading says so.
  EXPECT_ANY_THROW(peft::PeftModel::from_pretrained(llama_with_head(kA), dir + "/b"));
}

pt::Example tagged(std::vector<int64_t> ids, std::vector<int64_t> tags) {
  pt::Example e;
  e.input_ids = std::move(ids);
  e.labels = std::move(tags);
  return e;
}

// Token classification (the paper's multi-task NER / chunking setting): every token of a row is
// scored by its row's task head; -100 tokens carry no loss; the other task's head gets no gradient.
TEST(MultiTask, TokenClassificationUsesEachRowsHead) {
  pt::Dataset ner, chunk;
  ner.label_names = {"O", "B-PER"};
  chunk.label_names = {"O", "B-NP", "I-NP"};
  ner.examples = {tagged({5, 9, 13, 2}, {-100, 1, 0, -100}), tagged({7, 4, 11}, {-100, 0, 1})};
  chunk.examples = {tagged({6, 2, 9}, {-100, 2, 1}), tagged({3, 14, 5, 7}, {-100, 0, 1, 2})};
  const auto d = pt::merge_tasks({"ner", "chunk"}, {ner, chunk});
  EXPECT_EQ(d.examples[2].labels, (std::vector<int64_t>{-100, kA + 2, kA + 1}));  // shifted, -100 kept
  pt::Dataset cls;
  cls.label_names = {"x"};
  cls.examples = {ex({1, 2}, 0)};
  EXPECT_THROW(pt::merge_tasks({"ner", "cls"}, {ner, cls}), peft::ConfigError);  // kinds not mixed

  auto pm = shared_prefix(llama_with_head(kA + kB, peft::models::TaskHead::TokenCls), peft::TaskType::TokenCls);
  const pt::Batch b = pt::collate(d, {0, 2, 1, 3}, 0);
  const auto out = pm->forward(inputs(b));
  ASSERT_EQ(out.logits.dim(), 3);
  const at::Tensor masked = pt::mask_to_tasks(out.logits, b.seq_tasks, d.tasks);
  const at::Tensor labels = at::tensor(b.labels, at::kLong).view({b.rows, b.cols});
  const at::Tensor loss = at::cross_entropy_loss(masked.reshape({-1, kA + kB}), labels.reshape(-1), {},
                                                 at::Reduction::Mean, -100);
  double want = 0;
  int64_t n = 0;
  for (int64_t r = 0; r < b.rows; ++r) {
    const auto& t = d.tasks[b.seq_tasks[r]];
    for (int64_t c = 0; c < b.cols; ++c) {
      const int64_t y = b.labels[r * b.cols + c];
      if (y == -100) continue;
      const at::Tensor logp = at::log_softmax(out.logits[r][c].narrow(0, t.label_offset, t.num_labels), 0);
      want -= logp[y - t.label_offset].item<double>();
      ++n;
    }
  }
  EXPECT_NEAR(loss.item<double>(), want / n, 1e-6);
  loss.backward();  // a mixed batch: both heads learn
  const at::Tensor W = head_weight(*pm);
  EXPECT_GT(W.grad().narrow(0, 0, kA).abs().sum().item<double>(), 0);
  EXPECT_GT(W.grad().narrow(0, kA, kB).abs().sum().item<double>(), 0);
  for (auto& p : pm->trainable_parameters()) p.mutable_grad() = at::Tensor();
  const pt::Batch bn = pt::collate(d, {0, 1}, 0);  // ner rows only
  const at::Tensor ln = at::tensor(bn.labels, at::kLong);
  at::cross_entropy_loss(pt::mask_to_tasks(pm->forward(inputs(bn)).logits, bn.seq_tasks, d.tasks).reshape({-1, kA + kB}),
                         ln, {}, at::Reduction::Mean, -100)
      .backward();
  EXPECT_GT(W.grad().narrow(0, 0, kA).abs().sum().item<double>(), 0);
  EXPECT_EQ(W.grad().narrow(0, kA, kB).abs().sum().item<double>(), 0);

  // The Trainer's loss on joined token data goes down.
  const pt::TrainingArguments args = short_run("multitask_tok");
  pt::Trainer trainer(pm, args, d, &d, 0);
  const double before = trainer.evaluate().loss;
  EXPECT_NEAR(before, [&] {
    torch::NoGradGuard ng;
    pm->base_model().eval();
    const pt::Batch all = pt::collate(d, {0, 1, 2, 3}, 0);
    const at::Tensor m = pt::mask_to_tasks(pm->forward(inputs(all)).logits, all.seq_tasks, d.tasks);
    return at::cross_entropy_loss(m.reshape({-1, kA + kB}), at::tensor(all.labels, at::kLong), {},
                                  at::Reduction::Mean, -100).item<double>();
  }(), 1e-5);
  const auto r = trainer.train();
  EXPECT_LT(*r.eval_loss, before);
}

TEST(MultiTask, EvalSetMustJoinTheSameTasks) {
  auto pm = shared_prefix(llama_with_head(kA + kB));
  const auto d = two_tasks();
  pt::Dataset other = d;
  other.tasks[1].name = "c";
  pt::TrainingArguments args;
  args.output_dir = peft::test::tmp_dir("multitask_bad");
  args.max_steps = 1;
  EXPECT_THROW(pt::Trainer(pm, args, d, &other, 0), peft::ConfigError);
}

}  // namespace
