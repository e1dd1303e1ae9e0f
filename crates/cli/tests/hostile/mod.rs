//! The hostile GGUF corpus: seeded, generated at test time (no binaries in the repository). Each [`Case`] is one
//! file and what hearth must do with it: the reader accepts or refuses it, and loading plus one decode step either
//! runs or fails with an error that says why. Never a panic, an abort, a hang or a wild allocation.
//!
//! Families: truncations at every structure; huge and wrapping counts and lengths; offsets past the end,
//! overlapping and misaligned tensors; bad alignment; unknown types; duplicate names; bad UTF-8; missing and
//! mis-shaped tensors for each architecture; zero, huge and wrapping hyperparameters; hostile tokenizers and chat
//! templates; non-finite weights; and every matrix format the packer handles at several (odd) shapes.

#![allow(dead_code)]

pub mod gguf;
pub mod models;

use gguf::{File, T, V};
use hearth_kernels::DType;
use models::{base, model, Dims, ARCHS};

/// What hearth must do with a file after reading it.
#[derive(Debug, Clone, PartialEq)]
pub enum Run {
    /// Load, decode one token: success.
    Ok,
    /// A clean error whose message contains this text ("" for any message).
    Err(&'static str),
}

/// How a case is run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// `run --raw` (no chat template).
    Raw,
    /// `run PROMPT` through the chat template.
    Chat,
    /// Also compare greedy ids with packing off (`HEARTH_REPACK=0`): the packer must not change results.
    Packed,
}

#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub bytes: Vec<u8>,
    /// Whether the GGUF reader must accept the file.
    pub reader_ok: bool,
    pub run: Run,
    pub mode: Mode,
}

fn case(name: impl Into<String>, f: &File, reader_ok: bool, run: Run) -> Case {
    Case {
        name: name.into(),
        bytes: f.bytes(),
        reader_ok,
        run,
        mode: Mode::Raw,
    }
}

/// A file the reader accepts and the loader refuses with `why`.
fn refused(name: impl Into<String>, f: &File, why: &'static str) -> Case {
    case(name, f, true, Run::Err(why))
}

/// A file the reader refuses (and so does loading).
fn unreadable(name: impl Into<String>, f: &File, why: &'static str) -> Case {
    case(name, f, false, Run::Err(why))
}

/// The whole corpus, the same on every run.
pub fn corpus() -> Vec<Case> {
    let mut c = Vec::new();
    valid_models(&mut c);
    truncations(&mut c);
    header(&mut c);
    metadata(&mut c);
    tensor_index(&mut c);
    per_architecture(&mut c);
    hyperparameters(&mut c);
    tokenizer(&mut c);
    templates(&mut c);
    non_finite(&mut c);
    formats(&mut c);
    c
}

fn valid_models(c: &mut Vec<Case>) {
    for arch in ARCHS {
        c.push(case(format!("valid-{arch}"), &base(arch), true, Run::Ok));
        let mut chat = case(format!("valid-{arch}-chat"), &base(arch), true, Run::Ok);
        chat.mode = Mode::Chat;
        c.push(chat);
    }
}

/// The llama base cut at every structure boundary (header fields, keys, values, tensor entries, data) and one
/// byte before each.
fn truncations(c: &mut Vec<Case>) {
    let (bytes, marks) = base("llama").encode();
    let mut cuts: Vec<usize> = marks
        .iter()
        .flat_map(|&m| [m.saturating_sub(1), m])
        .filter(|&m| m < bytes.len())
        .collect();
    cuts.push(bytes.len() - 1);
    cuts.sort_unstable();
    cuts.dedup();
    for n in cuts {
        c.push(Case {
            name: format!("truncated-at-{n}"),
            bytes: bytes[..n].to_vec(),
            reader_ok: false,
            run: Run::Err(""),
            mode: Mode::Raw,
        });
    }
}

