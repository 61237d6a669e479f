// peft train / peft eval / peft merge. The configuration comes from a YAML file whose keys are
// PEFT config and transformers TrainingArguments field names, plus `key=value` overrides.
#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "commands.h"
#include "launch.h"
#include "peft/distributed/collective.h"
#include "peft/core/check.h"
#include "peft/core/file_util.h"
#include "peft/core/json_file.h"
#include "peft/core/runtime.h"
#include "peft/export/gguf_merge.h"
#include "peft/io/gguf.h"
#include "peft/io/tokenizer.h"
#include "peft/models/adaptable_linear.h"
#include "peft/models/generation.h"
#include "peft/models/gguf_model.h"
#include "peft/models/model.h"
#include "peft/models/quantized_model.h"
#include "peft/peft_model.h"
#include "peft/train/data.h"
#include "peft/train/metrics.h"
#include "peft/train/datasets.h"
#include "peft/train/evaluate.h"
#include "peft/train/run.h"
#include "peft/train/run_config.h"
#include "peft/train/trainer.h"

namespace peft::cli {

namespace {

namespace fs = std::filesystem;

using train::RunConfig;
using train::TaskEntry;

void run_train(const std::string& cfg_path, const std::vector<std::string>& overrides, const std::string& resume) {
  const RunConfig c = train::load_run_config(cfg_path, overrides);
  // A rank of a data-parallel run (RANK/WORLD_SIZE set by the launcher or torchrun): only rank 0 prints.
  if (distributed::env_from_environment().rank != 0) std::cout.setstate(std::ios_base::badbit);
  const auto res = train::run_training(c, resume);
  std::cout << (c.method == "full" ? "model:       " : "adapter:     ") << res.adapter_dir << "\n"
            << "checkpoints: " << c.args.output_dir << "/checkpoint-*\n"
            << "metrics:     " << c.args.output_dir << "/metrics.jsonl, " << c.args.output_dir << "/runs (TensorBoard)\n"
            << "loss plot:   " << c.args.output_dir << "/loss.png\n"
            << "summary:     " << c.args.output_dir << "/results.json\n";
}

// peft eval: the trainer's eval loss and the task's metrics (train::run_evaluation).
void run_eval(const std::string& cfg_path, const std::vector<std::string>& overrides, const std::string& output) {
  const RunConfig c = train::load_run_config(cfg_path, overrides);
  const auto m = train::run_evaluation(c, output);
  std::cout << "metrics: " << m.dump() << "\n";
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("eval", "Evaluate a model (and an adapter: adapter=DIR) on eval_file from a YAML config");
  auto cfg = std::make_shared<std::string>();
  auto over = std::make_shared<std::vector<std::string>>();
  cmd->add_option("config", *cfg, "YAML file (same keys as peft train)")->required();
  auto output = std::make_shared<std::string>();
  cmd->add_option("overrides", *over, "key=value overrides, e.g. adapter=build/demo/adapter");
  cmd->add_option("--output", *output, "Write one JSON line per example (input, gold, prediction, "
                                       "probabilities/scores) to this file");
  cmd->footer("Tasks: causal_lm (loss, perplexity; BLEU with prompt_template + eval_generate), seq_cls\n"
              "(accuracy + F1; regression: MSE, Pearson, Spearman; multi-label: micro/macro F1, subset\n"
              "accuracy), token_cls (accuracy, entity precision/recall/F1), seq2seq (loss; BLEU and ROUGE-L\n"
              "with eval_generate). The last line is the metrics as JSON, as results.json has them.");
  cmd->callback([cfg, over, output] { run_eval(*cfg, *over, *output); });
}

void add_train_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("train", "Fine-tune a model with an adapter from a YAML config (+ key=value overrides)");
  auto cfg = std::make_shared<std::string>();
  auto over = std::make_shared<std::vector<std::string>>();
  auto resume = std::make_shared<std::string>();
  cmd->add_option("config", *cfg, "YAML file with PEFT / TrainingArguments keys")->required();
  cmd->add_option("overrides", *over, "key=value overrides, e.g. learning_rate=1e-3 max_steps=50");
  cmd->footer(
      "Paper options beyond PEFT (saved configs then need peft.cpp):\n"
      "  p_tuning_template (method p_tuning, CAUSAL_LM / SEQ_2_SEQ_LM): whitespace-separated items\n"
      "    [x] the input (once), [v] a virtual token (num_virtual_tokens of them, one LSTM/MLP encoder),\n"
      "    [v:word] a virtual token initialised from word, [id:N] an anchor token id, any other word an\n"
      "    anchor (real, frozen embedding; tokenizer_name_or_path, default the model). E.g.\n"
      "    p_tuning_template='[x] [v] [v] capital [v]'. CAUSAL_LM: y follows the template.\n"
      "  prefix_on=encoder_and_decoder (prefix_tuning, SEQ_2_SEQ_LM): a prefix for the encoder too.\n"
      "  prefix_placement=infix|embedding (prefix_tuning, CAUSAL_LM): [x; INFIX; y] or input layer only.\n"
      "  tasks (task seq_cls / token_cls, P-Tuning v2's multi-task prompts): a list of {name, data keys:\n"
      "    train_file, eval_file, text_column, text_pair_column, label_column, label_regex, tag_column,\n"
      "    max_train_samples, max_eval_samples, max_length, skip_bad_rows, validation_split_percentage};\n"
      "    one shared adapter on mixed batches, a classifier head per task; writes output_dir/tasks/<name>/,\n"
      "    one plain PEFT adapter per task (continue on one with adapter=output_dir/tasks/<name>).\n"
      "Data keys: label_regex (a regex whose first group is the label, searched in label_column),\n"
      "  validation_split_percentage (without eval_file: the last N% of train_file is the eval set),\n"
      "  tag_column (token_cls: the CoNLL column of the tags, -1 = the last).");
  cmd->add_option("--resume", *resume, "Continue from a checkpoint folder (output_dir/checkpoint-N)")
      ->check(CLI::ExistingDirectory);
  auto launch = std::make_shared<LaunchFlags>();
  add_launch_options(*cmd, *launch);
  cmd->callback([cfg, over, resume, launch] {
    std::vector<std::string> rank_args = {"train", *cfg};
    rank_args.insert(rank_args.end(), over->begin(), over->end());
    if (!resume->empty()) rank_args.insert(rank_args.end(), {"--resume", *resume});
    if (!launch_if_asked(*launch, rank_args)) run_train(*cfg, *over, *resume);
  });
}

void add_merge_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("merge", "Merge an adapter into its base model and write a full HF folder "
                                           "(or, with --format gguf, a llama.cpp GGUF model)");
  struct A {
    std::string model, adapter, out, quant, format = "hf", type;
    bool double_quant = false, requantize = false, no_4bit = false, allow_nonfinite = false;
  };
  auto a = std::make_shared<A>();
  cmd->add_option("model", a->model, "Base model folder or GGUF file")->required()->check(CLI::ExistingPath);
  cmd->add_option("adapter", a->adapter, "PEFT adapter folder")->required()->check(CLI::ExistingDirectory);
  cmd->add_option("out", a->out, "Output folder (--format gguf: output .gguf file)")->required();
  cmd->add_option("--format", a->format, "hf: a Hugging Face folder; gguf: a llama.cpp GGUF model laid out like "
                                         "the GGUF base (metadata and tokenizer copied)")
      ->check(CLI::IsMember({"hf", "gguf"}));
  cmd->add_option("--type", a->type, "--format gguf: type of the weight matrices (norms stay f32; default f32)")
      ->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1"}));
  // QLoRA adapters: merge into the 4-bit base they were trained on (PEFT issues #1080, #2105).
  cmd->add_option("--4bit", a->quant, "The adapter was trained on a 4-bit base of this type (nf4 or fp4): "
                                      "merge into that base's dequantised weights. Default: what the adapter "
                                      "records (its base_quantization.json)")
      ->check(CLI::IsMember({"nf4", "fp4"}));
  cmd->add_flag("--double-quant", a->double_quant, "With --4bit: the base used double quantisation");
  cmd->add_flag("--no-4bit", a->no_4bit, "Merge into the full-precision base even if the adapter was trained on a "
                                         "4-bit one");
  cmd->add_flag("--allow-nonfinite-weights", a->allow_nonfinite,
                "Load a base whose weights hold NaN/inf (inf masks) with a warning instead of an error");
  cmd->add_flag("--requantize", a->requantize, "Keep the merged model 4-bit (bitsandbytes format) and report "
                                               "the re-quantisation error; default: full precision");
  cmd->callback([a] {
    check_output_apart("merge", a->out, {a->model, a->adapter});
    const bool to_gguf = a->format == "gguf";
    // Before the work: the file or folder can go there (a previous merge is replaced whole).
    if (to_gguf) check_output_file("merge", a->out);
    else check_output_folder("merge", a->out, is_model_folder_file);
    PEFT_CHECK(to_gguf || a->type.empty(), ConfigError, "[merge] --type applies to --format gguf");
    if (to_gguf) {
      PEFT_CHECK(fs::is_regular_file(a->model) && io::is_gguf_file(a->model), NotSupported, "[merge] --format gguf: ",
                 a->model, " is not a GGUF file; the output copies the base's llama.cpp metadata and tokenizer, so "
                 "give the GGUF base (convert an HF folder with llama.cpp's convert_hf_to_gguf.py), or merge to an "
                 "HF folder and convert that");
      PEFT_CHECK(!a->requantize && a->quant.empty(), ConfigError, "[merge] --format gguf: --4bit / --requantize "
                 "apply to bitsandbytes bases; choose the GGUF weight type with --type");
    }
    PEFT_CHECK(!a->no_4bit || a->quant.empty(), ConfigError, "[merge] --4bit and --no-4bit contradict each other");
    PEFT_CHECK(!a->double_quant || !a->quant.empty(), ConfigError, "[merge] --double-quant needs --4bit nf4|fp4");
    models::LoadOptions o;
    o.allow_nonfinite_weights = a->allow_nonfinite;
    apply_4bit_options(o, a->model, a->adapter, a->quant, a->double_quant, a->no_4bit, "merge");
    auto base = models::load_model(a->model, o);
    std::vector<models::AdaptableLinearImpl*> q4;
    for (const auto& m : base->modules())
      if (auto* l = dynamic_cast<models::AdaptableLinearImpl*>(m.get()); l && l->quantized()) q4.push_back(l);
    PEFT_CHECK(!a->requantize || !q4.empty(), ConfigError,
               "[merge] --requantize needs a 4-bit base (--4bit or a bitsandbytes-quantised model folder)");
    if (!q4.empty() && !a->requantize) models::dequantize_model(*base);
    auto pm = PeftModel::from_pretrained(base, a->adapter);
    auto merged = pm->merge_and_unload(/*safe_merge=*/true);
    if (a->requantize) {
      double worst = 0.0;
      for (auto* l : q4) worst = std::max(worst, l->last_requant_error());
      std::cout << "re-quantised " << q4.size() << " 4-bit layers; largest |merged - 4-bit| " << worst << "\n";
    }
    if (to_gguf) {
      const auto type = *io::parse_ggml_type(a->type.empty() ? "f32" : a->type);
      const auto r = exporter::write_merged_gguf(*merged, io::GgufFile::open(a->model), a->out, type);
      std::cout << "wrote merged GGUF " << a->out << ": " << r.tensors << " tensors, " << r.quantized << " in "
                << io::ggml_type_name(static_cast<uint32_t>(type))
                << (r.untied_output ? " (output.weight written: the merge changed the tied lm_head)" : "") << "\n";
      return;
    }
    // Written beside the output and put in place when complete: a failure leaves no partial folder.
    write_folder_atomic("merge", a->out, is_model_folder_file, [&](const std::string& tmp) {
      models::save_pretrained(*merged, tmp);
      if (fs::is_regular_file(a->model) && io::is_gguf_file(a->model)) {  // a GGUF base carries its tokenizer
        const auto g = io::GgufFile::open(a->model);
        write_json_file((fs::path(tmp) / "generation_config.json").string(), models::gguf_generation_config(g));
        if (g.has("tokenizer.ggml.model")) io::write_gguf_tokenizer(g, tmp);
      }
      for (const char* f : {"tokenizer.json", "tokenizer_config.json", "tokenizer.model", "tokenizer.bin", "generation_config.json"})
        if (fs::is_directory(a->model) && fs::exists(fs::path(a->model) / f))
          fs::copy_file(fs::path(a->model) / f, fs::path(tmp) / f, fs::copy_options::overwrite_existing);
    });
    std::cout << "wrote merged model to " << a->out << "\n";
  });
}

}  // namespace peft::cli
