//! `y = W x` for quantized weight matrices: activations quantized to the weight format's partner, integer dot products,
//! rows split over the thread pool.

use crate::formats::{self, QuantError};
use crate::isa::{selected_isa, Isa, IsaError};
use crate::{DType, ThreadPool};
use std::cell::Cell;

/// A row-major weight matrix straight from the GGUF mmap: `rows` rows of `cols` elements, each row
/// `dtype.row_bytes(cols)` bytes.
#[derive(Debug, Clone, Copy)]
pub struct WeightMatrix<'a> {
    pub dtype: DType,
    pub data: &'a [u8],
    pub rows: usize,
    pub cols: usize,
}

/// Why a kernel call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatmulError {
    #[error("{dtype} weight matrix of {rows} x {cols} needs {expected} bytes, got {got}")]
    WeightBytes {
        dtype: DType,
        rows: usize,
        cols: usize,
        expected: usize,
        got: usize,
    },
    #[error("input x has {got} elements, expected n_tokens {n_tokens} x cols {cols} = {expected}")]
    InputLen {
        n_tokens: usize,
        cols: usize,
        expected: usize,
        got: usize,
    },
    #[error(
        "output y has {got} elements, expected n_tokens {n_tokens} x rows {rows} = {expected}"
    )]
    OutputLen {
        n_tokens: usize,
        rows: usize,
        expected: usize,
        got: usize,
    },
    #[error(transparent)]
    Isa(#[from] IsaError),
    #[error(transparent)]
    Quant(#[from] QuantError),
}

/// One tile of work: `nr` weight rows starting at `w` (`w_stride` bytes apart, `row_bytes` used of each) against `nt`
/// activation rows starting at `a` (`a_stride` bytes apart, `act_bytes` used of each); the output for (row r, token t)
/// goes to `out[t * out_t + r]`.
#[derive(Clone, Copy)]
pub(crate) struct TileArgs {
    pub w: *const u8,
    pub w_stride: usize,
    pub row_bytes: usize,
    pub nr: usize,
    pub a: *const u8,
    pub a_stride: usize,
    pub act_bytes: usize,
    pub nt: usize,
    pub out: *mut f32,
    pub out_t: usize,
}

/// Computes one tile (see [`TileArgs`]).
///
/// # Safety
/// The function must belong to an ISA the CPU supports, and the arguments must describe valid memory holding whole
/// blocks of the kernel's weight and activation formats.
pub(crate) type TileFn = unsafe fn(TileArgs);

/// A scalar (safe) dot product of one weight row with one activation row.
pub(crate) type ScalarDotFn = fn(w: &[u8], a: &[u8]) -> f32;

/// Quantizes a whole number of blocks of f32 into an activation format.
///
/// # Safety
/// The function must belong to an ISA the CPU supports; `dst` must be exactly the quantized size of `src`.
pub(crate) type QuantizeFn = unsafe fn(src: &[f32], dst: &mut [u8]);

/// A dot product of one weight row with one activation row, run for each (row, token) pair of a tile: the scalar
/// specifications, and the NEON kernels.
///
/// # Safety
/// The function must belong to an ISA the CPU supports; both rows hold whole blocks.
pub(crate) type PairDotFn = unsafe fn(w: &[u8], a: &[u8]) -> f32;

/// How a kernel covers a tile.
#[derive(Clone, Copy)]
pub(crate) enum Tile {
    /// A tile kernel that covers the whole region itself.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Whole(TileFn),
    /// One dot product per (row, token) pair.
    Pairs(PairDotFn),
}

/// The kernels for one weight format on one ISA, chosen once per matmul call.
#[derive(Clone, Copy)]
pub(crate) struct Kernel {
    /// The format activations are quantized to, and how.
    pub act: DType,
    pub quantize: QuantizeFn,
    pub tile: Tile,
}

impl Kernel {
    /// Computes one tile (see [`TileArgs`]).
    ///
    /// # Safety
    /// As [`TileFn`].
    pub(crate) unsafe fn run(&self, p: TileArgs) {
        let dot = match self.tile {
            // SAFETY: the caller's contract.
            Tile::Whole(tile) => return unsafe { tile(p) },
            Tile::Pairs(dot) => dot,
        };
        for r in 0..p.nr {
            // SAFETY: the caller guarantees nr rows of row_bytes bytes at w_stride apart.
            let w = unsafe { std::slice::from_raw_parts(p.w.add(r * p.w_stride), p.row_bytes) };
            for t in 0..p.nt {
                // SAFETY: as above for the activations, and (r, t) is inside the output; the dot product's ISA is
                // available (the caller's contract).
                unsafe {
                    let a = std::slice::from_raw_parts(p.a.add(t * p.a_stride), p.act_bytes);
                    *p.out.add(t * p.out_t + r) = dot(w, a);
                }
            }
        }
    }
}

/// The activation format ggml pairs with each weight format.
pub fn activation_dtype(weight: DType) -> Option<DType> {
    Some(formats::spec(weight)?.dot.as_ref()?.act)
}

/// The tile kernel for `weight` on `isa` for rows of `cols` elements. Falls back to scalar where an ISA has no
/// version of a format (and for float rows whose length is not a multiple of the SIMD width).
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
pub(crate) fn kernel(weight: DType, isa: Isa, cols: usize) -> Option<Kernel> {
    let spec = formats::spec(weight)?;
    let dot = spec.dot.as_ref()?;
    let act = formats::spec(dot.act)?;
    let scalar_q: QuantizeFn = act.quantize?;
    let (simd, simd_q): (Option<Tile>, Option<QuantizeFn>) = match isa {
        Isa::Scalar => (None, None),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512 | Isa::Avx512Vnni => (
            dot.x86
                .and_then(|k| k.tile(isa, cols, weight.block_size()))
                .map(Tile::Whole),
            act.x86_quantize,
        ),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => (dot.neon.map(|k| Tile::Pairs(k.dot())), None),
        #[allow(unreachable_patterns)]
        _ => (None, None),
    };
    Some(Kernel {
        act: dot.act,
        quantize: simd_q.unwrap_or(scalar_q),
        tile: simd.unwrap_or(Tile::Pairs(dot.scalar)),
    })
}

/// Quantizes `src` to the activation format `act` with the quantizer `matmul` uses on `isa` (tests compare it with
/// the scalar reference byte for byte).
pub fn quantize_activations_with_isa(
    act: DType,
    isa: Isa,
    src: &[f32],
    dst: &mut [u8],
) -> Result<(), MatmulError> {
    require(isa)?;
    // Checks the lengths (and that `act` is a format with a quantizer).
    formats::quantize_row(act, src, dst)?;
    let simd: Option<QuantizeFn> = match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512 | Isa::Avx512Vnni => {
            formats::spec(act).and_then(|s| s.x86_quantize)
        }
        _ => None,
    };
    if let Some(q) = simd {
        // SAFETY: the ISA is available and the lengths were checked by quantize_row.
        unsafe { q(src, dst) };
    }
    Ok(())
}