fn header(c: &mut Vec<Case>) {
    let b = base("llama");
    let mut f = b.clone();
    f.magic = *b"GGML";
    c.push(unreadable("bad-magic", &f, "not a GGUF file"));
    for v in [0u32, 1, 4, u32::MAX] {
        let mut f = b.clone();
        f.version = v;
        c.push(unreadable(format!("version-{v}"), &f, "version"));
    }
    let mut f = b.clone();
    f.version = 2;
    c.push(case("version-2", &f, true, Run::Ok));
    for n in [
        u64::MAX,
        1 << 62,
        (1 << 32) + 1,
        1_000_000,
        b.kvs.len() as u64 + 1,
    ] {
        let mut f = b.clone();
        f.n_kv = Some(n);
        c.push(unreadable(format!("kv-count-{n}"), &f, ""));
    }
    for n in [u64::MAX, 1 << 59, 1 << 40, b.tensors.len() as u64 + 1] {
        let mut f = b.clone();
        f.n_tensors = Some(n);
        c.push(unreadable(format!("tensor-count-{n}"), &f, ""));
    }
    // Fewer entries than there are: the rest is read as something else.
    let mut f = b.clone();
    f.n_kv = Some(3);
    c.push(unreadable("kv-count-short", &f, ""));
    let mut f = b.clone();
    f.n_tensors = Some(0);
    c.push(case("tensor-count-zero", &f, true, Run::Err("")));
}

fn metadata(c: &mut Vec<Case>) {
    let b = base("llama");
    // Huge and wrapping string lengths: a key, then a value.
    for n in [u64::MAX, u64::MAX - 7, 1 << 63, 1 << 40] {
        let mut f = b.clone();
        let mut raw = n.to_le_bytes().to_vec();
        raw.extend(b"abc");
        f.kv("x.huge_string", V::Raw(8, raw));
        c.push(unreadable(format!("string-length-{n}"), &f, ""));
    }
    // Arrays: huge counts of every element size, wrapping count × size, nested, unknown element type.
    for (elem, n) in [
        (0u32, u64::MAX),
        (4, 1 << 62),
        (4, (1 << 62) + 1),
        (10, (1 << 61) + 1),
        (8, u64::MAX / 8 + 1),
        (8, 1 << 40),
        (7, 1 << 33),
    ] {
        let mut f = b.clone();
        let mut raw = elem.to_le_bytes().to_vec();
        raw.extend(n.to_le_bytes());
        raw.extend([0u8; 16]);
        f.kv("x.huge_array", V::Raw(9, raw));
        c.push(unreadable(format!("array-{elem}-count-{n}"), &f, ""));
    }
    let mut f = b.clone();
    let mut raw = 9u32.to_le_bytes().to_vec();
    raw.extend(1u64.to_le_bytes());
    f.kv("x.nested", V::Raw(9, raw));
    c.push(unreadable("array-nested", &f, "arrays of arrays"));
    for ty in [13u32, 99, u32::MAX] {
        let mut f = b.clone();
        f.kv("x.unknown", V::Raw(ty, vec![0; 8]));
        c.push(unreadable(
            format!("value-type-{ty}"),
            &f,
            "unknown value type",
        ));
        let mut f = b.clone();
        let mut raw = ty.to_le_bytes().to_vec();
        raw.extend(1u64.to_le_bytes());
        f.kv("x.unknown_elem", V::Raw(9, raw));
        c.push(unreadable(
            format!("array-elem-type-{ty}"),
            &f,
            "unknown value type",
        ));
    }
    let mut f = b.clone();
    f.kv("general.name", V::Str("again".into()));
    c.push(unreadable("duplicate-key", &f, "appears twice"));
    let mut f = b.clone();
    f.kvs.push((vec![0xff, 0xfe, b'k'], V::U32(1)));
    c.push(unreadable("key-bad-utf8", &f, "UTF-8"));
    let mut f = b.clone();
    f.set("general.name", V::Bytes(vec![b'a', 0xc3, 0x28]));
    c.push(unreadable("value-bad-utf8", &f, "UTF-8"));
    // A 4 MiB string value: read, bounded on the terminal, no harm.
    let mut f = b.clone();
    f.set("general.description", V::Str("d".repeat(4 << 20)));
    c.push(case("huge-string-value", &f, true, Run::Ok));
    // Alignment: zero, not a power of two, huge, wrong type; and a valid non-default one.
    for (name, v) in [
        ("zero", V::U32(0)),
        ("three", V::U32(3)),
        ("huge", V::U64(1 << 62)),
        ("string", V::Str("32".into())),
        ("negative", V::I32(-32)),
    ] {
        let mut f = b.clone();
        f.kv("general.alignment", v);
        c.push(unreadable(format!("alignment-{name}"), &f, ""));
    }
    let mut f = b.clone();
    f.kv("general.alignment", V::U32(64));
    f.alignment = 64;
    c.push(case("alignment-64", &f, true, Run::Ok));
    // The same file laid out at 32 but claiming 64: offsets no longer aligned (or data misplaced).
    let mut f = b.clone();
    f.kv("general.alignment", V::U32(64));
    c.push(case("alignment-64-laid-out-32", &f, false, Run::Err("")));
    // A metadata key of the wrong type where a number is needed.
    let mut f = b.clone();
    f.set("llama.block_count", V::Str("2".into()));
    c.push(refused("block-count-string", &f, "type"));
}

