#!/usr/bin/env python3
"""Parity fixtures for the architectures (Tests/DistillModelsTests/Fixtures/architectures).

For each architecture, a randomly initialised tiny model is saved with `save_pretrained`
(config.json + model.safetensors, float32) and run by `transformers` on two token sequences; the
per-token log-probabilities, every layer's hidden states and one layer's attention probabilities
are stored in expected.json beside the checkpoint.

- qwen2: nonzero q/k/v biases, untied embeddings, grouped-query attention (4 heads, 2 KV heads).
- llama: tied embeddings, GQA, rope_scaling of type llama3.
- qwen3: q/k RMSNorm per head, head_dim 16 (≠ hidden / heads), untied embeddings.
- mistral: sliding window 4 (sequences of 12 and 7 tokens cross it), head_dim 16, GQA.
- gemma2: GeGLU, (1 + w) norms, sandwich norms, √hidden embedding scale, 3 layers (sliding window 4 on
  layers 0 and 2), query_pre_attn_scalar 12, attention soft-cap 3 and logit soft-cap 5 (small, so
  that tanh bites), tied embeddings.
- phi3: fused qkv_proj and gate_up_proj, sliding window 5, untied embeddings, LongRoPE with
  original_max_position_embeddings 8 (the 12-token sequence runs on the long factors, the 7-token
  one on the short ones; attention factor from 64 / 8).
- gemma: GeGLU, (1 + w) norms, √hidden embedding scale, head_dim 16, tied embeddings.
- gemma3_text: as gemma2 without soft caps, plus q/k norms, 4 layers with layer_types
  (sliding, sliding, full, sliding; window 4), local RoPE base 10000 vs global 1e6 with linear
  scaling 8.

qwen2 and llama were made with transformers 4.46.3; qwen3 and mistral need a newer one (Qwen3
arrived in 4.51): name the architectures to make.

    pip install torch==2.5.1 transformers==4.46.3
    python3 scripts/make_architecture_fixtures.py Tests/DistillModelsTests/Fixtures/architectures qwen2 llama
    pip install --target /tmp/tf457 --no-deps transformers==4.57.6 'tokenizers>=0.22,<0.23' 'huggingface-hub>=0.34,<1.0'
    PYTHONPATH=/tmp/tf457 python3 scripts/make_architecture_fixtures.py Tests/DistillModelsTests/Fixtures/architectures qwen3 mistral gemma2 gemma3_text gemma phi3
"""
import json
import os
import sys

import torch
import transformers

out_dir = sys.argv[1]
only = set(sys.argv[2:]) or {"qwen2", "llama"}

def build(name, model):
    print(name, "with transformers", transformers.__version__)
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

def write_gguf(d, model, arch):
    """model.gguf beside the checkpoint, as llama.cpp's convert_hf_to_gguf.py names a Qwen3 model
    (F32 tensors, no Q/K permutation: Qwen models use NEOX-style RoPE), with gguf-py's writer."""
    import gguf
    c = model.config
    w = gguf.GGUFWriter(os.path.join(d, "model.gguf"), arch=arch)
    w.add_name(f"tiny {arch}")
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_key_length(c.head_dim)
    w.add_value_length(c.head_dim)
    w.add_rope_freq_base(c.rope_theta)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_token_list([f"t{i}" for i in range(c.vocab_size)])
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN3, c.num_hidden_layers)
    for hf, t in model.state_dict().items():
        name = names.get_name(hf, try_suffixes=(".weight", ".bias"))
        assert name is not None, hf
        w.add_tensor(name, t.detach().float().contiguous().numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(arch, "GGUF written")

if "qwen2" in only:
    torch.manual_seed(0)
    qwen = transformers.Qwen2Config(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                    rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=False,
                                    initializer_range=0.2, attn_implementation="eager")
    build("qwen2", transformers.Qwen2ForCausalLM(qwen))

if "llama" in only:
    # (made after qwen2 from the same generator when both are asked)
    if "qwen2" not in only:
        torch.manual_seed(0)
    llama = transformers.LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                     rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=True,
                                     rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                   "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
                                     initializer_range=0.2, attn_implementation="eager")
    build("llama", transformers.LlamaForCausalLM(llama))

if "qwen3" in only:
    torch.manual_seed(3)
    qwen3 = transformers.Qwen3Config(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                     num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=64,
                                     rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=False,
                                     initializer_range=0.2, attn_implementation="eager")
    model = transformers.Qwen3ForCausalLM(qwen3)
    build("qwen3", model)
    write_gguf(os.path.join(out_dir, "qwen3"), model, "qwen3")

if "mistral" in only:
    torch.manual_seed(4)
    mistral = transformers.MistralConfig(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=64,
                                         rope_theta=10000.0, rms_norm_eps=1e-5, tie_word_embeddings=False, sliding_window=4,
                                         initializer_range=0.2, attn_implementation="eager")
    build("mistral", transformers.MistralForCausalLM(mistral))

if "gemma2" in only:
    torch.manual_seed(5)
    gemma2 = transformers.Gemma2Config(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
                                       num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=64,
                                       rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=True, sliding_window=4,
                                       query_pre_attn_scalar=12, attn_logit_softcapping=3.0, final_logit_softcapping=5.0,
                                       initializer_range=0.2, attn_implementation="eager")
    build("gemma2", transformers.Gemma2ForCausalLM(gemma2))

if "gemma3_text" in only:
    torch.manual_seed(6)
    gemma3 = transformers.Gemma3TextConfig(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=4,
                                           num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=64,
                                           rope_theta=1000000.0, rope_local_base_freq=10000.0,
                                           rope_scaling={"rope_type": "linear", "factor": 8.0}, rms_norm_eps=1e-6,
                                           tie_word_embeddings=True, sliding_window=4, query_pre_attn_scalar=12,
                                           layer_types=["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"],
                                           initializer_range=0.2, attn_implementation="eager")
    build("gemma3_text", transformers.Gemma3ForCausalLM(gemma3))

if "gemma" in only:
    torch.manual_seed(7)
    gemma = transformers.GemmaConfig(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                     num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=64,
                                     rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
                                     initializer_range=0.2, attn_implementation="eager")
    build("gemma", transformers.GemmaForCausalLM(gemma))

if "phi3" in only:
    torch.manual_seed(8)
    phi3 = transformers.Phi3Config(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                   original_max_position_embeddings=8, rope_theta=10000.0, rms_norm_eps=1e-5,
                                   rope_scaling={"type": "longrope",
                                                 "short_factor": [1.0, 1.3, 1.9, 2.5],
                                                 "long_factor": [1.5, 3.0, 6.0, 11.0]},
                                   tie_word_embeddings=False, sliding_window=5, pad_token_id=0, bos_token_id=1,
                                   eos_token_id=2, initializer_range=0.2, attn_implementation="eager")
    build("phi3", transformers.Phi3ForCausalLM(phi3))
