#!/usr/bin/env python3
"""Writes tests/data/qwen-tiktoken-expected.json: the Qwen vocabulary's token ids for every string of
tests/data/qwen-corpus.json, computed by tiktoken (an independent BPE implementation, rank-based over bytes) from
the qwen.tiktoken ranks and split pattern shipped in the PyPI package `dashscope`.

Qwen2/Qwen2.5/DeepSeek-R1-Distill-Qwen give their 151,643 ordinary tokens the ids tiktoken calls ranks, so the
ids compare directly with hearth's tokenizer built from the DeepSeek-R1-Distill-Qwen GGUF.

dashscope's own `encode` puts the text in NFC first; this script deliberately does not (encode_ordinary on the raw
text), because hearth's `deepseek-r1-qwen` pre-tokenizer, like llama.cpp, does not normalize. The `qwen2`
pre-tokenizer does (see scripts/hf_tokenizers_reference.py).

Usage: pip install tiktoken && python3 scripts/qwen_tiktoken_reference.py
"""
import base64
import json
import pathlib
import re
import subprocess
import sys
import tempfile
import zipfile

import tiktoken

HERE = pathlib.Path(__file__).resolve().parent.parent
CORPUS = HERE / "tests/data/qwen-corpus.json"
OUT = HERE / "tests/data/qwen-tiktoken-expected.json"


def dashscope_files():
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, "dashscope==2.0.2"],
            check=True,
        )
        whl = next(pathlib.Path(tmp).glob("dashscope-*.whl"))
        with zipfile.ZipFile(whl) as z:
            ranks_text = z.read("dashscope/resources/qwen.tiktoken").decode()
            tokenizer_py = z.read("dashscope/tokenizers/qwen_tokenizer.py").decode()
    return ranks_text, tokenizer_py


def main():
    ranks_text, tokenizer_py = dashscope_files()
    ranks = {}
    for line in ranks_text.splitlines():
        if line:
            tok, rank = line.split()
            ranks[base64.b64decode(tok)] = int(rank)
    pat = re.search(r'PAT_STR = r"""(.*?)"""', tokenizer_py).group(1)
    enc = tiktoken.Encoding("qwen", pat_str=pat, mergeable_ranks=ranks, special_tokens={})
    corpus = json.loads(CORPUS.read_text())
    cases = [{"text": t, "ids": enc.encode_ordinary(t)} for t in corpus]
    made_by = f"tiktoken {tiktoken.__version__}, dashscope 2.0.2 qwen.tiktoken + PAT_STR"
    lines = [json.dumps(c, ensure_ascii=False) for c in cases]
    OUT.write_text(
        "{\n"
        f' "made_by": {json.dumps(made_by)},\n'
        f' "pattern": {json.dumps(pat)},\n'
        ' "cases": [\n  ' + ",\n  ".join(lines) + "\n ]\n}\n"
    )
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
