//! The x86 kernels over packed weights (layout and arithmetic in `crate::packed`): AVX-512 VNNI (one `vpdpbusd` per
//! 4 elements of 16 rows) and AVX2 (`vpmaddubsw` + `vpmaddwd` on 8 rows). A tile is `P` panels of 16 rows x `T`
//! tokens; each (row, token) lane runs exactly the scalar reference's chain of operations, so both kernels and the
//! reference give the same bits.

use crate::packed::{ActRows, Format, PackedMatrix, PANEL};
use std::arch::x86_64::*;

/// One tile: pointers at its first panel / first token.
#[derive(Clone, Copy)]
struct Tile {
    f: Format,
    /// Block 0 of the first panel.
    w: *const u8,
    panel_bytes: usize,
    n_groups: usize,
    /// Quants of the first token (tokens `cols` apart).
    aq: *const u8,
    cols: usize,
    /// Scales, scaled sums, offset sums and sums of the first token (tokens `n_groups` apart).
    ad: *const f32,
    as_: *const f32,
    ao: *const i32,
    gs: *const i16,
    /// Output of (first token, first row); tokens `out_t` apart.
    out: *mut f32,
    out_t: usize,
    /// Valid rows from the first (the last panel may be partial).
    rows: usize,
}

type TileFn = unsafe fn(Tile);

/// Four bytes at `p` in every 32-bit lane.
///
/// # Safety
/// The CPU has AVX-512 (checked once by the caller's dispatch); `p..p + 4` is readable.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
#[inline]
unsafe fn bcast(p: *const u8) -> __m512i {
    _mm512_set1_epi32((p as *const i32).read_unaligned())
}

/// 16 rows' i8 pairs `(c_2k, c_2k+1)` at `p` (a K-quant block's integer scales or mins) as i16 pairs.
///
/// # Safety
/// The CPU has AVX-512; `p..p + 32` is readable.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
#[inline]
unsafe fn int_pairs(p: *const u8) -> __m512i {
    _mm512_cvtepi8_epi16(_mm256_loadu_si256(p as *const __m256i))
}

