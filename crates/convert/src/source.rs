//! Where each GGUF tensor's f32 data comes from, and producing it: a checkpoint tensor as is or rewritten the way
//! llama.cpp's converter rewrites it (q/k rows permuted for adjacent-pair RoPE, rows scaled, experts stacked, MLA's
//! kv_b split), or data computed at conversion time (Llama-3 RoPE frequency factors).

use crate::hf::Checkpoint;
use crate::plan::Planned;
use crate::ConvertError;

/// Where a GGUF tensor's f32 data comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The checkpoint tensor as is.
    Copy(String),
    /// q/k rows reordered so llama.cpp's adjacent-pair RoPE equals HF's half-split RoPE (llama.cpp's `permute`).
    PermuteRope { name: String, n_head: usize },
    /// The checkpoint tensor with rows `from..period` of every `period` rows multiplied by `factor` (YaRN's sin/cos
    /// factor folded into the RoPE rows of DeepSeek's q and k).
    ScaleRows {
        name: String,
        period: usize,
        from: usize,
        factor: f32,
    },
    /// Expert matrices stacked into one 3-D tensor (n_expert, rows, cols).
    Stack(Vec<String>),
    /// MLA `kv_b_proj` (n_head * (nope + v), kv_lora): the key part per head, transposed: (n_head, kv_lora, nope).
    KvbKeys {
        name: String,
        n_head: usize,
        nope: usize,
        v: usize,
    },
    /// MLA `kv_b_proj`: the value part per head: (n_head, v, kv_lora).
    KvbValues {
        name: String,
        n_head: usize,
        nope: usize,
        v: usize,
    },
    /// Computed at conversion time (Llama-3 RoPE frequency factors).
    Data(Vec<f32>),
}

/// Llama 3's RoPE scaling as per-frequency divisors of theta (llama.cpp's `rope_freqs.weight`): (head_dim / 2).
pub fn llama3_rope_factors(
    base: f64,
    head_dim: usize,
    factor: f64,
    low_freq_factor: f64,
    high_freq_factor: f64,
    original_ctx: usize,
) -> Vec<f32> {
    let old = original_ctx as f64;
    let low_wavelen = old / low_freq_factor;
    let high_wavelen = old / high_freq_factor;
    (0..head_dim / 2)
        .map(|i| {
            let freq = 1.0 / base.powf((2 * i) as f64 / head_dim as f64);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            let f = if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                factor
            } else {
                let smooth =
                    (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                1.0 / ((1.0 - smooth) / factor + smooth)
            };
            f as f32
        })
        .collect()
}

/// Produces the f32 data of a planned tensor (row-major in `shape`).
pub fn materialize(ck: &Checkpoint, p: &Planned) -> Result<Vec<f32>, ConvertError> {
    Ok(match &p.source {
        Source::Copy(n) => ck.read_f32(n)?,
        Source::Data(d) => d.clone(),
        Source::PermuteRope { name, n_head } => {
            // Rows of each head are [first half | second half] in HF; llama.cpp wants them interleaved.
            let w = ck.read_f32(name)?;
            let cols = p.shape[1];
            let hd = p.shape[0] / n_head;
            let half = hd / 2;
            let mut out = vec![0f32; w.len()];
            for h in 0..*n_head {
                for i in 0..half {
                    for (j, src) in [i, half + i].into_iter().enumerate() {
                        let dst_row = h * hd + 2 * i + j;
                        let src_row = h * hd + src;
                        out[dst_row * cols..][..cols].copy_from_slice(&w[src_row * cols..][..cols]);
                    }
                }
            }
            out
        }
        Source::ScaleRows {
            name,
            period,
            from,
            factor,
        } => {
            let mut w = ck.read_f32(name)?;
            let cols = p.shape[1];
            for (r, row) in w.chunks_exact_mut(cols).enumerate() {
                if r % period >= *from {
                    row.iter_mut().for_each(|x| *x *= factor);
                }
            }
            w
        }
        Source::Stack(names) => {
            let mut out = Vec::new();
            for n in names {
                out.extend(ck.read_f32(n)?);
            }
            out
        }
        Source::KvbKeys {
            name,
            n_head,
            nope,
            v,
        } => {
            let w = ck.read_f32(name)?; // (n_head * (nope + v), kv_lora)
            let kvr = p.shape[1];
            let mut out = vec![0f32; n_head * kvr * nope]; // (n_head, kv_lora, nope)
            for h in 0..*n_head {
                for r in 0..*nope {
                    let row = &w[(h * (nope + v) + r) * kvr..][..kvr];
                    for (c, &x) in row.iter().enumerate() {
                        out[(h * kvr + c) * nope + r] = x;
                    }
                }
            }
            out
        }
        Source::KvbValues {
            name,
            n_head,
            nope,
            v,
        } => {
            let w = ck.read_f32(name)?;
            let kvr = p.shape[2];
            let mut out = Vec::with_capacity(n_head * v * kvr); // (n_head, v, kv_lora)
            for h in 0..*n_head {
                let start = (h * (nope + v) + nope) * kvr;
                out.extend_from_slice(&w[start..start + v * kvr]);
            }
            out
        }
    })
}
