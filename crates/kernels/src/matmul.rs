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
    #[error("row {row} into {got} elements: the matrix has {rows} rows of {cols}")]
    Row {
        row: usize,
        rows: usize,
        cols: usize,
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
            // SAFETY: `p` meets [`TileFn`]'s contract (this function's own), and `tile` was chosen for an ISA the
            // caller checked.
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
// SAFETY: shared between the workers of one `parallel_for`, which write disjoint (token, row) elements through it
// and never read what another writes; `parallel_for` returns only after every worker has left the job.
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
    matmul_many_with_isa(
        pool,
        &mut [MatmulJob {
            w: *w,
            x,
            n_tokens,
            y,
        }],
        isa,
    )
}

/// One product of [`matmul_many`]: `y (n_tokens, w.rows) = x (n_tokens, w.cols) Wᵀ`.
pub struct MatmulJob<'a> {
    pub w: WeightMatrix<'a>,
    pub x: &'a [f32],
    pub n_tokens: usize,
    pub y: &'a mut [f32],
}

/// Independent matmuls (a mixture of experts' experts) in one pass over the pool: their activations quantized
/// together (jobs sharing the same `x` share its quantization), then every job's rows split into one list of work
/// items, so the pool is woken once for all of them. Each output is bit for bit what [`matmul`] gives for its job.
pub fn matmul_many(pool: &ThreadPool, jobs: &mut [MatmulJob<'_>]) -> Result<(), MatmulError> {
    let isa = selected_isa()?;
    matmul_many_with_isa(pool, jobs, isa)
}

/// A job checked and placed: its kernel, row sizes, where its quantized activations start, its first work item.
struct Placed<'a> {
    k: Kernel,
    x: &'a [f32],
    cols: usize,
    rows: usize,
    n_tokens: usize,
    row_bytes: usize,
    act_row_bytes: usize,
    act_at: usize,
    rows_per_item: usize,
    first_item: usize,
    w: SharedOut<u8>,
    y: SharedOut<f32>,
}

