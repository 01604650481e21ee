#!/usr/bin/env python3
"""Checks that a model directory written by Distill (`distill convert`, `PretrainedModel.saveDirectory`)
loads in transformers and gives the same per-token log-probabilities as Distill.

    swift run -c release distill convert MODEL --out /tmp/saved
    python3 scripts/check_saved_model.py /tmp/saved MODEL "Some text to score."

MODEL is what Distill scores (the original or the saved directory); its `distill score --json`
ids are fed to transformers unchanged, so no tokenizer is needed on the Python side.
"""
import json
import subprocess
import sys

import torch
from transformers import AutoModelForCausalLM

saved, model, text = sys.argv[1], sys.argv[2], sys.argv[3]
out = subprocess.run(["swift", "run", "-c", "release", "distill", "score", "--model", model, "--text", text, "--json"],
                     check=True, capture_output=True, text=True).stdout
ours = json.loads(out[out.index("{"):])
m = AutoModelForCausalLM.from_pretrained(saved, torch_dtype=torch.float32).eval()
ids = ours["ids"]
with torch.no_grad():
    lp = torch.log_softmax(m(torch.tensor([ids])).logits[0], -1)
theirs = [float(lp[i, ids[i + 1]]) for i in range(len(ids) - 1)]
err = max(abs(a - b) for a, b in zip(ours["token_logprobs"], theirs))
print(f"{type(m).__name__} loaded from {saved}; {len(theirs)} tokens; max |Δ log p| = {err:.2e}")
sys.exit(0 if err < 1e-4 else 1)
