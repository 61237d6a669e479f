// Prompt ensembling (see ensemble.h).
#include "peft/tuners/prompt_learning/ensemble.h"

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include "peft/core/check.h"
#include "peft/tuners/p_tuning/config.h"
#include "peft/tuners/prompt_learning/model.h"

namespace peft::prompt {

EnsembleResult ensemble(PeftModel& pm, const std::vector<std::string>& adapters, const models::ModelInputs& in,
                        Combine combine) {
  PEFT_CHECK(!adapters.empty(), std::invalid_argument, "[ensemble] give at least one adapter");
  PEFT_CHECK(in.input_ids.defined() && !in.inputs_embeds.defined(), std::invalid_argument,
             "[ensemble] give input_ids");
  const auto& first = dynamic_cast<const PromptLearningConfig&>(pm.peft_config(adapters.front()));
  const int64_t P = first.num_virtual_tokens, K = static_cast<int64_t>(adapters.size());
  const int64_t B = in.input_ids.size(0), T = in.input_ids.size(1);
  const TaskType task = first.task_type;
  auto& prompts_model = pm.tuner_as<PromptLearningModel>();
  std::vector<at::Tensor> prompts;
  for (const auto& a : adapters) {
    const auto& c = pm.peft_config(a);
    PEFT_CHECK(c.peft_type == PeftType::PromptTuning || c.peft_type == PeftType::PTuning, NotSupported,
               "[ensemble] adapter '", a, "' is ", to_string(c.peft_type),
               "; ensembling takes Prompt Tuning / P-Tuning adapters");
    const auto& pc = dynamic_cast<const PromptLearningConfig&>(c);
    const auto* pe = dynamic_cast<const PromptEncoderConfig*>(&c);
    PEFT_CHECK(!pe || pe->p_tuning_template.empty(), NotSupported, "[ensemble] adapter '", a,
               "' has a p_tuning_template; ensembling prepends the virtual tokens and takes template-free adapters");
    PEFT_CHECK(pc.task_type == task && pc.num_virtual_tokens == P, std::invalid_argument, "[ensemble] adapter '", a,
               "' has task ", to_string(pc.task_type), " and ", pc.num_virtual_tokens, " virtual tokens; '",
               adapters.front(), "' has ", to_string(task), " and ", P);
    prompts.push_back(prompts_model.prompt_embeddings(a).narrow(0, 0, P).unsqueeze(0).expand({B, P, -1}));
  }
  torch::NoGradGuard ng;
  auto& base = pm.base_model();
  auto rep = [&](const at::Tensor& t) { return t.defined() ? t.repeat({K, 1}) : t; };
  models::ModelInputs x;
  const at::Tensor embeds = base.embed(in.input_ids);
  x.inputs_embeds = at::cat({at::cat(prompts, 0).to(embeds.scalar_type()), embeds.repeat({K, 1, 1})}, 1);
  const at::Tensor mask = in.attention_mask.defined() ? in.attention_mask : at::ones_like(in.input_ids);
  x.attention_mask = at::cat({at::ones({K * B, P}, mask.options()), rep(mask)}, 1);
  if ((task == TaskType::SeqCls || task == TaskType::TokenCls) && in.token_type_ids.defined())
    x.token_type_ids = at::cat({at::zeros({K * B, P}, in.token_type_ids.options()), rep(in.token_type_ids)}, 1);
  x.decoder_input_ids = rep(in.decoder_input_ids);
  x.decoder_attention_mask = rep(in.decoder_attention_mask);
  at::Tensor logits = base.forward(x).logits;
  if (task == TaskType::CausalLM || task == TaskType::TokenCls) logits = logits.narrow(1, P, T);
  std::vector<int64_t> shape = {K, B};
  for (int64_t d = 1; d < logits.dim(); ++d) shape.push_back(logits.size(d));
  EnsembleResult r;
  r.probs = at::softmax(logits.to(at::kFloat), -1).view(shape);
  r.mean_probs = r.probs.mean(0);
  const int64_t C = logits.size(-1);
  r.votes = at::one_hot(r.probs.argmax(-1), C).sum(0);
  if (combine == Combine::MeanProbability) {
    r.prediction = r.mean_probs.argmax(-1);
  } else {
    // Most votes; a tie goes to the class with the higher mean probability (a fraction < 1).
    r.prediction = (r.votes.to(at::kFloat) + r.mean_probs * 0.5).argmax(-1);
  }
  return r;
}

}  // namespace peft::prompt
