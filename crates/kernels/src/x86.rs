//! x86-64 SIMD building blocks shared by the formats: the tiled dot-product driver and small vector helpers.
//!
//! A format provides a [`Block`] per ISA: how to unpack one weight block into registers and how to accumulate its
//! dot product with one activation block. The drivers here run it over a tile of `R` weight rows x `T` tokens, so
//! each weight block is unpacked once and reused for `T` tokens (prompt processing) while `R` rows give the
//! CPU independent work (token generation).

pub(crate) use crate::matmul::TileArgs;
use crate::matmul::TileFn;
use crate::Isa;
pub(crate) use std::arch::x86_64::*;

/// One weight block's dot product against one activation block, on one ISA. Implemented with [`block!`].
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
    type Acc: Accum;
    unsafe fn unpack(w: *const u8) -> Self::U;
    unsafe fn dot(u: &Self::U, a: *const u8, acc: Self::Acc) -> Self::Acc;
}

/// The f32 accumulator of one (row, token) output: its zero and its final sum over lanes (the same for every
/// block kernel with this register width).
///
/// # Safety
/// The CPU must have the features of the register width (AVX2 for `__m256`, AVX-512 for `__m512`).
pub(crate) trait Accum: Copy {
    unsafe fn zero() -> Self;
    unsafe fn sum(self) -> f32;
}

impl Accum for __m256 {
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn zero() -> Self {
        _mm256_setzero_ps()
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn sum(self) -> f32 {
        hsum256(self)
    }
}

impl Accum for __m512 {
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl")]
    #[inline]
    unsafe fn zero() -> Self {
        _mm512_setzero_ps()
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl")]
    #[inline]
    unsafe fn sum(self) -> f32 {
        hsum512(self)
    }
}

/// Declares unit structs implementing [`Block`] from one body, each compiled for its ISA: `avx2` (AVX2, FMA, F16C)
/// or `vnni` (AVX-512 VNNI and what it implies). In `dot`, the optional last name is bound to the ISA's product of
/// unsigned by signed bytes ([`dot_u8i8`] or [`dot_u8i8_vnni`]), so one body serves both.
///
/// ```text
/// block! {
///     Avx2: avx2, Vnni: vnni;
///     W = 18, A = 34, U = (__m128, __m256i), Acc = __m256;
///     unpack(w) { ... }
///     dot(u, a, acc, bytes) { ... bytes(x, y) ... }
/// }
/// ```
macro_rules! block {
    (
        $($name:ident: $isa:ident),+;
        W = $w:expr, A = $a:expr, U = $u:ty, Acc = $acc:ty;
        unpack($wp:ident) $unpack:block
        dot $args:tt $dot:block
    ) => {
        $(
            $crate::x86::block!(@isa $isa $name [$w] [$a] [$u] [$acc] $wp $unpack $args $dot);
        )+
    };
    (@isa avx2 $($rest:tt)*) => {
        $crate::x86::block!(@impl "avx2,fma,f16c" dot_u8i8 $($rest)*);
    };
    (@isa vnni $($rest:tt)*) => {
        $crate::x86::block!(
            @impl "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni" dot_u8i8_vnni $($rest)*
        );
    };
    (
        @impl $features:literal $product:ident $name:ident [$w:expr] [$a:expr] [$u:ty] [$acc:ty]
        $wp:ident $unpack:block ($up:ident, $ap:ident, $accp:ident $(, $bytes:ident)?) $dot:block
    ) => {
        pub(crate) struct $name;

        impl $crate::x86::Block for $name {
            const W: usize = $w;
            const A: usize = $a;
            type U = $u;
            type Acc = $acc;

            #[target_feature(enable = $features)]
            #[inline]
            unsafe fn unpack($wp: *const u8) -> $u $unpack

            #[target_feature(enable = $features)]
            #[inline]
            unsafe fn dot($up: &$u, $ap: *const u8, $accp: $acc) -> $acc {
                $(let $bytes = $crate::x86::$product;)?
                $dot
            }
        }
    };
}
pub(crate) use block;

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
            let mut acc = [[K::Acc::zero(); T]; R];
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
                    *p.out.add(t * p.out_t + r) = acc_rt.sum();
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

/// A float format's 8 elements widened to f32 lanes: all its x86 kernel ([`Floats`]) needs.
pub(crate) trait Widen: 'static {
    /// Bytes of 8 elements.
    const BYTES: usize;
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; `p` must point to `BYTES` readable bytes.
    unsafe fn load8(p: *const u8) -> __m256;
}

/// The x86 block kernel of a float format `L`: 8 products per step, fused into f32 lanes.
pub(crate) struct Floats<L>(std::marker::PhantomData<L>);

impl<L: Widen> Block for Floats<L> {
    const W: usize = L::BYTES;
    const A: usize = L::BYTES;
    type U = __m256;
    type Acc = __m256;

    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn unpack(w: *const u8) -> __m256 {
        L::load8(w)
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn dot(u: &__m256, a: *const u8, acc: __m256) -> __m256 {
        _mm256_fmadd_ps(*u, L::load8(a), acc)
    }
}

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

/// `acc + d_w * d_a * s` for a weight block against a Q8_0 block: `dw` holds d_w in lane 0, the activation's f16
/// scale is at `a`, `s` the block's integer products.
///
/// # Safety
/// `a` must point to 2 readable bytes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) unsafe fn add_scaled_q8_0(dw: __m128, a: *const u8, s: __m256i, acc: __m256) -> __m256 {
    let dd = _mm_mul_ss(dw, f16x1(a));
    _mm256_fmadd_ps(_mm256_broadcastss_ps(dd), _mm256_cvtepi32_ps(s), acc)
}

/// `acc + [d_w * d_a] * s + [m_w * s_a]` for a weight block with a min against a Q8_1 block: `dm` holds
/// [d_w, m_w, ..] (per block pair, [d0, m0, d1, m1]), `da` the activation's [d_a, s_a, ..] alike.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) fn add_scaled_q8_1(dm: __m128, da: __m128, s: __m256i, acc: __m256) -> __m256 {
    let p = _mm_mul_ps(dm, da);
    let acc = _mm256_fmadd_ps(_mm256_broadcastss_ps(p), _mm256_cvtepi32_ps(s), acc);
    _mm256_add_ps(
        acc,
        _mm256_zextps128_ps256(_mm_blend_ps::<0b0010>(_mm_setzero_ps(), p)),
    )
}

