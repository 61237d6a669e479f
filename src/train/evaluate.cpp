// Task metrics (train/evaluate.h).
#include "peft/train/evaluate.h"

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <ATen/ops/sigmoid.h>
#include <ATen/ops/softmax.h>

#include <map>
#include <sstream>

#include "peft/core/check.h"
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
  g.prompt_texts = prompts;
  g.hyps = hyps;
  g.refs = all_refs;
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

namespace {

using nlohmann::json;

// The example's input as the user wrote it: text (||| pair), source, or the sentence's words.
std::string input_text(const RunConfig& c, const LoadedSplit& split, const Example& ex) {
  if (c.task == "token_cls") {
    if (ex.source < 0 || ex.source >= static_cast<int64_t>(split.sentences.size())) return "";
    std::string t;
    for (const auto& w : split.sentences[static_cast<std::size_t>(ex.source)].tokens) t += (t.empty() ? "" : " ") + w;
    return t;
  }
  if (ex.source < 0 || ex.source >= static_cast<int64_t>(split.rows.size())) return "";
  const Row& r = split.rows[static_cast<std::size_t>(ex.source)];
  auto col = [&](const std::string& k) {
    auto it = r.fields.find(k);
    return it == r.fields.end() ? std::string() : it->second;
  };
  if (c.task == "seq2seq") return col(c.source_column);
  std::string t = col(c.text_column);
  if (!c.text_pair_column.empty()) t += " ||| " + col(c.text_pair_column);
  return t;
}

// Calls fn(batch, example indices, float logits) over `d` in order, the model in eval mode.
template <typename Fn>
void each_batch(PeftModel& pm, const Dataset& d, int64_t pad, int64_t batch_size, Fn fn) {
  auto& m = pm.base_model();
  const bool was = m.is_training();
  m.eval();
  torch::NoGradGuard ng;
  const bool trim = pm.trim_prompt_logits;
  pm.trim_prompt_logits = true;  // token_cls with prompt methods: logits line up with the labels
  for (const auto& idx : make_batches(d, batch_size, false, 0, false)) {
    const Batch b = collate(d, idx, pad);
    fn(b, idx, pm.forward(to_model_inputs(b, TaskFormat::CausalLM, /*with_labels=*/false)).logits.to(at::kFloat));
  }
  pm.trim_prompt_logits = trim;
  if (was) m.train();
}

json probabilities(const std::vector<std::string>& names, const float* p) {
  json o = json::object();
  for (std::size_t k = 0; k < names.size(); ++k) o[names[k]] = p[k];
  return o;
}

json seq_cls_metrics(const RunConfig& c, PeftModel& pm, const LoadedSplit& split, int64_t pad,
                     std::vector<json>* rows) {
  const Dataset& d = split.data;
  const std::string problem = problem_type(d);
  const auto& names = d.label_names;
  const auto n = static_cast<int64_t>(names.size());
  std::vector<int64_t> pred, gold;
  std::vector<double> vpred, vgold;
  std::vector<std::vector<int64_t>> mpred, mgold;
  each_batch(pm, d, pad, c.args.per_device_eval_batch_size, [&](const Batch& b, const std::vector<int64_t>& idx,
                                                                  const at::Tensor& logits) {
    PEFT_CHECK(logits.dim() == 2 && logits.size(1) == n, std::invalid_argument, "[train::task_metrics] logits ",
               logits.sizes(), " for ", n, " labels");
    for (int64_t r = 0; r < b.rows; ++r) {
      const Example& ex = d.examples[static_cast<std::size_t>(idx[static_cast<std::size_t>(r)])];
      json row = rows ? json{{"input", input_text(c, split, ex)}} : json();
      if (problem == "regression") {
        const double v = logits[r][0].item<double>();
        vpred.push_back(v);
        vgold.push_back(ex.label_value);
        if (rows) row.update({{"gold", ex.label_value}, {"prediction", v}});
      } else if (problem == "multi_label_classification") {
        const at::Tensor p = at::sigmoid(logits[r]).contiguous();
        std::vector<int64_t> g(static_cast<std::size_t>(n), 0), q(static_cast<std::size_t>(n), 0);
        json gn = json::array(), qn = json::array();
        for (auto k : ex.label_set) g[static_cast<std::size_t>(k)] = 1;
        for (int64_t k = 0; k < n; ++k) {
          q[static_cast<std::size_t>(k)] = logits[r][k].item<float>() > 0 ? 1 : 0;
          if (g[static_cast<std::size_t>(k)]) gn.push_back(names[static_cast<std::size_t>(k)]);
          if (q[static_cast<std::size_t>(k)]) qn.push_back(names[static_cast<std::size_t>(k)]);
        }
        mgold.push_back(g);
        mpred.push_back(q);
        if (rows) row.update({{"gold", gn}, {"prediction", qn}, {"probabilities", probabilities(names, p.data_ptr<float>())}});
      } else {
        const at::Tensor p = at::softmax(logits[r], -1).contiguous();
        const int64_t k = logits[r].argmax().item<int64_t>();
        pred.push_back(k);
        gold.push_back(ex.label);
        if (rows)
          row.update({{"gold", names[static_cast<std::size_t>(ex.label)]}, {"prediction", names[static_cast<std::size_t>(k)]},
                      {"probabilities", probabilities(names, p.data_ptr<float>())}});
      }
      if (rows) rows->push_back(std::move(row));
    }
  });
  json m = json::object();
  if (problem == "regression") {
    m["mse"] = mean_squared_error(vpred, vgold);
    m["pearson"] = vgold.size() >= 2 ? json(pearson(vpred, vgold)) : json(nullptr);
    m["spearman"] = vgold.size() >= 2 ? json(spearman(vpred, vgold)) : json(nullptr);
  } else if (problem == "multi_label_classification") {
    const MultiLabelScores s = multi_label_scores(mpred, mgold);
    m["micro_f1"] = s.micro_f1;
    m["macro_f1"] = s.macro_f1;
    m["subset_accuracy"] = s.subset_accuracy;
  } else {
    m["accuracy"] = accuracy(pred, gold);
    m["f1"] = n == 2 ? binary_f1(pred, gold, 1) : macro_f1(pred, gold);
  }
  return m;
}

json token_cls_metrics(const RunConfig& c, PeftModel& pm, const LoadedSplit& split, int64_t pad,
                       std::vector<json>* rows) {
  const Dataset& d = split.data;
  const auto& names = d.label_names;
  std::vector<int64_t> pred, gold;
  std::vector<std::vector<std::string>> gold_tags, pred_tags;
  each_batch(pm, d, pad, c.args.per_device_eval_batch_size, [&](const Batch& b, const std::vector<int64_t>& idx,
                                                                  const at::Tensor& logits) {
    const at::Tensor probs = at::softmax(logits, -1).contiguous();
    const at::Tensor best = logits.argmax(-1).contiguous();
    for (int64_t r = 0; r < b.rows; ++r) {
      std::vector<std::string> g, q;
      json scores = json::array();
      for (int64_t t = 0; t < b.cols; ++t) {
        const int64_t l = b.labels[static_cast<std::size_t>(r * b.cols + t)];
        if (l == -100) continue;
        const int64_t k = best[r][t].item<int64_t>();
        pred.push_back(k);
        gold.push_back(l);
        g.push_back(names[static_cast<std::size_t>(l)]);
        q.push_back(names[static_cast<std::size_t>(k)]);
        if (rows) scores.push_back(probs[r][t][k].item<float>());
      }
      if (rows) {
        const Example& ex = d.examples[static_cast<std::size_t>(idx[static_cast<std::size_t>(r)])];
        rows->push_back({{"input", input_text(c, split, ex)}, {"gold", g}, {"prediction", q}, {"scores", scores}});
      }
      gold_tags.push_back(std::move(g));
      pred_tags.push_back(std::move(q));
    }
  });
  const EntityScores e = entity_f1(gold_tags, pred_tags);
  return {{"accuracy", accuracy(pred, gold)}, {"precision", e.precision}, {"recall", e.recall}, {"f1", e.f1}};
}

json seq2seq_metrics(const RunConfig& c, PeftModel& pm, const io::Tokenizer& tok, const LoadedSplit& split,
                     std::vector<json>* rows) {
  auto& m = pm.base_model();
  const bool was = m.is_training();
  m.eval();
  torch::NoGradGuard ng;
  auto gc = models::generation_config_from(m.config());
  gc.max_new_tokens = c.max_new_tokens;
  if (auto e = tok.eos_token_id()) gc.eos_token_id = {*e};
  std::vector<std::string> hyps;
  std::vector<std::vector<std::string>> refs;
  const std::size_t n = std::min(split.data.examples.size(), static_cast<std::size_t>(c.eval_generate));
  for (std::size_t i = 0; i < n; ++i) {
    const Example& ex = split.data.examples[i];
    const at::Tensor ids = at::tensor(ex.input_ids).unsqueeze(0);
    const at::Tensor out = pm.generate(ids, {}, gc)[0].contiguous();
    std::vector<io::TokenId> gen(out.data_ptr<int64_t>() + 1, out.data_ptr<int64_t>() + out.numel());
    hyps.push_back(tok.decode(gen, true));
    const Row& r = split.rows[static_cast<std::size_t>(ex.source)];
    refs.push_back({r.fields.count(c.target_column) ? r.fields.at(c.target_column) : std::string()});
    if (rows) rows->push_back({{"input", input_text(c, split, ex)}, {"gold", refs.back()[0]}, {"prediction", hyps.back()}});
  }
  if (was) m.train();
  if (hyps.empty()) return json::object();
  return {{"bleu", corpus_bleu(hyps, refs)}, {"rouge_l", rouge_l(hyps, refs)}};
}

}  // namespace

