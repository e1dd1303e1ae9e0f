//! Flash-attention building blocks: widen a tile of cached keys or values to f32, and fold one tile of keys and
//! values into the running softmax state of a block of queries (the online softmax, so no score matrix of the
//! whole context is ever stored and every key is read once per block of queries).
//!
//! For each query row r the state is (m_r, l_r, acc_r): the largest score seen, the sum of exp(score - m_r), and
//! the sum of exp(score - m_r) · v. The attention output is acc_r / l_r once every key has been folded in.
//!
//! ```
//! use hearth_kernels::attention::{fold_tile, SoftmaxState, Tile};
//! use hearth_kernels::Isa;
//! // One query (head_dim 2) against two keys; values are (1, 0) and (0, 1).
//! let q = [1.0f32, 0.0];
//! let (k, v) = ([1.0f32, 0.0, 0.0, 1.0], [1.0f32, 0.0, 0.0, 1.0]);
//! let (mut m, mut l, mut acc) = ([f32::NEG_INFINITY], [0.0f32], [0.0f32; 2]);
//! let tile = Tile { k: &k, v: &v, v_stride: 2, n_keys: 2, k_t: &[], k_t_stride: 0 };
//! let mut state = SoftmaxState { m: &mut m, l: &mut l, acc: &mut acc };
//! fold_tile(Isa::Scalar, &q, 2, 2, 1.0, &tile, &[(0, 2)], &mut state, &mut vec![0.0; 2]);
//! let w0 = 1f32.exp() / (1f32.exp() + 1.0);
//! assert!((acc[0] / l[0] - w0).abs() < 1e-6);
//! ```

use crate::lanes;
use crate::{DType, Isa, MatmulError, QuantError};

/// Keys and values of up to a tile of positions, widened to f32.
pub struct Tile<'a> {
    /// (n_keys, head_dim)
    pub k: &'a [f32],
    /// Row `j` of the values is `v[j * v_stride..][..head_dim_v]` (values may live inside the key rows, as in
    /// multi-head latent attention, where they are the first `head_dim_v` columns).
    pub v: &'a [f32],
    pub v_stride: usize,
    pub n_keys: usize,
    /// Optionally the keys again, transposed: (head_dim, k_t_stride) with `k_t_stride >= n_keys` a multiple of 8.
    /// With many queries per tile, scoring 8 keys per instruction against it beats a dot product per key;
    /// empty to go without.
    pub k_t: &'a [f32],
    pub k_t_stride: usize,
}

/// Writes `k` (n_keys, head_dim) transposed into `k_t` (head_dim, stride), for [`Tile::k_t`].
pub fn transpose_keys(k: &[f32], n_keys: usize, head_dim: usize, k_t: &mut [f32], stride: usize) {
    assert!(n_keys <= stride && k.len() >= n_keys * head_dim && k_t.len() >= head_dim * stride);
    for (j, row) in k.chunks_exact(head_dim).take(n_keys).enumerate() {
        for (d, &x) in row.iter().enumerate() {
            k_t[d * stride + j] = x;
        }
    }
}

/// The running softmax of a block of queries: m, l (n_q) and acc (n_q, head_dim_v).
pub struct SoftmaxState<'a> {
    pub m: &'a mut [f32],
    pub l: &'a mut [f32],
    pub acc: &'a mut [f32],
}

