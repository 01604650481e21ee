#!/usr/bin/env python3
"""A LoRA adapter written by PEFT itself, for `distill lora merge` and `--adapter`
(Tests/DistillationTests/Fixtures/peft_adapter):

- base/: a tiny random Qwen2 (q/k/v biases, grouped-query attention) saved by transformers;
- adapter/: PEFT's `save_pretrained` of a LoRA on every linear projection of the blocks (r 4,
  lora_alpha 16, rsLoRA scaling alpha/sqrt(r)), every lora_B given seeded non-zero values;
- expected.json: the ids, the adapted model's logits, and after `merge_and_unload()` one merged
  weight, so that Distill's merge can be compared with PEFT's.

    pip install torch==2.5.1 transformers==4.46.3 && pip install --no-deps peft==0.13.2
    python3 scripts/make_peft_adapter_fixture.py Tests/DistillationTests/Fixtures/peft_adapter
"""
import json
import os
import sys

import torch
import transformers
from peft_base import save_tiny_qwen2
from peft import LoraConfig, get_peft_model

out = sys.argv[1]
model = save_tiny_qwen2(out, seed=12)
lora = LoraConfig(r=4, lora_alpha=16, lora_dropout=0.0, use_rslora=True,
                  target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                  bias="none", task_type="CAUSAL_LM")
peft_model = get_peft_model(model, lora)
gen = torch.Generator().manual_seed(5)
with torch.no_grad():
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            p.copy_(0.3 * torch.randn(p.shape, generator=gen))
peft_model.save_pretrained(os.path.join(out, "adapter"))
os.remove(os.path.join(out, "adapter", "README.md"))   # the model card PEFT writes
ids = [3, 17, 42, 8, 61, 5, 30, 2]
with torch.no_grad():
    logits = peft_model(input_ids=torch.tensor([ids])).logits[0]
merged = peft_model.merge_and_unload()
with torch.no_grad():
    merged_logits = merged(input_ids=torch.tensor([ids])).logits[0]
assert torch.allclose(logits, merged_logits, atol=1e-5)
w = merged.model.layers[1].mlp.down_proj.weight
json.dump({"ids": ids, "logits": logits.reshape(-1).tolist(),
           "merged_down_proj_1": w.reshape(-1).tolist(), "merged_down_proj_1_shape": list(w.shape)},
          open(os.path.join(out, "expected.json"), "w"))
print("wrote", out)
