#!/usr/bin/env python3
"""The `distill bench generate` workload in llama.cpp (through llama-cpp-python), for
side-by-side figures on the same GGUF file: a prompt of random ids, then N new tokens decoded
greedily one at a time, 2 threads; prompt tokens/s from the prompt's evaluation, decode tokens/s
from the rest (median of 3 after a warm-up). Batch 1 only (llama-cpp-python's high-level API
decodes one sequence); larger batch sizes are reported as skipped.

    CMAKE_ARGS="-DGGML_NATIVE=ON" pip install llama-cpp-python
    python3 scripts/bench_generate_llamacpp.py MODEL.gguf [--batch 1] [--prompt-tokens 40]
        [--new-tokens 128] [--threads 2] [--json]

`distill bench generate --compare-llamacpp` runs it.
"""
import argparse
import json
import random
import time

import llama_cpp
import numpy as np
from llama_cpp import Llama

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--batch", default="1")
ap.add_argument("--prompt-tokens", type=int, default=40)
ap.add_argument("--new-tokens", type=int, default=128)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--json", action="store_true")
a = ap.parse_args()

m = Llama(model_path=a.model, n_ctx=a.prompt_tokens + a.new_tokens + 8, n_threads=a.threads,
          n_threads_batch=a.threads, n_batch=512, verbose=False, logits_all=False)
rng = random.Random(5)
vocab = m.n_vocab()
results = []
for batch in [int(b) for b in a.batch.split(",")]:
    if batch != 1:
        results.append({"batch": batch, "skipped": "llama-cpp-python decodes one sequence"})
        continue
    ids = [rng.randrange(vocab) for _ in range(a.prompt_tokens)]
    pre, dec = [], []
    for rep in range(4):
        m.reset()
        t0 = time.perf_counter()
        m.eval(ids)
        t1 = time.perf_counter()
        for _ in range(a.new_tokens - 1):
            tok = int(np.argmax(m.scores[m.n_tokens - 1]))     # greedy: the last position's logits
            m.eval([tok])
        t2 = time.perf_counter()
        if rep:
            pre.append(t1 - t0)
            dec.append(t2 - t1)
    p, dd = sorted(pre)[1], sorted(dec)[1]
    r = {"batch": batch, "prompt_tokens_per_second": a.prompt_tokens / p,
         "decode_tokens_per_second": (a.new_tokens - 1) / dd}
    results.append(r)
    if not a.json:
        print(f"batch {batch}: prompt {r['prompt_tokens_per_second']:.1f} tokens/s, decode {r['decode_tokens_per_second']:.1f} tokens/s")
if a.json:
    print(json.dumps({"llama_cpp": llama_cpp.__version__, "results": results}))
