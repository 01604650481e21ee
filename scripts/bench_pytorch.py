"""The reference training workloads of `distill bench train` in PyTorch + transformers, for a
side-by-side comparison on the same machine.

    pip install torch==2.5.1 transformers==4.46.3
    python3 scripts/bench_pytorch.py --preset kd-reference [--steps 5] [--threads 2] [--teacher-dtype bf16] [--json]

kd-reference: teacher Qwen2 (512, 8 layers, 8 heads, 2 KV heads, 1408), student Qwen2 (256, 4,
4, 2, 704), vocabulary 8192, tied embeddings, batch 8 x 256 random ids; teacher forward under
no_grad; 0.5 * KL(tau=2, tau^2-scaled) + 0.5 * next-token cross-entropy; backward; AdamW.
sft-reference: the student alone with cross-entropy. Step time: median of --steps steps after
one warm-up step. Peak resident memory from getrusage.

PyTorch at its best for this workload: each attention implementation (eager, sdpa) and, for the
teacher, torch.no_grad() and torch.inference_mode() are measured, and the fastest combination is
the result (all are printed with --json under "variants"; "best" names the winner). Each variant
runs in a process of its own, so the peak resident memory reported is the winner's alone.

--teacher-dtype bf16 (kd-reference): the teacher in bfloat16, as `distill bench train --teacher-dtype
bf16`, two ways, both measured: its weights converted to bfloat16 (`teacher.to(torch.bfloat16)`,
every op of its forward in bfloat16; the logits returned to float32 for the loss) and its float32
weights under `torch.autocast("cpu", dtype=torch.bfloat16)`. PyTorch multiplies bfloat16 with
oneDNN, on AVX512_BF16 where the CPU has it. The student stays float32.
"""
import argparse
import contextlib
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from transformers import Qwen2Config, Qwen2ForCausalLM

VOCAB, BATCH, LENGTH = 8192, 8, 256


def config(hidden, layers, heads, kv, inter, attention):
    return Qwen2Config(vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                       num_key_value_heads=kv, intermediate_size=inter, tie_word_embeddings=True,
                       max_position_embeddings=LENGTH, rms_norm_eps=1e-6, rope_theta=10000.0,
                       attn_implementation=attention)


def measure(preset, steps, seed, attention, teacher_mode, teacher_dtype="f32"):
    """Median step time of one variant (after one warm-up step). teacher_dtype: f32, bf16 (weights
    in bfloat16) or autocast (float32 weights under bfloat16 autocast)."""
    torch.manual_seed(seed)
    student = Qwen2ForCausalLM(config(256, 4, 4, 2, 704, attention)).train()
    teacher = Qwen2ForCausalLM(config(512, 8, 8, 2, 1408, attention)).eval() if preset == "kd-reference" else None
    if teacher is not None and teacher_dtype == "bf16":
        teacher = teacher.to(torch.bfloat16)
    opt = torch.optim.AdamW(student.parameters(), lr=1e-4, weight_decay=0.01)
    tau, alpha = 2.0, 0.5
    frozen = torch.inference_mode if teacher_mode == "inference_mode" else torch.no_grad
    cast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if teacher_dtype == "autocast" else contextlib.nullcontext
    times = []
    for i in range(steps + 1):
        ids = torch.randint(0, VOCAB, (BATCH, LENGTH))
        t0 = time.perf_counter()
        if teacher is not None:
            with frozen(), cast():
                t_logits = teacher(input_ids=ids).logits[:, :-1].reshape(-1, VOCAB).float()
            t_logits = t_logits.clone() if teacher_mode == "inference_mode" else t_logits
        logits = student(input_ids=ids).logits[:, :-1].reshape(-1, VOCAB)
        labels = ids[:, 1:].reshape(-1)
        ce = F.cross_entropy(logits, labels)
        if teacher is not None:
            kl = F.kl_div(F.log_softmax(logits / tau, -1), F.log_softmax(t_logits / tau, -1), log_target=True,
                          reduction="batchmean") * tau * tau
            loss = alpha * kl + (1 - alpha) * ce
        else:
            loss = ce
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        s = time.perf_counter() - t0
        if i > 0:
            times.append(s)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", choices=["kd-reference", "sft-reference"], required=True)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--teacher-dtype", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--variant", help="measure one variant (ATTENTION+MODE[+DTYPE]) in this process and print its JSON")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.variant:
        parts = a.variant.split("+")
        attention, mode, dtype = parts[0], (parts[1:2] or ["none"])[0], (parts[2:3] or ["f32"])[0]
        seconds = measure(a.preset, a.steps, a.seed, attention, mode, dtype)
        print(json.dumps({"step_seconds": seconds, "peak_resident_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
        return
    # Each variant in a process of its own, so that its peak memory is its own.
    modes = ["no_grad", "inference_mode"] if a.preset == "kd-reference" else ["none"]
    dtypes = ["bf16", "autocast"] if a.preset == "kd-reference" and a.teacher_dtype == "bf16" else ["f32"]
    results = {}
    for attention, mode, dtype in [(x, m, d) for x in ["eager", "sdpa"] for m in modes for d in dtypes]:
        name = f"{attention}+{mode}" if mode != "none" else attention
        name += f"+{dtype}" if dtype != "f32" else ""
        run = subprocess.run([sys.executable, __file__, "--preset", a.preset, "--steps", str(a.steps), "--threads",
                              str(a.threads), "--seed", str(a.seed), "--variant", name],
                             check=True, capture_output=True, text=True)
        results[name] = json.loads(run.stdout.strip().splitlines()[-1])
    variants = {k: v["step_seconds"] for k, v in results.items()}
    best = min(variants, key=variants.get)
    median = variants[best]
    out = {"preset": a.preset, "steps": a.steps, "step_seconds": median, "tokens_per_second": BATCH * LENGTH / median,
           "threads": a.threads, "teacher_dtype": a.teacher_dtype if a.preset == "kd-reference" else None, "torch": torch.__version__, "best": best, "variants": variants,
           "peak_resident_bytes": results[best]["peak_resident_bytes"]}
    if a.json:
        print(json.dumps(out))
    else:
        for k, v in variants.items():
            print(f"  {k}: {v:.3f} s/step")
        print(f"{a.preset}: {median:.3f} s/step ({best}), {out['tokens_per_second']:.0f} tokens/s "
              f"(torch {torch.__version__}, {a.threads} threads)")


if __name__ == "__main__":
    main()
