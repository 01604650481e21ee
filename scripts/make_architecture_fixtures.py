#!/usr/bin/env python3
"""Parity fixtures for the Qwen2 and Llama architectures (Tests/DistillModelsTests/Fixtures/architectures).

For each architecture, a randomly initialised tiny model is saved with `save_pretrained`
(config.json + model.safetensors, float32) and run by `transformers` on two token sequences; the
per-token log-probabilities, every layer's hidden states and one layer's attention probabilities
are stored in expected.json beside the checkpoint.

- qwen2: nonzero q/k/v biases, untied embeddings, grouped-query attention (4 heads, 2 KV heads).
- llama: tied embeddings, GQA, rope_scaling of type llama3.

    pip install torch==2.5.1 transformers==4.46.3
    python3 scripts/make_architecture_fixtures.py Tests/DistillModelsTests/Fixtures/architectures
"""
import json
import os
import sys

import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

out_dir = sys.argv[1]
torch.manual_seed(0)

def build(name, model):
    model = model.float().eval()
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.endswith("norm.weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif pname.endswith(".bias"):
                p.copy_(0.5 * torch.randn_like(p))
    d = os.path.join(out_dir, name)
    model.save_pretrained(d, safe_serialization=True)
    sequences = [[int(x) for x in torch.randint(0, model.config.vocab_size, (12,))],
                 [int(x) for x in torch.randint(0, model.config.vocab_size, (7,))]]
    expected = {"sequences": []}
    for ids in sequences:
        with torch.no_grad():
            out = model(input_ids=torch.tensor([ids]), output_hidden_states=True, output_attentions=True)
        logp = torch.log_softmax(out.logits[0].float(), dim=-1)
        token_logprobs = [float(logp[i, ids[i + 1]]) for i in range(len(ids) - 1)]
        expected["sequences"].append({
            "ids": ids,
            "token_logprobs": token_logprobs,
            "last_logits": [float(x) for x in out.logits[0, -1]],
            "hidden_states": [h[0].reshape(-1).tolist() for h in out.hidden_states],
            "attention_layer0": out.attentions[0][0].reshape(-1).tolist(),
        })
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump(expected, f)
    print(name, "saved to", d)

qwen = Qwen2Config(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                   rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=False,
                   initializer_range=0.2, attn_implementation="eager")
build("qwen2", Qwen2ForCausalLM(qwen))

llama = LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                    rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=True,
                    rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                  "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
                    initializer_range=0.2, attn_implementation="eager")
build("llama", LlamaForCausalLM(llama))
