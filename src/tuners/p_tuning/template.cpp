// P-Tuning templates (see template.h).
#include "template.h"

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <filesystem>
#include <optional>

#include "peft/core/check.h"
#include "peft/io/tokenizer.h"

namespace peft::prompt {

namespace fs = std::filesystem;

std::vector<TemplateItem> resolve_template(const PromptEncoderConfig& c, const at::Tensor& words,
                                           PromptEncoder& enc) {
  auto items = parse_p_tuning_template(c.p_tuning_template);
  std::optional<io::Tokenizer> tok;
  const int64_t V = words.size(0);
  int64_t v = 0;
  for (auto& it : items) {
    if (it.kind == TemplateItem::Input) continue;
    if (!it.word.empty()) {
      if (!tok) {
        PEFT_CHECK(c.tokenizer_name_or_path && fs::exists(*c.tokenizer_name_or_path), ConfigError,
                   "[P_TUNING] p_tuning_template word '", it.word, "' needs tokenizer_name_or_path (a model folder with "
                   "a tokenizer, or a tokenizer file); got '", c.tokenizer_name_or_path.value_or(""), "'");
        const std::string& path = *c.tokenizer_name_or_path;
        tok = fs::is_directory(path) ? io::Tokenizer::from_pretrained(path) : io::Tokenizer::from_file(path);
      }
      const auto enc_ids = tok->encode(it.word, /*add_special_tokens=*/false).ids;
      PEFT_CHECK(!enc_ids.empty(), ConfigError, "[P_TUNING] p_tuning_template word '", it.word, "' tokenises to nothing");
      it.ids.assign(enc_ids.begin(), enc_ids.end());
    }
    for (int64_t id : it.ids)
      PEFT_CHECK(id >= 0 && id < V, ConfigError, "[P_TUNING] p_tuning_template token id ", id,
                 " is outside the model's vocabulary (", V, ")");
    if (it.kind == TemplateItem::Virtual) {
      if (!it.ids.empty() && !c.inference_mode) {
        torch::NoGradGuard ng;
        const at::Tensor ids = at::tensor(it.ids, at::TensorOptions().dtype(at::kLong)).to(words.device());
        enc.table()[v].copy_(words.detach().index_select(0, ids).mean(0).to(enc.table().scalar_type()));
      }
      ++v;
    }
  }
  return items;
}

Templated apply_template(models::PretrainedModel& base, const std::vector<TemplateItem>& items, const at::Tensor& virt,
                         const at::Tensor& embeds, const at::Tensor& mask, const at::Tensor& labels,
                         const std::vector<int64_t>& split) {
  const int64_t B = embeds.size(0), T = embeds.size(1);
  std::vector<at::Tensor> anchor_embeds;
  for (const auto& it : items)
    if (it.kind == TemplateItem::Anchor) {
      torch::NoGradGuard ng;  // anchors are real, frozen token embeddings
      anchor_embeds.push_back(base.embed(at::tensor(it.ids, at::TensorOptions().dtype(at::kLong)).unsqueeze(0).to(embeds.device()))[0].detach());
    }
  std::vector<at::Tensor> e_rows, m_rows, l_rows;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t s = split[b];
    std::vector<at::Tensor> e, m, l;
    int64_t v = 0, a = 0;
    auto fixed = [&](const at::Tensor& rows) {
      e.push_back(rows.to(embeds.scalar_type()));
      m.push_back(at::ones({rows.size(0)}, mask.options()));
      if (labels.defined()) l.push_back(at::full({rows.size(0)}, -100, labels.options()));
    };
    for (const auto& it : items) {
      if (it.kind == TemplateItem::Input) {
        e.push_back(embeds[b].narrow(0, 0, s));
        m.push_back(mask[b].narrow(0, 0, s));
        if (labels.defined()) l.push_back(labels[b].narrow(0, 0, s));
      } else if (it.kind == TemplateItem::Virtual) {
        fixed(virt.narrow(0, v++, 1));
      } else {
        fixed(anchor_embeds[a++]);
      }
    }
    e.push_back(embeds[b].narrow(0, s, T - s));
    m.push_back(mask[b].narrow(0, s, T - s));
    if (labels.defined()) l.push_back(labels[b].narrow(0, s, T - s));
    e_rows.push_back(at::cat(e, 0));
    m_rows.push_back(at::cat(m, 0));
    if (labels.defined()) l_rows.push_back(at::cat(l, 0));
  }
  Templated t;
  t.embeds = at::stack(e_rows);
  t.mask = at::stack(m_rows);
  if (labels.defined()) t.labels = at::stack(l_rows);
  return t;
}

}  // namespace peft::prompt
