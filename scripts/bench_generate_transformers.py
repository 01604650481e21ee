#!/usr/bin/env python3
"""The `distill bench generate` workload in transformers, for side-by-side figures: greedy
decoding of 128 new tokens after a 40-token prompt of random ids, batch 1 and 8, float32, 2
threads; prompt tokens/s from a prefill-only pass, decode tokens/s from the rest (median of 3).

    python3 scripts/bench_generate_transformers.py DIR_WITH_GGUF [GGUF_NAME]
"""
import sys
import time

import torch
from transformers import AutoModelForCausalLM

torch.set_num_threads(2)
d = sys.argv[1]
g = sys.argv[2] if len(sys.argv) > 2 else "SmolLM2-135M-Instruct.Q4_1.gguf"
m = AutoModelForCausalLM.from_pretrained(d, gguf_file=g, torch_dtype=torch.float32).eval()
m.lm_head.weight = m.model.embed_tokens.weight
torch.manual_seed(5)
for batch in (1, 8):
    ids = torch.randint(0, m.config.vocab_size, (batch, 40))
    pre, dec = [], []
    for rep in range(4):
        with torch.no_grad():
            t0 = time.perf_counter()
            m.generate(ids, max_new_tokens=1, min_new_tokens=1, do_sample=False, pad_token_id=0)
            t1 = time.perf_counter()
            m.generate(ids, max_new_tokens=128, min_new_tokens=128, do_sample=False, pad_token_id=0)
            t2 = time.perf_counter()
        if rep:
            pre.append(t1 - t0)
            dec.append((t2 - t1) - (t1 - t0))
    p, dd = sorted(pre)[1], sorted(dec)[1]
    print(f"batch {batch}: prompt {batch * 40 / p:.1f} tokens/s, decode {batch * 127 / dd:.1f} tokens/s")
