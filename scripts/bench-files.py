#!/usr/bin/env python3
"""Writes real-size GGUF benchmark files: the exact tensor shapes of real models, random weights.

Speed depends on shapes and formats, not on values, so these files stand in for models we cannot download: every
tensor has the shape (and the metadata the shape the architecture's hyperparameters) of the named model, and its
blocks hold random quants under finite, realistically sized scales (weights of magnitude ~0.02-0.05, norms near 1).
The files are written with the `gguf` package from PyPI (llama.cpp's own Python writer, independent of hearth's),
with a stand-in SentencePiece vocabulary of the model's size, so both hearth and llama.cpp load them.

    pip install gguf numpy
    scripts/bench-files.py smollm2-1.7b q4_k                    # -> ~/.cache/hearth/bench/smollm2-1.7b-q4_k.gguf
    scripts/bench-files.py qwen3-30b-a3b q4_k --layers 8        # Qwen3-30B-A3B's layers, 8 of its 48
    scripts/bench-files.py --list

Formats: q4_0, q8_0, q4_k, q6_k (every matrix in that format, the output matrix too) and q4_k_m (llama.cpp's
Q4_K_M rules: Q6_K for the output matrix and for attn_v / ffn_down in the first and last eighth of the layers and
every third layer between, Q4_K elsewhere). K-quant matrices whose rows are not a multiple of 256 fall back as
llama-quantize does (Q4_K -> Q5_0, Q6_K -> Q8_0). Norms, the router and 1-D tensors are F32.
The file is written to a temporary name and renamed when complete.
"""

import argparse
import os
import sys
from pathlib import Path

import numpy as np

try:
    import gguf
    from gguf import GGMLQuantizationType as Q
except ImportError:
    sys.exit("needs the gguf package: pip install gguf")

# Shapes of real models (from their Hugging Face config.json). head_dim defaults to n_embd / n_head.
MODELS = {
    # HuggingFaceTB/SmolLM2-1.7B: llama, tied embeddings.
    "smollm2-1.7b": dict(arch="llama", n_embd=2048, n_layer=24, n_head=32, n_head_kv=32, n_ff=8192,
                         n_vocab=49152, rope_base=130000.0, n_ctx=8192, eps=1e-5, tied=True),
    # meta-llama/Llama-3.2-3B: llama, GQA 24/8, head_dim 128, tied embeddings (llama3 rope scaling left out).
    "llama3.2-3b": dict(arch="llama", n_embd=3072, n_layer=28, n_head=24, n_head_kv=8, n_ff=8192,
                        n_vocab=128256, rope_base=500000.0, n_ctx=8192, eps=1e-5, tied=True),
    # Qwen/Qwen3-30B-A3B: qwen3moe, 48 layers of 128 experts (8 active) of width 768, q/k norms, head_dim 128.
    "qwen3-30b-a3b": dict(arch="qwen3moe", n_embd=2048, n_layer=48, n_head=32, n_head_kv=4, head_dim=128,
                          n_ff=6144, n_vocab=151936, rope_base=1000000.0, n_ctx=8192, eps=1e-6, tied=False,
                          n_expert=128, n_expert_used=8, n_ff_exp=768),
    # deepseek-ai/DeepSeek-V2-Lite: deepseek2, multi-head latent attention (kv rank 512, no q rank), 64 routed
    # experts (6 active) of width 1408 plus 2 shared, the first layer dense (10944).
    "deepseek-v2-lite": dict(arch="deepseek2", n_embd=2048, n_layer=27, n_head=16, n_head_kv=16, n_ff=10944,
                             n_vocab=102400, rope_base=10000.0, n_ctx=8192, eps=1e-6, tied=False,
                             n_expert=64, n_expert_used=6, n_ff_exp=1408, n_shared=2, n_dense=1,
                             kv_rank=512, nope=128, rope_dim=64, v_dim=128),
}

FORMATS = ["q4_0", "q8_0", "q4_k", "q6_k", "q4_k_m"]
QK_K = 256


