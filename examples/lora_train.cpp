// LoRA fine-tuning from C++ in one screen: load a model, add an adapter, train, save, merge.
//   example_lora_train build/models/stories260K data/e2e/train.csv out
#include <torch/torch.h>

#include <iostream>

#include "peft/core/runtime.h"
#include "peft/peft.h"

int main(int argc, char** argv) {
  peft::restart_with_suitable_blas(argv);  // OpenBLAS's right kernels (docs/architecture.md, Runtime)
  if (argc < 4) {
    std::cerr << "usage: " << argv[0] << " <model folder> <train.csv with mr,ref> <output folder> [steps]\n";
    return 2;
  }
  const std::string model_dir = argv[1], train_csv = argv[2], out = argv[3];
  peft::init_runtime();
  auto base = peft::models::load_model(model_dir);

  peft::LoraConfig cfg;  // PEFT's field names and defaults
  cfg.task_type = peft::TaskType::CausalLM;
  cfg.r = 8;
  cfg.lora_alpha = 16;
  cfg.target_modules = std::vector<std::string>{"q_proj", "v_proj"};
  auto model = peft::get_peft_model(base, cfg);
  model->print_trainable_parameters();

  const auto tok = peft::io::Tokenizer::from_pretrained(model_dir);
  peft::train::DataOptions d;  // loss on the completion only
  d.prompt_column = "mr";
  d.completion_column = "ref";
  d.prompt_suffix = " ||";
  d.max_length = 128;
  auto rows = peft::train::read_rows(train_csv);
  rows.resize(std::min<std::size_t>(rows.size(), 256));
  const auto data = peft::train::build_dataset(rows, tok, d);

  peft::train::TrainingArguments args;  // transformers' names
  args.learning_rate = 3e-3;
  args.max_steps = argc > 4 ? std::stoll(argv[4]) : 20;
  args.per_device_train_batch_size = 8;
  args.output_dir = out;
  args.logging_steps = 5;
  peft::train::Trainer trainer(model, args, data, nullptr, *tok.eos_token_id());
  const auto r = trainer.train();
  std::cout << "loss " << r.step_losses.front() << " -> " << r.step_losses.back() << "\n";

  model->save_pretrained(out + "/adapter");  // loads in Python PEFT
  auto merged = model->merge_and_unload();   // plain model with the adapter folded in
  peft::models::save_pretrained(*merged, out + "/merged");
  std::cout << "adapter: " << out << "/adapter, merged model: " << out << "/merged\n";
  return 0;
}