/// The dot product of one weight row with one activation row (already in the activation format) on `isa`, as the
/// matmul kernels compute it. For tests and tools; `matmul` is the fast path.
pub fn dot_with_isa(weight: DType, isa: Isa, w: &[u8], a: &[u8]) -> Result<f32, MatmulError> {
    let mut out = [0f32];
    tile_with_isa(weight, isa, w, 1, a, 1, &mut out)?;
    Ok(out[0])
}

/// `out[t * nr + r] = dot(w row r, a row t)` for `nr` weight rows in `w` and `nt` activation rows in `a`, on `isa`,
/// through the same tile kernels `matmul` uses (tests drive every tile shape with it).
pub fn tile_with_isa(
    weight: DType,
    isa: Isa,
    w: &[u8],
    nr: usize,
    a: &[u8],
    nt: usize,
    out: &mut [f32],
) -> Result<(), MatmulError> {
    require(isa)?;
    let unsupported = MatmulError::Quant(QuantError::Unsupported {
        dtype: weight,
        op: "dot",
    });
    let act = activation_dtype(weight).ok_or(unsupported.clone())?;
    if nr == 0
        || nt == 0
        || !w.len().is_multiple_of(nr)
        || !a.len().is_multiple_of(nt)
        || out.len() != nr * nt
    {
        return Err(MatmulError::Quant(QuantError::ByteLength {
            dtype: weight,
            n: nr,
            expected: nr * nt,
            got: out.len(),
        }));
    }
    let row_bytes = w.len() / nr;
    let n = row_bytes / weight.type_size() * weight.block_size();
    if weight.row_bytes(n as u64) != Some(row_bytes as u64) {
        return Err(MatmulError::Quant(QuantError::ByteLength {
            dtype: weight,
            n,
            expected: n,
            got: row_bytes,
        }));
    }
    let act_bytes = a.len() / nt;
    if act.row_bytes(n as u64) != Some(act_bytes as u64) {
        return Err(MatmulError::Quant(QuantError::ByteLength {
            dtype: act,
            n,
            expected: n,
            got: act_bytes,
        }));
    }
    let k = kernel(weight, isa, n).ok_or(unsupported)?;
    let args = TileArgs {
        w: w.as_ptr(),
        w_stride: row_bytes,
        row_bytes,
        nr,
        a: a.as_ptr(),
        a_stride: act_bytes,
        act_bytes,
        nt,
        out: out.as_mut_ptr(),
        out_t: nr,
    };
    // SAFETY: the ISA is available and the sizes were checked above.
    unsafe { k.run(args) };
    Ok(())
}