fn tensor_index(c: &mut Vec<Case>) {
    let b = base("llama");
    fn first(f: &mut File) -> &mut T {
        &mut f.tensors[1]
    }
    for n_dims in [0usize, 5] {
        let mut f = b.clone();
        first(&mut f).dims = vec![1; n_dims];
        c.push(unreadable(format!("n-dims-{n_dims}"), &f, "dimensions"));
    }
    for (name, dims) in [
        ("zero-dim", vec![0u64, 4]),
        ("huge-dims", vec![1 << 32, 1 << 32]),
        ("wrapping-dims", vec![1 << 63, 2]),
        ("huge-one-dim", vec![u64::MAX]),
    ] {
        let mut f = b.clone();
        first(&mut f).dims = dims;
        c.push(unreadable(format!("tensor-{name}"), &f, "shape"));
    }
    let mut f = b.clone();
    f.tensors[1].ty = DType::Q8_0 as u32; // 40 columns are not whole blocks of 32
    c.push(unreadable("tensor-partial-block", &f, "blocks"));
    for ty in [4u32, 31, 99, u32::MAX] {
        let mut f = b.clone();
        first(&mut f).ty = ty;
        c.push(unreadable(format!("tensor-type-{ty}"), &f, "unknown type"));
    }
    // A type the reader knows but the kernels cannot multiply with.
    let mut f = b.clone();
    let t = f.tensor("blk.0.attn_q.weight").expect("attn_q");
    t.ty = DType::I32 as u32;
    c.push(refused("tensor-type-i32-matrix", &f, "cannot use"));
    for (name, off) in [
        ("past-end", 1u64 << 30),
        ("wrapping", u64::MAX - 31),
        ("misaligned", 8),
    ] {
        let mut f = b.clone();
        f.tensors[3].offset = Some(off);
        c.push(unreadable(format!("offset-{name}"), &f, ""));
    }
    let mut f = b.clone();
    let o = f.tensors[0].offset.unwrap_or(0);
    f.tensors[2].offset = Some(o);
    c.push(unreadable("tensors-overlap", &f, "overlap"));
    let mut f = b.clone();
    let dup = f.tensors[2].clone();
    f.tensors.push(dup);
    c.push(unreadable("tensor-duplicate-name", &f, "appears twice"));
    let mut f = b.clone();
    f.tensors[2].name = vec![b'x', 0xff];
    c.push(unreadable("tensor-name-bad-utf8", &f, "UTF-8"));
    let mut f = b.clone();
    f.tensors[2].name = vec![b'n'; 1 << 16];
    c.push(refused("tensor-name-huge", &f, "no tensor"));
    // An extra, unknown tensor is ignored.
    let mut f = b.clone();
    f.add_tensor("blk.0.unknown.weight", &[4], 0, vec![0; 16]);
    c.push(case("tensor-extra", &f, true, Run::Ok));
}

/// For each architecture: every tensor missing in turn, and every tensor with a wrong shape.
fn per_architecture(c: &mut Vec<Case>) {
    for arch in ARCHS {
        let b = base(arch);
        for t in &b.tensors {
            let name = String::from_utf8(t.name.clone()).expect("ASCII names");
            if !name.starts_with("blk.1.") {
                let mut f = b.clone();
                f.remove_tensor(&name);
                // Optional tensors (biases, q/k and post norms) switch features off; required ones must be named.
                let optional = name.contains(".bias")
                    || name.contains("_q_norm")
                    || name.contains("_k_norm")
                    || name.starts_with("blk.0.post_");
                let run = if optional {
                    Run::Ok
                } else if name == "token_embd.weight" {
                    Run::Err("")
                } else {
                    Run::Err("no tensor")
                };
                c.push(case(format!("{arch}-missing-{name}"), &f, true, run));
            }
            let mut f = b.clone();
            let tt = f.tensor(&name).expect("present");
            // One more row: same type, so the reader is happy; the shape is wrong for the model.
            let rows = tt.dims.get(1).copied().unwrap_or(1);
            let cols = tt.dims[0];
            if tt.dims.len() == 1 {
                tt.dims = vec![cols + 1];
            } else {
                tt.dims[1] = rows + 1;
            }
            // F32: four bytes per element.
            tt.data
                .resize(tt.dims.iter().product::<u64>() as usize * 4, 0);
            c.push(refused(format!("{arch}-misshaped-{name}"), &f, "shape"));
        }
    }
}

