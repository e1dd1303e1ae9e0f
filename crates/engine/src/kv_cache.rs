//! One sequence's key/value cache, stored as f16 (default), f32 or q8_0 rows and grown as positions are written, so
//! memory follows use up to `n_ctx`.

use crate::{EngineError, ModelConfig};
use hearth_kernels::DType;

/// The element type of cached keys and values (llama.cpp's `--cache-type-k/-v`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KvType {
    /// Half the memory of f32 and what llama.cpp uses by default.
    #[default]
    F16,
    /// Exact: what a comparison against an f32 reference needs.
    F32,
    /// 8-bit blocks of 32 with an f16 scale: about half the memory of f16; needs head sizes that are multiples
    /// of 32.
    Q8_0,
}

impl KvType {
    pub fn dtype(self) -> DType {
        match self {
            KvType::F16 => DType::F16,
            KvType::F32 => DType::F32,
            KvType::Q8_0 => DType::Q8_0,
        }
    }

    /// The name used on command lines and in llama-bench output.
    pub fn name(self) -> &'static str {
        match self {
            KvType::F16 => "f16",
            KvType::F32 => "f32",
            KvType::Q8_0 => "q8_0",
        }
    }
}

impl std::str::FromStr for KvType {
    type Err = String;
    fn from_str(s: &str) -> Result<KvType, String> {
        [KvType::F16, KvType::F32, KvType::Q8_0]
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("unknown KV cache type {s:?}: use f16, f32 or q8_0"))
    }
}

/// Keys and values of one layer as encoded rows: position p's keys are `k[p * k_row..][..k_row]` bytes holding
/// (n_head_kv, head_dim) elements, its values likewise (n_head_kv, head_dim_v). A layer whose values are a prefix
/// of its keys (multi-head latent attention) stores no `v`.
#[derive(Debug, Default, Clone)]
pub struct LayerKv {
    pub k: Vec<u8>,
    pub v: Vec<u8>,
}

/// Row sizes of every layer of a cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvLayout {
    pub kv_type: KvType,
    /// Elements per position of keys: n_head_kv * head_dim.
    pub k_dim: usize,
    /// Elements per position of values (0: values are read from the keys).
    pub v_dim: usize,
    /// Elements of one head's key, one head's value: the unit each must be a whole number of blocks of.
    pub head_dim: usize,
    pub head_dim_v: usize,
}

impl KvLayout {
    /// The layout of `config`'s attention layers with `kv_type` elements (see [`KvLayout::check`]). Latent
    /// attention keeps one row per position whose first `head_dim_v` elements are the values (no separate V).
    pub fn for_model(config: &ModelConfig, kv_type: KvType) -> KvLayout {
        KvLayout {
            kv_type,
            k_dim: config.n_head_kv * config.head_dim,
            v_dim: match config.mla {
                Some(_) => 0,
                None => config.n_head_kv * config.head_dim_v,
            },
            head_dim: config.head_dim,
            head_dim_v: config.head_dim_v,
        }
    }

    /// Bytes one position takes in one layer: its key row and its value row.
    pub fn position_bytes(&self) -> usize {
        self.k_row_bytes() + self.v_row_bytes()
    }

    /// Refuses a type whose blocks don't divide the head sizes.
    pub fn check(&self) -> Result<(), EngineError> {
        let block = self.kv_type.dtype().block_size();
        for dim in [self.head_dim, self.head_dim_v] {
            if dim % block != 0 {
                return Err(EngineError::KvType {
                    kv_type: self.kv_type.name(),
                    reason: format!(
                        "a head of {dim} elements is not a whole number of {block}-element blocks"
                    ),
                });
            }
        }
        Ok(())
    }

    /// Bytes of `n` elements.
    pub fn bytes(&self, n: usize) -> usize {
        let dt = self.kv_type.dtype();
        n / dt.block_size() * dt.type_size()
    }

    pub fn k_row_bytes(&self) -> usize {
        self.bytes(self.k_dim)
    }

    pub fn v_row_bytes(&self) -> usize {
        self.bytes(self.v_dim)
    }
}

/// The cache of one sequence.
#[derive(Debug, Clone)]
pub struct KvCache {
    pub(crate) layers: Vec<LayerKv>,
    pub(crate) layout: KvLayout,
    /// Positions filled.
    len: usize,
    n_ctx: usize,
}

impl KvCache {
    /// An empty cache of `n_layer` layers, each laid out as `layout`.
    pub fn new(layout: KvLayout, n_layer: usize, n_ctx: usize) -> KvCache {
        KvCache {
            layers: vec![LayerKv::default(); n_layer],
            layout,
            len: 0,
            n_ctx,
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

    pub fn kv_type(&self) -> KvType {
        self.layout.kv_type
    }

    /// Bytes of KV held now (capacity, which is what the process pays for).
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.k.capacity() + l.v.capacity())
            .sum()
    }

    /// Forgets positions from `len` on (e.g. to reuse a shared prefix, or to retry a step).
    /// Also drops keys and values a failed forward pass wrote past `len`.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
        let (kb, vb) = (self.layout.k_row_bytes(), self.layout.v_row_bytes());
        for l in &mut self.layers {
            l.k.truncate(self.len * kb);
            l.v.truncate(self.len * vb);
        }
    }

    /// A new cache (same context and type) holding the first `n` positions of this one.
    pub fn prefix_copy(&self, n: usize) -> KvCache {
        let n = n.min(self.len);
        let (kb, vb) = (self.layout.k_row_bytes(), self.layout.v_row_bytes());
        let mut dst = KvCache::new(self.layout, self.layers.len(), self.n_ctx);
        for (d, s) in dst.layers.iter_mut().zip(&self.layers) {
            d.k.extend_from_slice(&s.k[..n * kb]);
            d.v.extend_from_slice(&s.v[..n * vb]);
        }
        dst.len = n;
        dst
    }

    /// Gives back the spare capacity a growing cache keeps.
    pub fn shrink_to_fit(&mut self) {
        for l in &mut self.layers {
            l.k.shrink_to_fit();
            l.v.shrink_to_fit();
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

    /// Appends keys (n, k_dim) and values (n, v_dim) of layer `il` at positions len..len+n, encoding them.
    pub(crate) fn append(&mut self, il: usize, k: &[f32], v: &[f32]) -> Result<(), EngineError> {
        let dt = self.layout.kv_type.dtype();
        let grow = |dst: &mut Vec<u8>, src: &[f32], bytes: usize| {
            let at = dst.len();
            dst.resize(at + bytes, 0);
            hearth_kernels::quantize_row(dt, src, &mut dst[at..])
        };
        let l = &mut self.layers[il];
        grow(&mut l.k, k, self.layout.bytes(k.len()))?;
        grow(&mut l.v, v, self.layout.bytes(v.len()))?;
        Ok(())
    }

    /// Marks `n` positions as written (after every layer appended them).
    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }
}
