#!/usr/bin/env python3
"""Benchmark (not a test): distillation across tokenizers, soft targets vs hard labels.

A teacher (SmolLM2-135M-Instruct, GGUF) teaches a small student whose tokenizer is different: a
byte-level BPE trained here with Hugging Face `tokenizers` on the training texts. The student is
trained with `distill train` three ways at equal steps — hard labels only, and α = 0.5 hard + soft
through `loss.cross_tokenizer: uld` and `align` — and every model is scored on held-out texts
with `distill score --jsonl` in bits per byte (the tokenizers differ, so perplexity per token is
not comparable).

Input: a chat-messages JSONL (e.g. `distill traces` output from the teacher) or a {"text"} JSONL;
the assistant answers (or texts) are the corpus.

    /tmp/ref/bin/python scripts/bench_cross_tokenizer.py --teacher SmolLM2-135M-Instruct.Q4_1.gguf \
        --data traces.jsonl --work /tmp/xtok/bench --steps 300
"""
import argparse
import json
import os
import random
import subprocess
import sys


def texts_of(path):
    out = []
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            obj = json.loads(line)
            if "text" in obj:
                out.append(obj["text"])
            else:
                out.append(next(m["content"] for m in reversed(obj["messages"]) if m["role"] == "assistant"))
    return [t.strip() for t in out if t.strip()]


def write_jsonl(path, texts):
    with open(path, "w") as f:
        for t in texts:
            f.write(json.dumps({"text": t}) + "\n")


def make_student(dir, train_texts, vocab, hidden, layers, seed):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    import torch

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(train_texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=hidden, intermediate_size=hidden * 8 // 3,
                         num_hidden_layers=layers, num_attention_heads=hidden // 64, num_key_value_heads=max(1, hidden // 192),
                         max_position_embeddings=512, tie_word_embeddings=True, eos_token_id=0, bos_token_id=0, pad_token_id=0)
    LlamaForCausalLM(config).save_pretrained(dir, safe_serialization=True)
    fast.save_pretrained(dir)
    return tok.get_vocab_size()


def recipe(path, teacher, student, train, out, steps, batch, lr, cross, max_length, seed, alpha):
    loss = "  kind: hard\n" if cross is None else f"  kind: kd\n  alpha: {alpha}\n  temperature: 1.0\n  cross_tokenizer: {cross}\n"
    with open(path, "w") as f:
        teacher_section = "" if cross is None else f"teacher:\n  path: {teacher}\n"
        f.write(f"""{teacher_section}student:
  path: {student}
data:
  train: {train}
  max_length: {max_length}
  layout: pad
  chat_template: false
  loss_on: all
loss:
{loss}schedule:
  steps: {steps}
  batch_size: {batch}
  lr: {lr}
  warmup: {steps // 20}
  decay: cosine
output:
  dir: {out}
seed: {seed}
""")


def score(distill, model, heldout):
    r = subprocess.run([distill, "score", "--model", model, "--jsonl", heldout, "--json"], check=True, capture_output=True, text=True)
    return json.loads(r.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--distill", default=".build/release/distill")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--vocab", type=int, default=1024)
    ap.add_argument("--hidden", type=int, default=192)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heldout", type=float, default=0.1)
    ap.add_argument("--max-length", type=int, default=192)
    ap.add_argument("--losses", default="hard,uld,align")
    ap.add_argument("--alpha", type=float, default=0.5, help="soft weight of the cross-tokenizer runs")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    texts = texts_of(a.data)
    random.Random(a.seed).shuffle(texts)
    n_held = max(1, int(len(texts) * a.heldout))
    held, train = texts[:n_held], texts[n_held:]
    train_path, held_path = os.path.join(a.work, "train.jsonl"), os.path.join(a.work, "heldout.jsonl")
    write_jsonl(train_path, train)
    write_jsonl(held_path, held)
    student = os.path.join(a.work, "student-init")
    v = make_student(student, train, a.vocab, a.hidden, a.layers, a.seed)
    print(f"{len(train)} training texts, {len(held)} held out; student tokenizer: byte-level BPE of {v} tokens", flush=True)
    results = {"teacher": score(a.distill, a.teacher, held_path), "student before training": score(a.distill, student, held_path)}
    for name in a.losses.split(","):
        cross = None if name == "hard" else name
        out = os.path.join(a.work, f"run-{name}")
        subprocess.run(["rm", "-rf", out], check=True)
        path = os.path.join(a.work, f"{name}.yaml")
        recipe(path, a.teacher, student, train_path, out, a.steps, a.batch, a.lr, cross, a.max_length, a.seed, a.alpha)
        r = subprocess.run([a.distill, "train", path], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"distill train {path} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
        last = [l for l in (r.stdout + r.stderr).splitlines() if l.startswith("step ") and "loss" in l][-1:]
        print(f"{name}: {last[0] if last else ''}", flush=True)
        results[f"student, {name}" + ("" if cross is None else f" + hard (α {a.alpha})")] = score(a.distill, out, held_path)
    print(f"\nheld-out bits per byte ({len(held)} texts), {a.steps} steps × batch {a.batch}:")
    for k, s in results.items():
        print(f"  {k:34s} {s['bits_per_byte']:.4f} bits/byte   ({int(s['tokens'])} tokens, {int(s['bytes'])} bytes)")
    with open(os.path.join(a.work, "results.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