/// Folds a tile into the state of `n_q = ranges.len()` queries `q` (n_q, head_dim): query r sees the tile's keys
/// `ranges[r].0..ranges[r].1` only (causal masks and sliding windows are ranges). `scores`: scratch of at least
/// `tile.n_keys`. The SIMD paths need `head_dim` and `head_dim_v` to be multiples of 8 and fall back otherwise.
#[allow(clippy::too_many_arguments)]
pub fn fold_tile(
    isa: Isa,
    q: &[f32],
    head_dim: usize,
    head_dim_v: usize,
    scale: f32,
    tile: &Tile<'_>,
    ranges: &[(usize, usize)],
    state: &mut SoftmaxState<'_>,
    scores: &mut [f32],
) {
    let n_q = ranges.len();
    assert!(q.len() >= n_q * head_dim && state.acc.len() >= n_q * head_dim_v);
    assert!(tile.k.len() >= tile.n_keys * head_dim && scores.len() >= tile.n_keys);
    assert!(tile.n_keys == 0 || tile.v.len() >= (tile.n_keys - 1) * tile.v_stride + head_dim_v);
    assert!(ranges.iter().all(|&(lo, hi)| lo <= hi && hi <= tile.n_keys));
    assert!(
        tile.k_t.is_empty()
            || (tile.k_t_stride >= tile.n_keys
                && tile.k_t_stride.is_multiple_of(8)
                && tile.k_t.len() >= head_dim * tile.k_t_stride
                && scores.len() >= tile.k_t_stride)
    );
    #[cfg(target_arch = "x86_64")]
    if isa >= Isa::Avx2
        && isa != Isa::Neon
        && head_dim.is_multiple_of(8)
        && head_dim_v.is_multiple_of(8)
    {
        // SAFETY: `isa` is at least AVX2 (+FMA, F16C), which callers only pass when the CPU has it (see
        // `selected_isa`); the bounds were asserted above.
        unsafe { x86::fold_tile(q, head_dim, head_dim_v, scale, tile, ranges, state, scores) };
        return;
    }
    let _ = isa;
    fold_tile_scalar(q, head_dim, head_dim_v, scale, tile, ranges, state, scores);
}

/// Portable [`fold_tile`]: the AVX2 kernel's arithmetic lane by lane ([`crate::lanes`]), so the same bits where
/// head dims are multiples of 8. Per query: scores `scale * q·k_j`, their running max, the weights `p_j =
/// e^(s_j - max)` summed in 8 lanes, then the state rescaled by `e^(old max - max)` and `acc += p_j v_j` in key order.
#[allow(clippy::too_many_arguments)]
pub fn fold_tile_scalar(
    q: &[f32],
    head_dim: usize,
    head_dim_v: usize,
    scale: f32,
    tile: &Tile<'_>,
    ranges: &[(usize, usize)],
    state: &mut SoftmaxState<'_>,
    scores: &mut [f32],
) {
    for (r, &(lo, hi)) in ranges.iter().enumerate() {
        if lo >= hi {
            continue;
        }
        let qr = &q[r * head_dim..][..head_dim];
        let mut m_new = state.m[r];
        let s = &mut scores[lo..hi];
        for (j, sj) in (lo..hi).zip(s.iter_mut()) {
            *sj = scale * lanes::dot(qr, &tile.k[j * head_dim..][..head_dim]);
            m_new = m_new.max(*sj);
        }
        let n8 = s.len() / 8 * 8;
        let mut sum = [0f32; 8];
        for chunk in s[..n8].chunks_exact_mut(8) {
            for (x, acc) in chunk.iter_mut().zip(&mut sum) {
                *x = lanes::exp(*x - m_new);
                *acc += *x;
            }
        }
        let mut l = lanes::sum8(&sum);
        for x in &mut s[n8..] {
            *x = (*x - m_new).exp();
            l += *x;
        }
        // exp(-inf) = 0 wipes the empty initial state.
        let c = (state.m[r] - m_new).exp();
        state.l[r] = state.l[r] * c + l;
        state.m[r] = m_new;
        let acc = &mut state.acc[r * head_dim_v..][..head_dim_v];
        for (d, a) in acc.iter_mut().enumerate() {
            let mut y = *a * c;
            for (j, &p) in s.iter().enumerate() {
                y = p.mul_add(tile.v[(lo + j) * tile.v_stride + d], y);
            }
            *a = y;
        }
    }
}

