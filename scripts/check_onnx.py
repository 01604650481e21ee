#!/usr/bin/env python3
"""Runs a `distill export --format onnx` directory in onnxruntime and compares it with Distill.

    python3 scripts/check_onnx.py ONNX_DIR EXPECTED.json [--tolerance 1e-4] [--compare logits|logprobs]

EXPECTED.json is what Distill computed for the same model (ONNXExportTests writes it):
    {"vocab": V,
     "prompts": [[ids...], ...], "logits": ["p0.f32", ...],          # logits [T, V] of each prompt alone
     "split": ["s0.f32", ...],                                         # the same in two calls (see 3.)
     "batched": "batched.f32",                                         # all in one left-padded batch [B, L, V]
     "greedy_prompt": [ids...], "greedy_tokens": [ids...],             # Distill's greedy decode (KV cache)
     "greedy_logits": "greedy.f32"}                                    # its logits at each step [N, V]
The .f32 files are raw little-endian float32 beside EXPECTED.json. Each check compares the same
calls on both sides: LongRoPE (Phi-3) picks its factors by the positions a call reaches, so a
prompt split in two calls or batched with longer ones may differ from the prompt alone, in
transformers as in Distill.

Checks, each against Distill's logits for the same calls:
  1. each prompt alone (past length 0);
  2. all prompts in one batch, left-padded (attention_mask 0 on the padding, position ids counted
     from each row's first token), compared on the real tokens;
  3. each prompt in two calls: its first half, then the rest with the first call's present.* as
     past_key_values.* (a cache longer than zero with several new tokens);
  4. greedy decoding through the cache inputs: the prompt, then one token per call; the tokens must
     equal Distill's and each step's logits match.
Prints a JSON summary; exits 1 when a difference exceeds the tolerance or a token differs.
"""
import argparse
import json
import os
import sys

import numpy as np
import onnxruntime as ort


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("onnx_dir")
    ap.add_argument("expected")
    ap.add_argument("--tolerance", type=float, default=1e-4, help="largest absolute difference allowed")
    ap.add_argument("--compare", choices=["logits", "logprobs"], default="logits",
                    help="compare raw logits, or log-softmax rows (what sampling and scoring use; a shift "
                         "common to a row cancels). The largest raw logit difference is reported either way.")
    args = ap.parse_args()
    raw_worst = [0.0]

    def diff(a, b):
        """Largest difference of two [..., V] arrays as --compare says."""
        a = a.astype(np.float64)
        b = b.astype(np.float64)
        raw_worst[0] = max(raw_worst[0], float(np.abs(a - b).max()))
        if args.compare == "logprobs":
            def lsm(x):
                x = x - x.max(-1, keepdims=True)
                return x - np.log(np.exp(x).sum(-1, keepdims=True))
            a, b = lsm(a), lsm(b)
        return float(np.abs(a - b).max())

    exp = json.load(open(args.expected))
    base = os.path.dirname(os.path.abspath(args.expected))
    vocab = exp["vocab"]

    def ref(name, rows):
        return np.fromfile(os.path.join(base, name), dtype="<f4").reshape(rows, vocab)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(os.path.join(args.onnx_dir, "model.onnx"), opts, providers=["CPUExecutionProvider"])
    past_inputs = [i for i in sess.get_inputs() if i.name.startswith("past_key_values.")]
    layers = len(past_inputs) // 2
    kv_heads, head_dim = past_inputs[0].shape[1], past_inputs[0].shape[3]
    out_names = [o.name for o in sess.get_outputs()]

    def run(ids, mask, pos, past=None):
        batch = ids.shape[0]
        feed = {"input_ids": ids.astype(np.int64), "attention_mask": mask.astype(np.int64),
                "position_ids": pos.astype(np.int64)}
        for i in range(layers):
            for kind in ("key", "value"):
                name = f"past_key_values.{i}.{kind}"
                feed[name] = past[name] if past else np.zeros((batch, kv_heads, 0, head_dim), np.float32)
        outs = dict(zip(out_names, sess.run(None, feed)))
        present = {f"past_key_values.{i}.{k}": outs[f"present.{i}.{k}"] for i in range(layers) for k in ("key", "value")}
        return outs["logits"], present

    summary = {"single": 0.0, "batched_left_padded": 0.0, "split_prefill": 0.0, "greedy_logits": 0.0}
    prompts = exp["prompts"]
    refs = [ref(f, len(p)) for p, f in zip(prompts, exp["logits"])]

    # 1. each prompt alone
    for p, r in zip(prompts, refs):
        t = len(p)
        logits, _ = run(np.array([p]), np.ones((1, t)), np.arange(t)[None, :])
        summary["single"] = max(summary["single"], diff(logits[0], r))

    # 2. one left-padded batch
    longest = max(len(p) for p in prompts)
    ids = np.zeros((len(prompts), longest), np.int64)
    mask = np.zeros((len(prompts), longest), np.int64)
    pos = np.zeros((len(prompts), longest), np.int64)
    for b, p in enumerate(prompts):
        pad = longest - len(p)
        ids[b, pad:] = p
        mask[b, pad:] = 1
        pos[b, pad:] = np.arange(len(p))
    logits, _ = run(ids, mask, pos)
    batched = np.fromfile(os.path.join(base, exp["batched"]), dtype="<f4").reshape(len(prompts), longest, vocab)
    for b, p in enumerate(prompts):
        pad = longest - len(p)
        d = diff(logits[b, pad:], batched[b, pad:])
        summary["batched_left_padded"] = max(summary["batched_left_padded"], d)

    # 3. two calls per prompt: the second one with a cache
    for p, f in zip(prompts, exp["split"]):
        t = len(p)
        h = t // 2
        if h == 0:
            continue
        r = ref(f, t)
        first, present = run(np.array([p[:h]]), np.ones((1, h)), np.arange(h)[None, :])
        second, _ = run(np.array([p[h:]]), np.ones((1, t)), np.arange(h, t)[None, :], present)
        d = max(diff(first[0], r[:h]), diff(second[0], r[h:]))
        summary["split_prefill"] = max(summary["split_prefill"], float(d))

    # 4. greedy decoding through the cache
    prompt, want = exp["greedy_prompt"], exp["greedy_tokens"]
    step_refs = ref(exp["greedy_logits"], len(want))
    t = len(prompt)
    logits, past = run(np.array([prompt]), np.ones((1, t)), np.arange(t)[None, :])
    got = []
    last = logits[0, -1]
    for step in range(len(want)):
        summary["greedy_logits"] = max(summary["greedy_logits"], diff(last, step_refs[step]))
        token = int(np.argmax(last))
        got.append(token)
        if step == len(want) - 1:
            break
        logits, past = run(np.array([[token]]), np.ones((1, t + 1)), np.array([[t]]), past)
        t += 1
        last = logits[0, -1]
    summary["greedy_tokens_equal"] = got == want
    if got != want:
        first = next(i for i, (a, b) in enumerate(zip(got, want)) if a != b)
        top = np.sort(step_refs[first])[-2:]
        summary["greedy_first_difference"] = {"step": first, "onnx": got[first], "distill": want[first],
                                              "distill_top2_margin": float(top[1] - top[0])}
    summary["compared"] = args.compare
    summary["largest_logit_difference"] = raw_worst[0]
    summary["tolerance"] = args.tolerance
    summary["onnxruntime"] = ort.__version__
    worst = max(summary[k] for k in ("single", "batched_left_padded", "split_prefill", "greedy_logits"))
    summary["ok"] = bool(worst <= args.tolerance and got == want)
    print(json.dumps(summary))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
