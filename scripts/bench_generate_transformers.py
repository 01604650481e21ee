#!/usr/bin/env python3
"""The `distill bench generate` workload in transformers, for side-by-side figures: greedy
decoding of N new tokens after a prompt of random ids, float32 (a GGUF is dequantized on load),
2 threads; prompt tokens/s from a prefill-only pass, decode tokens/s from the rest (median of 3
after a warm-up).

    python3 scripts/bench_generate_transformers.py MODEL [--batch 1,8] [--prompt-tokens 40]
        [--new-tokens 128] [--threads 2] [--json]

MODEL is a Hugging Face directory or a .gguf file. `distill bench generate --compare` runs it.
"""
import argparse
import json
import os
import time

import torch
from transformers import AutoModelForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--batch", default="1,8")
ap.add_argument("--prompt-tokens", type=int, default=40)
ap.add_argument("--new-tokens", type=int, default=128)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--json", action="store_true")
a = ap.parse_args()

torch.set_num_threads(a.threads)
if a.model.lower().endswith(".gguf"):
    m = AutoModelForCausalLM.from_pretrained(os.path.dirname(os.path.abspath(a.model)), gguf_file=os.path.basename(a.model),
                                             torch_dtype=torch.float32).eval()
    if getattr(m.config, "tie_word_embeddings", False):
        m.lm_head.weight = m.model.embed_tokens.weight
else:
    m = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=torch.float32).eval()
torch.manual_seed(5)
results = []
for batch in [int(b) for b in a.batch.split(",")]:
    ids = torch.randint(0, m.config.vocab_size, (batch, a.prompt_tokens))
    pre, dec = [], []
    for rep in range(4):
        with torch.no_grad():
            t0 = time.perf_counter()
            m.generate(ids, max_new_tokens=1, min_new_tokens=1, do_sample=False, pad_token_id=0)
            t1 = time.perf_counter()
            m.generate(ids, max_new_tokens=a.new_tokens, min_new_tokens=a.new_tokens, do_sample=False, pad_token_id=0)
            t2 = time.perf_counter()
        if rep:
            pre.append(t1 - t0)
            dec.append((t2 - t1) - (t1 - t0))
    p, dd = sorted(pre)[1], sorted(dec)[1]
    r = {"batch": batch, "prompt_tokens_per_second": batch * a.prompt_tokens / p,
         "decode_tokens_per_second": batch * (a.new_tokens - 1) / dd}
    results.append(r)
    if not a.json:
        print(f"batch {batch}: prompt {r['prompt_tokens_per_second']:.1f} tokens/s, decode {r['decode_tokens_per_second']:.1f} tokens/s")
if a.json:
    print(json.dumps({"torch": torch.__version__, "results": results}))
