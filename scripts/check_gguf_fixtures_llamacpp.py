#!/usr/bin/env python3
"""Runs llama.cpp (llama-cpp-python) on the GGUF fixtures that make_architecture_fixtures.py
writes and compares its per-token log-probabilities with those of transformers
(llamacpp_expected.json beside each file: transformers with llama.cpp's deliberate differences —
ggml's float16 GELU table, Phi-3 without its sliding window — see llamacpp_reference): evidence that the files are laid out as llama.cpp's converter lays them out,
so that Distill reading them as the original checkpoints is reading what users' files hold.

    CMAKE_ARGS="-DGGML_NATIVE=ON" pip install llama-cpp-python gguf numpy
    python3 scripts/check_gguf_fixtures_llamacpp.py Tests/DistillModelsTests/Fixtures/architectures

The key/value cache is kept in F32. Measured with llama-cpp-python 0.3.36: llama, qwen3, phi3
within 2.1e-6; gemma 2.8e-5, gemma2 6.5e-5, gemma3 (six GELU layers) 3.2e-4, hence the default
tolerance of 5e-4 (without emulating the GELU table the Gemma differences are 1e-3 to 1e-2; a
misnamed, unshifted or unpermuted tensor gives differences of order 1).
"""
import json
import os
import sys

import numpy as np
from llama_cpp import Llama

def check(root, tolerance=5e-4):
    """Largest difference over the fixtures under root (printing each); exits on failure."""
    worst_all = 0.0
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name, "model.gguf")
        if not os.path.exists(path):
            continue
        expected = json.load(open(os.path.join(root, name, "llamacpp_expected.json")))
        model = Llama(model_path=path, logits_all=True, n_ctx=64, n_threads=2, verbose=False, type_k=0, type_v=0)
        worst = 0.0
        for seq in expected["sequences"]:
            ids = seq["ids"]
            model.reset()
            model.eval(ids)
            logits = np.array(model.scores[:len(ids)], dtype=np.float64)
            top = logits.max(axis=1, keepdims=True)
            logp = logits - top - np.log(np.exp(logits - top).sum(axis=1, keepdims=True))
            got = [logp[i, ids[i + 1]] for i in range(len(ids) - 1)]
            worst = max(worst, max(abs(a - b) for a, b in zip(got, seq["token_logprobs"])))
        print(f"{name}: llama.cpp vs transformers, largest token log-prob difference {worst:.2e}")
        worst_all = max(worst_all, worst)
        del model
    if worst_all > tolerance:
        sys.exit(f"difference {worst_all:.2e} exceeds {tolerance:.0e}")
    print("all within", tolerance)
    return worst_all


if __name__ == "__main__":
    check(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 5e-4)
