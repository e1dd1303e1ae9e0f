//! Tiny valid models of every architecture hearth runs, with seeded random weights in any matrix format: the
//! starting points the corpus breaks one thing at a time.

use super::gguf::{File, V};
use hearth_kernels::DType;

/// A seeded xorshift generator: the same seed gives the same files on every run and machine.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// Sizes of a tiny model.
#[derive(Debug, Clone, Copy)]
pub struct Dims {
    pub n_embd: u64,
    pub n_head: u64,
    pub n_head_kv: u64,
    pub head_dim: u64,
    pub n_ff: u64,
    pub n_layer: u64,
}

impl Dims {
    /// Small sizes that every format with `block` elements per block can hold.
    pub fn for_block(block: u64) -> Dims {
        match block {
            1 => Dims {
                n_embd: 40,
                n_head: 2,
                n_head_kv: 1,
                head_dim: 20,
                n_ff: 24,
                n_layer: 2,
            },
            32 => Dims {
                n_embd: 96,
                n_head: 2,
                n_head_kv: 1,
                head_dim: 48,
                n_ff: 64,
                n_layer: 1,
            },
            _ => Dims {
                n_embd: 256,
                n_head: 2,
                n_head_kv: 1,
                head_dim: 128,
                n_ff: 256,
                n_layer: 1,
            },
        }
    }
}

/// The GPT-2 byte-to-character table: the 256 byte tokens of a byte-level BPE vocabulary.
pub fn byte_tokens() -> Vec<String> {
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    let mut extra = 0;
    (0..256u32)
        .map(|b| {
            let c = if printable(b) {
                b
            } else {
                extra += 1;
                255 + extra
            };
            char::from_u32(c).expect("a char").to_string()
        })
        .collect()
}

/// Vocabulary size: 256 bytes and an end-of-text token.
pub const N_VOCAB: u64 = 257;

/// `n` seeded weights in [-scale, scale), encoded as `dtype` rows of `cols`.
pub fn weights(rng: &mut Rng, dtype: DType, cols: u64, rows: u64, scale: f32) -> Vec<u8> {
    let row_bytes = dtype.row_bytes(cols).expect("a whole number of blocks") as usize;
    let mut out = vec![0u8; row_bytes * rows as usize];
    let mut src = vec![0f32; cols as usize];
    for r in 0..rows as usize {
        src.iter_mut().for_each(|x| *x = rng.unit() * scale);
        let row = &mut out[r * row_bytes..][..row_bytes];
        if hearth_kernels::quantize_row(dtype, &src, row).is_err() {
            random_blocks(rng, dtype, row);
        }
    }
    out
}

/// Random blocks of a format the kernels only read, with small finite f16 super-block scales (ggml's layouts).
fn random_blocks(rng: &mut Rng, dtype: DType, row: &mut [u8]) {
    let (size, f16_at): (usize, &[usize]) = match dtype {
        DType::Q2_K => (84, &[80, 82]),
        DType::Q3_K => (110, &[108]),
        DType::Q5_K => (176, &[0, 2]),
        other => panic!("no random-block layout for {other}"),
    };
    for block in row.chunks_exact_mut(size) {
        block.iter_mut().for_each(|b| *b = rng.next() as u8);
        for &at in f16_at {
            let d = half::f16::from_f32(0.002 + 0.002 * rng.unit().abs());
            block[at..at + 2].copy_from_slice(&d.to_le_bytes());
        }
    }
}

fn ones(n: u64) -> Vec<u8> {
    (0..n).flat_map(|_| 1f32.to_le_bytes()).collect()
}

