//! `y = W x` for quantized weight matrices: activations quantized to the weight format's partner, integer dot products,
//! rows split over the thread pool.

use crate::formats::{self, quantize_row};
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
    #[error("{op} is not implemented for {dtype} tensors")]
    Unsupported { dtype: DType, op: &'static str },
    #[error("{n} elements is not a whole number of {dtype} blocks of {block}")]
    NotWholeBlocks {
        dtype: DType,
        n: usize,
        block: usize,
    },
    #[error("{n} elements of {dtype} take {expected} bytes, got {got}")]
    ByteLength {
        dtype: DType,
        n: usize,
        expected: usize,
        got: usize,
    },
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
}

/// A dot product of one weight row with one activation row (both as bytes of whole blocks).
///
/// # Safety
/// The function must belong to an ISA the CPU supports; `w` and `a` must hold the same number of blocks.
pub(crate) type DotFn = unsafe fn(w: &[u8], a: &[u8]) -> f32;

/// The kernels for one weight format on one ISA, chosen once per matmul call.
#[derive(Clone, Copy)]
pub(crate) struct Kernel {
    /// The format activations are quantized to.
    pub act: DType,
    pub dot: DotFn,
}

/// The activation format ggml pairs with each weight format.
pub fn activation_dtype(weight: DType) -> Option<DType> {
    use DType::*;
    Some(match weight {
        F32 => F32,
        F16 => F16,
        BF16 => BF16,
        Q4_0 | Q5_0 | Q8_0 => Q8_0,
        Q4_1 | Q5_1 => Q8_1,
        Q2_K | Q3_K | Q4_K | Q5_K | Q6_K => Q8_K,
        _ => return None,
    })
}

/// A scalar (safe) dot product.
pub(crate) type ScalarDotFn = fn(w: &[u8], a: &[u8]) -> f32;

/// The scalar (specification) dot product for a weight format against its activation partner.
pub(crate) fn scalar_dot(weight: DType) -> Option<ScalarDotFn> {
    use DType::*;
    Some(match weight {
        F32 => formats::f32::vec_dot,
        F16 => formats::f16::vec_dot,
        BF16 => formats::bf16::vec_dot,
        Q4_0 => formats::q4_0::vec_dot,
        Q4_1 => formats::q4_1::vec_dot,
        Q5_0 => formats::q5_0::vec_dot,
        Q5_1 => formats::q5_1::vec_dot,
        Q8_0 => formats::q8_0::vec_dot,
        Q2_K => formats::q2_k::vec_dot,
        Q3_K => formats::q3_k::vec_dot,
        Q4_K => formats::q4_k::vec_dot,
        Q5_K => formats::q5_k::vec_dot,
        Q6_K => formats::q6_k::vec_dot,
        _ => return None,
    })
}

/// The best dot product for `weight` on `isa` (falls back to scalar for pairs without a SIMD version).
pub(crate) fn kernel(weight: DType, _isa: Isa) -> Option<Kernel> {
    let act = activation_dtype(weight)?;
    let dot = scalar_dot(weight)?;
    Some(Kernel { act, dot })
}

/// A raw output pointer shared by the workers; each writes a disjoint set of elements.
#[derive(Clone, Copy)]
struct SharedOut<T>(*mut T);

impl<T> SharedOut<T> {
    /// The pointer (a method, so closures capture the whole wrapper rather than the raw field).
    fn get(&self) -> *mut T {
        self.0
    }
}
// SAFETY: the workers write disjoint (token, row) elements and the pool joins them before `y` is used again.
unsafe impl<T> Send for SharedOut<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SharedOut<T> {}

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
    if !isa.is_available() {
        return Err(IsaError::Unsupported {
            value: isa.name().to_string(),
            isa,
            best: crate::detected_isa(),
        }
        .into());
    }
    let (rows, cols, dtype) = (w.rows, w.cols, w.dtype);
    let k = kernel(dtype, isa).ok_or(MatmulError::Unsupported {
        dtype,
        op: "matmul",
    })?;
    let block = dtype.block_size();
    if !cols.is_multiple_of(block) {
        return Err(MatmulError::NotWholeBlocks {
            dtype,
            n: cols,
            block,
        });
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
            // Lengths were checked above, so this cannot fail.
            let _ = quantize_row(k.act, &x[t * cols..(t + 1) * cols], dst);
        };
        if n_tokens > 1 {
            pool.parallel_for(n_tokens, quantize_token);
        } else {
            quantize_token(0);
        }
    }

    let rows_per_item = (rows / (pool.n_threads() * 8)).clamp(1, 64);
    let n_items = rows.div_ceil(rows_per_item);
    let out = SharedOut(y.as_mut_ptr());
    let act_ref = &act;
    pool.parallel_for(n_items, |item| {
        let r0 = item * rows_per_item;
        let r1 = (r0 + rows_per_item).min(rows);
        for r in r0..r1 {
            let wr = &w.data[r * row_bytes..(r + 1) * row_bytes];
            for t in 0..n_tokens {
                let a = &act_ref[t * act_row_bytes..(t + 1) * act_row_bytes];
                // SAFETY: `kernel` returned a dot product for an ISA checked above; both rows hold cols/block blocks.
                let v = unsafe { (k.dot)(wr, a) };
                // SAFETY: (t, r) is inside y (checked above) and written by this item only.
                unsafe { *out.get().add(t * rows + r) = v };
            }
        }
    });
    ACT_SCRATCH.with(|c| c.set(act));
    Ok(())
}