nlohmann::json task_metrics(const RunConfig& c, PeftModel& pm, const io::Tokenizer& tok, const LoadedSplit& split,
                            int64_t pad, std::vector<nlohmann::json>* predictions) {
  const Dataset& d = split.data;
  const bool cls = c.task == "seq_cls" || c.task == "token_cls";
  if (cls && !d.tasks.empty()) {  // multi-task data: accuracy over each row's own head
    const Accuracy acc = classification_accuracy(pm, d, pad, c.task == "token_cls");
    json m = {{"accuracy", acc.all}};
    for (std::size_t t = 0; t < acc.per_task.size(); ++t) m["accuracy/" + d.tasks[t].name] = acc.per_task[t];
    return m;
  }
  if (c.task == "seq_cls") return seq_cls_metrics(c, pm, split, pad, predictions);
  if (c.task == "token_cls") return token_cls_metrics(c, pm, split, pad, predictions);
  if (c.task == "seq2seq") return c.eval_generate > 0 ? seq2seq_metrics(c, pm, tok, split, predictions) : json::object();
  json m = json::object();
  if (c.eval_generate > 0 && !c.prompt_template.empty()) {
    const GenerationScore g = generation_eval(c, pm.base_model(), tok, split.rows, &pm);
    m["bleu"] = g.bleu;
    if (predictions)
      for (std::size_t i = 0; i < g.hyps.size(); ++i)
        predictions->push_back({{"input", g.prompt_texts[i]}, {"gold", g.refs[i]}, {"prediction", g.hyps[i]}});
  }
  return m;
}

}  // namespace peft::train