/// # Safety
/// AVX-512 VNNI must be available and `k` must describe valid memory of a format with `BITS`-bit quants, a min term
/// when `MIN` and integer scales in super-blocks when `KQ`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
unsafe fn tile<const P: usize, const T: usize, const BITS: u32, const MIN: bool, const KQ: bool>(
    k: Tile,
) {
    let f = k.f;
    let mut acc = [[_mm512_setzero_ps(); T]; P];
    let (nv, bg) = (f.quant_vectors(), if KQ { f.block_groups } else { 1 });
    let (qoff, gbytes, bbytes) = (f.quant_offset(), f.group_bytes(), f.block_bytes());
    let nib = _mm512_set1_epi8(0x0F);
    for b in 0..k.n_groups / bg {
        let bw: [*const u8; P] = std::array::from_fn(|p| k.w.add(p * k.panel_bytes + b * bbytes));
        // The block's integer sum per (panel, token): sum_g sc_g * p_g (K-quants) or the one group's p_g.
        let mut isum = [[_mm512_setzero_si512(); T]; P];
        for gi in 0..bg {
            let g = b * bg + gi;
            let gw: [*const u8; P] = std::array::from_fn(|p| bw[p].add(qoff + gi * gbytes));
            let mut iacc = [[_mm512_setzero_si512(); T]; P];
            for j in 0..nv {
                let e = g * f.group + 4 * j;
                if BITS == 8 {
                    let a: [__m512i; T] = std::array::from_fn(|t| bcast(k.aq.add(t * k.cols + e)));
                    for p in 0..P {
                        let v = _mm512_loadu_si512(gw[p].add(64 * j) as *const _);
                        for t in 0..T {
                            iacc[p][t] = _mm512_dpbusd_epi32(iacc[p][t], v, a[t]);
                        }
                    }
                    continue;
                }
                let lo_a: [__m512i; T] = std::array::from_fn(|t| bcast(k.aq.add(t * k.cols + e)));
                let hi_a: [__m512i; T] =
                    std::array::from_fn(|t| bcast(k.aq.add(t * k.cols + e + f.group / 2)));
                for p in 0..P {
                    let v = _mm512_loadu_si512(gw[p].add(64 * j) as *const _);
                    let mut lo = _mm512_and_si512(v, nib);
                    let mut hi = _mm512_and_si512(_mm512_srli_epi16::<4>(v), nib);
                    // Bits 4 and 5 from their masks (bit i of a mask is byte i of the vector).
                    for plane in 0..(BITS as usize).saturating_sub(4) {
                        let m = gw[p].add(f.mask_offset(plane, j)) as *const u64;
                        let bit = _mm512_set1_epi8(0x10 << plane);
                        lo = _mm512_mask_add_epi8(lo, m.read_unaligned(), lo, bit);
                        hi = _mm512_mask_add_epi8(hi, m.add(1).read_unaligned(), hi, bit);
                    }
                    for t in 0..T {
                        iacc[p][t] = _mm512_dpbusd_epi32(iacc[p][t], lo, lo_a[t]);
                        iacc[p][t] = _mm512_dpbusd_epi32(iacc[p][t], hi, hi_a[t]);
                    }
                }
            }
            for p in 0..P {
                if KQ {
                    // This group's scale per row: member gi % 2 of its pair, sign-extended to i32.
                    let pairs = int_pairs(bw[p].add(f.int_offset(0) + 2 * PANEL * (gi / 2)));
                    let sc = if gi % 2 == 0 {
                        _mm512_srai_epi32::<16>(_mm512_slli_epi32::<16>(pairs))
                    } else {
                        _mm512_srai_epi32::<16>(pairs)
                    };
                    for t in 0..T {
                        let scaled = _mm512_mullo_epi32(iacc[p][t], sc);
                        isum[p][t] = _mm512_add_epi32(isum[p][t], scaled);
                    }
                } else {
                    isum[p] = iacc[p];
                }
            }
        }
        for t in 0..T {
            let o = t * k.n_groups + b * bg;
            let da = _mm512_set1_ps(*k.ad.add(o));
            for p in 0..P {
                // The K-quants' sum_g c_g * gs_g, pair by pair: c the mins (min formats) or the scales.
                let mut c_gs = _mm512_setzero_si512();
                if KQ {
                    for kp in 0..bg / 2 {
                        let c = int_pairs(bw[p].add(f.int_offset(MIN as usize) + 2 * PANEL * kp));
                        let gs = _mm512_set1_epi32(
                            (k.gs.add(o + 2 * kp) as *const i32).read_unaligned(),
                        );
                        c_gs = _mm512_dpwssd_epi32(c_gs, c, gs);
                    }
                }
                let isum = if KQ && !MIN {
                    _mm512_sub_epi32(
                        isum[p][t],
                        _mm512_mullo_epi32(c_gs, _mm512_set1_epi32(f.offset)),
                    )
                } else if KQ {
                    isum[p][t]
                } else {
                    _mm512_sub_epi32(isum[p][t], _mm512_set1_epi32(*k.ao.add(o)))
                };
                let x = _mm512_mul_ps(_mm512_cvtepi32_ps(isum), da);
                let wd = _mm512_cvtph_ps(_mm256_loadu_si256(bw[p] as *const __m256i));
                acc[p][t] = _mm512_fmadd_ps(x, wd, acc[p][t]);
                if MIN {
                    let wm =
                        _mm512_cvtph_ps(_mm256_loadu_si256(bw[p].add(2 * PANEL) as *const __m256i));
                    let s = if KQ {
                        _mm512_mul_ps(_mm512_cvtepi32_ps(c_gs), da)
                    } else {
                        _mm512_set1_ps(*k.as_.add(o))
                    };
                    acc[p][t] = _mm512_fmadd_ps(wm, s, acc[p][t]);
                }
            }
        }
    }
    for (p, acc_p) in acc.iter().enumerate() {
        let n = k.rows.saturating_sub(p * PANEL).min(PANEL);
        if n == 0 {
            break;
        }
        let mask: __mmask16 = if n == PANEL { !0 } else { (1u16 << n) - 1 };
        for (t, v) in acc_p.iter().enumerate() {
            _mm512_mask_storeu_ps(k.out.add(t * k.out_t + p * PANEL), mask, *v);
        }
    }
}

