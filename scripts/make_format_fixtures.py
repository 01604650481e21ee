#!/usr/bin/env python3
"""Fixtures for Tests/DistillModelsTests/Formats (weight file formats).

Writes Tests/DistillModelsTests/Fixtures/formats/:

  st_f32.safetensors, st_f16.safetensors, st_bf16.safetensors
      the same tensors saved by `safetensors.torch.save_file` as F32, F16 and BF16
      (Distill's writer must reproduce these files byte for byte)
  st_mixed.safetensors      F32/F16/BF16/F64/I64 tensors and several metadata keys
  sharded/                  a checkpoint split by huggingface_hub's shard planner + index.json
  safetensors_expected.json expected Float32 bit patterns, the shard plan
  quants.gguf               GGUF v3: every metadata value type, and tensors of every type
                            Distill dequantizes (F32, F16, BF16, Q4_0 … Q8_0, Q2_K … Q6_K)
  quants_v2.gguf            the same file labelled version 2 (identical layout)
  quants_expected.json      dequantized values from gguf.quants.dequantize (Float32 bits, base64)
  tiny_llama.safetensors / tiny_llama.gguf   a random 2-layer Llama (tied embeddings) in HF
                            layout and in llama.cpp layout (Q/K rows permuted as
                            convert_hf_to_gguf.py's LlamaModel.permute does), alignment 64
  tiny_qwen2.safetensors / tiny_qwen2.gguf   a random 1-layer Qwen2 with q/k/v biases, untied head
  tiny_expected.json        the HF configs these GGUF files describe
  smollm2_expected.json     (when the SmolLM2 GGUF exists) slices and exact checksums of every
                            tensor as `transformers` loads them from the GGUF (dequantized,
                            Q/K un-permuted)

Run from the repository root:  python3 scripts/make_format_fixtures.py
Needs: numpy, torch, safetensors, gguf (gguf-py), transformers, huggingface_hub.
"""
import base64
import json
import os
import shutil
import struct
import sys

