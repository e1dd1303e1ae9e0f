//! Prompt processing (many tokens) on AVX-512 VNNI: weights unpacked to bytes once per row strip, activations
//! repacked so one `vpdpbusd` multiplies 4 elements of one weight row with the same 4 elements of 16 tokens.
//!
//! Every supported format is brought to one shape: groups of `4 * Q` elements where the value of weight element e is
//! `wd * q_e + (wm / sum-weight)` and the dot of a group with one token's activations is
//! `wd * da * sum(q_e * qa_e) + wm * sa`, with `q` unsigned bytes, `qa` signed bytes, `da` the activation scale and
//! `sa` the activation group's scaled sum (`da * sum(qa)`, or Q8_1's stored `s`). The output of a (row, 16 tokens)
//! pair is one zmm accumulator; a tile is R rows x N groups of 16 tokens.

use crate::formats::{f16_at, f32_at, q4_k, q8_k};
use crate::DType;
use std::arch::x86_64::*;

/// Tokens per activation group (the 16 lanes of a zmm).
const TG: usize = 16;

/// Unpacks one weight row into quants `(cols)`, group scales and group min terms `(n_groups)`.
type UnpackRow = fn(row: &[u8], q: &mut [u8], wd: &mut [f32], wm: &mut [f32]);

/// The prefill path's description of a weight format: group size in quads and how to unpack it.
#[derive(Clone, Copy)]
pub(crate) struct Format {
    /// Quads (4 elements) per group.
    pub quads: usize,
    unpack_row: UnpackRow,
    repack_token: fn(act: &[u8], t: usize, groups: &mut ActGroups),
}

/// The prefill format for `weight`, if the path covers it.
pub(crate) fn format(weight: DType) -> Option<Format> {
    Some(match weight {
        DType::Q4_1 => Format {
            quads: 8,
            unpack_row: unpack_q4_1,
            repack_token: repack_q8_1,
        },
        DType::Q4_K => Format {
            quads: 8,
            unpack_row: unpack_q4_k,
            repack_token: repack_q8_k_32,
        },
        _ => return None,
    })
}

/// One token group's repacked activations: quants `(groups, quads, 16 tokens, 4)`, scales and sums `(groups, 16)`.
pub(crate) struct ActGroups<'a> {
    pub q: &'a mut [u8],
    pub d: &'a mut [f32],
    pub s: &'a mut [f32],
    pub quads: usize,
}

impl ActGroups<'_> {
    /// Stores group g of token lane t: its 4 * quads quants, scale and sum.
    fn put(&mut self, g: usize, t: usize, qs: &[u8], d: f32, s: f32) {
        for (k, quad) in qs.chunks_exact(4).enumerate() {
            let o = ((g * self.quads + k) * TG + t) * 4;
            self.q[o..o + 4].copy_from_slice(quad);
        }
        self.d[g * TG + t] = d;
        self.s[g * TG + t] = s;
    }
}

fn unpack_q4_1(row: &[u8], q: &mut [u8], wd: &mut [f32], wm: &mut [f32]) {
    use crate::formats::q4_1::BLOCK_BYTES;
    for (b, blk) in row.chunks_exact(BLOCK_BYTES).enumerate() {
        wd[b] = f16_at(blk, 0);
        wm[b] = f16_at(blk, 2);
        for j in 0..16 {
            q[32 * b + j] = blk[4 + j] & 0x0F;
            q[32 * b + 16 + j] = blk[4 + j] >> 4;
        }
    }
}

fn repack_q8_1(act: &[u8], t: usize, g: &mut ActGroups) {
    use crate::formats::q8_1::BLOCK_BYTES;
    for (b, blk) in act.chunks_exact(BLOCK_BYTES).enumerate() {
        g.put(b, t, &blk[4..36], f16_at(blk, 0), f16_at(blk, 2));
    }
}