/// The f16 scales of two consecutive blocks, at `p` and `p + stride`, as f32 lanes [d0, 0, d1, 0].
///
/// # Safety
/// Both places must hold 2 readable bytes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) unsafe fn f16_pair(p: *const u8, stride: usize) -> __m128 {
    _mm_cvtph_ps(_mm_set_epi32(
        0,
        0,
        (p.add(stride) as *const u16).read_unaligned() as i32,
        (p as *const u16).read_unaligned() as i32,
    ))
}

/// Two blocks against two Q8_0 blocks with VNNI: `acc + [dw0 da0 x 8 | dw1 da1 x 8] * (sum(q qa) - offset sum(qa))`,
/// `q` the unsigned weight quants of both blocks, `dw` [dw0, 0, dw1, 0], `a` the first activation block.
///
/// # Safety
/// `a` must point to two Q8_0 blocks.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
#[inline]
pub(crate) unsafe fn add_offset_pair_q8_0(
    dw: __m128,
    q: __m512i,
    offset: i8,
    a: *const u8,
    acc: __m512,
) -> __m512 {
    let da = f16_pair(a, 34);
    let qa = load2x256(a.add(2), a.add(36));
    // sum (q - offset) a = sum q a - offset sum a
    let s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, qa);
    let sa = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(offset), qa);
    let s = _mm512_sub_epi32(s, sa);
    _mm512_fmadd_ps(
        spread2::<0, 2>(_mm_mul_ps(dw, da)),
        _mm512_cvtepi32_ps(s),
        acc,
    )
}

