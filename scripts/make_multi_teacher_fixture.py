"""Reference values for distillation from several teachers: the combined soft target and the
losses on it, with their gradients with respect to the student's logits (PyTorch, float64).

Teachers' logits z_i [N, V], weights w (normalised), temperature tau, student logits s:
  probabilities:      p = sum_i w_i softmax(z_i / tau)
  log_probabilities:  p = softmax(sum_i w_i log_softmax(z_i / tau))
  forward KL:  tau^2 * mean over rows of KL(p || softmax(s / tau))
  jsd(beta):   mean over rows of beta KL(p || m) + (1 - beta) KL(q || m), m = beta p + (1 - beta) q, q = softmax(s / tau)
Rows listed in "routed" use teacher 0's distribution alone.

Writes Tests/DistillationTests/Fixtures/multi_teacher.json.
Run: /tmp/ref/bin/python scripts/make_multi_teacher_fixture.py   (torch 2.5.1)
"""
import json
import os

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests/DistillationTests/Fixtures/multi_teacher.json")
torch.manual_seed(0)
N, V, TAU, BETA = 6, 11, 2.0, 0.3
weights = torch.tensor([0.7, 0.3, 0.0], dtype=torch.float64)    # the third teacher takes no part
z = [torch.randn(N, V, dtype=torch.float64) * 3 for _ in range(3)]
s0 = torch.randn(N, V, dtype=torch.float64) * 2
routed = [4]


def target(mode):
    lps = [torch.log_softmax(t / TAU, -1) for t in z]
    if mode == "probabilities":
        p = sum(w * lp.exp() for w, lp in zip(weights, lps))
    else:
        p = torch.softmax(sum(w * lp for w, lp in zip(weights, lps)), -1)
    p = p.clone()
    for r in routed:
        p[r] = torch.softmax(z[0][r] / TAU, -1)
    return p


def losses(p):
    out = {}
    s = s0.clone().requires_grad_(True)
    lq = torch.log_softmax(s / TAU, -1)
    kl = (p * (p.log() - lq)).sum(-1).mean() * TAU ** 2
    (g,) = torch.autograd.grad(kl, s)
    out["forward_kl"] = {"value": kl.item(), "grad": g.flatten().tolist()}
    s = s0.clone().requires_grad_(True)
    q = torch.softmax(s / TAU, -1)
    m = BETA * p + (1 - BETA) * q
    jsd = (BETA * (p * (p.log() - m.log())).sum(-1) + (1 - BETA) * (q * (q.log() - m.log())).sum(-1)).mean()
    (g,) = torch.autograd.grad(jsd, s)
    out["jsd"] = {"value": jsd.item(), "grad": g.flatten().tolist()}
    return out


fixture = {
    "rows": N, "vocab": V, "temperature": TAU, "beta": BETA, "weights": weights.tolist(), "routed": routed,
    "teachers": [t.flatten().tolist() for t in z], "student": s0.flatten().tolist(),
    "cases": {mode: {"target": target(mode).flatten().tolist(), **losses(target(mode))}
              for mode in ["probabilities", "log_probabilities"]},
}
with open(OUT, "w") as f:
    json.dump(fixture, f)
print("wrote", OUT)
