#!/usr/bin/env python3
"""Reference fixture for the two-layer transformer test (Tests/DistillNNTests/Fixtures).

Builds a tiny Llama (RMSNorm, RoPE, grouped-query attention, SwiGLU, tied embeddings) with
Hugging Face transformers, runs a batch of token ids through it in float32, and writes the
weights, the mean next-token cross-entropy and the gradient of every parameter to JSON, keyed by
the Hugging Face parameter names that Distill's modules must reproduce.

    pip install torch==2.5.1 transformers==4.46.3
    python3 scripts/make_transformer_fixture.py Tests/DistillNNTests/Fixtures/transformer_fixture.json
"""
import json
import sys

import torch
from transformers import LlamaConfig, LlamaForCausalLM

torch.manual_seed(1234)
config = LlamaConfig(
    vocab_size=48, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, intermediate_size=64, rms_norm_eps=1e-6, rope_theta=10000.0,
    tie_word_embeddings=True, initializer_range=0.2, max_position_embeddings=64,
    attention_bias=False, mlp_bias=False, attn_implementation="eager",
)
model = LlamaForCausalLM(config).float()
model.train()  # no dropout in Llama; train mode only matters for the tape
# Norm weights start at 1; perturb them so the test sees their gradients flow properly.
with torch.no_grad():
    for name, p in model.named_parameters():
        if name.endswith("norm.weight"):
            p.add_(0.1 * torch.randn_like(p))

batch, length = 3, 10
ids = torch.randint(0, config.vocab_size, (batch, length))
out = model(input_ids=ids, labels=ids, output_hidden_states=True)
out.loss.backward()

def pack(t):
    return {"shape": list(t.shape), "data": [float(x) for x in t.detach().reshape(-1).tolist()]}

fixture = {
    "config": {
        "vocab_size": config.vocab_size, "hidden": config.hidden_size, "layers": config.num_hidden_layers,
        "heads": config.num_attention_heads, "kv_heads": config.num_key_value_heads,
        "intermediate": config.intermediate_size, "rope_theta": config.rope_theta,
        "rms_norm_eps": config.rms_norm_eps, "tie_embeddings": True,
    },
    "batch": batch, "length": length,
    "ids": ids.reshape(-1).tolist(),
    "loss": float(out.loss),
    "logits": pack(out.logits),
    "last_hidden_state": pack(out.hidden_states[-1]),
    "parameters": {name: pack(p) for name, p in model.named_parameters()},
    "gradients": {name: pack(p.grad) for name, p in model.named_parameters()},
    "generator": f"torch {torch.__version__}, transformers LlamaForCausalLM",
}
with open(sys.argv[1], "w") as f:
    json.dump(fixture, f)
print(f"loss {out.loss.item():.6f}; wrote {sys.argv[1]}")
