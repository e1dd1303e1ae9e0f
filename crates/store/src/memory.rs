//! Memory planner: weights + KV cache + scratch for a context size, from a model's shape, checked against the
//! memory the system has available before a model is loaded. The shape is the engine's (its `ModelConfig` and
//! `KvLayout`), filled in by the caller: the store reads no shape keys of its own.

use crate::manifest::format_bytes;
use crate::StoreError;
use hearth_gguf::Gguf;

/// What the planner needs to know about a model. Fill it from the engine's `ModelConfig` and `KvLayout`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelShape {
    /// Bytes of tensor data in the model's file(s) ([`weight_bytes`]).
    pub weights: u64,
    /// Bytes one position takes in a sequence's KV cache, all layers together, as the engine lays the rows out.
    pub kv_bytes_per_pos: u64,
    pub n_embd: u64,
    pub n_ff: u64,
    pub n_head: u64,
    /// Elements of one head's key and of one head's value.
    pub head_dim: u64,
    pub head_dim_v: u64,
    pub n_vocab: u64,
}

/// Bytes a model needs at a given context size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// Tensor data (mapped from the file).
    pub weights: u64,
    /// K and V for every layer and position of every sequence: n_seq × n_ctx × the shape's bytes per position.
    pub kv_cache: u64,
    /// Activations, logits and runtime overhead.
    pub scratch: u64,
    pub total: u64,
    pub n_ctx: u64,
    /// Sequences of n_ctx positions counted in `kv_cache`.
    pub n_seq: u64,
}

/// Positions processed together in a prefill step, assumed for the scratch estimate.
const BATCH: u64 = 512;
/// Fixed overhead of the runtime (thread stacks, tokenizer tables, allocator slack).
const OVERHEAD: u64 = 64 << 20;

/// The tensor data of a model in one or more files (split GGUF).
pub fn weight_bytes(parts: &[Gguf]) -> u64 {
    parts
        .iter()
        .flat_map(|p| p.tensors())
        .map(|t| t.n_bytes)
        .fold(0, u64::saturating_add)
}

/// Estimate for `n_seq` sequences of up to `n_ctx` positions each. Every value of a shape comes from a file:
/// the arithmetic saturates rather than wrap (or panic) on absurd ones.
pub fn estimate(shape: &ModelShape, n_ctx: u64, n_seq: u64) -> MemoryEstimate {
    let s = shape;
    let kv_cache = s
        .kv_bytes_per_pos
        .saturating_mul(n_ctx)
        .saturating_mul(n_seq.max(1));
    let batch = n_ctx.clamp(1, BATCH);
    let activations = [
        s.n_embd.saturating_mul(4),
        s.n_ff.saturating_mul(3),
        s.n_head
            .saturating_mul(s.head_dim.saturating_add(s.head_dim_v.saturating_mul(2))),
    ]
    .into_iter()
    .fold(0u64, u64::saturating_add)
    .saturating_mul(batch);
    // Attention folds tiles of keys into running softmaxes: no (heads, batch, n_ctx) score matrix is stored.
    let scratch = 4u64
        .saturating_mul(s.n_vocab.saturating_add(activations))
        .saturating_add(OVERHEAD);
    MemoryEstimate {
        weights: s.weights,
        kv_cache,
        scratch,
        total: s.weights.saturating_add(kv_cache).saturating_add(scratch),
        n_ctx,
        n_seq: n_seq.max(1),
    }
}

impl MemoryEstimate {
    /// `weights 135.2 MB + KV cache 94.4 MB at n_ctx 2048 + scratch 70.1 MB` (`at n_ctx 2048 × 16 sequences` for
    /// several).
    pub fn breakdown(&self) -> String {
        let seqs = if self.n_seq > 1 {
            format!(" × {} sequences", self.n_seq)
        } else {
            String::new()
        };
        format!(
            "weights {} + KV cache {} at n_ctx {}{seqs} + scratch {}",
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
            n_seq: 1,
        };
        let msg = e.check_against(2_000_000_000).unwrap_err().to_string();
        assert!(
            msg.contains("--no-mem-check") && msg.contains("5.1 GB") && msg.contains("2.0 GB"),
            "{msg}"
        );
        assert!(e.check_against(6_000_000_000).is_ok());
    }

    #[test]
    fn kv_cache_counts_every_sequence() {
        let shape = ModelShape {
            weights: 1000,
            kv_bytes_per_pos: 96,
            n_embd: 8,
            n_ff: 16,
            n_head: 2,
            head_dim: 4,
            head_dim_v: 4,
            n_vocab: 10,
        };
        let one = estimate(&shape, 100, 1);
        assert_eq!(one.kv_cache, 9600);
        let four = estimate(&shape, 100, 4);
        assert_eq!(four.kv_cache, 4 * 9600);
        assert_eq!(four.total - one.total, 3 * 9600);
        assert!(
            four.breakdown().contains("× 4 sequences"),
            "{}",
            four.breakdown()
        );
        // (8·4 + 16·3 + 2·(4 + 4·2)) × 100 positions + 10 logits, as f32, plus the fixed overhead.
        assert_eq!(one.scratch, 4 * (10 + 104 * 100) + (64 << 20));
        let absurd = ModelShape {
            kv_bytes_per_pos: u64::MAX,
            ..shape
        };
        assert_eq!(estimate(&absurd, 1 << 40, 64).total, u64::MAX);
    }
}