/// [`matmul_many`] on a given ISA.
pub fn matmul_many_with_isa(
    pool: &ThreadPool,
    jobs: &mut [MatmulJob<'_>],
    isa: Isa,
) -> Result<(), MatmulError> {
    require(isa)?;
    let mut placed: Vec<Placed<'_>> = Vec::with_capacity(jobs.len());
    // Jobs whose activations are quantized here (a later job with the same `x` and format reuses them).
    let mut quantized: Vec<usize> = Vec::new();
    let (mut act_len, mut total_rows) = (0usize, 0usize);
    for (j, job) in jobs.iter_mut().enumerate() {
        let (rows, cols, dtype) = (job.w.rows, job.w.cols, job.w.dtype);
        let k = kernel(dtype, isa, cols).ok_or(MatmulError::Quant(QuantError::Unsupported {
            dtype,
            op: "matmul",
        }))?;
        let row_bytes = check_weights(&job.w)?;
        check_io(rows, cols, job.x, job.n_tokens, job.y)?;
        let act_row_bytes = cols / k.act.block_size() * k.act.type_size();
        let same = quantized
            .iter()
            .map(|&q| &placed[q])
            .find(|o| std::ptr::eq(o.x, job.x) && o.k.act == k.act && o.cols == cols);
        let act_at = match same {
            Some(o) => o.act_at,
            None => {
                quantized.push(j);
                act_len += job.n_tokens * act_row_bytes;
                act_len - job.n_tokens * act_row_bytes
            }
        };
        if job.n_tokens > 0 {
            total_rows += rows;
        }
        placed.push(Placed {
            k,
            x: job.x,
            cols,
            rows,
            n_tokens: job.n_tokens,
            row_bytes,
            act_row_bytes,
            act_at,
            rows_per_item: 0,
            first_item: 0,
            w: SharedOut(job.w.data.as_ptr() as *mut u8),
            y: SharedOut(job.y.as_mut_ptr()),
        });
    }

    // Quantized activations of every quantizing job: (n_tokens, act_row_bytes) each, one after another.
    let mut act = ACT_SCRATCH.with(|c| c.take());
    act.clear();
    act.resize(act_len, 0);
    {
        let act_out = SharedOut(act.as_mut_ptr());
        // Token i of the concatenated quantizing jobs.
        let n_quantize: usize = quantized.iter().map(|&j| placed[j].n_tokens).sum();
        let quantize_token = |mut i: usize| {
            for &j in &quantized {
                let p = &placed[j];
                if i >= p.n_tokens {
                    i -= p.n_tokens;
                    continue;
                }
                // SAFETY: token i of job j owns its act_row_bytes at act_at + i * act_row_bytes, disjoint from every
                // other token's.
                let dst = unsafe {
                    std::slice::from_raw_parts_mut(
                        act_out.get().add(p.act_at + i * p.act_row_bytes),
                        p.act_row_bytes,
                    )
                };
                // SAFETY: the quantizer's ISA was checked above; dst is exactly one quantized row of cols elements.
                unsafe { (p.k.quantize)(&p.x[i * p.cols..(i + 1) * p.cols], dst) };
                return;
            }
        };
        // Quantizing is cheap next to the products: a pass over the pool pays off for many elements only.
        let n_elements: usize = quantized
            .iter()
            .map(|&j| placed[j].n_tokens * placed[j].cols)
            .sum();
        if n_quantize > 1 && n_elements >= 1 << 15 {
            pool.parallel_for(n_quantize, quantize_token);
        } else {
            (0..n_quantize).for_each(quantize_token);
        }
    }

    // Work items: runs of rows of one job, about 8 per thread over all jobs' rows.
    let rows_per_item = (total_rows / (pool.n_threads() * 8)).clamp(4, 64) / 4 * 4;
    let mut n_items = 0;
    for p in placed.iter_mut() {
        p.rows_per_item = rows_per_item;
        p.first_item = n_items;
        if p.n_tokens > 0 {
            n_items += p.rows.div_ceil(rows_per_item);
        }
    }
    let a_ptr = SharedOut(act.as_ptr() as *mut u8);
    // Tokens per pass over an item's rows: the item's weights stay in cache while this many tokens stream by.
    const TOKENS_PER_PASS: usize = 64;
    pool.parallel_for(n_items, |item| {
        let p = &placed[placed.partition_point(|p| p.first_item <= item) - 1];
        let r0 = (item - p.first_item) * p.rows_per_item;
        let nr = p.rows_per_item.min(p.rows - r0);
        let mut t0 = 0;
        while t0 < p.n_tokens {
            let nt = TOKENS_PER_PASS.min(p.n_tokens - t0);
            let args = TileArgs {
                // SAFETY: r0 + nr <= p.rows, and `p.w` holds p.rows rows of row_bytes (checked when the job was
                // placed), so the offset stays inside the weights.
                w: unsafe { p.w.get().add(r0 * p.row_bytes) },
                w_stride: p.row_bytes,
                row_bytes: p.row_bytes,
                nr,
                // SAFETY: t0 + nt <= p.n_tokens, and the job's quantized activations are n_tokens rows of
                // act_row_bytes starting at act_at inside `act` (sized for every job above).
                a: unsafe { a_ptr.get().add(p.act_at + t0 * p.act_row_bytes) },
                a_stride: p.act_row_bytes,
                act_bytes: p.act_row_bytes,
                nt,
                // SAFETY: `p.y` is n_tokens × rows outputs and (t0, r0) is inside it; this item is the only writer of
                // the job's rows r0..r0+nr.
                out: unsafe { p.y.get().add(t0 * p.rows + r0) },
                out_t: p.rows,
            };
            // SAFETY: `kernel` returned a tile function for an ISA checked above; sizes were checked above.
            unsafe { p.k.run(args) };
            t0 += nt;
        }
    });
    ACT_SCRATCH.with(|c| c.set(act));
    Ok(())
}
