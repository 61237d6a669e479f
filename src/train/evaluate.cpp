// Task metrics (train/evaluate.h).
#include "peft/train/evaluate.h"

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <map>
#include <sstream>

#include "peft/models/generation.h"
#include "peft/train/datasets.h"
#include "peft/train/metrics.h"
#include "peft/train/trainer.h"

namespace peft::train {

GenerationScore generation_eval(const RunConfig& c, models::PretrainedModel& model, const io::Tokenizer& tok,
                        const std::vector<Row>& rows, PeftModel* pm) {
  GenerationScore g;
  std::vector<std::string> prompts;
  std::map<std::string, std::vector<std::string>> refs;
  for (const auto& r : rows) {
    const std::string p = fill_template(c.prompt_template, r);
    std::string ref = fill_template(c.completion_template, r);
    while (!ref.empty() && ref.front() == ' ') ref.erase(ref.begin());
    if (!refs.count(p)) prompts.push_back(p);
    refs[p].push_back(ref);
  }
  if (static_cast<int64_t>(prompts.size()) > c.eval_generate) prompts.resize(c.eval_generate);
  auto gc = models::generation_config_from(model.config());
  gc.max_new_tokens = c.max_new_tokens;
  if (auto e = tok.eos_token_id()) gc.eos_token_id = {*e};
  std::vector<std::string> hyps;
  std::vector<std::vector<std::string>> all_refs;
  model.eval();
  for (const auto& p : prompts) {
    const auto enc = tok.encode(p);
    const at::Tensor ids = at::tensor(std::vector<int64_t>(enc.ids.begin(), enc.ids.end())).unsqueeze(0);
    const at::Tensor out = (pm ? pm->generate(ids, {}, gc) : models::generate(model, ids, {}, gc))[0].contiguous();
    std::vector<io::TokenId> gen(out.data_ptr<int64_t>() + ids.size(1), out.data_ptr<int64_t>() + out.numel());
    std::string text = tok.decode(gen, true);
    if (auto nl = text.find('\n'); nl != std::string::npos) text.resize(nl);
    while (!text.empty() && text.front() == ' ') text.erase(text.begin());
    hyps.push_back(text);
    all_refs.push_back(refs[p]);
  }
  g.bleu = corpus_bleu(hyps, all_refs);
  g.prompts = prompts.size();
  if (!prompts.empty()) {
    g.sample_prompt = prompts.front();
    g.sample = hyps.front();
  }
  return g;
}

std::string Accuracy::str(const Dataset& d) const {
  std::ostringstream o;
  o << all;
  for (std::size_t t = 0; t < per_task.size(); ++t) o << (t ? ", " : " (") << d.tasks[t].name << " " << per_task[t];
  if (!per_task.empty()) o << ")";
  return o.str();
}

Accuracy classification_accuracy(PeftModel& pm, const Dataset& d, int64_t pad, bool tokens) {
  auto& m = pm.base_model();
  const bool was = m.is_training();
  m.eval();
  torch::NoGradGuard ng;
  const bool trim = pm.trim_prompt_logits;
  pm.trim_prompt_logits = true;
  std::vector<int64_t> pred, gold, task;
  for (const auto& idx : make_batches(d, 32, false, 0, false)) {
    const Batch b = collate(d, idx, pad);
    at::Tensor logits = pm.forward(to_model_inputs(b, TaskFormat::CausalLM, /*with_labels=*/false)).logits;
    if (!d.tasks.empty()) logits = mask_to_tasks(logits.to(at::kFloat), b.seq_tasks, d.tasks);
    const at::Tensor p = logits.argmax(-1).contiguous();
    if (tokens) {
      for (int64_t i = 0; i < b.rows * b.cols; ++i)
        if (b.labels[i] != -100) {
          pred.push_back(p.data_ptr<int64_t>()[i]);
          gold.push_back(b.labels[i]);
          if (!d.tasks.empty()) task.push_back(b.seq_tasks[i / b.cols]);
        }
    } else {
      for (int64_t r = 0; r < b.rows; ++r) {
        pred.push_back(p.data_ptr<int64_t>()[r]);
        gold.push_back(b.seq_labels[r]);
        if (!d.tasks.empty()) task.push_back(b.seq_tasks[r]);
      }
    }
  }
  pm.trim_prompt_logits = trim;
  if (was) m.train();
  Accuracy a;
  a.all = accuracy(pred, gold);
  for (std::size_t t = 0; t < d.tasks.size(); ++t) {
    std::vector<int64_t> p, g;
    for (std::size_t i = 0; i < task.size(); ++i)
      if (task[i] == static_cast<int64_t>(t)) {
        p.push_back(pred[i]);
        g.push_back(gold[i]);
      }
    a.per_task.push_back(p.empty() ? 0.0 : accuracy(p, g));
  }
  return a;
}

}  // namespace peft::train
