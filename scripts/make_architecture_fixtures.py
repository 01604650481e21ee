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
- phi3_partial: as Phi-4-mini, partial_rotary_factor 0.75 (6 of 8 dimensions per head rotated),
  LongRoPE over the rotated ones, no window.
- gemma3_text: as gemma2 without soft caps, plus q/k norms, 4 layers with layer_types
  (sliding, sliding, full, sliding; window 4), local RoPE base 10000 vs global 1e6 with linear
  scaling 8.

qwen2 and llama were made with transformers 4.46.3; qwen3 and mistral need a newer one (Qwen3
arrived in 4.51): name the architectures to make.

    pip install torch==2.5.1 transformers==4.46.3
    python3 scripts/make_architecture_fixtures.py Tests/DistillModelsTests/Fixtures/architectures qwen2 llama
    pip install --target /tmp/tf457 --no-deps transformers==4.57.6 'tokenizers>=0.22,<0.23' 'huggingface-hub>=0.34,<1.0'
    PYTHONPATH=/tmp/tf457 python3 scripts/make_architecture_fixtures.py Tests/DistillModelsTests/Fixtures/architectures qwen3 mistral gemma2 gemma3_text gemma phi3

GGUF files (see write_gguf) come with qwen3, with gemma2_gguf and gemma3_gguf (checkpoints whose
settings llama.cpp can express), and for existing checkpoints when asked as llama.gguf, gemma.gguf,
phi3.gguf, qwen3.gguf (needs gguf-py: pip install gguf).
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