def blocks(rng, dtype, n_blocks, scale):
    """`n_blocks` random blocks of `dtype` whose dequantized values are of magnitude ~`scale`: (n_blocks, bytes)."""
    size = gguf.GGML_QUANT_SIZES[dtype][1]
    b = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)

    def f16(lo, hi):  # random f16 scales in [lo, hi), as 2 bytes per block
        return rng.uniform(lo, hi, size=n_blocks).astype(np.float16).view(np.uint8).reshape(n_blocks, 2)

    if dtype == Q.Q4_0:  # d, 16 bytes of nibbles: x = d (q - 8)
        b[:, 0:2] = f16(0.8 * scale / 8, 1.2 * scale / 8)
    elif dtype == Q.Q5_0:  # d, 4 bytes high bits, 16 bytes nibbles: x = d (q - 16)
        b[:, 0:2] = f16(0.8 * scale / 16, 1.2 * scale / 16)
    elif dtype == Q.Q8_0:  # d, 32 int8: x = d q
        b[:, 0:2] = f16(0.8 * scale / 127, 1.2 * scale / 127)
    elif dtype == Q.Q4_K:  # d, dmin, 12 bytes of 6-bit (scale, min) pairs, 128 bytes nibbles: x = d sc q - dmin m
        b[:, 0:2] = f16(0.8 * 2 * scale / (15 * 63), 1.2 * 2 * scale / (15 * 63))
        b[:, 2:4] = f16(0.8 * scale / 63, 1.2 * scale / 63)
    elif dtype == Q.Q6_K:  # 128 low nibbles, 64 high bit pairs, 16 int8 scales, d: x = d sc (q - 32)
        b[:, 192:208] = rng.integers(64, 128, size=(n_blocks, 16), dtype=np.uint8)
        b[:, 208:210] = f16(0.8 * scale / (32 * 96), 1.2 * scale / (32 * 96))
    else:
        raise ValueError(f"no block writer for {dtype.name}")
    return b


