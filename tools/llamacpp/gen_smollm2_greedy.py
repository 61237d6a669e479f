"""tests/fixtures/gguf/smollm2_greedy.json: llama.cpp's greedy continuations (32 tokens) of three
prompts with SmolLM2-135M-Instruct Q4_1 (the model is not in the repository; a test using this
fixture skips when the file is absent). Three references per prompt:
  llamacpp: dump_logits --greedy (F32 KV cache, flash attention off, argmax, prompt tokenised as
            llama-simple does, stops before an end-of-generation token), with each step's top-1
            minus top-2 logit margin; whether llama-simple printed the same text is recorded;
  llamacpp_defaults: the same with llama.cpp's context defaults (F16 KV cache, flash attention
            auto = on for the CPU), which is what llama-simple runs: its text is checked;
  transformers_dequant: transformers' greedy generate (fp32, eager) on the model as transformers'
            GGUF loader dequantises it (gguf-py), i.e. float32 on the dequantised weights, as peft.cpp
            computes by default; stops after EOS.
transformers and llama.cpp differ where the margin is tiny, because llama.cpp multiplies Q4_1
weights with Q8_1-quantised activations; peft.cpp's llamacpp_numerics mode gives both llama.cpp
references exactly.

    python tools/llamacpp/gen_smollm2_greedy.py [MODEL.gguf]
"""
import hashlib
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
MODEL = os.path.join(ROOT, "build", "models", "SmolLM2-135M-Instruct.Q4_1.gguf")  # scripts/fetch_models.sh
PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time"]
N = 32


def transformers_greedy(model):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    d, f = os.path.split(model)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    m = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32, attn_implementation="eager").eval()
    out = []
    for p in PROMPTS:
        ids = tok(p, return_tensors="pt").input_ids
        with torch.no_grad():
            g = m.generate(ids, max_new_tokens=N, do_sample=False, output_scores=True, return_dict_in_generate=True)
        margins = [round(float(v[0] - v[1]), 4) for v in (s[0].topk(2).values for s in g.scores)]
        out.append({"prompt_ids": ids[0].tolist(), "generated_ids": g.sequences[0, ids.shape[1]:].tolist(),
                    "margins": margins})
    return out


def main():
    model = sys.argv[1] if len(sys.argv) > 1 else MODEL
    env = dict(l.split("=", 1) for l in subprocess.run(["bash", os.path.join(HERE, "build.sh"), "--env"],
                                                        capture_output=True, text=True, check=True)
               .stdout.strip().splitlines()[-1].split("; "))
    cases = []
    for p in PROMPTS:
        simple = subprocess.run([os.path.join(env["LLAMACPP_BIN"], "llama-simple"), "-m", model, "-n", str(N), p],
                                capture_output=True, text=True, check=True).stdout
        case = {"prompt": p}
        for key, flags in (("llamacpp", ["--cache-type", "f32", "--flash-attn", "off"]),
                           ("llamacpp_defaults", ["--cache-type", "f16", "--flash-attn", "auto"])):
            out = subprocess.run([env["DUMP_LOGITS"], "-m", model, "--prompt", p, "--greedy", str(N)] + flags,
                                 capture_output=True, text=True, check=True).stdout
            r = json.loads(out)
            r["llama_simple_agrees"] = simple.rstrip("\n").endswith(r["text"]) and r["text"] != ""
            print(key, json.dumps({k: r[k] for k in ("prompt", "generated_ids", "llama_simple_agrees")}))
            print("  text:", repr(r["text"]), "| min margin %.3g" % min(r["margins"] or [0]))
            if not r["llama_simple_agrees"]:
                print("  llama-simple:", repr(simple))
            case["prompt_ids"] = r["prompt_ids"]
            case[key] = {"generated_ids": r["generated_ids"], "stopped_at_eog": r["stopped_at_eog"],
                         "margins": [round(m, 4) for m in r["margins"]], "llama_simple_agrees": r["llama_simple_agrees"]}
        assert case["llamacpp_defaults"]["llama_simple_agrees"], "llama-simple runs llama.cpp's defaults"
        cases.append(case)
    tf = transformers_greedy(model)
    for c, t in zip(cases, tf):
        assert c["prompt_ids"] == t["prompt_ids"], (c["prompt_ids"], t["prompt_ids"])
        c["transformers_dequant"] = {"generated_ids": t["generated_ids"], "margins": t["margins"]}
        n = next((i for i, (a, b) in enumerate(zip(c["llamacpp"]["generated_ids"], t["generated_ids"])) if a != b),
                 min(len(c["llamacpp"]["generated_ids"]), len(t["generated_ids"])))
        c["common_prefix"] = n
        print(f"{c['prompt']!r}: llama.cpp and transformers agree on the first {n} ids")
    sha = hashlib.sha256(open(model, "rb").read()).hexdigest()
    # The sdist's vendor tree is not a git checkout: fall back to the commit it was cut from.
    commit = subprocess.run(["git", "-C", env["LLAMACPP_SRC"], "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "0c1e57098bba43ac29e6e3b677cdceebdd22334f"
    data = {"model": os.path.basename(model), "model_sha256": sha, "model_bytes": os.path.getsize(model),
            "llama_cpp": {"sdist": "llama-cpp-python 0.3.36 vendor/llama.cpp", "commit": commit},
            "generator": "tools/llamacpp/gen_smollm2_greedy.py",
            "transformers": __import__("transformers").__version__,
            "settings": f"llamacpp: dump_logits --greedy {N}: prompt tokenised with add_special and parse_special (as "
                        "llama-simple), one decode of the prompt, then argmax of the last logits per step, F32 KV "
                        "cache, flash attention off, CPU; stops before an end-of-generation token. margins = "
                        "top-1 minus top-2 logit per step. llamacpp_defaults: the same with llama.cpp's context "
                        "defaults (F16 KV cache, flash attention auto, on for the CPU), as llama-simple runs "
                        "(its text agrees). transformers_dequant: generate(do_sample=False) in fp32 (eager) "
                        "on AutoModelForCausalLM.from_pretrained(gguf_file=...) (gguf-py dequantisation), stops "
                        "after EOS. common_prefix: how many leading ids the two share (they part where the "
                        "margin is small: llama.cpp multiplies Q4_1 weights with Q8_1-quantised activations)",
            "cases": cases}
    path = os.path.join(ROOT, "tests", "fixtures", "gguf", "smollm2_greedy.json")
    with open(path, "w") as f:
        text = json.dumps(data, indent=1)
        # number lists on one line each
        text = re.sub(r"\[\s*([-0-9.,\s]+?)\s*\]", lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]",
                      text)
        f.write(text + "\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
