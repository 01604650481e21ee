#!/usr/bin/env python3
"""What rounding a model's matrices to bfloat16 does to its log-probabilities, in transformers.

    python3 scripts/check_bf16_teacher.py MODEL_DIR [--text TEXT]

MODEL_DIR is a Hugging Face directory (for SmolLM2: `distill convert SmolLM2-135M-Instruct.Q4_1.gguf
--out DIR`). Every 2-D parameter is rounded to bfloat16 and back (Float32 arithmetic, as Distill's
`storeMatricesInBFloat16` multiplies); prints the largest differences to the Float32 model of the
text's token log-probs, of any probability, and of any log-probability. QuantizedMatrixTests holds
Distill's bfloat16 SmolLM2 to these figures (torch 2.5.1, transformers 4.46.3: 0.03689, 0.00436,
0.13526 on the default text).
"""
import argparse

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

TEXT = "Knowledge distillation trains a small student to imitate a large teacher, token by token."


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--text", default=TEXT)
    a = ap.parse_args()
    tok = AutoTokenizer.from_pretrained(a.model)
    f32 = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=torch.float32).eval()
    bf16 = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=torch.float32).eval()
    with torch.no_grad():
        for _, p in bf16.named_parameters():
            if p.dim() == 2:
                p.copy_(p.to(torch.bfloat16).to(torch.float32))
        ids = tok(a.text, return_tensors="pt").input_ids
        la = torch.log_softmax(f32(ids).logits[0], -1)
        lb = torch.log_softmax(bf16(ids).logits[0], -1)
    t = ids[0, 1:, None]
    tokens = (la[:-1].gather(1, t) - lb[:-1].gather(1, t)).abs().max().item()
    print(f"token log-probs {tokens:.5f}, probabilities {(la.exp() - lb.exp()).abs().max().item():.5f}, "
          f"any log-prob {(la - lb).abs().max().item():.5f}")


if __name__ == "__main__":
    main()