fn hyperparameters(c: &mut Vec<Case>) {
    let b = base("llama");
    let k = |s: &str| format!("llama.{s}");
    let mut set = |name: &str, key: String, v: V, run: Run| {
        let mut f = b.clone();
        f.set(&key, v);
        c.push(case(format!("hparam-{name}"), &f, true, run));
    };
    // Counts sized from metadata before tensors are checked (issue items 2 and 3).
    set(
        "block-count-0",
        k("block_count"),
        V::U32(0),
        Run::Err("block_count"),
    );
    set(
        "block-count-2e7",
        k("block_count"),
        V::U32(20_000_000),
        Run::Err("block_count"),
    );
    set(
        "block-count-2^40",
        k("block_count"),
        V::U64(1 << 40),
        Run::Err("block_count"),
    );
    set(
        "block-count-max",
        k("block_count"),
        V::U64(u64::MAX),
        Run::Err("block_count"),
    );
    set(
        "block-count-3",
        k("block_count"),
        V::U32(3),
        Run::Err("no tensor"),
    );
    set(
        "embd-0",
        k("embedding_length"),
        V::U32(0),
        Run::Err("embedding_length"),
    );
    set(
        "embd-huge",
        k("embedding_length"),
        V::U64(1 << 50),
        Run::Err("embedding_length"),
    );
    set(
        "embd-wrong",
        k("embedding_length"),
        V::U32(32),
        Run::Err("shape"),
    );
    set(
        "heads-0",
        k("attention.head_count"),
        V::U32(0),
        Run::Err("head_count"),
    );
    set(
        "heads-huge",
        k("attention.head_count"),
        V::U64(1 << 40),
        Run::Err("head_count"),
    );
    set(
        "kv-heads-0",
        k("attention.head_count_kv"),
        V::U32(0),
        Run::Err("head_count_kv"),
    );
    set(
        "kv-heads-3",
        k("attention.head_count_kv"),
        V::U32(3),
        Run::Err("multiple"),
    );
    set(
        "key-length-0",
        k("attention.key_length"),
        V::U32(0),
        Run::Err("key_length"),
    );
    set(
        "key-length-huge",
        k("attention.key_length"),
        V::U64(1 << 40),
        Run::Err("key_length"),
    );
    // 2^62 + 8: n_head × key_length wraps to 16 on 64 bits.
    set(
        "key-length-wrap",
        k("attention.key_length"),
        V::U64((1 << 62) + 8),
        Run::Err("key_length"),
    );
    set(
        "value-length-0",
        k("attention.value_length"),
        V::U32(0),
        Run::Err("value_length"),
    );
    set(
        "value-length-wrap",
        k("attention.value_length"),
        V::U64((1 << 63) + 10),
        Run::Err("value_length"),
    );
    set(
        "rope-dims-odd",
        k("rope.dimension_count"),
        V::U32(7),
        Run::Err("rope.dimension_count"),
    );
    set(
        "rope-dims-huge",
        k("rope.dimension_count"),
        V::U64(1 << 40),
        Run::Err("rope.dimension_count"),
    );
    set("rope-dims-0", k("rope.dimension_count"), V::U32(0), Run::Ok);
    set(
        "ff-0",
        k("feed_forward_length"),
        V::U32(0),
        Run::Err("feed_forward_length"),
    );
    set(
        "ff-huge",
        k("feed_forward_length"),
        V::U64(u64::MAX),
        Run::Err("feed_forward_length"),
    );
    set("context-0", k("context_length"), V::U32(0), Run::Err(""));
    set(
        "context-huge",
        k("context_length"),
        V::U64(u64::MAX),
        Run::Ok,
    );
    set(
        "vocab-size-huge",
        k("vocab_size"),
        V::U64(1 << 60),
        Run::Err("vocabulary"),
    );
    set(
        "vocab-size-wrong",
        k("vocab_size"),
        V::U32(100),
        Run::Err("shape"),
    );
    set(
        "eps-nan",
        k("attention.layer_norm_rms_epsilon"),
        V::F32(f32::NAN),
        Run::Err("epsilon"),
    );
    set(
        "eps-negative",
        k("attention.layer_norm_rms_epsilon"),
        V::F32(-1.0),
        Run::Err("epsilon"),
    );
    set(
        "rope-base-0",
        k("rope.freq_base"),
        V::F32(0.0),
        Run::Err("freq_base"),
    );
    set(
        "rope-base-inf",
        k("rope.freq_base"),
        V::F32(f32::INFINITY),
        Run::Err("freq_base"),
    );
    set(
        "rope-scaling-unknown",
        k("rope.scaling.type"),
        V::Str("warp".into()),
        Run::Err("not supported"),
    );
    set(
        "rope-scaling-factor-0",
        k("rope.scaling.factor"),
        V::F32(0.0),
        Run::Err("factor"),
    );
    set(
        "softcap-0",
        k("final_logit_softcapping"),
        V::F32(0.0),
        Run::Err("softcapping"),
    );
    set(
        "softcap-nan",
        k("final_logit_softcapping"),
        V::F32(f32::NAN),
        Run::Err("softcapping"),
    );
    // Gemma 3: a sliding window of 0 (issue item 3).
    let mut f = base("gemma3");
    f.set("gemma3.attention.sliding_window", V::U32(0));
    c.push(refused("gemma3-sliding-window-0", &f, "sliding_window"));
    let mut f = base("gemma3");
    f.set("gemma3.attention.sliding_window", V::U64(u64::MAX));
    c.push(case("gemma3-sliding-window-huge", &f, true, Run::Ok));
    // Experts.
    let mk = |key: &str, v: V| {
        let mut f = base("qwen3moe");
        f.set(&format!("qwen3moe.{key}"), v);
        f
    };
    c.push(refused(
        "moe-experts-huge",
        &mk("expert_count", V::U64(1 << 40)),
        "expert_count",
    ));
    c.push(refused(
        "moe-used-0",
        &mk("expert_used_count", V::U32(0)),
        "experts",
    ));
    c.push(refused(
        "moe-used-more",
        &mk("expert_used_count", V::U32(5)),
        "experts",
    ));
    c.push(refused(
        "moe-groups-huge",
        &mk("expert_group_count", V::U64(1 << 40)),
        "experts",
    ));
    c.push(refused(
        "moe-group-used-wrap",
        &mk("expert_group_used_count", V::U64(u64::MAX)),
        "experts",
    ));
    c.push(refused(
        "moe-ff-huge",
        &mk("expert_feed_forward_length", V::U64(1 << 45)),
        "expert_feed_forward_length",
    ));
    c.push(refused(
        "moe-gating-9",
        &mk("expert_gating_func", V::U32(9)),
        "gating",
    ));
    c.push(refused(
        "moe-shared-huge",
        &mk("expert_shared_count", V::U64(1 << 62)),
        "expert_shared_count",
    ));
    // Latent attention.
    let mk = |key: &str, v: V| {
        let mut f = base("deepseek2");
        f.set(&format!("deepseek2.{key}"), v);
        f
    };
    c.push(refused(
        "mla-rank-0",
        &mk("attention.kv_lora_rank", V::U32(0)),
        "kv_lora_rank",
    ));
    c.push(refused(
        "mla-rank-huge",
        &mk("attention.kv_lora_rank", V::U64(1 << 62)),
        "kv_lora_rank",
    ));
    c.push(refused(
        "mla-rope-too-big",
        &mk("rope.dimension_count", V::U32(40)),
        "rope",
    ));
    c.push(refused(
        "mla-key-mla-huge",
        &mk("attention.key_length_mla", V::U64(u64::MAX)),
        "key_length_mla",
    ));
}

