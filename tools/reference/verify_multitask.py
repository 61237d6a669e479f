"""Loads the per-task adapters of a multi-task P-Tuning v2 run (`peft train
examples/configs/e2e_multitask_p_tuning_v2.yaml`, output_dir/tasks/<task>/) with Python PEFT on
the base model sized for the task's labels, and prints each task's accuracy on the run's held-out
rows (the last 10% of data/e2e/train.csv), to compare with the accuracies `peft train` printed.

Usage: python verify_multitask.py BASE_DIR TASK_ADAPTER_DIR LABEL_REGEX
  e.g. python tools/reference/verify_multitask.py build/models/stories260K \
         build/e2e_multitask_p_tuning_v2/tasks/family_friendly 'familyFriendly\[(\w+)\]'
Run from the repository root. The pad id is the tokenizer's eos (2), as `peft train` sets it.
"""
import csv, re, sys, torch
from transformers import AutoTokenizer, LlamaForSequenceClassification
from peft import PeftModel
base, adapter, rx = sys.argv[1], sys.argv[2], sys.argv[3]
import json
labels = json.load(open(adapter + "/task.json"))["label_names"]
rows = list(csv.DictReader(open("data/e2e/train.csv", encoding="utf-8-sig")))
n = len(rows); val = rows[n - n * 10 // 100:]
tok = AutoTokenizer.from_pretrained(base)
m = LlamaForSequenceClassification.from_pretrained(base, num_labels=len(labels), pad_token_id=2, dtype=torch.float32)
pm = PeftModel.from_pretrained(m, adapter).eval()
ok = tot = 0
with torch.no_grad():
    for r in val:
        g = re.search(rx, r["mr"])
        if not g: continue
        ids = tok(r["ref"], return_tensors="pt", truncation=True, max_length=96)
        p = pm(input_ids=ids.input_ids, attention_mask=ids.attention_mask).logits.argmax(-1).item()
        ok += labels[p] == g.group(1); tot += 1
print(f"PEFT accuracy {ok}/{tot} = {ok/tot:.6f}")
