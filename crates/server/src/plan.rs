//! What a model costs in memory: the store's estimate ([`hearth_store::memory`]) over the engine's own shape of the
//! model ([`ModelConfig`], [`KvLayout`]), so that the planner and the engine agree on every row of the KV cache.

use hearth_engine::batch::BatchConfig;
use hearth_engine::{KvLayout, KvType, ModelConfig};
use hearth_gguf::Gguf;
use hearth_store::memory::{self, MemoryEstimate, ModelShape};

/// The planner's view of a model: `weights` bytes of tensor data, the KV rows of `kv_type` as the engine lays them.
pub fn shape(config: &ModelConfig, kv_type: KvType, weights: u64) -> ModelShape {
    let layout = KvLayout::for_model(config, kv_type);
    let wide = |v: usize| v as u64;
    ModelShape {
        weights,
        kv_bytes_per_pos: wide(layout.position_bytes()).saturating_mul(wide(config.n_layer)),
        n_embd: wide(config.n_embd),
        n_ff: wide(config.n_ff),
        n_head: wide(config.n_head),
        head_dim: wide(config.head_dim),
        head_dim_v: wide(config.head_dim_v),
        n_vocab: wide(config.n_vocab),
    }
}

/// The shape of the model in `parts` (a split GGUF's metadata is in the first), read as the engine reads it.
pub fn shape_of_files(parts: &[Gguf], kv_type: KvType) -> Result<ModelShape, String> {
    let first = parts.first().ok_or("no model files")?;
    let config = ModelConfig::from_gguf(first).map_err(|e| e.to_string())?;
    Ok(shape(&config, kv_type, memory::weight_bytes(parts)))
}

/// What a server's engine may hold for one model at most: every running sequence at its full context, the prefix
/// cache's budget on top.
pub fn served_estimate(shape: &ModelShape, batch: &BatchConfig) -> MemoryEstimate {
    let mut e = memory::estimate(shape, batch.n_ctx as u64, batch.max_running as u64);
    let prefix = batch.prefix_cache_bytes as u64;
    e.kv_cache = e.kv_cache.saturating_add(prefix);
    e.total = e.total.saturating_add(prefix);
    e
}
