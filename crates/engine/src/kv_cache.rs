//! One sequence's key/value cache: f16, grown as positions are written, so memory follows use up to `n_ctx`.

use crate::{EngineError, ModelConfig};
use half::f16;

/// Keys and values of one layer: (len, n_head_kv * head_dim) and (len, n_head_kv * head_dim_v), row-major.
#[derive(Debug, Default, Clone)]
pub struct LayerKv {
    pub k: Vec<f16>,
    pub v: Vec<f16>,
}

/// The cache of one sequence.
#[derive(Debug, Clone)]
pub struct KvCache {
    pub(crate) layers: Vec<LayerKv>,
    /// Positions filled.
    len: usize,
    n_ctx: usize,
    pub(crate) k_dim: usize,
    pub(crate) v_dim: usize,
}

impl KvCache {
    pub fn new(config: &ModelConfig, n_ctx: usize) -> KvCache {
        KvCache {
            layers: vec![LayerKv::default(); config.n_layer],
            len: 0,
            n_ctx,
            k_dim: config.n_head_kv * config.head_dim,
            v_dim: config.n_head_kv * config.head_dim_v,
        }
    }

    /// Positions filled so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most positions this cache holds.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Bytes of KV held now.
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| (l.k.capacity() + l.v.capacity()) * 2)
            .sum()
    }

    /// Forgets positions from `len` on (e.g. to reuse a shared prefix, or to retry a step).
    /// Also drops keys and values a failed forward pass wrote past `len`.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
        for l in &mut self.layers {
            l.k.truncate(self.len * self.k_dim);
            l.v.truncate(self.len * self.v_dim);
        }
    }

    /// Checks that `n` more positions fit.
    pub(crate) fn reserve(&self, n: usize) -> Result<(), EngineError> {
        if self.len + n > self.n_ctx {
            return Err(EngineError::ContextFull {
                needed: self.len + n,
                n_ctx: self.n_ctx,
            });
        }
        Ok(())
    }

    /// Appends keys (n, k_dim) and values (n, v_dim) of layer `il` at positions len..len+n.
    pub(crate) fn append(&mut self, il: usize, k: &[f32], v: &[f32]) {
        let l = &mut self.layers[il];
        l.k.extend(k.iter().map(|&x| f16::from_f32(x)));
        l.v.extend(v.iter().map(|&x| f16::from_f32(x)));
    }

    /// Marks `n` positions as written (after every layer appended them).
    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }
}