/// `pick::<P, T>(format)`: the instance of a kernel's `tile` for one packed format (bits, min term, f16 scales),
/// one per combination `Format::for_dtype` produces: (bits, min term, integer scales).
macro_rules! pick_fn {
    ($($vis:tt)*) => {
        /// The tile function for `P` panels x `T` tokens of a packed format.
        $($vis)* fn pick<const P: usize, const T: usize>(f: Format) -> TileFn {
            match (f.bits, f.min, f.int_scales()) {
                (4, true, false) => tile::<P, T, 4, true, false>,
                (4, false, false) => tile::<P, T, 4, false, false>,
                (5, true, false) => tile::<P, T, 5, true, false>,
                (5, false, false) => tile::<P, T, 5, false, false>,
                (8, false, false) => tile::<P, T, 8, false, false>,
                (4, true, true) => tile::<P, T, 4, true, true>,
                (5, true, true) => tile::<P, T, 5, true, true>,
                (6, false, true) => tile::<P, T, 6, false, true>,
                _ => unreachable!("packed format without a kernel"),
            }
        }
    };
}

pick_fn!();

/// Tokens per pass over a panel pair: its weights stay in cache while these tokens go by.
const TOKENS_PER_PASS: usize = 64;

/// `out[t * rows + r]` for every token and the rows of panels `p0..p0 + np`, with the VNNI kernel (`vnni`) or the
/// AVX2 one.
///
/// # Safety
/// The kernel's ISA must be available; `acts` must hold `n_tokens` prepared tokens; `out` must hold
/// `n_tokens x m.rows` elements and no one else may write these panels' rows.
pub(crate) unsafe fn run(
    m: &PackedMatrix,
    acts: &ActRows,
    p0: usize,
    np: usize,
    n_tokens: usize,
    out: *mut f32,
    vnni: bool,
) {
    // (panels, tokens) of a tile for many tokens, and panels of a tile for one token: what fits the registers.
    let (many, one_p) = if vnni { ((2, 4), 4) } else { ((1, 4), 2) };
    let f = m.format;
    let ng = m.n_groups();
    let base = Tile {
        f,
        w: m.data().as_ptr(),
        panel_bytes: m.panel_bytes(),
        n_groups: ng,
        aq: acts.q.as_ptr(),
        cols: m.cols,
        ad: acts.d.as_ptr(),
        as_: acts.s.as_ptr(),
        ao: acts.o.as_ptr(),
        gs: acts.gs.as_ptr(),
        out,
        out_t: m.rows,
        rows: 0,
    };
    let at = |p: usize, t: usize| Tile {
        w: base.w.add(p * base.panel_bytes),
        aq: base.aq.add(t * base.cols),
        ad: base.ad.add(t * ng),
        as_: base.as_.add(t * ng),
        ao: base.ao.add(t * ng),
        gs: base.gs.add(t * ng),
        out: base.out.add(t * base.out_t + p * PANEL),
        rows: m.rows - p * PANEL,
        ..base
    };
    let mut t0 = 0;
    while t0 < n_tokens {
        let t_end = (t0 + TOKENS_PER_PASS).min(n_tokens);
        let mut p = p0;
        while p < p0 + np {
            let left = p0 + np - p;
            let pp = left.min(if t_end - t0 >= many.1 { many.0 } else { one_p });
            let mut t = t0;
            while t < t_end {
                let tt = if t_end - t >= many.1 { many.1 } else { 1 };
                let tile_fn: TileFn = match (vnni, pp, tt) {
                    (true, 2, 4) => pick::<2, 4>(f),
                    (true, 1, 4) => pick::<1, 4>(f),
                    (true, 4, _) => pick::<4, 1>(f),
                    (true, 3, _) => pick::<3, 1>(f),
                    (true, 2, _) => pick::<2, 1>(f),
                    (true, _, _) => pick::<1, 1>(f),
                    (false, 1, 4) => avx2::pick::<1, 4>(f),
                    (false, 2, _) => avx2::pick::<2, 1>(f),
                    (false, _, _) => avx2::pick::<1, 1>(f),
                };
                tile_fn(at(p, t));
                t += tt;
            }
            p += pp;
        }
        t0 = t_end;
    }
}

