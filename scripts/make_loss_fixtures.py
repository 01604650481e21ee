#!/usr/bin/env python3
"""Reference values and gradients of the distillation losses (Tests/DistillationTests/Fixtures/losses.json).

Inputs are drawn in float32 and stored exactly; every reference is computed from those float32
values in float64 (so the fixture is the exact answer, and the Swift float32 code is judged against
it within 1e-5 relative). Gradients come from torch.autograd in float64.

Conventions reproduced here (see Sources/Distillation/Losses/*.swift):
- forward KL: kl_div(log_softmax(s/τ), log_softmax(t/τ), log_target=True, reduction='none').sum(-1),
  mean over masked rows, × τ².
- reverse KL: the same with the two distributions swapped, × τ².
- generalized JSD: TRL's GKDTrainer.generalized_jsd_loss (huggingface/trl at commit f2cd577,
  1.10.0.dev0: trl/experimental/gkd/gkd_trainer.py): τ on both, no τ²; β=0 forward KL, β=1 reverse KL,
  else M = β·p_t + (1−β)·p_s and β·KL(t‖M) + (1−β)·KL(s‖M); "batchmean" over labels != -100.
- total variation ½Σ|p_t − p_s| (τ on both), MSE on raw logits (mean over masked rows × V).
- cross-entropy: F.cross_entropy(ignore_index=-100, label_smoothing=ε).
- sparse KD: top-k teacher log-probs at τ (stored as float32) + a rest bucket; student at τ; × τ².
- feature: Linear projection of student states, MSE or 1 − cos with cos = x·y/√(‖x‖²‖y‖² + 1e-16).
- attention transfer: KL(a_t‖a_s) or 1 − cos per query row, teacher heads grouped/averaged/top-K.

    pip install torch==2.5.1
    python3 scripts/make_loss_fixtures.py Tests/DistillationTests/Fixtures/losses.json
"""
import json
import math
import sys

import torch
import torch.nn.functional as F

torch.manual_seed(1234)
f64 = torch.float64


def t32(*shape, scale=1.0):
    return (torch.randn(*shape) * scale).float()


def enc(x):
    x = x.detach()
    return {"shape": list(x.shape), "data": [float(v) for v in x.reshape(-1).tolist()]}


def grad_of(fn, *leaves):
    xs = [x.detach().to(f64).requires_grad_(True) for x in leaves]
    y = fn(*xs)
    gs = torch.autograd.grad(y, xs, allow_unused=True)
    return float(y), [torch.zeros_like(x) if g is None else g for x, g in zip(xs, gs)]


# ---------------------------------------------------------------- logit losses
B, T, V = 2, 3, 11
N = B * T
student = t32(B, T, V, scale=2.0)
teacher = t32(B, T, V, scale=2.5)
targets = [3, -100, 7, 0, 10, -100]
rows = [i for i, t in enumerate(targets) if t != -100]
mask = torch.tensor([t != -100 for t in targets])
teacher64 = teacher.to(f64)


def masked_mean(per_row):
    per_row = per_row.reshape(-1)
    return per_row[mask].sum() / max(int(mask.sum()), 1)


def forward_kl(s, tau):
    ls = F.log_softmax(s / tau, -1)
    lt = F.log_softmax(teacher64 / tau, -1)
    return masked_mean(F.kl_div(ls, lt, log_target=True, reduction="none").sum(-1)) * tau**2


def reverse_kl(s, tau):
    ls = F.log_softmax(s / tau, -1)
    lt = F.log_softmax(teacher64 / tau, -1)
    return masked_mean(F.kl_div(lt, ls, log_target=True, reduction="none").sum(-1)) * tau**2


def gjsd(s, beta, tau):
    # TRL generalized_jsd_loss (f2cd577), float64.
    ls = F.log_softmax(s / tau, -1)
    lt = F.log_softmax(teacher64 / tau, -1)
    if beta == 0:
        jsd = F.kl_div(ls, lt, reduction="none", log_target=True)
    elif beta == 1:
        jsd = F.kl_div(lt, ls, reduction="none", log_target=True)
    else:
        b = torch.tensor(beta, dtype=f64)
        lm = torch.logsumexp(torch.stack([ls + torch.log1p(-b), lt + torch.log(b)]), dim=0)
        jsd = b * F.kl_div(lm, lt, reduction="none", log_target=True) + (1 - b) * F.kl_div(lm, ls, reduction="none", log_target=True)
    jsd = jsd.reshape(N, V)[mask]
    return jsd.sum() / max(int(mask.sum()), 1)


def tvd(s, tau):
    ps = F.softmax(s / tau, -1)
    pt = F.softmax(teacher64 / tau, -1)
    return masked_mean(0.5 * (pt - ps).abs().sum(-1))


def mse(s):
    d = (s - teacher64).reshape(N, V)[mask]
    return (d * d).mean()


def ce(s, eps):
    return F.cross_entropy(s.reshape(N, V), torch.tensor(targets), ignore_index=-100, label_smoothing=eps)


