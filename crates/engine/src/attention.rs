//! Causal multi-head attention of new queries over a sequence's KV cache, with grouped KV heads and an optional
//! sliding window. The scalar f32 path; keys and values are read from the f16 cache.

use crate::kv_cache::LayerKv;
use half::f16;
use half::slice::HalfFloatSliceExt;
use hearth_kernels::ops::{axpy, dot_f32, softmax};

/// Shapes of one attention call.
#[derive(Debug, Clone, Copy)]
pub struct AttnShape {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub head_dim_v: usize,
    pub scale: f32,
    /// `Some(w)`: a query at position p sees keys at positions > p - w only.
    pub window: Option<usize>,
}

/// Computes one head of one query: `out (head_dim_v) = softmax(scale · K q) V` over positions `0..=pos` (or the
/// window). `q`: (head_dim). `scores`: scratch of at least pos+1.
pub fn attend_one(
    s: &AttnShape,
    kv: &LayerKv,
    q: &[f32],
    head: usize,
    pos: usize,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    let kv_head = head / (s.n_head / s.n_head_kv);
    let (k_dim, v_dim) = (s.n_head_kv * s.head_dim, s.n_head_kv * s.head_dim_v);
    let first = match s.window {
        Some(w) => (pos + 1).saturating_sub(w),
        None => 0,
    };
    let n = pos + 1 - first;
    scores.clear();
    scores.resize(n, 0.0);
    // One row of keys or values widened to f32 at a time: the slice conversion uses F16C when the CPU has it,
    // where a per-element `to_f32` would not.
    let mut row = [0f32; 512];
    for (j, sc) in scores.iter_mut().enumerate() {
        let p = first + j;
        let k = &kv.k[p * k_dim + kv_head * s.head_dim..][..s.head_dim];
        *sc = dot_f16(q, k, &mut row) * s.scale;
    }
    softmax(scores);
    out.fill(0.0);
    for (j, &w) in scores.iter().enumerate() {
        let p = first + j;
        let v = &kv.v[p * v_dim + kv_head * s.head_dim_v..][..s.head_dim_v];
        for (vc, oc) in v.chunks(row.len()).zip(out.chunks_mut(row.len())) {
            let r = &mut row[..vc.len()];
            vc.convert_to_f32_slice(r);
            axpy(w, r, oc);
        }
    }
}

/// `a · b` for f32 `a` and f16 `b`, widening `b` through `row` in chunks.
fn dot_f16(a: &[f32], b: &[f16], row: &mut [f32]) -> f32 {
    let mut sum = 0.0;
    for (ac, bc) in a.chunks(row.len()).zip(b.chunks(row.len())) {
        let r = &mut row[..bc.len()];
        bc.convert_to_f32_slice(r);
        sum += dot_f32(ac, r);
    }
    sum
}
