//! Memory planner: weights + KV cache + scratch for a context size, from the GGUF metadata, checked against the
//! memory the system has available before a model is loaded.

use crate::manifest::format_bytes;
use crate::StoreError;
use hearth_gguf::{Gguf, GgufError, Value};

/// Bytes a model needs at a given context size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// Tensor data (mapped from the file).
    pub weights: u64,
    /// K and V for every layer and position: n_layer × n_ctx × n_head_kv × (key_length + value_length) × bytes
    /// (for multi-head latent attention: n_layer × n_ctx × (kv_lora_rank + rope dims) × bytes).
    pub kv_cache: u64,
    /// Activations, logits and runtime overhead.
    pub scratch: u64,
    pub total: u64,
    pub n_ctx: u64,
}

/// Positions processed together in a prefill step, assumed for the scratch estimate.
const BATCH: u64 = 512;
/// Fixed overhead of the runtime (thread stacks, tokenizer tables, allocator slack).
const OVERHEAD: u64 = 64 << 20;

/// Estimate for a model in one file.
pub fn estimate(g: &Gguf, n_ctx: u64, kv_bytes_per_elem: u64) -> Result<MemoryEstimate, GgufError> {
    estimate_parts(std::slice::from_ref(g), n_ctx, kv_bytes_per_elem)
}

/// Estimate for a model in one or more files (split GGUF; the metadata is in the first).
pub fn estimate_parts(
    parts: &[Gguf],
    n_ctx: u64,
    kv_bytes_per_elem: u64,
) -> Result<MemoryEstimate, GgufError> {
    let g = parts.first().ok_or_else(|| GgufError::MissingKey {
        key: "general.architecture".into(),
    })?;
    let arch = g.architecture()?;
    let key = |k: &str| format!("{arch}.{k}");
    let n_layer = require(g, &key("block_count"))?;
    let n_embd = require(g, &key("embedding_length"))?;
    let n_head = per_layer(g, &key("attention.head_count"), n_layer)?;
    let n_head_kv = match g.get(&key("attention.head_count_kv")) {
        Some(_) => per_layer(g, &key("attention.head_count_kv"), n_layer)?,
        None => n_head.clone(),
    };
    let max_head = n_head.max();
    let head_dim = n_embd.checked_div(max_head).unwrap_or(0);
    let k_len = g
        .get_uint(&key("attention.key_length"))?
        .unwrap_or(head_dim);
    let v_len = g.get_uint(&key("attention.value_length"))?.unwrap_or(k_len);
    let n_ff = per_layer(g, &key("feed_forward_length"), n_layer)
        .ok()
        .map(|v| v.max())
        .unwrap_or(n_embd.saturating_mul(4));
    let n_vocab = match g.get_uint(&key("vocab_size"))? {
        Some(v) => v,
        None => g
            .get_array("tokenizer.ggml.tokens")?
            .map_or(0, |a| a.len() as u64),
    };

    let weights: u64 = parts
        .iter()
        .flat_map(|p| p.tensors())
        .map(|t| t.n_bytes)
        .sum();
    // Multi-head latent attention (deepseek2) caches one compressed row per position and layer: the latent
    // (kv_lora_rank) and the shared RoPE key part, whatever the head count.
    let kv_per_pos: u64 = match g.get_uint(&key("attention.kv_lora_rank"))? {
        Some(rank) => {
            let rope = g.get_uint(&key("rope.dimension_count"))?.unwrap_or(0);
            n_layer.saturating_mul(rank.saturating_add(rope))
        }
        None => n_head_kv.sum_of(|h| h.saturating_mul(k_len.saturating_add(v_len))),
    };
    let kv_cache = kv_per_pos
        .saturating_mul(n_ctx)
        .saturating_mul(kv_bytes_per_elem);
    let batch = n_ctx.clamp(1, BATCH);
    // Every value here comes from the file: saturate rather than wrap (or panic) on absurd ones.
    let activations = [
        n_embd.saturating_mul(4),
        n_ff.saturating_mul(3),
        max_head.saturating_mul(k_len.saturating_add(v_len.saturating_mul(2))),
    ]
    .into_iter()
    .fold(0u64, u64::saturating_add)
    .saturating_mul(batch);
    // Attention folds tiles of keys into running softmaxes: no (heads, batch, n_ctx) score matrix is stored.
    let scratch = 4u64
        .saturating_mul(n_vocab.saturating_add(activations))
        .saturating_add(OVERHEAD);
    Ok(MemoryEstimate {
        weights,
        kv_cache,
        scratch,
        total: weights.saturating_add(kv_cache).saturating_add(scratch),
        n_ctx,
    })
}