cases = []


def add(name, fn, **params):
    value, (g,) = grad_of(fn, student)
    cases.append({"name": name, **params, "value": value, "grad": enc(g)})


for tau in (1.0, 2.0):
    add(f"forwardKL_tau{tau:g}", lambda s, tau=tau: forward_kl(s, tau), kind="forwardKL", tau=tau)
    add(f"reverseKL_tau{tau:g}", lambda s, tau=tau: reverse_kl(s, tau), kind="reverseKL", tau=tau)
    add(f"tvd_tau{tau:g}", lambda s, tau=tau: tvd(s, tau), kind="totalVariation", tau=tau)
for beta in (0.0, 0.1, 0.5, 0.9, 1.0):
    add(f"jsd_beta{beta:g}", lambda s, beta=beta: gjsd(s, beta, 1.0), kind="jsd", beta=beta, tau=1.0)
add("jsd_beta0.5_tau2", lambda s: gjsd(s, 0.5, 2.0), kind="jsd", beta=0.5, tau=2.0)
add("mse", mse, kind="mse", tau=1.0)
add("ce_smooth0.1", lambda s: ce(s, 0.1), kind="crossEntropy", smoothing=0.1)
add("ce_smooth0", lambda s: ce(s, 0.0), kind="crossEntropy", smoothing=0.0)
add("softAndHard_alpha0.3", lambda s: 0.3 * forward_kl(s, 2.0) + 0.7 * ce(s, 0.1),
    kind="softAndHard", alpha=0.3, tau=2.0, smoothing=0.1)

# ---------------------------------------------------------------- sparse KD
K, SP_TAU = 4, 2.0
lt_full = F.log_softmax(teacher64.reshape(N, V) / SP_TAU, -1)
top = torch.topk(lt_full, K, dim=-1)
sp_ids = top.indices
sp_lp32 = top.values.float()                  # what a cache stores
sp_lp = sp_lp32.to(f64)
sp_rest = (1 - sp_lp.exp().sum(-1)).clamp_min(0)


def sparse_kl(s, tau=SP_TAU):
    ls = F.log_softmax(s.reshape(N, V) / tau, -1)
    lq = ls.gather(-1, sp_ids)
    inside = torch.zeros(N, V, dtype=torch.bool).scatter_(-1, sp_ids, True)
    rs = (ls.exp() * (~inside)).sum(-1)
    per_row = (sp_lp.exp() * (sp_lp - lq)).sum(-1) + sp_rest * (sp_rest.log() - rs.log())
    return per_row[mask].sum() / mask.sum() * tau**2


value, (g,) = grad_of(sparse_kl, student)
sparse = {"k": K, "tau": SP_TAU, "ids": sp_ids.reshape(-1).tolist(), "logprobs": [float(x) for x in sp_lp32.reshape(-1)],
          "value": value, "grad": enc(g)}

# ---------------------------------------------------------------- fused linear loss
H = 5
fz_hidden = t32(N, H)
fz_weight = t32(V, H, scale=0.8)
fz_teacher = t32(N, V, scale=2.0)
FZ_ALPHA, FZ_TAU, FZ_EPS = 0.5, 2.0, 0.1


def fused(h, w):
    z = h @ w.T
    ls = F.log_softmax(z / FZ_TAU, -1)
    lt = F.log_softmax(fz_teacher.to(f64) / FZ_TAU, -1)
    soft = masked_mean(F.kl_div(ls, lt, log_target=True, reduction="none").sum(-1)) * FZ_TAU**2
    hard = F.cross_entropy(z, torch.tensor(targets), ignore_index=-100, label_smoothing=FZ_EPS)
    return FZ_ALPHA * soft + (1 - FZ_ALPHA) * hard


value, (gh, gw) = grad_of(fused, fz_hidden, fz_weight)
fused_fixture = {"hidden": enc(fz_hidden), "weight": enc(fz_weight), "teacher": enc(fz_teacher), "alpha": FZ_ALPHA,
                 "tau": FZ_TAU, "smoothing": FZ_EPS, "value": value, "grad_hidden": enc(gh), "grad_weight": enc(gw)}

# ---------------------------------------------------------------- feature distillation
LS, LT, HS, HT = 2, 4, 6, 8
st_h = [t32(B, T, HS) for _ in range(LS)]
te_h = [t32(B, T, HT) for _ in range(LT)]
proj_w = [t32(HT, HS, scale=0.4) for _ in range(LS)]
proj_b = [t32(HT, scale=0.1) for _ in range(LS)]
layer_map = [round((i + 1) * LT / LS) - 1 for i in range(LS)]   # [1, 3]


