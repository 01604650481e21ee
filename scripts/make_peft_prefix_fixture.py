#!/usr/bin/env python3
"""A prefix-tuning adapter written by PEFT itself, for `--adapter` and the recipe key `prefix`
(Tests/DistillationTests/Fixtures/peft_prefix):

- base/: a tiny random Qwen2 (grouped-query attention) saved by transformers;
- adapter/: PEFT's `save_pretrained` of PrefixTuningConfig(num_virtual_tokens=3), no projection
  (PEFT 0.13.2 sizes token_dim by the key/value heads: 2 x 16 here), its prompt embeddings seeded;
- expected.json: a row of ids alone, and two rows with a left-padding mask, and the adapted
  model's logits. PEFT places the prefix as past keys/values, so the tokens sit at positions
  P, P+1, ... (P = 3; PEFT ignores position ids, so padded rows count their padding too).

    pip install torch==2.5.1 transformers==4.46.3 && pip install --no-deps peft==0.13.2
    python3 scripts/make_peft_prefix_fixture.py Tests/DistillationTests/Fixtures/peft_prefix
"""
import json
import os
import sys

import torch
import transformers
from peft_base import save_tiny_qwen2
from peft import PrefixTuningConfig, get_peft_model

out = sys.argv[1]
model = save_tiny_qwen2(out, seed=21)
peft_model = get_peft_model(model, PrefixTuningConfig(num_virtual_tokens=3, task_type="CAUSAL_LM"))
gen = torch.Generator().manual_seed(8)
with torch.no_grad():
    for name, p in peft_model.named_parameters():
        if p.requires_grad:
            p.copy_(0.5 * torch.randn(p.shape, generator=gen))
peft_model.save_pretrained(os.path.join(out, "adapter"))
os.remove(os.path.join(out, "adapter", "README.md"))   # the model card PEFT writes
ids = [[3, 17, 42, 8, 61, 5], [0, 0, 30, 2, 9, 11]]
mask = [[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]]
with torch.no_grad():
    alone = peft_model(input_ids=torch.tensor([ids[0]])).logits[0]
    # With a padding mask (PEFT ignores position ids: every row's tokens sit at P, P+1, ...).
    batch = peft_model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits
json.dump({"ids": ids, "mask": mask, "logits_alone": alone.reshape(-1).tolist(),
           "logits_batch": batch.reshape(-1).tolist(), "vocab": 64},
          open(os.path.join(out, "expected.json"), "w"))
print("wrote", out)