fn require(g: &Gguf, k: &str) -> Result<u64, GgufError> {
    g.get_uint(k)?
        .ok_or_else(|| GgufError::MissingKey { key: k.into() })
}

/// A per-layer value: one number for all layers (never expanded: `block_count` may be absurd), or one each.
#[derive(Debug, Clone)]
enum PerLayer {
    Same { value: u64, n_layer: u64 },
    Each(Vec<u64>),
}

impl PerLayer {
    fn max(&self) -> u64 {
        match self {
            PerLayer::Same { value, .. } => *value,
            PerLayer::Each(v) => v.iter().copied().max().unwrap_or(0),
        }
    }

    /// Σ f(value) over the layers, saturating.
    fn sum_of(&self, f: impl Fn(u64) -> u64) -> u64 {
        match self {
            PerLayer::Same { value, n_layer } => f(*value).saturating_mul(*n_layer),
            PerLayer::Each(v) => v.iter().map(|&x| f(x)).fold(0, u64::saturating_add),
        }
    }
}

/// A value that is either one number for all layers or an array with one per layer.
fn per_layer(g: &Gguf, k: &str, n_layer: u64) -> Result<PerLayer, GgufError> {
    match g.get(k) {
        None => Err(GgufError::MissingKey { key: k.into() }),
        Some(Value::Array(a)) => {
            if a.len() as u64 != n_layer {
                return Err(GgufError::BadShape {
                    name: k.into(),
                    dims: vec![a.len() as u64],
                    why: format!("does not have one entry per layer ({n_layer})"),
                });
            }
            let v: Vec<u64> = a
                .to_i64_vec()
                .ok_or_else(|| GgufError::WrongType {
                    key: k.into(),
                    expected: "integer array",
                    found: "array",
                })?
                .into_iter()
                .map(|x| x.max(0) as u64)
                .collect();
            Ok(PerLayer::Each(v))
        }
        Some(_) => Ok(PerLayer::Same {
            value: require(g, k)?,
            n_layer,
        }),
    }
}

impl MemoryEstimate {
    /// `weights 135.2 MB + KV cache 94.4 MB (n_ctx 2048) + scratch 70.1 MB`
    pub fn breakdown(&self) -> String {
        format!(
            "weights {} + KV cache {} at n_ctx {} + scratch {}",
            format_bytes(self.weights),
            format_bytes(self.kv_cache),
            self.n_ctx,
            format_bytes(self.scratch)
        )
    }

    /// Refuses when the estimate exceeds `available` bytes.
    pub fn check_against(&self, available: u64) -> Result<(), StoreError> {
        if self.total <= available {
            return Ok(());
        }
        Err(StoreError::NotEnoughMemory {
            needed: format_bytes(self.total),
            available: format_bytes(available),
            detail: self.breakdown(),
        })
    }

    /// Refuses when the estimate exceeds the memory available now; passes where that cannot be read.
    pub fn check(&self) -> Result<(), StoreError> {
        match available_memory() {
            Some(a) => self.check_against(a),
            None => Ok(()),
        }
    }
}

/// `MemAvailable` from /proc/meminfo, in bytes (`None` where there is no such file).
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_meminfo(&text)
}

fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let mut it = line.split_whitespace().skip(1);
    let n: u64 = it.next()?.parse().ok()?;
    let unit = it.next().unwrap_or("B");
    Some(match unit {
        "kB" | "KB" | "kb" => n * 1024,
        "mB" | "MB" => n << 20,
        _ => n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo() {
        let t = "MemTotal:       16315412 kB\nMemFree:  100 kB\nMemAvailable:    8157706 kB\n";
        assert_eq!(parse_meminfo(t), Some(8_157_706 * 1024));
        assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn refusal_names_the_flag() {
        let e = MemoryEstimate {
            weights: 4_000_000_000,
            kv_cache: 1_000_000_000,
            scratch: 100_000_000,
            total: 5_100_000_000,
            n_ctx: 8192,
        };
        let msg = e.check_against(2_000_000_000).unwrap_err().to_string();
        assert!(
            msg.contains("--no-mem-check") && msg.contains("5.1 GB") && msg.contains("2.0 GB"),
            "{msg}"
        );
        assert!(e.check_against(6_000_000_000).is_ok());
    }
}
