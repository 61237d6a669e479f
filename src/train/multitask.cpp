// Multi-task classification (P-Tuning v2's multi-task prompts): one classifier holds a head per
// task (merge_tasks in data.h); each row's logits are masked to its own task's classes, and the
// trained adapter is split into one PEFT adapter per task.
#include <ATen/ATen.h>

#include <limits>
#include <nlohmann/json.hpp>

#include "peft/core/check.h"
#include "peft/core/json_file.h"
#include "peft/io/tensor_bridge.h"
#include "trainer_impl.h"

namespace peft::train {

namespace fs = std::filesystem;

at::Tensor mask_to_tasks(const at::Tensor& logits, const std::vector<int64_t>& row_tasks,
                         const std::vector<TaskSpan>& tasks) {
  PEFT_CHECK((logits.dim() == 2 || logits.dim() == 3) && logits.size(0) == static_cast<int64_t>(row_tasks.size()),
             std::invalid_argument, "[mask_to_tasks] logits ", logits.sizes(), " for ", row_tasks.size(),
             " rows; expected [rows, classes] or [rows, tokens, classes]");
  const int64_t C = tasks.empty() ? 0 : tasks.back().label_offset + tasks.back().num_labels;
  PEFT_CHECK(logits.size(-1) == C, ConfigError, "[mask_to_tasks] the classifier has ", logits.size(-1),
             " outputs; the tasks have ", C, " labels together");
  at::Tensor allowed = at::zeros({static_cast<int64_t>(tasks.size()), C}, at::kBool);
  for (std::size_t t = 0; t < tasks.size(); ++t) allowed[t].narrow(0, tasks[t].label_offset, tasks[t].num_labels).fill_(true);
  for (auto t : row_tasks)
    PEFT_CHECK(t >= 0 && t < static_cast<int64_t>(tasks.size()), std::invalid_argument, "[mask_to_tasks] row task ", t,
               " is not one of the ", tasks.size(), " tasks");
  at::Tensor rows = allowed.index_select(0, at::tensor(row_tasks, at::kLong)).to(logits.device());
  if (logits.dim() == 3) rows = rows.unsqueeze(1);  // every token of a row takes the row's task
  return logits.masked_fill(rows.logical_not(), -std::numeric_limits<double>::infinity());
}

void save_task_adapters(const PeftModel& model, const std::vector<TaskSpan>& tasks, const std::string& dir) {
  PEFT_CHECK(!tasks.empty(), ConfigError, "[save_task_adapters] no tasks");
  const int64_t C = tasks.back().label_offset + tasks.back().num_labels;
  const fs::path shared = fs::path(dir) / ".shared.tmp";
  fs::remove_all(shared);
  detail::save_active_adapter_flat(model, shared);  // written once; each task takes its rows of the head
  const auto tensors = io::load_safetensors((shared / "adapter_model.safetensors").string());
  std::vector<std::string> head;
  for (const auto& [k, v] : tensors) {
    // The head's own tensors (modules_to_save copies, or a LoRA B on the head, whose rows are the
    // classes); a LoRA A on the head is [r, hidden] and shared by all rows.
    const bool on_head = (k.find("score.") != std::string::npos || k.find("classifier.") != std::string::npos) &&
                         k.find("lora_A") == std::string::npos && k.find("lora_E") == std::string::npos;
    if (on_head && v.dim() >= 1 && v.size(0) == C) head.push_back(k);
  }
  PEFT_CHECK(!head.empty(), ConfigError, "[save_task_adapters] adapter '", model.active_adapters().front(),
             "' has no classifier head with ", C, " outputs (score / classifier in modules_to_save) to split into "
             "per-task heads");
  for (const auto& t : tasks) {
    const fs::path tmp = fs::path(dir) / ("." + t.name + ".tmp");
    const fs::path dst = fs::path(dir) / t.name;
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    for (const auto& e : fs::directory_iterator(shared))
      if (e.path().filename() != "adapter_model.safetensors") fs::copy_file(e.path(), tmp / e.path().filename());
    auto mine = tensors;
    for (const auto& k : head) mine[k] = mine[k].narrow(0, t.label_offset, t.num_labels).contiguous();
    io::save_safetensors((tmp / "adapter_model.safetensors").string(), mine);
    write_json_file((tmp / "task.json").string(), {{"task", t.name}, {"label_names", t.label_names}});
    fs::remove_all(dst);
    fs::rename(tmp, dst);
  }
  fs::remove_all(shared);
}

namespace detail {

at::Tensor multitask_loss(PeftModel& model, models::ModelInputs in, const std::vector<int64_t>& row_tasks,
                          TaskFormat task, const std::vector<TaskSpan>& tasks) {
  const at::Tensor labels = in.labels;
  in.labels = at::Tensor();
  at::Tensor logits = model.forward(in).logits.to(at::kFloat);
  if (task == TaskFormat::SeqCls) return at::cross_entropy_loss(mask_to_tasks(logits, row_tasks, tasks), labels);
  // Token classification: prompt methods that prepend virtual tokens return logits for them too; the
  // labels cover the input tokens, which come last.
  logits = logits.narrow(1, logits.size(1) - labels.size(1), labels.size(1));
  const at::Tensor masked = mask_to_tasks(logits, row_tasks, tasks);
  return at::cross_entropy_loss(masked.reshape({-1, masked.size(-1)}), labels.reshape(-1), {}, at::Reduction::Mean, -100);
}

void check_same_tasks(const std::vector<TaskSpan>& train, const std::vector<TaskSpan>& eval) {
  bool same = eval.size() == train.size();
  for (std::size_t t = 0; same && t < eval.size(); ++t)
    same = eval[t].name == train[t].name && eval[t].label_names == train[t].label_names;
  PEFT_CHECK(same, ConfigError, "[Trainer] the evaluation set must join the same tasks with the same labels as "
             "the training set (build both with merge_tasks, the eval sets with the training label names)");
}

}  // namespace detail
}  // namespace peft::train
