//! x86-64 SIMD building blocks shared by the formats: the tiled dot-product driver and small vector helpers.
//!
//! A format provides a [`Block`] per ISA: how to unpack one weight block into registers and how to accumulate its
//! dot product with one activation block. The drivers here run it over a tile of `R` weight rows x `T` tokens, so
//! each weight block is unpacked once and reused for `T` tokens (prompt processing) while `R` rows give the
//! CPU independent work (token generation).

pub(crate) use crate::matmul::TileArgs;
pub(crate) use std::arch::x86_64::*;

/// One weight block's dot product against one activation block, on one ISA.
///
/// # Safety
/// Implementations use `#[target_feature]`; callers must have checked the CPU has the features of the ISA the
/// implementation belongs to, and pass pointers to whole blocks.
pub(crate) trait Block {
    /// Bytes of one weight block and of the matching activation block.
    const W: usize;
    const A: usize;
    /// A weight block unpacked into registers.
    type U: Copy;
    /// Accumulator of one (row, token) output.
    type Acc: Copy;
    unsafe fn zero() -> Self::Acc;
    unsafe fn unpack(w: *const u8) -> Self::U;
    unsafe fn dot(u: &Self::U, a: *const u8, acc: Self::Acc) -> Self::Acc;
    unsafe fn reduce(acc: Self::Acc) -> f32;
}

/// Generates a driver for one ISA: `$name::<K>(args)` covers the whole `nr x nt` region with fixed-size tiles.
macro_rules! driver {
    ($name:ident, $fixed:ident, $features:literal) => {
        /// One `R x T` tile.
        ///
        /// # Safety
        /// The CPU must have the features this driver enables; `p` must point at `R` whole weight rows, `T` whole
        /// activation rows and `T x R` outputs.
        #[target_feature(enable = $features)]
        unsafe fn $fixed<K: Block, const R: usize, const T: usize>(p: TileArgs) {
            let mut acc = [[K::zero(); T]; R];
            for b in 0..p.row_bytes / K::W {
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    let u = K::unpack(p.w.add(r * p.w_stride + b * K::W));
                    for (t, acc_rt) in acc_r.iter_mut().enumerate() {
                        *acc_rt = K::dot(&u, p.a.add(t * p.a_stride + b * K::A), *acc_rt);
                    }
                }
            }
            for (r, acc_r) in acc.iter().enumerate() {
                for (t, acc_rt) in acc_r.iter().enumerate() {
                    *p.out.add(t * p.out_t + r) = K::reduce(*acc_rt);
                }
            }
        }

        /// Runs the tile kernels of `K` over the region described by `p`.
        ///
        /// # Safety
        /// The CPU must have the features this driver enables; `p` must describe valid memory.
        #[target_feature(enable = $features)]
        pub(crate) unsafe fn $name<K: Block>(p: TileArgs) {
            let at = |r: usize, t: usize, nr: usize, nt: usize| TileArgs {
                w: p.w.add(r * p.w_stride),
                a: p.a.add(t * p.a_stride),
                out: p.out.add(t * p.out_t + r),
                nr,
                nt,
                ..p
            };
            let mut t = 0;
            while p.nt - t >= 4 {
                let mut r = 0;
                while p.nr - r >= 2 {
                    $fixed::<K, 2, 4>(at(r, t, 2, 4));
                    r += 2;
                }
                if r < p.nr {
                    $fixed::<K, 1, 4>(at(r, t, 1, 4));
                }
                t += 4;
            }
            while t < p.nt {
                let mut r = 0;
                while p.nr - r >= 4 {
                    $fixed::<K, 4, 1>(at(r, t, 4, 1));
                    r += 4;
                }
                while r < p.nr {
                    $fixed::<K, 1, 1>(at(r, t, 1, 1));
                    r += 1;
                }
                t += 1;
            }
        }
    };
}