import numpy as np
import torch
import gguf
from gguf import GGMLQuantizationType as T
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "DistillModelsTests", "Fixtures", "formats")
SMOLLM2 = os.environ.get("DISTILL_SMOLLM2_GGUF",
                         os.path.join(ROOT, ".build", "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))


def bits(a) -> list:
    """Float32 bit patterns of an array, as ints (exact; JSON cannot hold NaN or inf)."""
    return np.ascontiguousarray(np.asarray(a, dtype=np.float32)).view(np.uint32).ravel().tolist()


def b64(a) -> str:
    """Float32 values, little-endian, base64."""
    return base64.b64encode(np.ascontiguousarray(np.asarray(a, dtype="<f4")).tobytes()).decode()


def checksums(a):
    """Order-sensitive exact checksums of Float32 data: sum of bit patterns and sum of bit
    pattern × (index + 1), both modulo 2^64."""
    u = np.ascontiguousarray(np.asarray(a, dtype=np.float32)).view(np.uint32).ravel().astype(np.uint64)
    idx = np.arange(1, u.size + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return str(int(u.sum(dtype=np.uint64))), str(int((u * idx).sum(dtype=np.uint64)))


def write_json(name, obj):
    with open(os.path.join(OUT, name), "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")


# ----------------------------------------------------------------------------- safetensors

def make_safetensors():
    g = torch.Generator().manual_seed(1)
    special = torch.tensor([0.0, -0.0, 1.0, -2.5, 65504.0, 70000.0, 6.0e-8, 1.0e-40, 3.0e38, 0.1,
                            1.0 + 2 ** -11, 1.0 + 3 * 2 ** -11, 1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8],
                           dtype=torch.float32)
    tensors = {
        "a.weight": torch.randn(3, 5, generator=g),
        "b.bias": torch.randn(7, generator=g) * 100,
        "c.special": special,
        "d.scalar": torch.tensor(1.5),
        "e.empty": torch.zeros(0, 4),
        "f.cube": torch.randn(2, 3, 4, generator=g) * 1e-3,
    }
    expected = {"tensors": {}}
    for dtype, suffix in [(torch.float32, "f32"), (torch.float16, "f16"), (torch.bfloat16, "bf16")]:
        converted = {k: v.to(dtype).contiguous() for k, v in tensors.items()}
        save_file(converted, os.path.join(OUT, f"st_{suffix}.safetensors"), metadata={"format": "pt"})
        for k, v in converted.items():
            expected["tensors"].setdefault(k, {"shape": list(v.shape)})[suffix] = bits(v.float().numpy())

    mixed = {
        "m.f32": torch.arange(6, dtype=torch.float32).reshape(2, 3) - 2.5,
        "m.f16": torch.tensor([1.0, -0.5, 65504.0, 6.0e-8], dtype=torch.float16),
        "m.bf16": torch.tensor([[1.0, 3.0e38], [-1e-3, 7.0]], dtype=torch.bfloat16),
        "m.f64": torch.tensor([0.1, 1e300, -2.0], dtype=torch.float64),
        "m.i64": torch.tensor([1, 2, 3], dtype=torch.int64),
        "m.u8": torch.tensor([1, 2, 3, 4, 5], dtype=torch.uint8),
    }
    save_file(mixed, os.path.join(OUT, "st_mixed.safetensors"),
              metadata={"format": "pt", "note": "mixed \"dtypes\"\n", "empty": ""})
    expected["mixed"] = {k: {"shape": list(v.shape), "bits": bits(v.double().float().numpy())}
                         for k, v in mixed.items() if v.dtype.is_floating_point}

    # A sharded checkpoint planned by huggingface_hub (as save_pretrained does), tensors in name order.
    from huggingface_hub import split_torch_state_dict_into_shards
    g = torch.Generator().manual_seed(2)
    state = {f"layers.{i}.w": torch.randn(4, 4 + 2 * i, generator=g) for i in range(5)}
    state["big"] = torch.randn(40, generator=g)
    state = dict(sorted(state.items()))
    max_shard = 200
    split = split_torch_state_dict_into_shards(state, max_shard_size=max_shard,
                                               filename_pattern="model{suffix}.safetensors")
    d = os.path.join(OUT, "sharded")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for file, names in split.filename_to_tensors.items():
        save_file({n: state[n].contiguous() for n in names}, os.path.join(d, file), metadata={"format": "pt"})
    index = {"metadata": split.metadata, "weight_map": split.tensor_to_filename}
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        f.write(json.dumps(index, indent=2, sort_keys=True) + "\n")
    expected["sharded"] = {"max_shard_size": max_shard, "weight_map": split.tensor_to_filename,
                           "total_size": split.metadata["total_size"],
                           "tensors": {k: {"shape": list(v.shape), "bits": bits(v.numpy())} for k, v in state.items()}}
    write_json("safetensors_expected.json", expected)


# ----------------------------------------------------------------------------- GGUF quantization

def random_kquant_blocks(qtype, n_blocks, rng):
    """Random super-blocks with sane f16 scales (random bytes everywhere else)."""
    _, type_size = gguf.GGML_QUANT_SIZES[qtype]
    blocks = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)

    def put_half(offset, lo, hi):
        h = rng.uniform(lo, hi, size=n_blocks).astype(np.float16).view(np.uint8).reshape(n_blocks, 2)
        blocks[:, offset:offset + 2] = h

    if qtype in (T.Q4_K, T.Q5_K):
        put_half(0, -0.02, 0.02)   # d
        put_half(2, -0.01, 0.01)   # dmin
    elif qtype == T.Q2_K:
        put_half(80, -0.05, 0.05)
        put_half(82, -0.02, 0.02)
    elif qtype == T.Q3_K:
        put_half(108, -0.05, 0.05)
    elif qtype == T.Q6_K:
        put_half(208, -0.01, 0.01)
    return blocks


def make_gguf_quants():
    rng = np.random.default_rng(3)
    path = os.path.join(OUT, "quants.gguf")
    w = gguf.GGUFWriter(path, arch="test")
    w.add_name("format fixture")
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_uint64("test.u64", 2 ** 63 + 5)
    w.add_int64("test.i64", -(2 ** 62))
    w.add_float32("test.f32", 0.1)
    w.add_float64("test.f64", 1e-300)
    w.add_bool("test.bool", True)
    w.add_string("test.string", "héllo, ☃")
    w.add_array("test.strings", ["a", "", "ünï", "<|im_start|>"])
    w.add_array("test.ints", [1, -2, 3])
    w.add_array("test.floats", [0.5, -1.25, 3.0])
    w.add_key_value("test.nested", [[1, 2], [3]], gguf.GGUFValueType.ARRAY)

    expected = {}

    def add(name, values, qtype, raw=None):
        """values: float32 row-major array (HF order). raw: quantized bytes (rows, bytes) to store."""
        if raw is None:
            raw = gguf.quants.quantize(values, qtype) if qtype not in (T.F32,) else values
        if qtype == T.F32:
            w.add_tensor(name, raw.astype(np.float32))
            deq = raw.astype(np.float32)
        elif qtype == T.F16:
            w.add_tensor(name, raw)
            deq = raw.astype(np.float32)
        else:
            w.add_tensor(name, raw, raw_dtype=qtype)
            deq = gguf.quants.dequantize(raw, qtype)
        expected[name] = {"type": qtype.name, "shape": list(deq.shape), "values": b64(deq)}

    add("plain.f32", rng.standard_normal((3, 7)).astype(np.float32), T.F32)
    add("plain.f32_1d", rng.standard_normal(10).astype(np.float32), T.F32)
    add("plain.f16", rng.standard_normal((2, 5)).astype(np.float32).astype(np.float16), T.F16)
    add("plain.bf16", rng.standard_normal((4, 3)).astype(np.float32), T.BF16)
    for qtype, shape in [(T.Q8_0, (3, 64)), (T.Q4_0, (2, 96)), (T.Q4_1, (2, 64)),
                         (T.Q5_0, (2, 64)), (T.Q5_1, (2, 64))]:
        add(f"q.{qtype.name.lower()}", (rng.standard_normal(shape) * 0.1).astype(np.float32), qtype)
    add("q.q8_0_3d", (rng.standard_normal((2, 3, 32))).astype(np.float32), T.Q8_0)
    for qtype in (T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K):
        rows, per_row = 2, 2   # two rows of two 256-value super-blocks
        blocks = random_kquant_blocks(qtype, rows * per_row, rng).reshape(rows, -1)
        add(f"k.{qtype.name.lower()}", None, qtype, raw=blocks)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    with open(path, "rb") as f:
        data = bytearray(f.read())
    assert struct.unpack_from("<I", data, 4)[0] == 3
    struct.pack_into("<I", data, 4, 2)
    with open(os.path.join(OUT, "quants_v2.gguf"), "wb") as f:
        f.write(data)

    # Check the file against gguf-py's reader, then record what it reads.
    r = gguf.GGUFReader(path)
    for t in r.tensors:
        deq = gguf.quants.dequantize(t.data, t.tensor_type)
        assert b64(deq) == expected[t.name]["values"], t.name
    write_json("quants_expected.json", {"tensors": expected})


# ----------------------------------------------------------------------------- tiny llama / qwen2

def llama_permute(weights, n_head, n_head_kv):
    """convert_hf_to_gguf.py, LlamaModel.permute."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape))


HF_TO_GGUF = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight", "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.weight": "attn_k.weight", "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.weight": "attn_v.weight", "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def gguf_name(hf):
    top = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
           "lm_head.weight": "output.weight"}
    if hf in top:
        return top[hf]
    parts = hf.split(".")
    assert parts[0] == "model" and parts[1] == "layers", hf
    return f"blk.{parts[2]}." + HF_TO_GGUF[".".join(parts[3:])]


def make_tiny(arch):
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM
    from transformers.modeling_gguf_pytorch_utils import reverse_permute_weights
    torch.manual_seed(4 if arch == "llama" else 5)
    if arch == "llama":
        cfg = LlamaConfig(vocab_size=40, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5, rope_theta=10000.0,
                          max_position_embeddings=128, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2)
        model = LlamaForCausalLM(cfg)
    else:
        cfg = Qwen2Config(vocab_size=24, hidden_size=16, intermediate_size=40, num_hidden_layers=1,
                          num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=1000000.0,
                          max_position_embeddings=64, tie_word_embeddings=False, bos_token_id=None,
                          eos_token_id=3)
        model = Qwen2ForCausalLM(cfg)
    # Random norms too, so that a mix-up between tensors shows.
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if cfg.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    save_file(state, os.path.join(OUT, f"tiny_{arch}.safetensors"), metadata={"format": "pt"})

    path = os.path.join(OUT, f"tiny_{arch}.gguf")
    w = gguf.GGUFWriter(path, arch=arch)
    w.add_name(f"tiny {arch}")
    if arch == "llama":
        w.add_custom_alignment(64)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(cfg.rope_theta)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    if arch == "llama":
        w.add_vocab_size(cfg.vocab_size)
        w.add_bos_token_id(1)
    w.add_eos_token_id(cfg.eos_token_id)
    w.add_token_list([f"t{i}" for i in range(cfg.vocab_size)])
    for hf, t in state.items():
        a = t.numpy()
        if arch == "llama" and (".q_proj." in hf or ".k_proj." in hf):
            heads = cfg.num_attention_heads
            kv = heads if ".q_proj." in hf else cfg.num_key_value_heads
            permuted = llama_permute(a, heads, kv)
            # transformers' inverse must undo it.
            assert np.array_equal(reverse_permute_weights(permuted, heads, kv), a)
            a = permuted
        w.add_tensor(gguf_name(hf), np.ascontiguousarray(a))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    # transformers must read the GGUF back as the original model.
    try:
        from transformers import AutoModelForCausalLM
        loaded = AutoModelForCausalLM.from_pretrained(OUT, gguf_file=f"tiny_{arch}.gguf")
        sd = loaded.state_dict()
        for k, v in state.items():
            assert torch.equal(sd[k], v), k
        print(f"transformers reads tiny_{arch}.gguf back exactly")
    except Exception as e:  # an older transformers without this architecture's GGUF support
        print(f"note: transformers could not load tiny_{arch}.gguf ({type(e).__name__}: {e})")

    return {
        "model_type": arch, "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size, "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads, "num_key_value_heads": cfg.num_key_value_heads,
        "head_dim": cfg.hidden_size // cfg.num_attention_heads, "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta, "max_position_embeddings": cfg.max_position_embeddings,
        "tie_word_embeddings": cfg.tie_word_embeddings, "bos_token_id": 1 if arch == "llama" else None,
        "eos_token_id": cfg.eos_token_id, "attention_bias": arch == "qwen2",
    }


# ----------------------------------------------------------------------------- SmolLM2 (transformers)

def make_smollm2():
    if not os.path.exists(SMOLLM2):
        print(f"skipping SmolLM2 fixture: {SMOLLM2} not found")
        return
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(os.path.dirname(SMOLLM2), gguf_file=os.path.basename(SMOLLM2),
                                                 torch_dtype=torch.float32)
    reader = gguf.GGUFReader(SMOLLM2)
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    sd = model.state_dict()
    tensors = {}
    for name, v in sd.items():
        if gguf_name(name) not in types:
            # No output.weight: llama.cpp ties the head to token_embd. (transformers 4.46 leaves
            # lm_head randomly initialised here, with tie_word_embeddings=False: not a reference.)
            continue
        s, ws = checksums(v.numpy())
        tensors[name] = {"shape": list(v.shape), "sum_bits": s, "weighted_sum_bits": ws,
                         "gguf_type": types[gguf_name(name)]}
    slices = []
    for name, rows in [("model.embed_tokens.weight", [0, 1, 49151]),            # Q8_0
                       ("model.layers.0.self_attn.q_proj.weight", [0, 1, 32, 63, 64, 575]),  # Q4_1, permuted
                       ("model.layers.0.self_attn.k_proj.weight", [0, 1, 32, 64, 191]),      # Q4_1, permuted, 3 kv heads
                       ("model.layers.0.self_attn.v_proj.weight", [0, 191]),
                       ("model.layers.29.mlp.down_proj.weight", [0, 575]),
                       ("model.layers.0.input_layernorm.weight", None),                   # F32
                       ("model.norm.weight", None)]:
        t = sd[name].numpy()
        if rows is None:
            slices.append({"name": name, "row": None, "values": b64(t)})
        else:
            for r in rows:
                slices.append({"name": name, "row": r, "values": b64(t[r])})
    c = model.config
    write_json("smollm2_expected.json", {
        "config": {"vocab_size": c.vocab_size, "hidden_size": c.hidden_size,
                   "intermediate_size": c.intermediate_size, "num_hidden_layers": c.num_hidden_layers,
                   "num_attention_heads": c.num_attention_heads, "num_key_value_heads": c.num_key_value_heads,
                   "rms_norm_eps": c.rms_norm_eps, "rope_theta": c.rope_theta,
                   "max_position_embeddings": c.max_position_embeddings,
                   "bos_token_id": c.bos_token_id, "eos_token_id": c.eos_token_id},
        "tensors": tensors, "slices": slices})


def main():
    os.makedirs(OUT, exist_ok=True)
    make_safetensors()
    make_gguf_quants()
    tiny = {"llama": make_tiny("llama"), "qwen2": make_tiny("qwen2")}
    write_json("tiny_expected.json", tiny)
    if "--no-smollm2" not in sys.argv:
        make_smollm2()
    for dirpath, _, files in os.walk(OUT):
        for f in files:
            os.chmod(os.path.join(dirpath, f), 0o644)
    print("wrote fixtures to", OUT)


if __name__ == "__main__":
    main()
