#!/usr/bin/env python3
"""Reference fixture for LoRA parity with Hugging Face PEFT (Tests/DistillNNTests/Fixtures).

Builds a tiny Llama (RMSNorm, RoPE, grouped-query attention, SwiGLU, untied head) with
transformers, wraps it with PEFT's LoraConfig (r=4, lora_alpha=8, dropout 0, targets q_proj,
v_proj and the MLP's down_proj), gives every lora_B a seeded non-zero value so that the adapters
change the outputs, and writes in float32:

- the base weights and the adapter weights (under Distill's names: PEFT's without the
  `base_model.model.` prefix and the `.default` adapter name),
- the input ids, logits and mean next-token cross-entropy of the adapted model,
- the gradients of the adapter weights (the only trainable parameters),
- the adapted weights after `merge_and_unload()`,
- the key names and adapter_config.json fields that `save_pretrained` writes.

    pip install torch==2.5.1 transformers==4.46.3 && pip install --no-deps peft==0.13.2
    python3 scripts/make_lora_fixture.py Tests/DistillNNTests/Fixtures/lora_fixture.json

With `--check-adapter DIR`, it instead loads an adapter directory written by Distill
(`adapter_config.json` + `adapter_model.safetensors`) onto the fixture's base model with
`PeftModel.from_pretrained` and checks that PEFT consumed every tensor of the file under its own
names (loaded weights equal the file's), that the config reads back, and — when the directory
holds the fixture's own adapter weights — that the logits equal the fixture's.

    python3 scripts/make_lora_fixture.py --check-adapter DIR Tests/DistillNNTests/Fixtures/lora_fixture.json

FIXTURE may also be a Hugging Face model directory (e.g. `distill convert` of the SmolLM2 GGUF) to
check adapters that `distill train` wrote for that model; then only the loading is checked.
"""
import json
import os
import sys
import tempfile

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaForCausalLM

CONFIG = dict(
    vocab_size=32, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, intermediate_size=32, rms_norm_eps=1e-6, rope_theta=10000.0,
    tie_word_embeddings=False, initializer_range=0.2, max_position_embeddings=64,
    attention_bias=False, mlp_bias=False,
)
TARGETS = ["q_proj", "v_proj", "down_proj"]


def pack(t):
    # 9 significant digits round-trip a float32
    return {"shape": list(t.shape), "data": [float(f"{x:.9g}") for x in t.detach().reshape(-1).tolist()]}


def unpack(d):
    return torch.tensor(d["data"], dtype=torch.float32).reshape(d["shape"])


def distill_name(peft_name):
    """base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight -> model.layers.0.self_attn.q_proj.lora_A.weight"""
    n = peft_name.removeprefix("base_model.model.")
    return n.replace(".lora_A.default.", ".lora_A.").replace(".lora_B.default.", ".lora_B.")


def base_model():
    config = LlamaConfig(**CONFIG, attn_implementation="eager")
    return config, LlamaForCausalLM(config).float()


