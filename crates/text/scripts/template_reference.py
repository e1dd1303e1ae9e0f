#!/usr/bin/env python3
"""Writes tests/data/template-expected.json: chat templates from real GGUF files rendered by Python Jinja2 the way
HF transformers renders them (sandboxed, trim_blocks, lstrip_blocks, loop controls, raise_exception,
json.dumps-style tojson). Inputs: SmolLM2's GGUF and the DeepSeek-R1-Distill-Qwen header
(scripts/fetch-deepseek-header.sh).

Usage: python3 scripts/template_reference.py   (needs jinja2)
"""
import json
import os
import pathlib
import subprocess
import sys

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from gguf_meta import read_meta  # noqa: E402

OUT = HERE.parent / "tests/data/template-expected.json"

CONVERSATIONS = {
    "system_user": [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "What is 2+2?"},
    ],
    "user_only": [{"role": "user", "content": "Hello there"}],
    "multi_turn": [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Hi! <b>bold</b> & \"quotes\""},
        {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nHello, how can I help?"},
        {"role": "user", "content": "Tell me a joke about 日本 🚀"},
    ],
}


def render(source, bos, eos, messages, add_generation_prompt):
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env.from_string(source).render(
        messages=messages, add_generation_prompt=add_generation_prompt, bos_token=bos, eos_token=eos)


def main():
    home = pathlib.Path(os.environ.get("HEARTH_HOME", pathlib.Path.home() / ".cache/hearth"))
    deepseek = subprocess.run(["bash", str(HERE / "fetch-deepseek-header.sh")], check=True,
                              capture_output=True, text=True).stdout.strip()
    models = {"smollm2-135m": home / "models/smollm2-135m.gguf", "deepseek-r1-distill-qwen-7b": deepseek}
    cases = []
    for name, path in models.items():
        meta = read_meta(path)
        tokens = meta["tokenizer.ggml.tokens"]
        bos = tokens[meta["tokenizer.ggml.bos_token_id"]]
        eos = tokens[meta["tokenizer.ggml.eos_token_id"]]
        for conv, messages in CONVERSATIONS.items():
            for agp in (True, False):
                cases.append({"model": name, "conversation": conv, "add_generation_prompt": agp,
                              "bos_token": bos, "eos_token": eos,
                              "rendered": render(meta["tokenizer.chat_template"], bos, eos, messages, agp)})
    OUT.write_text(json.dumps({"made_by": f"jinja2 {jinja2.__version__}", "conversations": CONVERSATIONS,
                               "cases": cases}, ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