/// A raw output pointer shared by the workers; each writes a disjoint set of elements.
#[derive(Clone, Copy)]
pub(crate) struct SharedOut<T>(pub(crate) *mut T);

impl<T> SharedOut<T> {
    /// The pointer (a method, so closures capture the whole wrapper rather than the raw field).
    pub(crate) fn get(&self) -> *mut T {
        self.0
    }
}
// SAFETY: the workers write disjoint (token, row) elements and the pool joins them before `y` is used again.
unsafe impl<T> Send for SharedOut<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SharedOut<T> {}

/// Refuses an ISA this CPU lacks, naming the best one it has.
pub(crate) fn require(isa: Isa) -> Result<(), MatmulError> {
    if !isa.is_available() {
        return Err(IsaError::Unsupported {
            value: isa.name().to_string(),
            isa,
            best: crate::detected_isa(),
        }
        .into());
    }
    Ok(())
}

/// Checks that `w` holds whole blocks and exactly `rows` rows; returns the bytes of one row.
pub(crate) fn check_weights(w: &WeightMatrix) -> Result<usize, MatmulError> {
    let (rows, cols, dtype) = (w.rows, w.cols, w.dtype);
    let block = dtype.block_size();
    if !cols.is_multiple_of(block) {
        return Err(MatmulError::Quant(QuantError::NotWholeBlocks {
            dtype,
            n: cols,
            block,
        }));
    }
    let row_bytes = cols / block * dtype.type_size();
    let expected = rows.saturating_mul(row_bytes);
    if w.data.len() != expected {
        return Err(MatmulError::WeightBytes {
            dtype,
            rows,
            cols,
            expected,
            got: w.data.len(),
        });
    }
    Ok(row_bytes)
}

/// Checks x: (n_tokens, cols) and y: (n_tokens, rows).
pub(crate) fn check_io(
    rows: usize,
    cols: usize,
    x: &[f32],
    n_tokens: usize,
    y: &[f32],
) -> Result<(), MatmulError> {
    let expected = n_tokens.saturating_mul(cols);
    if x.len() != expected {
        return Err(MatmulError::InputLen {
            n_tokens,
            cols,
            expected,
            got: x.len(),
        });
    }
    let expected = n_tokens.saturating_mul(rows);
    if y.len() != expected {
        return Err(MatmulError::OutputLen {
            n_tokens,
            rows,
            expected,
            got: y.len(),
        });
    }
    Ok(())
}