def write_gguf(d, arch):
    """model.gguf beside the checkpoint in directory d, written with gguf-py's writer as llama.cpp's
    convert_hf_to_gguf.py lays the architecture out (F32 tensors):
    - names from gguf-py's tensor map for the architecture;
    - llama: Q/K rows permuted for interleaved RoPE; llama3 RoPE scaling as rope_freqs.weight
      (the per-frequency divisors the converter computes);
    - gemma, gemma2, gemma3: every *norm.weight stored as 1 + w, no lm_head (tied); soft caps and
      the sliding window as metadata (llama.cpp derives the score scale from head_dim and fixes
      Gemma 3's layer pattern at 6, so those fixtures use values llama.cpp can express);
    - phi3: fused qkv_proj / gate_up_proj as attn_qkv / ffn_up, LongRoPE factors as
      rope_factors_long/short.weight with the attention factor and original context as metadata;
    - a stand-in byte-level vocabulary ("t0", "t1", …, and "a" + "b" = "ab" as its one merge) so
      that llama.cpp and Distill load the file.
    scripts/check_gguf_fixtures_llamacpp.py runs llama.cpp on each file against expected.json."""
    import math
    import gguf
    from safetensors.torch import load_file
    c = json.load(open(os.path.join(d, "config.json")))
    sd = load_file(os.path.join(d, "model.safetensors"))
    layers, heads = c["num_hidden_layers"], c["num_attention_heads"]
    kv_heads = c.get("num_key_value_heads") or heads
    head_dim = c.get("head_dim") or c["hidden_size"] // heads
    model_arch = {"llama": gguf.MODEL_ARCH.LLAMA, "qwen3": gguf.MODEL_ARCH.QWEN3, "gemma": gguf.MODEL_ARCH.GEMMA,
                  "gemma2": gguf.MODEL_ARCH.GEMMA2, "gemma3": gguf.MODEL_ARCH.GEMMA3, "phi3": gguf.MODEL_ARCH.PHI3}[arch]
    w = gguf.GGUFWriter(os.path.join(d, "model.gguf"), arch=arch)
    w.add_name(f"tiny {arch}")
    w.add_context_length(c["max_position_embeddings"])
    w.add_embedding_length(c["hidden_size"])
    w.add_block_count(layers)
    w.add_feed_forward_length(c["intermediate_size"])
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    if c.get("head_dim"):
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    rotary = int(head_dim * c.get("partial_rotary_factor", 1.0))
    w.add_rope_dimension_count(rotary)
    w.add_rope_freq_base(c.get("rope_theta", 10000.0))
    w.add_layer_norm_rms_eps(c["rms_norm_eps"])
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    tokens = [f"t{i}" for i in range(c["vocab_size"])]
    types = [1] * c["vocab_size"]
    if arch == "phi3":
        # llama.cpp's vocabulary loader refuses a Phi-3 file without SentencePiece's special and
        # byte tokens and Phi-3's chat tokens (found by trial: "unordered_map::at").
        tokens[:19] = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(16)]
        types[:19] = [2, 3, 3] + [6] * 16
        tokens[-5:] = ["<|endoftext|>", "<|end|>", "<|user|>", "<|assistant|>", "<|system|>"]
    tokens[80:83] = ["a", "b", "ab"]   # one valid merge
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(["a b"])
    scaling = c.get("rope_scaling") or {}
    extra = {}
    if arch == "llama" and scaling.get("rope_type") == "llama3":
        factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
        old = scaling["original_max_position_embeddings"]
        divisors = []
        for i in range(0, head_dim, 2):
            wavelen = 2 * math.pi * c["rope_theta"] ** (i / head_dim)
            if wavelen < old / high:
                divisors.append(1.0)
            elif wavelen > old / low:
                divisors.append(factor)
            else:
                smooth = (old / wavelen - low) / (high - low)
                divisors.append(1 / ((1 - smooth) / factor + smooth))
        extra["rope_freqs.weight"] = torch.tensor(divisors, dtype=torch.float32)
    if arch in ("gemma2", "gemma3"):
        w.add_sliding_window(c["sliding_window"])
        if c.get("attn_logit_softcapping"):
            w.add_attn_logit_softcapping(c["attn_logit_softcapping"])
        if c.get("final_logit_softcapping"):
            w.add_final_logit_softcapping(c["final_logit_softcapping"])
        assert c["query_pre_attn_scalar"] == head_dim, "llama.cpp scales scores by head_dim^-1/2"
    if arch == "gemma3":
        assert scaling.get("rope_type") == "linear" and c.get("rope_local_base_freq", 10000.0) == 10000.0
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(scaling["factor"])
        assert c["layer_types"] == ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(layers)]
    if arch == "phi3":
        original = c["original_max_position_embeddings"]
        w.add_rope_scaling_orig_ctx_len(original)
        w.add_sliding_window(c.get("sliding_window") or 0)
        scale = c["max_position_embeddings"] / original
        w.add_rope_scaling_attn_factors(math.sqrt(1 + math.log(scale) / math.log(original)) if scale > 1 else 1.0)
        extra["rope_factors_long.weight"] = torch.tensor(scaling["long_factor"], dtype=torch.float32)
        extra["rope_factors_short.weight"] = torch.tensor(scaling["short_factor"], dtype=torch.float32)
    names = gguf.get_tensor_name_map(model_arch, layers)
    for hf, t in sorted(sd.items()):
        if arch.startswith("gemma") and hf == "lm_head.weight":
            continue
        t = t.float()
        if arch.startswith("gemma") and hf.endswith("norm.weight"):
            t = t + 1
        if arch == "llama" and (hf.endswith("q_proj.weight") or hf.endswith("k_proj.weight")):
            n = heads if hf.endswith("q_proj.weight") else kv_heads
            t = t.reshape(n, 2, t.shape[0] // n // 2, *t.shape[1:]).swapaxes(1, 2).reshape(t.shape)
        name = names.get_name(hf, try_suffixes=(".weight", ".bias"))
        assert name is not None, hf
        w.add_tensor(name, t.contiguous().numpy())
    for name, t in extra.items():
        w.add_tensor(name, t.numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    llamacpp_reference(d, arch)
    print(arch, "GGUF written to", d)

def llamacpp_reference(d, arch):
    """llamacpp_expected.json beside a GGUF fixture: transformers' per-token log-probs with the two
    things llama.cpp computes differently on purpose, so that check_gguf_fixtures_llamacpp.py can
    hold llama.cpp to a tight tolerance:
    - GELU (Gemma): ggml looks it up in a table indexed by the input rounded to float16 and holding
      float16 outputs (inputs past ±10 pass through or give 0);
    - Phi-3: llama.cpp ignores sliding_window, and picks LongRoPE's long factors whenever the context
      exceeds original_max_position_embeddings (so only longer sequences are kept)."""
    import torch.nn.functional as F
    config = transformers.AutoConfig.from_pretrained(d)
    if arch == "phi3":
        config.sliding_window = None
    model = transformers.AutoModelForCausalLM.from_pretrained(d, config=config, attn_implementation="eager").float().eval()
    if arch.startswith("gemma"):
        class TableGELU(torch.nn.Module):
            def forward(self, x):
                y = F.gelu(x.half().float(), approximate="tanh").half().float()
                return torch.where(x <= -10, torch.zeros_like(x), torch.where(x >= 10, x, y))
        for layer in model.model.layers:
            layer.mlp.act_fn = TableGELU()
    expected = json.load(open(os.path.join(d, "expected.json")))
    out = {"sequences": []}
    for seq in expected["sequences"]:
        ids = seq["ids"]
        if arch == "phi3" and len(ids) <= config.original_max_position_embeddings:
            continue
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), dim=-1)
        out["sequences"].append({"ids": ids, "token_logprobs": [float(logp[i, ids[i + 1]]) for i in range(len(ids) - 1)]})
    with open(os.path.join(d, "llamacpp_expected.json"), "w") as f:
        json.dump(out, f)

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
    write_gguf(os.path.join(out_dir, "qwen3"), "qwen3")

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