driver!(tiles_avx2, tile_avx2, "avx2,fma,f16c");
driver!(
    tiles_avx512,
    tile_avx512,
    "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl"
);
driver!(
    tiles_vnni,
    tile_vnni,
    "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni"
);

/// e^x (8 lanes), relative error about 2e-7, for x up to 88; x < -87 gives 0. Cody–Waite reduction to
/// x = n ln2 + r, |r| ≤ ln2/2, then a degree-6 Taylor polynomial of e^r, scaled by 2^n through the exponent.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) fn exp256(x: __m256) -> __m256 {
    let x = _mm256_min_ps(
        _mm256_max_ps(x, _mm256_set1_ps(-87.0)),
        _mm256_set1_ps(88.0),
    );
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        x,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
    ));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_145_75), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428_606_8e-6), r);
    let mut p = _mm256_set1_ps(1.0 / 720.0);
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    let pow2n = _mm256_slli_epi32::<23>(_mm256_add_epi32(
        _mm256_cvtps_epi32(n),
        _mm256_set1_epi32(127),
    ));
    let e = _mm256_mul_ps(p, _mm256_castsi256_ps(pow2n));
    // Below -87 the true value is under 2^-125; flush to 0 (masked-out attention keys weigh nothing).
    let tiny = _mm256_cmp_ps::<_CMP_LE_OQ>(x, _mm256_set1_ps(-87.0));
    _mm256_andnot_ps(tiny, e)
}

/// Sum of the 8 lanes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) fn hsum256(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// Sum of the 4 lanes of an i32 vector.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) fn hsum_epi32_128(v: __m128i) -> i32 {
    let s = _mm_add_epi32(v, _mm_shuffle_epi32::<0b01_00_11_10>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// Two f16 at `p` widened to f32 lanes 0 and 1 (lanes 2 and 3 are zero).
///
/// # Safety
/// `p` must point to 4 readable bytes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) unsafe fn f16x2(p: *const u8) -> __m128 {
    _mm_cvtph_ps(_mm_cvtsi32_si128((p as *const i32).read_unaligned()))
}

/// One f16 at `p` widened to f32 in lane 0 (other lanes zero).
///
/// # Safety
/// `p` must point to 2 readable bytes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) unsafe fn f16x1(p: *const u8) -> __m128 {
    _mm_cvtph_ps(_mm_cvtsi32_si128((p as *const u16).read_unaligned() as i32))
}

/// 32 bytes at `p`.
///
/// # Safety
/// `p` must point to 32 readable bytes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) unsafe fn load256(p: *const u8) -> __m256i {
    _mm256_loadu_si256(p as *const __m256i)
}

/// 16 packed nibbles at `p` as 32 bytes: low nibbles (elements 0..16) then high nibbles (16..32).
///
/// # Safety
/// `p` must point to 16 readable bytes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) unsafe fn nibbles32(p: *const u8) -> __m256i {
    let q = _mm_loadu_si128(p as *const __m128i);
    let m = _mm_set1_epi8(0x0F);
    _mm256_set_m128i(
        _mm_and_si128(_mm_srli_epi16::<4>(q), m),
        _mm_and_si128(q, m),
    )
}

/// The 32 bits of `bits` spread to 32 bytes: byte j is 0xFF when bit j is set, else 0.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) fn bits_to_bytes(bits: u32) -> __m256i {
    let v = _mm256_set1_epi32(bits as i32);
    // Byte j takes source byte j / 8 (each 128-bit lane holds all four bytes of `bits`).
    let shuf = _mm256_setr_epi8(
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3,
        3, 3,
    );
    let v = _mm256_shuffle_epi8(v, shuf);
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit)
}

/// Sum of products of unsigned bytes `u` with signed bytes `s`, as 8 i32 lanes (AVX2: maddubs + madd).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) fn dot_u8i8(u: __m256i, s: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
}

