"""Reference values for adversarial training on the input embeddings (FGM and PGD), computed by
transformers in float64 on the tiny Qwen2 fixture model.

For a batch of token ids (labels = the ids, so the loss is the mean next-token cross-entropy):
  FGM: g = d loss / d r at r = 0 (r added to the embedding output), r = eps * g / ||g||;
  PGD: r_0 = 0, r_{k+1} = P_eps(r_k + alpha * g_k / ||g_k||), k < steps, P_eps the projection onto ||r|| <= eps.
The training gradient is d(loss(r=0) + loss(r_final)) / d(parameters), r_final held constant.

Writes Tests/DistillationTests/Fixtures/adversarial.json:
  ids, and per method: clean loss, adversarial loss, the perturbation r (flattened [B, T, H]) and
  the gradients of a few parameters (flattened).

Run: /tmp/ref/bin/python scripts/make_adversarial_fixture.py   (torch 2.5.1, transformers 4.46.3)
"""
import json
import os

import torch
from transformers import AutoModelForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "Tests/DistillModelsTests/Fixtures/architectures/qwen2")
OUT = os.path.join(ROOT, "Tests/DistillationTests/Fixtures/adversarial.json")
PARAMS = ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight",
          "model.norm.weight", "lm_head.weight"]

torch.manual_seed(0)
model = AutoModelForCausalLM.from_pretrained(MODEL, torch_dtype=torch.float64, attn_implementation="eager").eval()
named = dict(model.named_parameters())
params = [named[n] for n in PARAMS]
ids = torch.tensor([[5, 17, 3, 42, 8, 61, 9], [70, 2, 33, 14, 90, 11, 27]])


def loss_at(r):
    e = model.model.embed_tokens(ids)
    return model(inputs_embeds=e + r, labels=ids).loss


def case(method, eps, steps, alpha):
    r = torch.zeros(ids.shape[0], ids.shape[1], model.config.hidden_size, dtype=torch.float64)
    r0 = r.clone().requires_grad_(True)
    clean = loss_at(r0)
    grads = torch.autograd.grad(clean, [r0] + params)
    g, clean_grads = grads[0], grads[1:]
    for k in range(steps):
        size = eps if method == "fgm" else alpha
        r = r + size * g / g.norm()
        if method == "pgd" and r.norm() > eps:
            r = r * (eps / r.norm())
        if k + 1 < steps:
            rk = r.clone().requires_grad_(True)
            g = torch.autograd.grad(loss_at(rk), [rk])[0]
    adv = loss_at(r.detach())
    adv_grads = torch.autograd.grad(adv, params)
    return {
        "method": method, "epsilon": eps, "steps": steps, "step_size": alpha,
        "clean_loss": clean.item(), "adversarial_loss": adv.item(),
        "perturbation": r.flatten().tolist(),
        "gradients": {n: (a + b).flatten().tolist() for n, a, b in zip(PARAMS, clean_grads, adv_grads)},
    }


fixture = {
    "model": "Tests/DistillModelsTests/Fixtures/architectures/qwen2",
    "ids": ids.tolist(),
    "cases": [case("fgm", 0.5, 1, None), case("pgd", 0.5, 3, 0.3)],
}
with open(OUT, "w") as f:
    json.dump(fixture, f)
print("wrote", OUT)