def feature(distance):
    def fn(*xs):
        hs, ws, bs = xs[:LS], xs[LS:2 * LS], xs[2 * LS:]
        total = 0
        for i, j in enumerate(layer_map):
            p = (hs[i].reshape(N, HS)[mask] @ ws[i].T) + bs[i]
            ht = te_h[j].to(f64).reshape(N, HT)[mask]
            if distance == "mse":
                total = total + ((p - ht) ** 2).mean()
            else:
                cos = (p * ht).sum(-1) / torch.sqrt((p * p).sum(-1) * (ht * ht).sum(-1) + 1e-16)
                total = total + (1 - cos.mean())
        return total / len(layer_map)
    return fn


features = {"student": [enc(x) for x in st_h], "teacher": [enc(x) for x in te_h],
            "weights": [enc(x) for x in proj_w], "biases": [enc(x) for x in proj_b], "map": layer_map, "cases": []}
for distance in ("mse", "cosine"):
    value, gs = grad_of(feature(distance), *st_h, *proj_w, *proj_b)
    features["cases"].append({"distance": distance, "value": value, "grad_student": [enc(g) for g in gs[:LS]],
                              "grad_weights": [enc(g) for g in gs[LS:2 * LS]], "grad_biases": [enc(g) for g in gs[2 * LS:]]})

# ---------------------------------------------------------------- attention transfer
Q = 4
causal = torch.triu(torch.ones(Q, Q, dtype=torch.bool), 1)
att_mask = torch.tensor([True, True, False, True, True, False, True, True])   # over B·Q query rows


def causal_softmax(scores):
    return F.softmax(scores.masked_fill(causal, float("-inf")), -1)


st_scores = t32(B, 2, Q, Q, scale=1.5)
# Teacher heads with clearly different sharpness (distinct entropies).
te_scores4 = t32(B, 4, Q, Q) * torch.tensor([1.0, 4.0, 0.5, 2.5]).view(1, 4, 1, 1)
te_probs4 = causal_softmax(te_scores4.to(f64)).float()
te_scores3 = t32(B, 3, Q, Q, scale=2.0)
te_probs3 = causal_softmax(te_scores3.to(f64)).float()


def head_entropy(p):
    p = p.to(f64)
    ent = -(torch.where(p > 0, p * p.clamp_min(1e-300).log(), torch.zeros_like(p))).sum(-1)   # (B, H, Q)
    ent = ent.permute(0, 2, 1).reshape(B * Q, -1)[att_mask]                                     # (count, H)
    return ent.mean(0)


def attention(teacher_probs, distance, topk=None):
    t = teacher_probs.to(f64)
    heads = None
    if topk is not None:
        e = head_entropy(teacher_probs)
        heads = sorted(sorted(range(len(e)), key=lambda h: (float(e[h]), h))[:topk])
        t = t[:, heads]
    hs = 2

    def fn(scores):
        s = causal_softmax(scores)
        tt = t
        if tt.shape[1] != hs and tt.shape[1] % hs == 0:
            tt = tt.reshape(B, hs, tt.shape[1] // hs, Q, Q).mean(2)
        elif tt.shape[1] != hs:
            tt = tt.mean(1, keepdim=True)
        if tt.shape[1] != hs:
            s = s.mean(1, keepdim=True)
        h = s.shape[1]
        sr = s.permute(0, 2, 1, 3).reshape(B * Q, h, Q)[att_mask].reshape(-1, Q)
        tr = tt.permute(0, 2, 1, 3).reshape(B * Q, h, Q)[att_mask].reshape(-1, Q)
        if distance == "kl":
            pos = tr > 0
            term = torch.where(pos, tr * (tr.clamp_min(1e-300).log() - torch.where(pos, sr, torch.ones_like(sr)).log()),
                               torch.zeros_like(tr))
            return term.sum() / tr.shape[0]
        cos = (sr * tr).sum(-1) / torch.sqrt((sr * sr).sum(-1) * (tr * tr).sum(-1) + 1e-16)
        return 1 - cos.mean()
    value, (g,) = grad_of(fn, st_scores)
    return value, g, heads


attn = {"student_scores": enc(st_scores), "teacher4": enc(te_probs4), "teacher3": enc(te_probs3),
        "mask": att_mask.tolist(), "entropies4": [float(x) for x in head_entropy(te_probs4)], "cases": []}
for teacher_name, tp in (("teacher4", te_probs4), ("teacher3", te_probs3)):
    for distance in ("kl", "cosine"):
        for topk in (None, 2) if teacher_name == "teacher4" else (None,):
            value, g, heads = attention(tp, distance, topk)
            attn["cases"].append({"teacher": teacher_name, "distance": distance, "topk": topk, "heads": heads,
                                  "value": value, "grad": enc(g)})

out = {"student": enc(student), "teacher": enc(teacher), "targets": targets, "mask_rows": rows, "cases": cases,
       "sparse": sparse, "fused": fused_fixture, "feature": features, "attention": attn,
       "note": "float32 inputs, float64 references; torch " + torch.__version__ + "; TRL JSD convention at commit f2cd577"}
with open(sys.argv[1], "w") as f:
    json.dump(out, f)
print("wrote", sys.argv[1])
