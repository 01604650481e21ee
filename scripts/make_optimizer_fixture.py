#!/usr/bin/env python3
"""Reference fixture for the optimizer tests: torch.optim.AdamW and SGD (momentum, Nesterov,
weight decay) applied for three steps to a parameter with fixed gradients, and
torch.nn.utils.clip_grad_norm_ on two tensors.

    python3 scripts/make_optimizer_fixture.py Tests/DistillNNTests/Fixtures/optimizer_fixture.json
"""
import json
import sys

import torch

torch.manual_seed(7)
p0 = torch.randn(6)
grads = [torch.randn(6) for _ in range(3)]

def run(make):
    p = torch.nn.Parameter(p0.clone())
    opt = make([p])
    out = []
    for g in grads:
        p.grad = g.clone()
        opt.step()
        out.append(p.detach().tolist())
    return out

fixture = {
    "p0": p0.tolist(),
    "grads": [g.tolist() for g in grads],
    "adamw": run(lambda ps: torch.optim.AdamW(ps, lr=0.1, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)),
    "sgd_momentum": run(lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01)),
    "sgd_nesterov": run(lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True)),
}
a = torch.nn.Parameter(torch.zeros(3)); a.grad = torch.tensor([3.0, 4.0, 0.0])
b = torch.nn.Parameter(torch.zeros(2)); b.grad = torch.tensor([12.0, 0.0])
norm = torch.nn.utils.clip_grad_norm_([a, b], max_norm=1.0)
fixture["clip"] = {"norm": float(norm), "a": a.grad.tolist(), "b": b.grad.tolist()}
with open(sys.argv[1], "w") as f:
    json.dump(fixture, f, indent=1)
print("wrote", sys.argv[1])