/// Two blocks with a min against two Q8_1 blocks with VNNI: `dm` is [d0, m0, d1, m1], `q` the unsigned quants of
/// both blocks, `a` the first activation block; adds `d da * sum(q qa)` and `m s_a` per block.
///
/// # Safety
/// `a` must point to two Q8_1 blocks.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
#[inline]
pub(crate) unsafe fn add_min_pair_q8_1(
    dm: __m128,
    q: __m512i,
    a: *const u8,
    acc: __m512,
) -> __m512 {
    // [d0 da0, m0 s0, d1 da1, m1 s1]
    let p = _mm_mul_ps(dm, f16x2x2(a, a.add(36)));
    let s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, load2x256(a.add(4), a.add(40)));
    let acc = _mm512_fmadd_ps(spread2::<0, 2>(p), _mm512_cvtepi32_ps(s), acc);
    _mm512_add_ps(
        acc,
        _mm512_zextps128_ps512(_mm_blend_ps::<0b1010>(_mm_setzero_ps(), p)),
    )
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

/// A weight format's x86 tile kernels, one per ISA; a row of the format registry (`crate::formats`) holds one.
#[derive(Clone, Copy)]
pub(crate) struct Kernels {
    avx2: TileFn,
    /// The AVX2 blocks under the AVX-512 driver (wider register file, EVEX encodings).
    avx512: TileFn,
    vnni: TileFn,
    /// A VNNI kernel taking two blocks per step, for rows of an even number of blocks.
    vnni_pair: Option<TileFn>,
    /// Rows must be a multiple of this many elements (the float formats take 8 per step); else scalar runs.
    cols_multiple: usize,
}

impl Kernels {
    /// The AVX2 blocks `A` and the VNNI blocks `V` (the same type where the format has no VNNI version).
    pub(crate) const fn new<A: Block, V: Block>() -> Kernels {
        Kernels {
            avx2: tiles_avx2::<A>,
            avx512: tiles_avx512::<A>,
            vnni: tiles_vnni::<V>,
            vnni_pair: None,
            cols_multiple: 1,
        }
    }

    /// Adds a VNNI block `P` that covers two of the format's blocks at once.
    pub(crate) const fn with_pair<P: Block>(self) -> Kernels {
        Kernels {
            vnni_pair: Some(tiles_vnni::<P>),
            ..self
        }
    }

    /// Requires rows of a multiple of `n` elements.
    pub(crate) const fn cols_multiple_of(self, n: usize) -> Kernels {
        Kernels {
            cols_multiple: n,
            ..self
        }
    }

    /// The tile function on `isa` for rows of `cols` elements in blocks of `block`, if these kernels cover them.
    pub(crate) fn tile(&self, isa: Isa, cols: usize, block: usize) -> Option<TileFn> {
        if !cols.is_multiple_of(self.cols_multiple) {
            return None;
        }
        match isa {
            Isa::Avx2 => Some(self.avx2),
            Isa::Avx512 => Some(self.avx512),
            Isa::Avx512Vnni => match self.vnni_pair {
                Some(pair) if cols.is_multiple_of(2 * block) => Some(pair),
                _ => Some(self.vnni),
            },
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

/// ggml's Q8_0 / Q8_1 rounding of the 32 floats at `p`: the scale `d = max|x| / 127` and the quants
/// `round-half-away(x / d)` as 4 vectors of 8 i32.
///
/// # Safety
/// `p` must point to 32 readable floats.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) unsafe fn quantize32(p: *const f32) -> (f32, [__m256i; 4]) {
    let d = amax32(p) / 127.0;
    let id = _mm256_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
    let q = std::array::from_fn(|i| {
        _mm256_cvtps_epi32(round_half_away256(_mm256_mul_ps(
            _mm256_loadu_ps(p.add(8 * i)),
            id,
        )))
    });
    (d, q)
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