/// Sum of products of unsigned bytes `u` with signed bytes `s`, as 8 i32 lanes (one VNNI `vpdpbusd`).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
#[inline]
pub(crate) fn dot_u8i8_vnni(u: __m256i, s: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s)
}

/// The x86 tile kernels per format and ISA.
pub(crate) mod kernels {
    use super::*;
    use crate::formats::*;
    use crate::matmul::{QuantizeFn, TileFn};
    use crate::{DType, Isa};

    /// A format's (AVX2, VNNI) pair of block kernels mapped to drivers: AVX-512 without VNNI runs the AVX2 blocks
    /// under the AVX-512 driver (wider register file, EVEX encodings).
    fn pick<A: Block, V: Block>(isa: Isa) -> Option<TileFn> {
        Some(match isa {
            Isa::Avx2 => tiles_avx2::<A>,
            Isa::Avx512 => tiles_avx512::<A>,
            Isa::Avx512Vnni => tiles_vnni::<V>,
            _ => return None,
        })
    }

    /// The SIMD quantizer for activations in `act`, if there is one.
    pub(crate) fn act_quantizer(act: DType, isa: Isa) -> Option<QuantizeFn> {
        if !matches!(isa, Isa::Avx2 | Isa::Avx512 | Isa::Avx512Vnni) {
            return None;
        }
        Some(match act {
            DType::Q8_0 => q8_0::x86_quant::quantize_avx2,
            DType::Q8_1 => q8_1::x86_quant::quantize_avx2,
            DType::Q8_K => q8_k::x86_quant::quantize_avx2,
            _ => return None,
        })
    }

    /// The SIMD tile function for `weight` on `isa` and rows of `cols` elements, if there is one.
    pub(crate) fn tile_fn(weight: DType, isa: Isa, cols: usize) -> Option<TileFn> {
        match weight {
            DType::F32 | DType::F16 | DType::BF16 if !cols.is_multiple_of(8) => None,
            DType::F32 => {
                pick::<crate::formats::f32::x86::Avx2, crate::formats::f32::x86::Avx2>(isa)
            }
            DType::F16 => {
                pick::<crate::formats::f16::x86::Avx2, crate::formats::f16::x86::Avx2>(isa)
            }
            DType::BF16 => {
                pick::<crate::formats::bf16::x86::Avx2, crate::formats::bf16::x86::Avx2>(isa)
            }
            DType::Q2_K => pick::<q2_k::x86::Avx2, q2_k::x86::Avx2>(isa),
            DType::Q3_K => pick::<q3_k::x86::Avx2, q3_k::x86::Avx2>(isa),
            DType::Q4_K => pick::<q4_k::x86::Avx2, q4_k::x86::Avx2>(isa),
            DType::Q5_K => pick::<q5_k::x86::Avx2, q5_k::x86::Avx2>(isa),
            DType::Q6_K => pick::<q6_k::x86::Avx2, q6_k::x86::Avx2>(isa),
            // Two blocks per 512-bit step where rows hold an even number of blocks.
            DType::Q4_0 if isa == Isa::Avx512Vnni && cols.is_multiple_of(64) => {
                Some(tiles_vnni::<q4_0::x86_512::Vnni512>)
            }
            DType::Q4_1 if isa == Isa::Avx512Vnni && cols.is_multiple_of(64) => {
                Some(tiles_vnni::<q4_1::x86_512::Vnni512>)
            }
            DType::Q8_0 if isa == Isa::Avx512Vnni && cols.is_multiple_of(64) => {
                Some(tiles_vnni::<q8_0::x86_512::Vnni512>)
            }
            DType::Q5_0 if isa == Isa::Avx512Vnni && cols.is_multiple_of(64) => {
                Some(tiles_vnni::<q5_0::x86_512::Vnni512>)
            }
            DType::Q5_1 if isa == Isa::Avx512Vnni && cols.is_multiple_of(64) => {
                Some(tiles_vnni::<q5_1::x86_512::Vnni512>)
            }
            DType::Q4_0 => pick::<q4_0::x86::Avx2, q4_0::x86::Vnni>(isa),
            DType::Q4_1 => pick::<q4_1::x86::Avx2, q4_1::x86::Vnni>(isa),
            DType::Q5_0 => pick::<q5_0::x86::Avx2, q5_0::x86::Vnni>(isa),
            DType::Q5_1 => pick::<q5_1::x86::Avx2, q5_1::x86::Vnni>(isa),
            DType::Q8_0 => pick::<q8_0::x86::Avx2, q8_0::x86::Vnni>(isa),
            _ => None,
        }
    }
}

