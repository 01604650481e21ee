#!/usr/bin/env python3
"""A GGUF of Qwen2-1.5B's shape (28 layers, hidden 1536, MLP 8960, 12 heads / 2 KV heads, vocab
151936, tied embeddings) with random weights in Q4_0 (norms in F32), for memory and speed
benchmarks of large quantized models (`distill score` on it, with and without --dequantize).
The vocabulary is a stand-in: the 256 byte-level tokens of GPT-2 first (so any text tokenizes,
byte by byte), then "t<i>" tokens; no merges beyond one.

    pip install gguf numpy
    python3 scripts/make_random_gguf.py /tmp/qwen2-1.5b-random-q4_0.gguf [--layers 28]
"""
import argparse

import gguf
import numpy as np
from gguf import quants
from gpt2_bytes import byte_to_unicode

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--layers", type=int, default=28)
args = ap.parse_args()
hidden, ffn, heads, kv, vocab, head_dim = 1536, 8960, 12, 2, 151936, 128

def byte_tokens():
    table = byte_to_unicode()
    return [table[b] for b in range(256)]

rng = np.random.default_rng(0)
w = gguf.GGUFWriter(args.out, arch="qwen2")
w.add_name("random qwen2 1.5b shape")
w.add_context_length(32768)
w.add_embedding_length(hidden)
w.add_block_count(args.layers)
w.add_feed_forward_length(ffn)
w.add_head_count(heads)
w.add_head_count_kv(kv)
w.add_rope_freq_base(1e6)
w.add_layer_norm_rms_eps(1e-6)
w.add_file_type(2)
tokens = byte_tokens() + [f"t{i}" for i in range(256, vocab)]
tokens[300:303] = ["a", "b", "ab"]
w.add_tokenizer_model("gpt2")
w.add_tokenizer_pre("qwen2")
w.add_token_list(tokens)
w.add_token_types([1] * vocab)
w.add_token_merges(["a b"])
w.add_eos_token_id(1)

def matrix(name, rows, cols, std):
    x = (rng.standard_normal((rows, cols), dtype=np.float32) * std)
    w.add_tensor(name, quants.quantize(x, gguf.GGMLQuantizationType.Q4_0), raw_dtype=gguf.GGMLQuantizationType.Q4_0)

matrix("token_embd.weight", vocab, hidden, 0.02)
w.add_tensor("output_norm.weight", np.ones(hidden, dtype=np.float32))
for i in range(args.layers):
    w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(hidden, dtype=np.float32))
    w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(hidden, dtype=np.float32))
    matrix(f"blk.{i}.attn_q.weight", heads * head_dim, hidden, 0.02)
    matrix(f"blk.{i}.attn_k.weight", kv * head_dim, hidden, 0.02)
    matrix(f"blk.{i}.attn_v.weight", kv * head_dim, hidden, 0.02)
    for b, n in [("attn_q.bias", heads * head_dim), ("attn_k.bias", kv * head_dim), ("attn_v.bias", kv * head_dim)]:
        w.add_tensor(f"blk.{i}.{b}", np.zeros(n, dtype=np.float32))
    matrix(f"blk.{i}.attn_output.weight", hidden, heads * head_dim, 0.02)
    matrix(f"blk.{i}.ffn_gate.weight", ffn, hidden, 0.02)
    matrix(f"blk.{i}.ffn_up.weight", ffn, hidden, 0.02)
    matrix(f"blk.{i}.ffn_down.weight", hidden, ffn, 0.02)
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print("wrote", args.out)
