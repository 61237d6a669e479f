"""Shared helpers for the fixture generators."""
import json
import os
import platform
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")


def versions():
    out = {"python": platform.python_version()}
    for mod in ("torch", "transformers", "peft", "safetensors", "tokenizers", "bitsandbytes", "numpy"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # not installed: not needed by this generator
            pass
    return out


def write_manifest(folder, **extra):
    data = {"generator": os.path.basename(sys.argv[0]), "command": " ".join(sys.argv),
            "versions": versions()}
    data.update(extra)
    with open(os.path.join(folder, "manifest.json"), "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