def make(path):
    torch.manual_seed(4321)
    config, model = base_model()
    with torch.no_grad():  # norm weights start at 1; perturb them
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.add_(0.1 * torch.randn_like(p))
    base = {name: p.detach().clone() for name, p in model.named_parameters()}

    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=TARGETS, bias="none", task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, lora)
    gen = torch.Generator().manual_seed(99)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if ".lora_B." in name:
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
    peft_model.train()  # dropout is 0; train mode only matters for the tape

    batch, length = 2, 7
    ids = torch.randint(0, config.vocab_size, (batch, length), generator=gen)
    out = peft_model(input_ids=ids, labels=ids)
    out.loss.backward()
    adapters = {distill_name(n): p for n, p in peft_model.named_parameters() if "lora_" in n}
    assert all(p.requires_grad for p in adapters.values())
    assert sum(p.requires_grad for p in peft_model.parameters()) == len(adapters)

    with tempfile.TemporaryDirectory() as d:
        peft_model.save_pretrained(d)
        saved_keys = sorted(load_file(os.path.join(d, "adapter_model.safetensors")).keys())
        with open(os.path.join(d, "adapter_config.json")) as f:
            saved_config = json.load(f)

    merged = peft_model.merge_and_unload()
    merged_weights = {n: p for n, p in merged.named_parameters()
                      if any(f".{t}." in n for t in TARGETS)}
    # untouched weights stay as they were
    for n, p in merged.named_parameters():
        if n not in merged_weights:
            assert torch.equal(p, base[n]), n

    fixture = {
        "config": {
            "vocab_size": config.vocab_size, "hidden": config.hidden_size, "layers": config.num_hidden_layers,
            "heads": config.num_attention_heads, "kv_heads": config.num_key_value_heads,
            "intermediate": config.intermediate_size, "rope_theta": config.rope_theta,
            "rms_norm_eps": config.rms_norm_eps, "tie_embeddings": False,
        },
        "lora": {"r": lora.r, "lora_alpha": lora.lora_alpha, "lora_dropout": lora.lora_dropout, "target_modules": TARGETS},
        "batch": batch, "length": length,
        "ids": ids.reshape(-1).tolist(),
        "loss": float(out.loss),
        "logits": pack(out.logits),
        "base_parameters": {n: pack(p) for n, p in base.items()},
        "adapter_parameters": {n: pack(p) for n, p in adapters.items()},
        "adapter_gradients": {n: pack(p.grad) for n, p in adapters.items()},
        "merged_parameters": {n: pack(p) for n, p in merged_weights.items()},
        "peft_saved_keys": saved_keys,
        "peft_saved_config": {k: saved_config[k] for k in ["peft_type", "task_type", "r", "lora_alpha", "lora_dropout",
                                                           "bias", "fan_in_fan_out"]},
        "generator": f"torch {torch.__version__}, transformers LlamaForCausalLM, peft 0.13.2 LoraConfig",
    }
    with open(path, "w") as f:
        json.dump(fixture, f, separators=(",", ":"))
    print(f"loss {out.loss.item():.6f}; {len(adapters)} adapter tensors; wrote {path} ({os.path.getsize(path)} bytes)")


def check_adapter(adapter_dir, fixture_path):
    if os.path.isdir(fixture_path):
        from transformers import AutoModelForCausalLM
        fx = None
        model = AutoModelForCausalLM.from_pretrained(fixture_path, torch_dtype=torch.float32)
    else:
        with open(fixture_path) as f:
            fx = json.load(f)
        _, model = base_model()
        model.load_state_dict({n: unpack(d) for n, d in fx["base_parameters"].items()})
    file_tensors = load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
    peft_model = PeftModel.from_pretrained(model, adapter_dir)
    peft_model.eval()
    loaded = {n: p.detach() for n, p in peft_model.named_parameters() if "lora_" in n}
    # every tensor of the file lands in a PEFT module under PEFT's own name, and nothing is left over
    expected_keys = sorted(n.replace(".default.", ".") for n in loaded)
    assert sorted(file_tensors) == expected_keys, (sorted(file_tensors), expected_keys)
    for n, p in loaded.items():
        assert torch.equal(p, file_tensors[n.replace(".default.", ".")]), n
    cfg = peft_model.peft_config["default"]
    print(f"PEFT loaded {len(loaded)} adapter tensors from {adapter_dir}: r={cfg.r} alpha={cfg.lora_alpha} "
          f"dropout={cfg.lora_dropout} targets={sorted(cfg.target_modules)}")
    nonzero_b = sum(bool(p.abs().max() > 0) for n, p in loaded.items() if ".lora_B." in n)
    print(f"{nonzero_b} of {len(loaded) // 2} lora_B matrices non-zero")
    if fx is None:
        print("OK")
        return
    fixture_adapters = {n: unpack(d) for n, d in fx["adapter_parameters"].items()}
    same = all(torch.equal(file_tensors.get("base_model.model." + n, torch.empty(0)), t) for n, t in fixture_adapters.items())
    if same:
        ids = torch.tensor(fx["ids"]).reshape(fx["batch"], fx["length"])
        with torch.no_grad():
            logits = peft_model(input_ids=ids).logits
        ref = unpack(fx["logits"])
        err = (logits - ref).abs().max().item() / ref.abs().max().item()
        print(f"logits through PEFT vs fixture: relative max error {err:.2e}")
        assert err < 1e-5
    print("OK")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--check-adapter":
        check_adapter(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 2:
        make(sys.argv[1])
    else:
        sys.exit(__doc__)