fn unpack_q4_k(row: &[u8], q: &mut [u8], wd: &mut [f32], wm: &mut [f32]) {
    for (b, blk) in row.chunks_exact(q4_k::BLOCK_BYTES).enumerate() {
        let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
        let (sc, mn) = q4_k::scale_min(&blk[4..16]);
        for g in 0..8 {
            let gi = 8 * b + g;
            wd[gi] = d * sc[g] as f32;
            wm[gi] = -(dmin * mn[g] as f32);
        }
        // Chunk c of 32 bytes: low nibbles are group 2c, high nibbles group 2c + 1.
        for (c, qs) in blk[16..].chunks_exact(32).enumerate() {
            let (lo, hi) = q[256 * b + 64 * c..256 * b + 64 * c + 64].split_at_mut(32);
            for ((x, l), h) in qs.iter().zip(lo).zip(hi) {
                *l = x & 0x0F;
                *h = x >> 4;
            }
        }
    }
}

/// Q8_K activations in groups of 32 (two of its 16-element sums each).
fn repack_q8_k_32(act: &[u8], t: usize, g: &mut ActGroups) {
    for (b, blk) in act.chunks_exact(q8_k::BLOCK_BYTES).enumerate() {
        let d = f32_at(blk, 0);
        for k in 0..8 {
            let qs = &blk[q8_k::QS + 32 * k..q8_k::QS + 32 * k + 32];
            let s = (q8_k::bsum(blk, 2 * k) + q8_k::bsum(blk, 2 * k + 1)) as f32;
            g.put(8 * b + k, t, qs, d, d * s);
        }
    }
}

/// Repacked activations of all tokens: token groups of 16, padded with zeros.
pub(crate) struct Acts {
    pub q: Vec<u8>,
    pub d: Vec<f32>,
    pub s: Vec<f32>,
    pub n_groups: usize,
}

impl Acts {
    /// Repacks `n_tokens` rows of `act_row_bytes` quantized activations for rows of `cols` elements.
    pub(crate) fn new(
        f: Format,
        act: &[u8],
        act_row_bytes: usize,
        n_tokens: usize,
        cols: usize,
    ) -> Self {
        let n_tg = n_tokens.div_ceil(TG);
        let n_groups = cols / (4 * f.quads);
        let mut me = Acts {
            q: vec![0; n_tg * TG * cols],
            d: vec![0.0; n_tg * n_groups * TG],
            s: vec![0.0; n_tg * n_groups * TG],
            n_groups,
        };
        let (qs, ds, ss) = (
            me.q.chunks_exact_mut(TG * cols),
            me.d.chunks_exact_mut(n_groups * TG),
            me.s.chunks_exact_mut(n_groups * TG),
        );
        for (tg, ((q, d), s)) in qs.zip(ds).zip(ss).enumerate() {
            let mut groups = ActGroups {
                q,
                d,
                s,
                quads: f.quads,
            };
            for t in 0..TG.min(n_tokens - tg * TG) {
                let tok = tg * TG + t;
                (f.repack_token)(
                    &act[tok * act_row_bytes..(tok + 1) * act_row_bytes],
                    t,
                    &mut groups,
                );
            }
        }
        me
    }
}

thread_local! {
    /// Each worker's unpacked row strip (reused across calls).
    pub(crate) static STRIP: std::cell::RefCell<Strip> = std::cell::RefCell::new(Strip::default());
}

/// Unpacked weights of a strip of rows: quants `(rows, cols)`, scales and min terms `(rows, n_groups)`.
#[derive(Default)]
pub(crate) struct Strip {
    q: Vec<u8>,
    wd: Vec<f32>,
    wm: Vec<f32>,
}