def matrix_type(fmt, name, layer, n_layer, cols):
    """The quantization of a matrix `name` (its GGUF base name) in layer `layer` (None outside layers)."""
    if fmt == "q4_k_m":
        # llama.cpp's use_more_bits: the first and last eighth of the layers and every third one between.
        more = layer is not None and (layer < n_layer // 8 or layer >= 7 * n_layer // 8
                                      or (layer - n_layer // 8) % 3 == 2)
        if name == "output" or (more and name in ("attn_v", "ffn_down", "ffn_down_exps", "attn_kv_b",
                                                   "ffn_down_shexp")):
            t = Q.Q6_K
        else:
            t = Q.Q4_K
    else:
        t = {"q4_0": Q.Q4_0, "q8_0": Q.Q8_0, "q4_k": Q.Q4_K, "q6_k": Q.Q6_K}[fmt]
    if t in (Q.Q4_K, Q.Q6_K) and cols % QK_K != 0:
        t = Q.Q5_0 if t == Q.Q4_K else Q.Q8_0  # llama-quantize's fallback for rows the K-quants cannot cover
    return t


def tensor_list(m):
    """(name, shape as (rows..., cols), kind) of every tensor, in file order; kind 'norm' or a matrix base name."""
    e, h, hkv = m["n_embd"], m["n_head"], m["n_head_kv"]
    hd = m.get("head_dim", e // h)
    out = [("token_embd.weight", (m["n_vocab"], e), "token_embd")]
    for i in range(m["n_layer"]):
        p = f"blk.{i}."
        out.append((p + "attn_norm.weight", (e,), "norm"))
        if m["arch"] == "deepseek2":
            r, nope, rd, vd = m["kv_rank"], m["nope"], m["rope_dim"], m["v_dim"]
            out += [
                (p + "attn_q.weight", (h * (nope + rd), e), "attn_q"),
                (p + "attn_kv_a_mqa.weight", (r + rd, e), "attn_kv_a_mqa"),
                (p + "attn_kv_a_norm.weight", (r,), "norm"),
                (p + "attn_kv_b.weight", (h * (nope + vd), r), "attn_kv_b"),
                (p + "attn_output.weight", (e, h * vd), "attn_output"),
            ]
        else:
            out += [
                (p + "attn_q.weight", (h * hd, e), "attn_q"),
                (p + "attn_k.weight", (hkv * hd, e), "attn_k"),
                (p + "attn_v.weight", (hkv * hd, e), "attn_v"),
                (p + "attn_output.weight", (e, h * hd), "attn_output"),
            ]
            if m["arch"] == "qwen3moe":
                out += [(p + "attn_q_norm.weight", (hd,), "norm"), (p + "attn_k_norm.weight", (hd,), "norm")]
        out.append((p + "ffn_norm.weight", (e,), "norm"))
        if "n_expert" in m and i >= m.get("n_dense", 0):
            x, f = m["n_expert"], m["n_ff_exp"]
            out += [
                (p + "ffn_gate_inp.weight", (x, e), "router"),
                (p + "ffn_gate_exps.weight", (x, f, e), "ffn_gate_exps"),
                (p + "ffn_up_exps.weight", (x, f, e), "ffn_up_exps"),
                (p + "ffn_down_exps.weight", (x, e, f), "ffn_down_exps"),
            ]
            if m.get("n_shared"):
                fs = m["n_shared"] * f
                out += [
                    (p + "ffn_gate_shexp.weight", (fs, e), "ffn_gate_shexp"),
                    (p + "ffn_up_shexp.weight", (fs, e), "ffn_up_shexp"),
                    (p + "ffn_down_shexp.weight", (e, fs), "ffn_down_shexp"),
                ]
        else:
            f = m["n_ff"]
            out += [
                (p + "ffn_gate.weight", (f, e), "ffn_gate"),
                (p + "ffn_up.weight", (f, e), "ffn_up"),
                (p + "ffn_down.weight", (e, f), "ffn_down"),
            ]
    out.append(("output_norm.weight", (e,), "norm"))
    if not m["tied"]:
        out.append(("output.weight", (m["n_vocab"], e), "output"))
    return out


def metadata(w, m, name):
    a = m["arch"]
    e, h = m["n_embd"], m["n_head"]
    w.add_name(name)
    w.add_string("general.description", "random weights in the tensor shapes of the named model (scripts/bench-files.py)")
    w.add_context_length(m["n_ctx"])
    w.add_embedding_length(e)
    w.add_block_count(m["n_layer"])
    w.add_feed_forward_length(m["n_ff"])
    w.add_head_count(h)
    w.add_head_count_kv(m["n_head_kv"])
    w.add_rope_freq_base(m["rope_base"])
    w.add_layer_norm_rms_eps(m["eps"])
    w.add_vocab_size(m["n_vocab"])
    hd = m.get("head_dim", e // h)
    if a == "deepseek2":
        w.add_uint32(f"{a}.leading_dense_block_count", m["n_dense"])
        w.add_kv_lora_rank(m["kv_rank"])
        w.add_key_length(m["nope"] + m["rope_dim"])
        w.add_value_length(m["v_dim"])
        w.add_rope_dimension_count(m["rope_dim"])
        w.add_expert_shared_count(m["n_shared"])
        w.add_expert_weights_scale(1.0)
        w.add_bool(f"{a}.expert_weights_norm", False)
        w.add_uint32(f"{a}.expert_gating_func", 1)  # softmax
    else:
        w.add_rope_dimension_count(hd)
        if "head_dim" in m:
            w.add_key_length(hd)
            w.add_value_length(hd)
    if "n_expert" in m:
        w.add_expert_count(m["n_expert"])
        w.add_expert_used_count(m["n_expert_used"])
        w.add_expert_feed_forward_length(m["n_ff_exp"])
    # A stand-in SentencePiece vocabulary: <unk> <s> </s>, the 256 byte tokens, then distinct filler pieces.
    n = m["n_vocab"]
    toks = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    toks += [f"\u2581t{i}" for i in range(n - len(toks))]
    types = [2, 3, 3] + [6] * 256 + [1] * (n - 259)
    w.add_tokenizer_model("llama")
    w.add_token_list(toks)
    w.add_token_scores([-float(i) for i in range(n)])
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(False)


def write(model, fmt, layers, out_dir, seed):
    m = dict(MODELS[model])
    if layers is not None:
        if not 1 <= layers <= m["n_layer"]:
            sys.exit(f"--layers must be in 1..{m['n_layer']}")
        m["n_layer"] = layers
    name = f"{model}-{fmt}" + (f"-{layers}l" if layers is not None else "")
    path = Path(out_dir).expanduser() / f"{name}.gguf"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".gguf.tmp")
    rng = np.random.default_rng(seed)

    tensors = []
    for tname, shape, kind in tensor_list(m):
        cols = shape[-1]
        if kind in ("norm", "router"):
            t = Q.F32
        else:
            layer = int(tname.split(".")[1]) if tname.startswith("blk.") else None
            t = matrix_type(fmt, kind, layer, m["n_layer"], cols)
        block, size = gguf.GGML_QUANT_SIZES[t]
        n_el = int(np.prod(shape))
        tensors.append((tname, shape, kind, t, n_el // block * size))
    total = sum(s for *_, s in tensors)

    w = gguf.GGUFWriter(None, m["arch"])
    metadata(w, m, name)
    for tname, shape, _kind, t, nbytes in tensors:
        if t == Q.F32:
            w.add_tensor_info(tname, shape, np.dtype(np.float32), nbytes)
        else:
            row_bytes = shape[-1] // gguf.GGML_QUANT_SIZES[t][0] * gguf.GGML_QUANT_SIZES[t][1]
            w.add_tensor_info(tname, (*shape[:-1], row_bytes), np.dtype(np.uint8), nbytes, raw_dtype=t)
    w.write_header_to_file(tmp)
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    done = 0
    for tname, shape, kind, t, nbytes in tensors:
        if t == Q.F32:
            if kind == "norm":
                data = rng.uniform(0.9, 1.1, size=shape).astype(np.float32)
            else:  # the router: logits of order 1
                data = rng.normal(0, 0.05, size=shape).astype(np.float32)
        else:
            n_blocks = int(np.prod(shape)) // gguf.GGML_QUANT_SIZES[t][0]
            scale = 0.05 if kind in ("token_embd", "output") else 0.03
            # Generated a slice at a time (the random integers are 8x the block bytes while drawn).
            step = max(1, (64 << 20) // gguf.GGML_QUANT_SIZES[t][1])
            parts = [blocks(rng, t, min(step, n_blocks - i), scale) for i in range(0, n_blocks, step)]
            data = np.concatenate(parts) if len(parts) > 1 else parts[0]
        w.write_tensor_data(data)
        done += nbytes
        if done * 20 // total != (done - nbytes) * 20 // total:
            print(f"\r{name}: {done / 2**20:6.0f} / {total / 2**20:.0f} MiB", end="", file=sys.stderr)
    w.close()
    print(file=sys.stderr)
    check(tmp, tensors)
    os.replace(tmp, path)
    print(path)


def check(path, tensors):
    """Reads the file back with gguf's reader: every tensor's type and shape, and a dequantized sample finite."""
    r = gguf.GGUFReader(path)
    got = {t.name: t for t in r.tensors}
    for tname, shape, _kind, t, _n in tensors:
        rt = got[tname]
        assert rt.tensor_type == t and tuple(int(d) for d in reversed(rt.shape)) == tuple(shape), tname
    for rt in r.tensors[:40]:
        rows = rt.data.reshape(-1, rt.data.shape[-1])[:4]
        x = gguf.quants.dequantize(rows, rt.tensor_type)
        assert np.isfinite(x).all() and 0 < np.abs(x).max() < 4, rt.name


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", choices=sorted(MODELS))
    ap.add_argument("format", nargs="?", choices=FORMATS)
    ap.add_argument("--layers", type=int, help="keep only the first N layers (same shapes)")
    ap.add_argument("--out", default="~/.cache/hearth/bench", help="directory (default ~/.cache/hearth/bench)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--list", action="store_true", help="print each model's tensor bytes per format")
    a = ap.parse_args()
    if a.list:
        for model, m in MODELS.items():
            for fmt in FORMATS:
                n = 0
                for tname, shape, kind, in tensor_list(m):
                    t = Q.F32 if kind in ("norm", "router") else matrix_type(
                        fmt, kind, int(tname.split(".")[1]) if tname.startswith("blk.") else None,
                        m["n_layer"], shape[-1])
                    b, s = gguf.GGML_QUANT_SIZES[t]
                    n += int(np.prod(shape)) // b * s
                print(f"{model:18} {fmt:7} {n / 2**30:6.2f} GiB ({m['n_layer']} layers)")
        return
    if a.model is None or a.format is None:
        ap.error("give a model and a format (or --list)")
    write(a.model, a.format, a.layers, a.out, a.seed)


if __name__ == "__main__":
    main()
