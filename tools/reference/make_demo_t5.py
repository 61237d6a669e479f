"""Writes a small randomly initialised T5 (vocab 512, d_model 64) with the stories260K tokenizer,
for the SEQ_2_SEQ_LM example runs (no pretrained T5 ships with this repository).

    build/peft convert models/stories260K/stories260K.bin build/models/stories260K --tokenizer models/stories260K/tok512.bin
    /root/peft-venv/bin/python tools/reference/make_demo_t5.py build/models/stories260K build/models/t5-demo
"""
import os
import shutil
import sys

import torch
import transformers

src, out = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
cfg = transformers.T5Config(vocab_size=512, d_model=64, d_kv=16, d_ff=172, num_layers=3, num_heads=4,
                            decoder_start_token_id=0, pad_token_id=0, eos_token_id=2, tie_word_embeddings=True)
model = transformers.T5ForConditionalGeneration(cfg)
model.save_pretrained(out, safe_serialization=True)
for f in ("tokenizer.json", "tokenizer.bin"):
    if os.path.exists(os.path.join(src, f)):
        shutil.copy(os.path.join(src, f), os.path.join(out, f))
print(f"wrote {out}")