if "gemma2_gguf" in only:
    # Gemma 2 as llama.cpp can express it: scores scaled by head_dim^-1/2.
    torch.manual_seed(9)
    gemma2 = transformers.Gemma2Config(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
                                       num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=64,
                                       rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=True, sliding_window=4,
                                       query_pre_attn_scalar=16, attn_logit_softcapping=3.0, final_logit_softcapping=5.0,
                                       initializer_range=0.2, attn_implementation="eager")
    build("gemma2_gguf", transformers.Gemma2ForCausalLM(gemma2))
    write_gguf(os.path.join(out_dir, "gemma2_gguf"), "gemma2")

if "gemma3_gguf" in only:
    # Gemma 3 as llama.cpp can express it: every sixth layer global, scores scaled by head_dim^-1/2.
    torch.manual_seed(10)
    gemma3 = transformers.Gemma3TextConfig(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=6,
                                           num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=64,
                                           rope_theta=1000000.0, rope_local_base_freq=10000.0,
                                           rope_scaling={"rope_type": "linear", "factor": 8.0}, rms_norm_eps=1e-6,
                                           tie_word_embeddings=True, sliding_window=4, query_pre_attn_scalar=16,
                                           initializer_range=0.2, attn_implementation="eager")
    build("gemma3_gguf", transformers.Gemma3ForCausalLM(gemma3))
    write_gguf(os.path.join(out_dir, "gemma3_gguf"), "gemma3")

# GGUFs of checkpoints already made (read from their directories, so the checkpoints stay as they are).
for name, arch in [("llama", "llama"), ("gemma", "gemma"), ("phi3", "phi3"), ("qwen3", "qwen3")]:
    if f"{name}.gguf" in only:
        write_gguf(os.path.join(out_dir, name), arch)

if "phi3_partial" in only:
    # As Phi-4-mini: partial_rotary_factor 0.75 (6 of each head's 8 dimensions rotated), LongRoPE
    # factors for the 3 rotary frequencies.
    torch.manual_seed(11)
    phi4 = transformers.Phi3Config(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                   original_max_position_embeddings=8, rope_theta=10000.0, rms_norm_eps=1e-5,
                                   partial_rotary_factor=0.75,
                                   rope_scaling={"type": "longrope", "short_factor": [1.0, 1.4, 2.2],
                                                 "long_factor": [1.5, 4.0, 9.0]},
                                   tie_word_embeddings=False, sliding_window=None, pad_token_id=0, bos_token_id=1,
                                   eos_token_id=2, initializer_range=0.2, attn_implementation="eager")
    build("phi3_partial", transformers.Phi3ForCausalLM(phi4))
    write_gguf(os.path.join(out_dir, "phi3_partial"), "phi3")

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
