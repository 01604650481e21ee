#!/usr/bin/env python3
"""Checks `distill export --format gguf` against the tools users load the files with.

For a model (default: SmolLM2-135M-Instruct Q4_1 GGUF) it exports every --type, then
- gguf-py reads each file (every tensor's type and shape);
- llama.cpp (llama-cpp-python) loads each file; on the f32 export llama.cpp's per-token
  log-probabilities (F32 key/value cache) equal `distill score`'s on the same file within 2e-3;
- held-out perplexity of each type through llama.cpp: q8_0 within 2 % of f32, q4_k_m within 10 %;
- every architecture: each GGUF fixture of Tests/DistillModelsTests/Fixtures/architectures
  (Llama, Qwen3, Gemma, Gemma 2, Gemma 3, Phi-3, Phi-4-mini-like) exported again by Distill as f32
  gives llama.cpp the log-probabilities transformers gives (check_gguf_fixtures_llamacpp.py).

    CMAKE_ARGS="-DGGML_NATIVE=ON" pip install llama-cpp-python gguf numpy
    python3 scripts/check_gguf_export.py [MODEL] [--distill .build/release/distill] [--out DIR]
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys

import gguf
import numpy as np
from llama_cpp import Llama

TEXT = (
    "A lighthouse keeper kept a notebook of every ship that passed the point. Most entries were short: "
    "the hour, the flag, the direction of the wind. On calm evenings he added a line about the colour of "
    "the water or the birds that followed the fishing boats home. Over forty years the notebook grew into "
    "eleven volumes, and when the light was automated the volumes went to the town library, where students "
    "now count storms by decade and compare the old tide tables with the new ones. The keeper's arithmetic "
    "was careful: if a ship passed at half past six and another at a quarter to eight, he wrote that "
    "seventy-five minutes separated them, and he checked the sum twice. Numbers mattered to him because "
    "the harbour master paid by the entry, and because a mistake in the log could send a search boat out "
    "for a vessel that had already come home. In winter the entries thin out; the sea is rough and few "
    "captains risk the narrow channel between the rocks. In summer there are pleasure boats, ferries to "
    "the islands and, once, a tall ship with three masts that anchored for a week while its crew mended "
    "the rigging. The last volume ends with a list of the lamps he replaced and a note thanking the "
    "people of the town for the bread they left at his door."
)


def llama_logprobs(path, ids):
    m = Llama(model_path=path, logits_all=True, n_ctx=1024, n_threads=2, verbose=False, type_k=0, type_v=0)
    m.reset()
    m.eval(ids)
    logits = np.array(m.scores[:len(ids)], dtype=np.float64)
    top = logits.max(axis=1, keepdims=True)
    logp = logits - top - np.log(np.exp(logits - top).sum(axis=1, keepdims=True))
    return [float(logp[i, ids[i + 1]]) for i in range(len(ids) - 1)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default=".build/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--distill", default=".build/release/distill")
    ap.add_argument("--out", default="/tmp/distill-export-check")
    ap.add_argument("--types", default="f32,f16,bf16,q8_0,q4_0,q4_k_m,q5_k_m,q6_k")
    ap.add_argument("--fixtures", default="Tests/DistillModelsTests/Fixtures/architectures")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    failures = []
    files = {}
    for t in args.types.split(","):
        path = os.path.join(args.out, f"model-{t}.gguf")
        subprocess.run([args.distill, "export", args.model, "--type", t, "--out", path], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        r = gguf.GGUFReader(path)
        types = sorted({tensor.tensor_type.name for tensor in r.tensors})
        print(f"{t:7s} {os.path.getsize(path) / 1e6:7.1f} MB  gguf-py reads {len(r.tensors)} tensors: {', '.join(types)}")
        files[t] = path

    # distill score on the f32 export: ids and log-probs.
    score = json.loads(subprocess.run([args.distill, "score", "--model", files["f32"], "--text", TEXT, "--json"],
                                      check=True, capture_output=True, text=True).stdout)
    ids, ours = score["ids"], score["token_logprobs"]
    theirs = llama_logprobs(files["f32"], ids)
    worst = max(abs(a - b) for a, b in zip(ours, theirs))
    print(f"f32: {len(ids)} tokens, largest |llama.cpp - distill score| log-prob difference {worst:.2e}")
    if worst > 2e-3:
        failures.append(f"f32 log-probs differ by {worst:.2e} > 2e-3")

    ppl = {}
    for t, path in files.items():
        lp = llama_logprobs(path, ids)
        ppl[t] = math.exp(-sum(lp) / len(lp))
    for t, p in ppl.items():
        rel = p / ppl["f32"] - 1
        print(f"{t:7s} perplexity {p:8.3f}  ({rel * 100:+.2f} % vs f32)")
    if "q8_0" in ppl and ppl["q8_0"] > ppl["f32"] * 1.02:
        failures.append("q8_0 perplexity more than 2 % above f32's")
    if "q4_k_m" in ppl and ppl["q4_k_m"] > ppl["f32"] * 1.10:
        failures.append("q4_k_m perplexity more than 10 % above f32's")
    # Every architecture, written by Distill, read by llama.cpp.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from check_gguf_fixtures_llamacpp import check
    arch_dir = os.path.join(args.out, "architectures")
    for name in sorted(os.listdir(args.fixtures)):
        src = os.path.join(args.fixtures, name)
        if not os.path.exists(os.path.join(src, "model.gguf")):
            continue
        os.makedirs(os.path.join(arch_dir, name), exist_ok=True)
        shutil.copy(os.path.join(src, "llamacpp_expected.json"), os.path.join(arch_dir, name))
        subprocess.run([args.distill, "export", os.path.join(src, "model.gguf"), "--type", "f32",
                        "--out", os.path.join(arch_dir, name, "model.gguf")], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    check(arch_dir)
    if failures:
        sys.exit("FAILED: " + "; ".join(failures))
    print("all checks passed")


if __name__ == "__main__":
    main()