fn tokenizer(c: &mut Vec<Case>) {
    let b = base("llama");
    let mut with = |name: &str, key: &str, v: Option<V>, why: &'static str| {
        let mut f = b.clone();
        match v {
            Some(v) => f.set(key, v),
            None => f.remove_kv(key),
        };
        let run = if why == "ok" { Run::Ok } else { Run::Err(why) };
        c.push(case(format!("tokenizer-{name}"), &f, true, run));
    };
    with(
        "no-model",
        "tokenizer.ggml.model",
        None,
        "tokenizer.ggml.model",
    );
    with(
        "model-t5",
        "tokenizer.ggml.model",
        Some(V::Str("t5".into())),
        "not supported",
    );
    with("no-tokens", "tokenizer.ggml.tokens", None, "");
    with(
        "tokens-ints",
        "tokenizer.ggml.tokens",
        Some(V::I32s(vec![1, 2])),
        "",
    );
    with(
        "tokens-empty",
        "tokenizer.ggml.tokens",
        Some(V::Strs(Vec::new())),
        "",
    );
    with(
        "types-short",
        "tokenizer.ggml.token_type",
        Some(V::I32s(vec![1; 3])),
        "token_type",
    );
    with(
        "merges-strings-ints",
        "tokenizer.ggml.merges",
        Some(V::I32s(vec![1])),
        "merges",
    );
    // Merges of pieces not in the vocabulary, and special ids beyond it, are ignored (as llama.cpp does).
    with(
        "merges-bogus",
        "tokenizer.ggml.merges",
        Some(V::Strs(vec!["zz qq".into(), " ".into(), "x".into()])),
        "ok",
    );
    with(
        "eos-out-of-range",
        "tokenizer.ggml.eos_token_id",
        Some(V::U32(u32::MAX)),
        "ok",
    );
    with(
        "bos-out-of-range",
        "tokenizer.ggml.bos_token_id",
        Some(V::U64(1 << 40)),
        "ok",
    );
    with(
        "pre-unknown",
        "tokenizer.ggml.pre",
        Some(V::Str("klingon".into())),
        "pre-tokenizer",
    );
    let mut tokens = models::byte_tokens();
    tokens.push(tokens[5].clone());
    with(
        "tokens-duplicate",
        "tokenizer.ggml.tokens",
        Some(V::Strs(tokens)),
        "duplicate",
    );
    // SentencePiece without scores.
    with(
        "spm-no-scores",
        "tokenizer.ggml.model",
        Some(V::Str("llama".into())),
        "scores",
    );
}