/// Widens `n` rows of `width` elements, stored in `dtype` at `src[i * src_stride..]`, into `dst` (n, width).
/// `dtype` is F32, F16 or Q8_0 (the KV cache's types).
pub fn widen_rows(
    isa: Isa,
    dtype: DType,
    src: &[u8],
    src_stride: usize,
    n: usize,
    width: usize,
    dst: &mut [f32],
) -> Result<(), MatmulError> {
    let row_bytes = dtype
        .row_bytes(width as u64)
        .filter(|_| width.is_multiple_of(dtype.block_size()))
        .ok_or(MatmulError::Quant(QuantError::Unsupported {
            dtype,
            op: "widen a row whose width is not a whole number of blocks",
        }))? as usize;
    assert!(n == 0 || src.len() >= (n - 1) * src_stride + row_bytes);
    assert!(dst.len() >= n * width);
    #[cfg(target_arch = "x86_64")]
    if dtype == DType::F16 && isa >= Isa::Avx2 && isa != Isa::Neon && width.is_multiple_of(8) {
        for i in 0..n {
            let s = &src[i * src_stride..][..row_bytes];
            // SAFETY: AVX2/F16C present (see `fold_tile`); `s` holds `width` f16 and the row of `dst` as many f32.
            unsafe { x86::widen_f16(s, &mut dst[i * width..][..width]) };
        }
        return Ok(());
    }
    let _ = isa;
    for i in 0..n {
        crate::dequantize_row(
            dtype,
            &src[i * src_stride..][..row_bytes],
            &mut dst[i * width..][..width],
        )?;
    }
    Ok(())
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{SoftmaxState, Tile};
    use crate::x86::{exp256, hsum256};
    use std::arch::x86_64::*;

    /// `a · b` for equal lengths, a multiple of 8.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        hsum256(dot_lanes(a, b))
    }

    /// The 8 lanes [`dot`] sums: two FMA chains over 16 elements at a time (a last 8 into the first), added.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn dot_lanes(a: &[f32], b: &[f32]) -> __m256 {
        assert!(b.len() >= a.len());
        let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        while i + 16 <= a.len() {
            // SAFETY: i + 16 <= len of both slices.
            unsafe {
                s0 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(a.as_ptr().add(i)),
                    _mm256_loadu_ps(b.as_ptr().add(i)),
                    s0,
                );
                s1 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(a.as_ptr().add(i + 8)),
                    _mm256_loadu_ps(b.as_ptr().add(i + 8)),
                    s1,
                );
            }
            i += 16;
        }
        if i < a.len() {
            // SAFETY: lengths are multiples of 8, so 8 elements remain.
            unsafe {
                s0 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(a.as_ptr().add(i)),
                    _mm256_loadu_ps(b.as_ptr().add(i)),
                    s0,
                );
            }
        }
        _mm256_add_ps(s0, s1)
    }

    /// `[q · k_0, …, q · k_7]` for the 8 keys (rows of `q.len()`) at the start of `k`: each exactly [`dot`], with
    /// `hsum256`'s pairs of lanes ((0+4) + (2+6)) + ((1+5) + (3+7)) added for the 8 keys side by side instead of
    /// one horizontal sum per key.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn dots8(q: &[f32], k: &[f32]) -> __m256 {
        let hd = q.len();
        let mut v = [_mm256_setzero_ps(); 8];
        for (j, vj) in v.iter_mut().enumerate() {
            *vj = dot_lanes(q, &k[j * hd..][..hd]);
        }
        // Per key, lanes i + (i + 4): key 2p in the low half, key 2p + 1 in the high half.
        let mut h = [_mm256_setzero_ps(); 4];
        for (p, hp) in h.iter_mut().enumerate() {
            let (a, b) = (v[2 * p], v[2 * p + 1]);
            *hp = _mm256_add_ps(
                _mm256_permute2f128_ps::<0x20>(a, b),
                _mm256_permute2f128_ps::<0x31>(a, b),
            );
        }
        // Then lanes 0 + 2 and 1 + 3 of each: keys (0, 2 | 1, 3) and (4, 6 | 5, 7).
        let mut t = [_mm256_setzero_ps(); 2];
        for (i, ti) in t.iter_mut().enumerate() {
            let (a, b) = (h[2 * i], h[2 * i + 1]);
            *ti = _mm256_add_ps(
                _mm256_shuffle_ps::<0b01_00_01_00>(a, b),
                _mm256_shuffle_ps::<0b11_10_11_10>(a, b),
            );
        }
        // Then the two: keys (0, 2, 4, 6 | 1, 3, 5, 7), put back in order.
        let r = _mm256_add_ps(
            _mm256_shuffle_ps::<0b10_00_10_00>(t[0], t[1]),
            _mm256_shuffle_ps::<0b11_01_11_01>(t[0], t[1]),
        );
        _mm256_permutevar8x32_ps(r, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
    }

    /// `scores[j] = scale * q · k_j` for every key j < stride, from keys transposed (head_dim, stride).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn scores_transposed(q: &[f32], scale: f32, k_t: &[f32], stride: usize, scores: &mut [f32]) {
        for j in (0..stride).step_by(32.min(stride)) {
            let n = (stride - j).min(32);
            // Up to 4 x 8 keys at once: one broadcast of q[d] feeds 4 FMAs.
            let mut acc = [_mm256_setzero_ps(); 4];
            for (d, &qd) in q.iter().enumerate() {
                let qv = _mm256_set1_ps(qd);
                let row = &k_t[d * stride + j..][..n];
                for (c, a) in acc.iter_mut().enumerate().take(n / 8) {
                    // SAFETY: c * 8 + 8 <= n = row.len().
                    *a = _mm256_fmadd_ps(
                        qv,
                        unsafe { _mm256_loadu_ps(row.as_ptr().add(c * 8)) },
                        *a,
                    );
                }
            }
            let sv = _mm256_set1_ps(scale);
            for (c, a) in acc.iter().enumerate().take(n / 8) {
                // SAFETY: j + c * 8 + 8 <= stride <= scores.len() (asserted by `fold_tile`).
                unsafe {
                    _mm256_storeu_ps(scores.as_mut_ptr().add(j + c * 8), _mm256_mul_ps(*a, sv))
                };
            }
        }
    }

    /// `y = y * c + sum_j p[j] v_j`, for `y` a multiple of 8 long.
    ///
    /// Each lane is one chain of FMAs over j. A single 8-lane chain waits on the FMA latency at every step, so up to
    /// 8 vectors of `y` (64 columns) are carried at once: independent chains, the same operations per lane.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn scale_accumulate(y: &mut [f32], c: f32, p: &[f32], v: &[f32], v_stride: usize) {
        let mut d = 0;
        while d + 64 <= y.len() {
            scale_accumulate_n::<8>(y, d, c, p, v, v_stride);
            d += 64;
        }
        while d + 32 <= y.len() {
            scale_accumulate_n::<4>(y, d, c, p, v, v_stride);
            d += 32;
        }
        while d < y.len() {
            scale_accumulate_n::<1>(y, d, c, p, v, v_stride);
            d += 8;
        }
    }

    /// [`scale_accumulate`] for the `8 * N` columns of `y` from `d`.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn scale_accumulate_n<const N: usize>(
        y: &mut [f32],
        d: usize,
        c: f32,
        p: &[f32],
        v: &[f32],
        v_stride: usize,
    ) {
        assert!(d + 8 * N <= y.len());
        assert!(p.is_empty() || (p.len() - 1) * v_stride + d + 8 * N <= v.len());
        let cv = _mm256_set1_ps(c);
        // SAFETY: d + 8N <= y.len(), and row j of v holds columns d..d + 8N for every j < p.len() (asserted).
        unsafe {
            let yp = y.as_mut_ptr().add(d);
            let mut acc = [_mm256_setzero_ps(); N];
            for (i, a) in acc.iter_mut().enumerate() {
                *a = _mm256_mul_ps(_mm256_loadu_ps(yp.add(8 * i)), cv);
            }
            for (j, &pj) in p.iter().enumerate() {
                let pv = _mm256_set1_ps(pj);
                let row = v.as_ptr().add(j * v_stride + d);
                for (i, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(pv, _mm256_loadu_ps(row.add(8 * i)), *a);
                }
            }
            for (i, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(yp.add(8 * i), *a);
            }
        }
    }

    /// AVX2 [`super::fold_tile`]: same arithmetic, vector exp, FMA dots.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; bounds as asserted by `fold_tile`.
    #[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn fold_tile(
        q: &[f32],
        head_dim: usize,
        head_dim_v: usize,
        scale: f32,
        tile: &Tile<'_>,
        ranges: &[(usize, usize)],
        state: &mut SoftmaxState<'_>,
        scores: &mut [f32],
    ) {
        for (r, &(lo, hi)) in ranges.iter().enumerate() {
            if lo >= hi {
                continue;
            }
            let qr = &q[r * head_dim..][..head_dim];
            let mut m_new = state.m[r];
            if tile.k_t.is_empty() {
                let mut j = lo;
                while j + 8 <= hi {
                    let s8 = _mm256_mul_ps(
                        _mm256_set1_ps(scale),
                        dots8(qr, &tile.k[j * head_dim..][..8 * head_dim]),
                    );
                    // SAFETY: j + 8 <= hi <= n_keys <= scores.len() (asserted by `fold_tile`).
                    unsafe { _mm256_storeu_ps(scores.as_mut_ptr().add(j), s8) };
                    j += 8;
                }
                for j in j..hi {
                    scores[j] = scale * dot(qr, &tile.k[j * head_dim..][..head_dim]);
                }
            } else {
                scores_transposed(qr, scale, tile.k_t, tile.k_t_stride, scores);
            }
            // The running max, 8 lanes at a time (a max is exact, so any order gives the scalar loop's value; a NaN
            // score is skipped, as `f32::max` skips it): one chain of scalar maxes was a fifth of decoding at depth.
            let s = &mut scores[lo..hi];
            let mut mv = _mm256_set1_ps(m_new);
            let mut j = 0;
            while j + 8 <= s.len() {
                // SAFETY: j + 8 <= s.len().
                mv = _mm256_max_ps(unsafe { _mm256_loadu_ps(s.as_ptr().add(j)) }, mv);
                j += 8;
            }
            let mut lanes = [0f32; 8];
            // SAFETY: `lanes` holds 8 floats.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), mv) };
            for &x in lanes.iter().chain(&s[j..]) {
                m_new = m_new.max(x);
            }
            let mv = _mm256_set1_ps(m_new);
            let mut sum = _mm256_setzero_ps();
            let mut j = 0;
            while j + 8 <= s.len() {
                // SAFETY: j + 8 <= s.len().
                unsafe {
                    let p = s.as_mut_ptr().add(j);
                    let e = exp256(_mm256_sub_ps(_mm256_loadu_ps(p), mv));
                    sum = _mm256_add_ps(sum, e);
                    _mm256_storeu_ps(p, e);
                }
                j += 8;
            }
            let mut l = hsum256(sum);
            for x in &mut s[j..] {
                *x = (*x - m_new).exp();
                l += *x;
            }
            let c = (state.m[r] - m_new).exp();
            state.l[r] = state.l[r] * c + l;
            state.m[r] = m_new;
            let acc = &mut state.acc[r * head_dim_v..][..head_dim_v];
            scale_accumulate(acc, c, s, &tile.v[lo * tile.v_stride..], tile.v_stride);
        }
    }

    /// `src` (f16 bytes) widened into `dst`, 8 at a time.
    ///
    /// # Safety
    /// The CPU must have AVX2 and F16C; `src.len() == 2 * dst.len()`, a multiple of 16.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn widen_f16(src: &[u8], dst: &mut [f32]) {
        for (s, d) in src.chunks_exact(16).zip(dst.chunks_exact_mut(8)) {
            // SAFETY: each chunk holds 8 f16 (16 bytes) and 8 f32.
            unsafe {
                let h = _mm_loadu_si128(s.as_ptr() as *const __m128i);
                _mm256_storeu_ps(d.as_mut_ptr(), _mm256_cvtph_ps(h));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attention of each query over all its visible keys, computed directly in f64.
    fn reference(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        hd: usize,
        hdv: usize,
        scale: f32,
        ranges: &[(usize, usize)],
    ) -> Vec<f64> {
        let mut out = vec![0f64; ranges.len() * hdv];
        for (r, &(lo, hi)) in ranges.iter().enumerate() {
            let s: Vec<f64> = (lo..hi)
                .map(|j| {
                    scale as f64
                        * (0..hd)
                            .map(|d| q[r * hd + d] as f64 * k[j * hd + d] as f64)
                            .sum::<f64>()
                })
                .collect();
            let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let w: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
            let z: f64 = w.iter().sum();
            for (j, wj) in (lo..hi).zip(&w) {
                for d in 0..hdv {
                    out[r * hdv + d] += wj / z * v[j * hdv + d] as f64;
                }
            }
        }
        out
    }

    fn pseudo(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
            })
            .collect()
    }

    /// Folds `n_keys` keys in tiles of 32 on `isa`: the state's `(acc, l)`.
    #[allow(clippy::too_many_arguments)]
    fn fold_in_tiles(
        isa: Isa,
        transposed: bool,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        (hd, hdv, n_keys): (usize, usize, usize),
        ranges: &[(usize, usize)],
    ) -> (Vec<f32>, Vec<f32>) {
        let (n_q, tile) = (ranges.len(), 32);
        let (mut m, mut l, mut acc) = (
            vec![f32::NEG_INFINITY; n_q],
            vec![0.0; n_q],
            vec![0.0; n_q * hdv],
        );
        let mut scores = vec![0.0; tile];
        for t0 in (0..n_keys).step_by(tile) {
            let nk = tile.min(n_keys - t0);
            let r: Vec<_> = ranges
                .iter()
                .map(|&(lo, hi)| {
                    let (a, b) = (lo.clamp(t0, t0 + nk), hi.clamp(t0, t0 + nk));
                    (a - t0, b.max(a) - t0)
                })
                .collect();
            let mut k_t = vec![0.0; hd * tile];
            transpose_keys(&k[t0 * hd..], nk, hd, &mut k_t, tile);
            let t = Tile {
                k: &k[t0 * hd..][..nk * hd],
                v: &v[t0 * hdv..][..nk * hdv],
                v_stride: hdv,
                n_keys: nk,
                k_t: if transposed { &k_t } else { &[] },
                k_t_stride: tile,
            };
            let mut st = SoftmaxState {
                m: &mut m,
                l: &mut l,
                acc: &mut acc,
            };
            fold_tile(isa, q, hd, hdv, 0.3, &t, &r, &mut st, &mut scores);
        }
        (acc, l)
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn tiles_fold_to_the_full_softmax_on_every_isa() {
        // (64, 64): the SIMD path's 8-key scoring and 64-column accumulation; (24, 40): the remainders of both.
        for dims in [(64, 64, 100), (24, 40, 100)] {
            fold_on_every_isa(dims);
        }
    }

    fn fold_on_every_isa(dims @ (hd, hdv, n_keys): (usize, usize, usize)) {
        let ranges = [(0, 100), (0, 1), (37, 90), (99, 100), (5, 64)];
        let q = pseudo(ranges.len() * hd, 1);
        let k = pseudo(n_keys * hd, 2);
        let v = pseudo(n_keys * hdv, 3);
        let want = reference(&q, &k, &v, hd, hdv, 0.3, &ranges);
        let portable = fold_in_tiles(Isa::Scalar, false, &q, &k, &v, dims, &ranges);
        for (isa, transposed) in Isa::available()
            .into_iter()
            .flat_map(|i| [(i, false), (i, true)])
        {
            let (acc, l) = fold_in_tiles(isa, transposed, &q, &k, &v, dims, &ranges);
            for r in 0..ranges.len() {
                for d in 0..hdv {
                    let got = acc[r * hdv + d] / l[r];
                    let w = want[r * hdv + d];
                    assert!(
                        (got as f64 - w).abs() < 1e-5,
                        "{isa} (transposed keys: {transposed}): query {r} dim {d}: {got} vs {w}"
                    );
                }
            }
            // Keys scored one dot product each (what the engine runs): the portable path's bits on every ISA.
            if !transposed {
                assert_eq!(bits(&acc), bits(&portable.0), "{isa}: acc vs portable");
                assert_eq!(bits(&l), bits(&portable.1), "{isa}: l vs portable");
            }
        }
    }

    #[test]
    fn widen_matches_dequantize_on_every_isa() {
        let x = pseudo(4 * 64, 9);
        for dtype in [DType::F32, DType::F16, DType::Q8_0] {
            let rb = dtype.row_bytes(64).unwrap() as usize;
            let mut bytes = vec![0u8; 4 * rb];
            for (xr, br) in x.chunks(64).zip(bytes.chunks_mut(rb)) {
                crate::quantize_row(dtype, xr, br).unwrap();
            }
            let mut want = vec![0f32; 4 * 64];
            for (br, wr) in bytes.chunks(rb).zip(want.chunks_mut(64)) {
                crate::dequantize_row(dtype, br, wr).unwrap();
            }
            for isa in Isa::available() {
                let mut got = vec![0f32; 4 * 64];
                widen_rows(isa, dtype, &bytes, rb, 4, 64, &mut got).unwrap();
                assert_eq!(got, want, "{isa} {dtype:?}");
            }
        }
    }
}