/// `roundf` on 8 lanes: round half away from zero (exact for every f32).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) fn round_half_away256(x: __m256) -> __m256 {
    let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(x);
    let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    let frac = _mm256_and_ps(_mm256_sub_ps(x, t), abs_mask);
    let away = _mm256_cmp_ps::<_CMP_GE_OQ>(frac, _mm256_set1_ps(0.5));
    let one = _mm256_or_ps(_mm256_andnot_ps(abs_mask, x), _mm256_set1_ps(1.0));
    _mm256_add_ps(t, _mm256_and_ps(away, one))
}

/// The largest |x| over 32 floats at `p`.
///
/// # Safety
/// `p` must point to 32 readable floats.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) unsafe fn amax32(p: *const f32) -> f32 {
    let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    let mut m = _mm256_setzero_ps();
    for i in 0..4 {
        // max_ps returns its second operand when either is NaN, so NaNs are skipped as in the scalar code.
        m = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(p.add(8 * i)), abs_mask), m);
    }
    let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)))
}

/// Four vectors of 8 integer-valued i32 packed (saturating) to 32 i8, in order.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) fn pack_i8(q: [__m256i; 4]) -> __m256i {
    let a = _mm256_packs_epi32(q[0], q[1]);
    let b = _mm256_packs_epi32(q[2], q[3]);
    let v = _mm256_packs_epi16(a, b);
    // packs works per 128-bit lane; restore element order.
    _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
}

/// f32 to f16 bits, rounding to nearest even (as `half::f16::from_f32`).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) fn f32_to_f16(v: f32) -> u16 {
    _mm_extract_epi16::<0>(_mm_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT }>(_mm_set_ss(v))) as u16
}

/// Two 32-byte loads (at `p0` and `p1`) as one 512-bit vector.
///
/// # Safety
/// Both pointers must point to 32 readable bytes.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl")]
#[inline]
pub(crate) unsafe fn load2x256(p0: *const u8, p1: *const u8) -> __m512i {
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(load256(p0)), load256(p1))
}

/// The f16 pairs at `p0` and `p1` as f32 lanes [p0[0], p0[1], p1[0], p1[1]].
///
/// # Safety
/// Both pointers must point to 4 readable bytes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) unsafe fn f16x2x2(p0: *const u8, p1: *const u8) -> __m128 {
    let v = _mm_set_epi32(
        0,
        0,
        (p1 as *const i32).read_unaligned(),
        (p0 as *const i32).read_unaligned(),
    );
    _mm_cvtph_ps(v)
}

/// Lanes `i` and `j` of `v` spread to [v[i] x 8 | v[j] x 8].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl")]
#[inline]
pub(crate) fn spread2<const I: i32, const J: i32>(v: __m128) -> __m512 {
    let idx = _mm512_setr_epi32(I, I, I, I, I, I, I, I, J, J, J, J, J, J, J, J);
    _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(v))
}

/// Sum of the 16 lanes.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl")]
#[inline]
pub(crate) fn hsum512(v: __m512) -> f32 {
    hsum256(_mm256_add_ps(
        _mm512_castps512_ps256(v),
        _mm512_extractf32x8_ps::<1>(v),
    ))
}
