#!/usr/bin/env python3
"""Checks the tokenizer files Distill writes for a model that came without them (a GGUF).

Writes SOURCE (a .gguf) as a Hugging Face directory with `distill convert` (or takes an already
written directory), loads it with `transformers.AutoTokenizer.from_pretrained`, and compares the ids
of a varied set of texts (unicode, spaces, newlines, digits, special tokens, the tokenizer fixture
texts) with `distill tokenize` on the written directory and on the GGUF itself, with and without
the special tokens the tokenizer adds. Also checks that the chat template renders and that
transformers decodes every id list back to its text.

    pip install transformers==4.46.3
    swift build -c release
    python3 scripts/check_tokenizer_json.py .build/models/SmolLM2-135M-Instruct.Q4_1.gguf [--out DIR] [--limit N]

Exit status 0 when every comparison agrees.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TEXTS = [
    " ", "  ", "\n", "\t\t x", "Hello, world!", "  leading and trailing spaces   ",
    "line one\nline two\r\nline three\n\n\n", "tabs\tand\u000bvertical\u000cfeeds",
    "12345 678 9 0.5 3,141,592 1e10 ٣٤٥ ௧௨", "I'm you're they've he'll she'd it's IT'S don'ſ",
    "café cafe\u0301 naïve Ångström", "日本語のテキスト、中文文本。한국어", "emoji 😀👍🏽 👨‍👩‍👧‍👦 flags 🇫🇷",
    "مرحبا بالعالم", "Привет, мир!", "x²+y³=z⁴ ½ ⅓", "ﬁnance ﬀ", "\u00a0nbsp\u2003em\u3000ideographic",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>",
    "text<|endoftext|>more", "<|im_start|><|im_start|>", "<|im_end", "<filename>a.py<file_sep>",
    "def f(x):\n    return x ** 2  # comment\n", "{\"key\": [1, 2, 3], \"s\": \"\\n\"}",
    "https://example.com/path?q=1&r=2#frag", "____----====", "a" * 300, "🙂" * 40, "mixed123abc456DEF",
    "\u0301combining first", "\ufeffbom", "-starts with a dash", "--also",
]


def distill_ids(distill, model, text, special):
    # "--text=VALUE" for values that look like options; "--text VALUE" otherwise (swift-argument-parser
    # splits at "=" by Character, so a combining mark right after it would hide the "=")
    value = [f"--text={text}"] if text.startswith("-") else ["--text", text]
    cmd = [distill, "tokenize", "--model", model] + value + ([] if special else ["--no-special-tokens"])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", help="a .gguf file (converted with distill convert) or a directory Distill wrote")
    ap.add_argument("--out", help="where to write the converted directory (default: a temporary one)")
    ap.add_argument("--distill", default=os.path.join(ROOT, ".build", "release", "distill"))
    ap.add_argument("--limit", type=int, default=60, help="fixture texts to add to the built-in ones")
    args = ap.parse_args()

    from transformers import AutoTokenizer
    import transformers

    gguf = args.source if args.source.lower().endswith(".gguf") else None
    tmp = None
    if gguf:
        out = args.out or (tmp := tempfile.mkdtemp(prefix="distill-tok-"))
        subprocess.run([args.distill, "convert", gguf, "--out", out, "--dtype", "bf16"], check=True)
    else:
        out = args.source
    print("files:", sorted(f for f in os.listdir(out) if "token" in f))

    tok = AutoTokenizer.from_pretrained(out)
    print(f"transformers {transformers.__version__}: {type(tok).__name__}, {len(tok)} tokens, "
          f"bos {tok.bos_token!r} eos {tok.eos_token!r} pad {tok.pad_token!r} unk {tok.unk_token!r}")

    texts = list(TEXTS)
    cases = os.path.join(ROOT, "Tests/DistillModelsTests/Fixtures/tokenizer/smollm2_cases.json")
    if os.path.exists(cases):
        with open(cases) as f:
            texts += [c["text"] for c in json.load(f)["cases"]][: args.limit]
    texts = [t for t in texts if "\0" not in t]

    failures = 0
    compared = 0
    for text in texts:
        for special in (True, False):
            hf = tok.encode(text, add_special_tokens=special)
            sources = {"written dir": out}
            if gguf:
                sources["gguf"] = gguf
            for label, model in sources.items():
                ours = distill_ids(args.distill, model, text, special)
                compared += 1
                if ours != hf:
                    failures += 1
                    if failures <= 10:
                        print(f"DIFF ({label}, special={special}) {text!r}:\n  distill      {ours}\n  transformers {hf}")
        ids = tok.encode(text, add_special_tokens=False)
        if tok.decode(ids) != text:
            failures += 1
            print(f"DECODE {text!r} -> {tok.decode(ids)!r}")

    if tok.chat_template:
        rendered = tok.apply_chat_template([{"role": "user", "content": "What is 2+2?"}], tokenize=False, add_generation_prompt=True)
        ours = distill_ids(args.distill, out, rendered, False)
        if ours != tok.encode(rendered, add_special_tokens=False):
            failures += 1
            print("DIFF on the rendered chat template")
        print(f"chat template renders: {rendered!r}")
    else:
        print("no chat template")

    print(f"{len(texts)} texts, {compared} id comparisons with distill tokenize: {failures} differences")
    if tmp:
        import shutil
        shutil.rmtree(tmp)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