/// The AVX2 kernel: each 16-row panel is two halves of 8 rows; `vpmaddubsw` + `vpmaddwd` stand in for `vpdpbusd`
/// (exact: a pair of 6-bit x 8-bit products fits i16, and 8-bit quants are split into nibbles).
mod avx2 {
    use super::{Tile, TileFn};
    use crate::packed::{Format, PANEL};
    use std::arch::x86_64::*;

    /// Bytes of a 32-bit mask as 0xFF (bit set) or 0x00: byte i from bit i.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn expand(m: u32) -> __m256i {
        let v = _mm256_set1_epi32(m as i32);
        // Byte i takes mask byte i / 8 (shuffles are per 128-bit lane; every dword holds the whole mask).
        let pick = _mm256_setr_epi8(
            0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3,
            3, 3, 3,
        );
        let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
        let sel = _mm256_and_si256(_mm256_shuffle_epi8(v, pick), bit);
        _mm256_cmpeq_epi8(sel, bit)
    }

    /// The 4 bytes at `p` in every dword.
    ///
    /// # Safety
    /// `p` must point to 4 readable bytes.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn bcast(p: *const u8) -> __m256i {
        _mm256_set1_epi32((p as *const i32).read_unaligned())
    }

    /// Quant vectors whose products can be summed in i16 before widening to i32, for quants of `bits` < 8 bits: a
    /// vector adds two `vpmaddubsw` lanes (low and high nibbles), each at most `2 * (2^bits - 1) * 128` in magnitude
    /// (quants unsigned, activations i8), so 4 vectors of 4-bit quants, 2 of 5-bit and 1 of 6-bit stay below 2^15
    /// and every sum is exact: the i32 totals, and so the bits, are those of widening each product at once.
    const fn i16_span(bits: u32) -> usize {
        let per_vector = 2 * 2 * ((1 << bits) - 1) * 128;
        32767 / per_vector
    }

    /// 8 f16 scales of half `h` of the panel's 16 at `p`.
    ///
    /// # Safety
    /// `p` must point to the 16 scales.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn scales(p: *const u8, h: usize) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p.add(16 * h) as *const __m128i))
    }

    /// The i8 pairs `(c_2k, c_2k+1)` of half `h` of the panel's 16 rows at `p` (a K-quant block's integer scales
    /// or mins) as i16 pairs.
    ///
    /// # Safety
    /// `p` must point to the 16 rows' pairs (32 bytes).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn int_pairs(p: *const u8, h: usize) -> __m256i {
        _mm256_cvtepi8_epi16(_mm_loadu_si128(p.add(16 * h) as *const __m128i))
    }

    /// Member `odd` of each dword's i16 pair, in both halves of the dword.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn scale_pair(pairs: __m256i, odd: bool) -> __m256i {
        let even = _mm256_setr_epi8(
            0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13, 0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9,
            12, 13, 12, 13,
        );
        let pick = if odd {
            _mm256_add_epi8(even, _mm256_set1_epi8(2))
        } else {
            even
        };
        _mm256_shuffle_epi8(pairs, pick)
    }

    /// # Safety
    /// AVX2, FMA and F16C must be available and `k` must describe valid memory of the format.
    #[allow(clippy::needless_range_loop)] // (panel, half, token) index several arrays at once
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn tile<
        const P: usize,
        const T: usize,
        const BITS: u32,
        const MIN: bool,
        const KQ: bool,
    >(
        k: Tile,
    ) {
        let f = k.f;
        let mut acc = [[[_mm256_setzero_ps(); T]; 2]; P];
        let (nv, bg) = (f.quant_vectors(), if KQ { f.block_groups } else { 1 });
        let (qoff, gbytes, bbytes) = (f.quant_offset(), f.group_bytes(), f.block_bytes());
        let nib = _mm256_set1_epi8(0x0F);
        let ones = _mm256_set1_epi16(1);
        const { assert!(BITS == 8 || i16_span(BITS) >= 1) };
        let span = if BITS == 8 { 1 } else { i16_span(BITS) };
        for b in 0..k.n_groups / bg {
            let bw: [*const u8; P] =
                std::array::from_fn(|p| k.w.add(p * k.panel_bytes + b * bbytes));
            // The block's integer sums per (panel, half, token): sum_g sc_g * p_g (K-quants) or the group's p_g.
            let mut iacc = [[[_mm256_setzero_si256(); T]; 2]; P];
            for gi in 0..bg {
                let g = b * bg + gi;
                let gw: [*const u8; P] = std::array::from_fn(|p| bw[p].add(qoff + gi * gbytes));
                // What widens the i16 sums to i32: this group's scale per row, as the pair (sc, sc) (so
                // `vpmaddwd` scales while it widens, exactly: |sum| < 2^15 and |sc| <= 128), or ones.
                let mut widen = [[ones; 2]; P];
                if KQ {
                    for p in 0..P {
                        for h in 0..2 {
                            let at = bw[p].add(f.int_offset(0) + 2 * PANEL * (gi / 2));
                            widen[p][h] = scale_pair(int_pairs(at, h), gi % 2 == 1);
                        }
                    }
                }
                for j0 in (0..nv).step_by(span) {
                    // Sums of `vpmaddubsw` pairs, kept in i16 for `span` vectors (see `i16_span`).
                    let mut sacc = [[[_mm256_setzero_si256(); T]; 2]; P];
                    for j in j0..(j0 + span).min(nv) {
                        let e = g * f.group + 4 * j;
                        let lo_a: [__m256i; T] =
                            std::array::from_fn(|t| bcast(k.aq.add(t * k.cols + e)));
                        // (Unused for 8-bit quants, whose vectors hold 4 elements, not two quads.)
                        let hi_a: [__m256i; T] = std::array::from_fn(|t| {
                            if BITS == 8 {
                                lo_a[t]
                            } else {
                                bcast(k.aq.add(t * k.cols + e + f.group / 2))
                            }
                        });
                        for p in 0..P {
                            for h in 0..2 {
                                let v = _mm256_loadu_si256(gw[p].add(64 * j + 32 * h) as *const _);
                                // 8-bit quants as signed `q - 128` (their offset), magnitude and sign.
                                let ws = _mm256_xor_si256(v, _mm256_set1_epi8(-128));
                                let wabs = _mm256_abs_epi8(ws);
                                let mut lo = _mm256_and_si256(v, nib);
                                let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), nib);
                                for plane in 0..if BITS == 8 { 0 } else { BITS as usize - 4 } {
                                    let m = gw[p].add(f.mask_offset(plane, j));
                                    let bit = _mm256_set1_epi8(0x10 << plane);
                                    let (ml, mh) = (
                                        (m.add(4 * h) as *const u32).read_unaligned(),
                                        (m.add(8 + 4 * h) as *const u32).read_unaligned(),
                                    );
                                    lo = _mm256_add_epi8(lo, _mm256_and_si256(expand(ml), bit));
                                    hi = _mm256_add_epi8(hi, _mm256_and_si256(expand(mh), bit));
                                }
                                for t in 0..T {
                                    if BITS == 8 {
                                        // |q - 128| . (a with the sign of q - 128): each pair at most 2 * 128 *
                                        // 127 (the activation quantizers give -127..=127), exact in i16.
                                        let prod = _mm256_maddubs_epi16(
                                            wabs,
                                            _mm256_sign_epi8(lo_a[t], ws),
                                        );
                                        let wide = _mm256_madd_epi16(prod, ones);
                                        iacc[p][h][t] = _mm256_add_epi32(iacc[p][h][t], wide);
                                    } else {
                                        let s = _mm256_add_epi16(
                                            _mm256_maddubs_epi16(lo, lo_a[t]),
                                            _mm256_maddubs_epi16(hi, hi_a[t]),
                                        );
                                        sacc[p][h][t] = _mm256_add_epi16(sacc[p][h][t], s);
                                    }
                                }
                            }
                        }
                    }
                    if BITS != 8 {
                        for p in 0..P {
                            for h in 0..2 {
                                for t in 0..T {
                                    let wide = _mm256_madd_epi16(sacc[p][h][t], widen[p][h]);
                                    iacc[p][h][t] = _mm256_add_epi32(iacc[p][h][t], wide);
                                }
                            }
                        }
                    }
                }
            }
            for t in 0..T {
                let o = t * k.n_groups + b * bg;
                let da = _mm256_set1_ps(*k.ad.add(o));
                for p in 0..P {
                    for h in 0..2 {
                        // The K-quants' sum_g c_g * gs_g, pair by pair: c the mins (min formats) or the scales.
                        let mut c_gs = _mm256_setzero_si256();
                        if KQ {
                            for kp in 0..bg / 2 {
                                let c = int_pairs(
                                    bw[p].add(f.int_offset(MIN as usize) + 2 * PANEL * kp),
                                    h,
                                );
                                let gs = (k.gs.add(o + 2 * kp) as *const i32).read_unaligned();
                                let prod = _mm256_madd_epi16(c, _mm256_set1_epi32(gs));
                                c_gs = _mm256_add_epi32(c_gs, prod);
                            }
                        }
                        // Formats with a min term have no offset, and 8-bit quants took theirs off above.
                        let isum = if KQ && !MIN {
                            let off = _mm256_mullo_epi32(c_gs, _mm256_set1_epi32(f.offset));
                            _mm256_sub_epi32(iacc[p][h][t], off)
                        } else if MIN || BITS == 8 {
                            iacc[p][h][t]
                        } else {
                            _mm256_sub_epi32(iacc[p][h][t], _mm256_set1_epi32(*k.ao.add(o)))
                        };
                        let x = _mm256_mul_ps(_mm256_cvtepi32_ps(isum), da);
                        acc[p][h][t] = _mm256_fmadd_ps(x, scales(bw[p], h), acc[p][h][t]);
                        if MIN {
                            let s = if KQ {
                                _mm256_mul_ps(_mm256_cvtepi32_ps(c_gs), da)
                            } else {
                                _mm256_set1_ps(*k.as_.add(o))
                            };
                            let wm = scales(bw[p].add(2 * PANEL), h);
                            acc[p][h][t] = _mm256_fmadd_ps(wm, s, acc[p][h][t]);
                        }
                    }
                }
            }
        }
        let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        for (p, acc_p) in acc.iter().enumerate() {
            for (h, acc_h) in acc_p.iter().enumerate() {
                let n = k.rows.saturating_sub(p * PANEL + 8 * h).min(8);
                let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), lanes);
                for (t, v) in acc_h.iter().enumerate() {
                    _mm256_maskstore_ps(k.out.add(t * k.out_t + p * PANEL + 8 * h), mask, *v);
                }
            }
        }
    }

    pick_fn!(pub(super));
}
