#!/usr/bin/env python3
"""Reference values and gradients of the cross-tokenizer losses
(Tests/DistillationTests/Fixtures/cross_tokenizer.json), computed with torch.autograd in float64
from float32 inputs stored exactly.

Definitions (see Sources/Distillation/Losses/CrossTokenizerLosses.swift):
- ULD (Boizard et al. 2024, "Towards Cross-Tokenizer Distillation: the Universal Logit Distillation
  Loss"): p = softmax(z/tau) sorted descending; teacher q sorted descending (K values) and a rest
  mass r; loss_row = sum_{i<K} |p_(i) - q_i| + |sum_{i>=K} p_(i) - r| (p padded with zeros past V);
  mean over rows.
- span likelihood (binarised chunk likelihood, as in ALM, Minixhofer et al. 2025): a = sum of the
  student's log-softmax(z/tau) at the span's tokens, b = the teacher's; loss = P_t (b - a) +
  (1 - P_t)(log(1 - P_t) - log(1 - P_s)) (first term 0 when P_t = 0) with log(1 - P) = log(-expm1(min(log P, -1e-6))); mean
  over spans.

    pip install torch==2.5.1
    python3 scripts/make_cross_tokenizer_fixtures.py Tests/DistillationTests/Fixtures/cross_tokenizer.json
"""
import json
import sys

import torch

torch.manual_seed(20261206)
f64 = torch.float64
CEIL = -1e-6


def uld(z, rows, sorted_t, rest, tau):
    total = torch.zeros((), dtype=f64)
    v = z.shape[1]
    for j, r in enumerate(rows):
        p = torch.softmax(z[r] / tau, dim=-1)
        ps, _ = torch.sort(p, descending=True)
        q = torch.tensor(sorted_t[j], dtype=f64)
        k = q.shape[0]
        if k > v:
            ps = torch.cat([ps, torch.zeros(k - v, dtype=f64)])
        loss = (ps[:k] - q).abs().sum() + (ps[k:].sum() - rest[j]).abs()
        total = total + loss
    return total / len(rows)


def log1mexp(x):
    return torch.log(-torch.expm1(torch.clamp(x, max=CEIL)))


def span(z, spans, teacher, tau):
    total = torch.zeros((), dtype=f64)
    for s, b in zip(spans, teacher):
        a = sum(torch.log_softmax(z[r] / tau, dim=-1)[t] for r, t in zip(s["rows"], s["tokens"]))
        b = torch.tensor(min(b, 0.0), dtype=f64)
        pt = torch.exp(b)
        first = pt * (b - a) if pt.item() > 0 else torch.zeros((), dtype=f64)  # 0·log 0 = 0
        total = total + first + (1 - pt) * (log1mexp(b) - log1mexp(a))
    return total / len(spans)


def teacher_rows(n, vt, k, tau, scale):
    """Sorted top-k teacher probabilities at tau and their rest masses (k = vt: whole rows)."""
    out, rest = [], []
    for _ in range(n):
        p = torch.softmax(torch.randn(vt).float().double() * scale / tau, dim=-1)
        q, _ = torch.sort(p, descending=True)
        q32 = q[:k].float()
        out.append([float(x) for x in q32])
        rest.append(float(max(0.0, 1.0 - q32.double().sum().item())) if k < vt else 0.0)
    return out, rest


cases = []
for name, n, v, vt, k, tau, scale in [
    ("uld full teacher, wider vocabulary", 5, 11, 17, 17, 1.0, 2.0),
    ("uld full teacher, narrower vocabulary", 4, 13, 7, 7, 2.0, 3.0),
    ("uld top-k teacher with rest mass", 6, 19, 40, 5, 1.5, 2.5),
]:
    z = (torch.randn(n, v) * 2).float()
    rows = sorted(torch.randperm(n)[: n - 1].tolist())
    q, rest = teacher_rows(len(rows), vt, k, tau, scale)
    x = z.double().requires_grad_(True)
    value = uld(x, rows, q, rest, tau)
    (grad,) = torch.autograd.grad(value, x)
    cases.append({"name": name, "kind": "uld", "shape": [n, v], "logits": [float(a) for a in z.flatten()],
                  "rows": rows, "teacher_sorted": q, "teacher_rest": rest, "tau": tau,
                  "value": value.item(), "grad": [float(a) for a in grad.flatten()]})

for name, n, v, tau, spec in [
    ("spans of one and several tokens", 8, 9, 1.0, [[0], [1, 2], [3, 4, 5], [7]]),
    ("spans at temperature 2, a sure span", 6, 5, 2.0, [[0, 1], [2], [4]]),
]:
    z = (torch.randn(n, v) * 1.5).float()
    spans = [{"rows": rs, "tokens": [int(torch.randint(0, v, ()).item()) for _ in rs]} for rs in spec]
    teacher = [float(-torch.rand(()).item() * 3 * len(s["rows"])) for s in spans]
    if "sure" in name:
        # a span the student gives probability ~1: its token dominates the row
        z[4, spans[-1]["tokens"][0]] = 60.0
        teacher[-1] = -1e-3
        teacher[0] = float("-inf")
    x = z.double().requires_grad_(True)
    value = span(x, spans, teacher, tau)
    (grad,) = torch.autograd.grad(value, x)
    cases.append({"name": name, "kind": "span", "shape": [n, v], "logits": [float(a) for a in z.flatten()],
                  "spans": spans, "teacher_logprobs": [t if t != float("-inf") else "-inf" for t in teacher], "tau": tau,
                  "value": value.item(), "grad": [float(a) for a in grad.flatten()]})

with open(sys.argv[1], "w") as f:
    json.dump({"cases": cases}, f, indent=1)
print(f"wrote {len(cases)} cases to {sys.argv[1]}")