fn templates(c: &mut Vec<Case>) {
    let b = base("llama");
    let mut chat = |name: &str, template: String, run: Run| {
        let mut f = b.clone();
        f.set("tokenizer.chat_template", V::Str(template));
        let mut k = case(format!("template-{name}"), &f, true, run);
        k.mode = Mode::Chat;
        c.push(k);
    };
    chat("16mb", "x".repeat(16 << 20), Run::Err("at most"));
    chat(
        "loop-forever",
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}".into(),
        Run::Err("fuel"),
    );
    chat(
        "range-huge",
        "{% for i in range(1000000000) %}{% endfor %}".into(),
        Run::Err("too many"),
    );
    // 30 MB of output for little fuel: stopped at the output bound, not after tokenizing it all.
    chat(
        "huge-output",
        "{% for i in range(30) %}{{ 'x' * 1000000 }}{% endfor %}".into(),
        Run::Err("exceeds"),
    );
    chat(
        "slow-output",
        "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}".into(),
        Run::Err(""),
    );
    // A string doubled in a loop: minijinja charges fuel per byte built, so it stops at ~64 MB, not at the
    // allocator. Likewise a list holding itself twice, 60 levels deep (2^60 bytes of JSON), stops at the prompt
    // limit in hearth's `tojson`.
    let double = "{% set ns = namespace(s='x') %}{% for i in range(200) %}";
    chat(
        "concat-doubling-tilde",
        format!("{double}{{% set ns.s = ns.s ~ ns.s %}}{{% endfor %}}{{{{ ns.s|length }}}}"),
        Run::Err("fuel"),
    );
    chat(
        "concat-doubling-plus",
        format!("{double}{{% set ns.s = ns.s + ns.s %}}{{% endfor %}}{{{{ ns.s|length }}}}"),
        Run::Err("fuel"),
    );
    chat(
        "tojson-self-nested",
        "{% set ns = namespace(l=[1]) %}{% for i in range(60) %}{% set ns.l = [ns.l, ns.l] %}{% endfor %}\
         {{ ns.l|tojson }}"
            .into(),
        Run::Err("exceeds"),
    );
    // Values minijinja 3.1 built without asking for fuel (patched in third_party/minijinja): a list doubled by
    // `+` (2^33 slots once the lazy chain is 32 deep), and the self-nested list above turned into a string.
    chat(
        "list-doubling-plus",
        "{% set ns = namespace(l=[1]) %}{% for i in range(60) %}{% set ns.l = ns.l + ns.l %}{% endfor %}\
         {{ ns.l|length }}"
            .into(),
        Run::Err("fuel"),
    );
    chat(
        "self-nested-to-string",
        "{% set ns = namespace(l=[1]) %}{% for i in range(60) %}{% set ns.l = [ns.l, ns.l] %}{% endfor %}\
         {{ (ns.l ~ '')|length }}"
            .into(),
        Run::Err("too large"),
    );
    chat("syntax-error", "{% for %}".into(), Run::Err("syntax"));
    chat(
        "raise",
        "{{ raise_exception('\u{1b}[31mred\u{1b}[0m \u{1b}]0;title\u{7}') }}".into(),
        Run::Err("red"),
    );
    chat("undefined-call", "{{ nothing() }}".into(), Run::Err(""));
    chat(
        "repeat-limit",
        "{{ 'x' * 1000000000 }}".into(),
        Run::Err(""),
    );
    chat(
        "deep-recursion",
        "{% macro m(n) %}{{ m(n + 1) }}{% endmacro %}{{ m(0) }}".into(),
        Run::Err(""),
    );
    // Terminal injection through the name `inspect` prints (item 10): checked in the test by the output.
    let mut f = b.clone();
    f.set(
        "general.name",
        V::Str("\u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}31m\u{202e}evil".into()),
    );
    c.push(case("inspect-escape-name", &f, true, Run::Ok));
}