/// A tiny model of `arch` (llama, qwen2, qwen3, gemma3, qwen3moe, deepseek2) with matrices in `dtype`.
pub fn model(arch: &str, dtype: DType, d: Dims, seed: u64) -> File {
    let mut rng = Rng::new(seed);
    let mut f = File::new();
    let k = |s: &str| format!("{arch}.{s}");
    f.kv("general.architecture", V::Str(arch.into()))
        .kv("general.name", V::Str(format!("tiny {arch}")))
        .kv(&k("block_count"), V::U32(d.n_layer as u32))
        .kv(&k("context_length"), V::U32(128))
        .kv(&k("embedding_length"), V::U32(d.n_embd as u32))
        .kv(&k("feed_forward_length"), V::U32(d.n_ff as u32))
        .kv(&k("attention.head_count"), V::U32(d.n_head as u32))
        .kv(&k("attention.head_count_kv"), V::U32(d.n_head_kv as u32))
        .kv(&k("attention.key_length"), V::U32(d.head_dim as u32))
        .kv(&k("attention.value_length"), V::U32(d.head_dim as u32))
        .kv(&k("attention.layer_norm_rms_epsilon"), V::F32(1e-5))
        .kv(&k("rope.freq_base"), V::F32(10_000.0));
    if d.head_dim % 2 == 1 {
        f.kv(&k("rope.dimension_count"), V::U32(d.head_dim as u32 - 1));
    }
    let mut tokens = byte_tokens();
    tokens.push("<|endoftext|>".into());
    let mut types = vec![1i32; 256];
    types.push(3);
    f.kv("tokenizer.ggml.model", V::Str("gpt2".into()))
        .kv("tokenizer.ggml.tokens", V::Strs(tokens))
        .kv("tokenizer.ggml.token_type", V::I32s(types))
        .kv("tokenizer.ggml.merges", V::Strs(Vec::new()))
        .kv("tokenizer.ggml.eos_token_id", V::U32(256))
        .kv(
            "tokenizer.chat_template",
            V::Str(
                "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}".into(),
            ),
        );
    let (e, hd) = (d.n_embd, d.head_dim);
    let ty = dtype as u32;
    let mat = |f: &mut File, rng: &mut Rng, name: &str, cols: u64, rows: u64| {
        let data = weights(rng, dtype, cols, rows, 0.5);
        f.add_tensor(name, &[cols, rows], ty, data);
    };
    mat(&mut f, &mut rng, "token_embd.weight", e, N_VOCAB);
    f.add_tensor("output_norm.weight", &[e], 0, ones(e));
    let vec = |f: &mut File, name: &str, n: u64| {
        f.add_tensor(name, &[n], 0, ones(n));
    };
    match arch {
        "qwen3moe" => {
            f.kv(&k("expert_count"), V::U32(4))
                .kv(&k("expert_used_count"), V::U32(2))
                .kv(&k("expert_feed_forward_length"), V::U32(d.n_ff as u32));
        }
        "gemma3" => {
            f.kv(&k("attention.sliding_window"), V::U32(4));
        }
        "deepseek2" => {
            f.kv(&k("attention.kv_lora_rank"), V::U32(d.head_dim as u32))
                .kv(&k("rope.dimension_count"), V::U32(8));
        }
        _ => {}
    }
    for i in 0..d.n_layer {
        let n = |s: &str| format!("blk.{i}.{s}.weight");
        vec(&mut f, &n("attn_norm"), e);
        vec(&mut f, &n("ffn_norm"), e);
        if arch == "deepseek2" {
            // MLA, old form: q (h * (nope + rot)), kv_a (rank + rot), kv_b (h * (nope + v), rank).
            let (h, r, rot) = (d.n_head, d.head_dim, 8);
            mat(&mut f, &mut rng, &n("attn_q"), e, h * hd);
            mat(&mut f, &mut rng, &n("attn_kv_a_mqa"), e, r + rot);
            vec(&mut f, &n("attn_kv_a_norm"), r);
            mat(&mut f, &mut rng, &n("attn_kv_b"), r, h * (hd - rot + hd));
            mat(&mut f, &mut rng, &n("attn_output"), h * hd, e);
        } else {
            mat(&mut f, &mut rng, &n("attn_q"), e, d.n_head * hd);
            mat(&mut f, &mut rng, &n("attn_k"), e, d.n_head_kv * hd);
            mat(&mut f, &mut rng, &n("attn_v"), e, d.n_head_kv * hd);
            mat(&mut f, &mut rng, &n("attn_output"), d.n_head * hd, e);
        }
        if arch == "qwen2" {
            let b = |s: &str| format!("blk.{i}.{s}.bias");
            vec(&mut f, &b("attn_q"), d.n_head * hd);
            vec(&mut f, &b("attn_k"), d.n_head_kv * hd);
            vec(&mut f, &b("attn_v"), d.n_head_kv * hd);
        }
        if arch == "qwen3" || arch == "qwen3moe" || arch == "gemma3" {
            vec(&mut f, &n("attn_q_norm"), hd);
            vec(&mut f, &n("attn_k_norm"), hd);
        }
        if arch == "gemma3" {
            vec(&mut f, &n("post_attention_norm"), e);
            vec(&mut f, &n("post_ffw_norm"), e);
        }
        if arch == "qwen3moe" {
            let x = 4;
            mat(&mut f, &mut rng, &n("ffn_gate_inp"), e, x);
            for (name, cols, rows) in [
                ("ffn_gate_exps", e, d.n_ff),
                ("ffn_up_exps", e, d.n_ff),
                ("ffn_down_exps", d.n_ff, e),
            ] {
                let data = weights(&mut rng, dtype, cols, rows * x, 0.5);
                f.add_tensor(&n(name), &[cols, rows, x], ty, data);
            }
        } else {
            mat(&mut f, &mut rng, &n("ffn_gate"), e, d.n_ff);
            mat(&mut f, &mut rng, &n("ffn_up"), e, d.n_ff);
            mat(&mut f, &mut rng, &n("ffn_down"), d.n_ff, e);
        }
    }
    f
}

/// The architectures hearth runs.
pub const ARCHS: [&str; 6] = ["llama", "qwen2", "qwen3", "gemma3", "qwen3moe", "deepseek2"];

/// The plain F32 model of `arch` the corpus starts from.
pub fn base(arch: &str) -> File {
    model(arch, DType::F32, Dims::for_block(1), 7)
}