/// `out[t * out_t + r] = dot(row r, token t)` for the `nr` rows at `w` (`row_bytes` apart) and all tokens of `a`.
///
/// # Safety
/// The CPU must have AVX-512 VNNI; `out` must be valid for every (row, token) written.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn run(
    f: Format,
    strip: &mut Strip,
    w: &[u8],
    row_bytes: usize,
    nr: usize,
    cols: usize,
    a: &Acts,
    n_tokens: usize,
    out: *mut f32,
    out_t: usize,
) {
    let ng = a.n_groups;
    strip.q.resize(nr * cols, 0);
    strip.wd.resize(nr * ng, 0.0);
    strip.wm.resize(nr * ng, 0.0);
    for r in 0..nr {
        (f.unpack_row)(
            &w[r * row_bytes..(r + 1) * row_bytes],
            &mut strip.q[r * cols..(r + 1) * cols],
            &mut strip.wd[r * ng..(r + 1) * ng],
            &mut strip.wm[r * ng..(r + 1) * ng],
        );
    }
    let n_tg = n_tokens.div_ceil(TG);
    let p = Panel {
        wq: strip.q.as_ptr(),
        wd: strip.wd.as_ptr(),
        wm: strip.wm.as_ptr(),
        cols,
        ng,
        quads: f.quads,
        aq: a.q.as_ptr(),
        ad: a.d.as_ptr(),
        as_: a.s.as_ptr(),
        out,
        out_t,
        n_tokens,
    };
    let mut tg = 0;
    while tg < n_tg {
        let n = if n_tg - tg >= 2 { 2 } else { 1 };
        let mut r = 0;
        while r < nr {
            let m = (nr - r).min(4);
            match (m, n) {
                (4, 2) => panel::<4, 2>(p, r, tg),
                (3, 2) => panel::<3, 2>(p, r, tg),
                (2, 2) => panel::<2, 2>(p, r, tg),
                (1, 2) => panel::<1, 2>(p, r, tg),
                (4, _) => panel::<4, 1>(p, r, tg),
                (3, _) => panel::<3, 1>(p, r, tg),
                (2, _) => panel::<2, 1>(p, r, tg),
                _ => panel::<1, 1>(p, r, tg),
            }
            r += m;
        }
        tg += n;
    }
}

/// Pointers shared by the panels of one strip.
#[derive(Clone, Copy)]
struct Panel {
    wq: *const u8,
    wd: *const f32,
    wm: *const f32,
    cols: usize,
    ng: usize,
    quads: usize,
    aq: *const u8,
    ad: *const f32,
    as_: *const f32,
    out: *mut f32,
    out_t: usize,
    n_tokens: usize,
}

/// Rows r0..r0+R x token groups tg0..tg0+N.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
unsafe fn panel<const R: usize, const N: usize>(p: Panel, r0: usize, tg0: usize) {
    let mut acc = [[_mm512_setzero_ps(); N]; R];
    let tg_q = TG * p.cols;
    let tg_s = TG * p.ng;
    for g in 0..p.ng {
        let mut iacc = [[_mm512_setzero_si512(); N]; R];
        for k in 0..p.quads {
            let qo = (g * p.quads + k) * 4;
            let av: [__m512i; N] = std::array::from_fn(|n| {
                _mm512_loadu_si512(p.aq.add((tg0 + n) * tg_q + qo * TG) as *const _)
            });
            for (r, ir) in iacc.iter_mut().enumerate() {
                let wv = (p.wq.add((r0 + r) * p.cols + qo) as *const i32).read_unaligned();
                let wv = _mm512_set1_epi32(wv);
                for (n, irn) in ir.iter_mut().enumerate() {
                    *irn = _mm512_dpbusd_epi32(*irn, wv, av[n]);
                }
            }
        }
        for n in 0..N {
            let so = (tg0 + n) * tg_s + g * TG;
            let da = _mm512_loadu_ps(p.ad.add(so));
            let sa = _mm512_loadu_ps(p.as_.add(so));
            for r in 0..R {
                let wi = (r0 + r) * p.ng + g;
                let x = _mm512_mul_ps(_mm512_cvtepi32_ps(iacc[r][n]), da);
                let a = _mm512_fmadd_ps(x, _mm512_set1_ps(*p.wd.add(wi)), acc[r][n]);
                acc[r][n] = _mm512_fmadd_ps(_mm512_set1_ps(*p.wm.add(wi)), sa, a);
            }
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        for (n, v) in acc_r.iter().enumerate() {
            let mut lanes = [0f32; TG];
            _mm512_storeu_ps(lanes.as_mut_ptr(), *v);
            let t0 = (tg0 + n) * TG;
            for (i, x) in lanes.iter().enumerate().take(p.n_tokens.saturating_sub(t0)) {
                *p.out.add((t0 + i) * p.out_t + r0 + r) = *x;
            }
        }
    }
}