fn non_finite(c: &mut Vec<Case>) {
    let b = base("llama");
    let poison = |f: &mut File, name: &str, x: f32| {
        let t = f.tensor(name).expect("tensor");
        for w in t.data.chunks_exact_mut(4).step_by(3) {
            w.copy_from_slice(&x.to_le_bytes());
        }
    };
    for (what, x) in [("nan", f32::NAN), ("inf", f32::INFINITY)] {
        for name in [
            "output_norm.weight",
            "blk.0.ffn_down.weight",
            "token_embd.weight",
        ] {
            let mut f = b.clone();
            poison(&mut f, name, x);
            c.push(refused(
                format!("non-finite-{what}-{name}"),
                &f,
                "non-finite",
            ));
        }
    }
    // Quantized: an f16 scale of a Q8_0 block set to NaN (0x7e00) and to infinity (0x7c00).
    for (what, bits) in [("nan", 0x7e00u16), ("inf", 0x7c00)] {
        let mut f = model("llama", DType::Q8_0, Dims::for_block(32), 3);
        let t = f.tensor("blk.0.attn_output.weight").expect("wo");
        for blk in t.data.chunks_exact_mut(34) {
            blk[..2].copy_from_slice(&bits.to_le_bytes());
        }
        c.push(refused(
            format!("non-finite-q8_0-scale-{what}"),
            &f,
            "non-finite",
        ));
    }
}

/// Every matrix format the kernels multiply (the packer's included), at the model sizes of its block size.
fn formats(c: &mut Vec<Case>) {
    for dtype in DType::ALL {
        if hearth_kernels::matmul::activation_dtype(dtype).is_none() {
            continue;
        }
        let block = dtype.block_size() as u64;
        let mut sizes = vec![Dims::for_block(block)];
        if block == 32 {
            // 32 columns: one group per row; rows 16·k+1 make an odd panel count.
            sizes.push(Dims {
                n_embd: 32,
                n_head: 1,
                n_head_kv: 1,
                head_dim: 32,
                n_ff: 32,
                n_layer: 1,
            });
        }
        if block == 1 {
            sizes.push(Dims {
                n_embd: 17,
                n_head: 1,
                n_head_kv: 1,
                head_dim: 17,
                n_ff: 33,
                n_layer: 1,
            });
        }
        for (i, d) in sizes.into_iter().enumerate() {
            let f = model("llama", dtype, d, 11 + i as u64);
            let mut k = case(format!("format-{}-{i}", dtype.name()), &f, true, Run::Ok);
            k.mode = Mode::Packed;
            c.push(k);
        }
    }
}