thread_local! {
    /// Reused buffer for quantized activations (avoids an allocation per call).
    static ACT_SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// `y[t][r] = sum_c W[r][c] * x[t][c]` with x: (n_tokens, cols) and y: (n_tokens, rows), both f32 row-major.
///
/// x is first quantized to the weight format's activation partner (Q8_0, Q8_1, Q8_K, f16, bf16 or f32), as
/// llama.cpp does; rows are split over the pool's threads.
pub fn matmul(
    pool: &ThreadPool,
    w: &WeightMatrix,
    x: &[f32],
    n_tokens: usize,
    y: &mut [f32],
) -> Result<(), MatmulError> {
    let isa = selected_isa()?;
    matmul_with_isa(pool, w, x, n_tokens, y, isa)
}

/// [`matmul`] on a given ISA (tests and benchmarks compare ISAs with it). Refuses an ISA the CPU lacks.
pub fn matmul_with_isa(
    pool: &ThreadPool,
    w: &WeightMatrix,
    x: &[f32],
    n_tokens: usize,
    y: &mut [f32],
    isa: Isa,
) -> Result<(), MatmulError> {
    require(isa)?;
    let (rows, cols, dtype) = (w.rows, w.cols, w.dtype);
    let k = kernel(dtype, isa, cols).ok_or(MatmulError::Quant(QuantError::Unsupported {
        dtype,
        op: "matmul",
    }))?;
    let row_bytes = check_weights(w)?;
    check_io(rows, cols, x, n_tokens, y)?;
    if n_tokens == 0 || rows == 0 {
        return Ok(());
    }

    // Quantized activations: (n_tokens, act_row_bytes).
    let act_row_bytes = cols / k.act.block_size() * k.act.type_size();
    let mut act = ACT_SCRATCH.with(|c| c.take());
    act.clear();
    act.resize(n_tokens * act_row_bytes, 0);
    {
        let act_out = SharedOut(act.as_mut_ptr());
        let quantize_token = |t: usize| {
            // SAFETY: token t owns bytes t*act_row_bytes.. of `act`, disjoint from other tokens'.
            let dst = unsafe {
                std::slice::from_raw_parts_mut(act_out.get().add(t * act_row_bytes), act_row_bytes)
            };
            // SAFETY: the quantizer's ISA was checked above; dst is exactly one quantized row of cols elements.
            unsafe { (k.quantize)(&x[t * cols..(t + 1) * cols], dst) };
        };
        if n_tokens > 1 {
            pool.parallel_for(n_tokens, quantize_token);
        } else {
            quantize_token(0);
        }
    }

    let rows_per_item = (rows / (pool.n_threads() * 8)).clamp(4, 64) / 4 * 4;
    let n_items = rows.div_ceil(rows_per_item);
    let out = SharedOut(y.as_mut_ptr());
    let (w_ptr, a_ptr) = (
        SharedOut(w.data.as_ptr() as *mut u8),
        SharedOut(act.as_ptr() as *mut u8),
    );
    // Tokens per pass over an item's rows: the item's weights stay in cache while this many tokens stream by.
    const TOKENS_PER_PASS: usize = 64;
    pool.parallel_for(n_items, |item| {
        let r0 = item * rows_per_item;
        let nr = rows_per_item.min(rows - r0);
        let mut t0 = 0;
        while t0 < n_tokens {
            let nt = TOKENS_PER_PASS.min(n_tokens - t0);
            let args = TileArgs {
                // SAFETY: rows r0..r0+nr and tokens t0..t0+nt are inside the checked buffers.
                w: unsafe { w_ptr.get().add(r0 * row_bytes) },
                w_stride: row_bytes,
                row_bytes,
                nr,
                // SAFETY: as above.
                a: unsafe { a_ptr.get().add(t0 * act_row_bytes) },
                a_stride: act_row_bytes,
                act_bytes: act_row_bytes,
                nt,
                // SAFETY: as above; this item is the only writer of rows r0..r0+nr.
                out: unsafe { out.get().add(t0 * rows + r0) },
                out_t: rows,
            };
            // SAFETY: `kernel` returned a tile function for an ISA checked above; sizes were checked above.
            unsafe { k.run(args) };
            t0 += nt;
        }
    });
    ACT_SCRATCH.with(|c| c.set(act));
    Ok(())
}
