//! matmul against a plain f32 reference (dequantize, then f64 dot products), on every ISA this CPU has.

mod common;

use common::{activations, weights, Rng};
use hearth_kernels::formats::weight_formats;
use hearth_kernels::matmul::{activation_dtype, matmul_with_isa};
use hearth_kernels::{
    dequantize_row, matmul, matmul_many, DType, Isa, MatmulError, MatmulJob, QuantError,
    ThreadPool, WeightMatrix,
};

/// The activation block size and how coarsely each block is rounded (relative to its largest |x|).
fn activation_rounding(dtype: DType) -> (usize, f64) {
    match activation_dtype(dtype) {
        // |x - q d| <= d/2 + 127 |d - f16(d)| with d = amax/127  =>  <= amax * (0.5/127 + 2^-11)
        Some(DType::Q8_0 | DType::Q8_1) => (32, 0.5 / 127.0 + 1.0 / 2048.0),
        // d is an f32 in Q8_K
        Some(DType::Q8_K) => (256, 0.5 / 127.0 + 1e-6),
        _ => (1, 0.0),
    }
}

/// Per-element relative rounding of activations stored as floats.
fn float_rounding(dtype: DType) -> f64 {
    match dtype {
        DType::F16 => 1.0 / 2048.0,
        DType::BF16 => 1.0 / 256.0,
        _ => 0.0,
    }
}

#[allow(clippy::too_many_arguments)]
/// Checks y against the f32 reference within the error the activation rounding can explain.
fn check(
    dtype: DType,
    w_data: &[u8],
    rows: usize,
    cols: usize,
    x: &[f32],
    n_tokens: usize,
    y: &[f32],
    what: &str,
) {
    let row_bytes = dtype.row_bytes(cols as u64).unwrap() as usize;
    let mut w = vec![0f32; rows * cols]; // (rows, cols)
    for r in 0..rows {
        dequantize_row(
            dtype,
            &w_data[r * row_bytes..(r + 1) * row_bytes],
            &mut w[r * cols..(r + 1) * cols],
        )
        .unwrap();
    }
    let (ab, rel) = activation_rounding(dtype);
    for t in 0..n_tokens {
        let xt = &x[t * cols..(t + 1) * cols];
        // Largest rounding error of each activation element.
        let mut err_x = vec![0f64; cols];
        for (c0, chunk) in xt.chunks(ab).enumerate() {
            let amax = chunk.iter().fold(0f64, |m, v| m.max(v.abs() as f64));
            for (j, v) in chunk.iter().enumerate() {
                err_x[c0 * ab + j] = amax * rel + (v.abs() as f64) * float_rounding(dtype);
            }
        }
        for r in 0..rows {
            let wr = &w[r * cols..(r + 1) * cols];
            let exact: f64 = wr.iter().zip(xt).map(|(a, b)| *a as f64 * *b as f64).sum();
            let abs_sum: f64 = wr
                .iter()
                .zip(xt)
                .map(|(a, b)| (*a as f64 * *b as f64).abs())
                .sum();
            let mut bound: f64 = wr
                .iter()
                .zip(&err_x)
                .map(|(a, e)| (*a as f64).abs() * e)
                .sum();
            if activation_dtype(dtype) == Some(DType::Q8_1) {
                // The block sum s = d * sum(q) is stored as f16.
                bound += xt
                    .chunks(32)
                    .zip(wr.chunks(32))
                    .map(|(xc, wc)| {
                        let amax = xc.iter().fold(0f64, |m, v| m.max(v.abs() as f64));
                        let wmin = wc.iter().fold(f64::MAX, |m, v| m.min(*v as f64)).abs();
                        wmin * amax * 32.0 / 2048.0
                    })
                    .sum::<f64>();
            }
            bound += 1e-5 * abs_sum + 1e-6;
            let got = y[t * rows + r] as f64;
            assert!(
                (got - exact).abs() <= bound,
                "{what} {dtype} t {t} r {r}: got {got}, reference {exact}, |diff| {} > bound {bound}",
                (got - exact).abs()
            );
        }
    }
}

#[test]
fn matmul_matches_f32_reference_on_every_isa() {
    let pool = ThreadPool::new(3);
    let mut rng = Rng(7);
    for dtype in weight_formats() {
        let block = dtype.block_size().max(32);
        for (rows, blocks_per_row, n_tokens) in
            [(1, 1, 1), (7, 3, 1), (33, 2, 5), (64, 9, 4), (130, 4, 9)]
        {
            let cols = block * blocks_per_row;
            let w_data = weights(&mut rng, dtype, rows, cols);
            let x = activations(&mut rng, n_tokens * cols);
            let w = WeightMatrix {
                dtype,
                data: &w_data,
                rows,
                cols,
            };
            for isa in Isa::available() {
                let mut y = vec![f32::NAN; n_tokens * rows];
                matmul_with_isa(&pool, &w, &x, n_tokens, &mut y, isa).unwrap();
                check(
                    dtype,
                    &w_data,
                    rows,
                    cols,
                    &x,
                    n_tokens,
                    &y,
                    &format!("{isa} {rows}x{cols} n_tokens {n_tokens}"),
                );
            }
        }
    }
}

#[test]
fn matmul_is_independent_of_thread_count_and_isa() {
    // Different thread counts must give bit-identical results (each output is computed by exactly one thread).
    let mut rng = Rng(11);
    for dtype in [DType::Q4_1, DType::Q8_0, DType::Q4_K, DType::Q6_K] {
        let (rows, cols, n_tokens) = (67, 512, 3);
        let w_data = weights(&mut rng, dtype, rows, cols);
        let x = activations(&mut rng, n_tokens * cols);
        let w = WeightMatrix {
            dtype,
            data: &w_data,
            rows,
            cols,
        };
        let mut first: Option<Vec<f32>> = None;
        for n_threads in [1, 2, 3] {
            let pool = ThreadPool::new(n_threads);
            let mut y = vec![0f32; n_tokens * rows];
            matmul(&pool, &w, &x, n_tokens, &mut y).unwrap();
            match &first {
                None => first = Some(y),
                Some(f) => assert_eq!(f, &y, "{dtype} with {n_threads} threads"),
            }
        }
    }
}

#[test]
fn matmul_many_gives_each_job_the_bits_of_its_own_matmul() {
    // A mixture of experts' call: jobs of different formats and shapes, two sharing one input (quantized once), a
    // third of their format and width with its own input, one with no tokens; each output must equal matmul's for that job alone, on every thread count.
    let mut rng = Rng(12);
    let shapes = [
        (DType::Q4_K, 96, 512, 3),
        (DType::Q4_K, 40, 512, 3),
        (DType::Q8_0, 13, 64, 1),
        (DType::Q6_K, 8, 256, 0),
        (DType::Q4_0, 200, 128, 70),
        // The format and width of jobs 0 and 1 but an input of its own.
        (DType::Q4_K, 24, 512, 2),
    ];
    let ws: Vec<Vec<u8>> = shapes
        .iter()
        .map(|&(d, r, c, _)| weights(&mut rng, d, r, c))
        .collect();
    let mut xs: Vec<Vec<f32>> = shapes
        .iter()
        .map(|&(_, _, c, n)| activations(&mut rng, n * c))
        .collect();
    xs[1] = xs[0].clone();
    let matrix = |i: usize| WeightMatrix {
        dtype: shapes[i].0,
        data: &ws[i],
        rows: shapes[i].1,
        cols: shapes[i].2,
    };
    for n_threads in [1, 2, 3] {
        let pool = ThreadPool::new(n_threads);
        let want: Vec<Vec<f32>> = (0..shapes.len())
            .map(|i| {
                let mut y = vec![0f32; shapes[i].3 * shapes[i].1];
                matmul(&pool, &matrix(i), &xs[i], shapes[i].3, &mut y).unwrap();
                y
            })
            .collect();
        let mut ys: Vec<Vec<f32>> = want.iter().map(|y| vec![f32::NAN; y.len()]).collect();
        let mut jobs: Vec<MatmulJob> = ys
            .iter_mut()
            .enumerate()
            .map(|(i, y)| MatmulJob {
                w: matrix(i),
                // Jobs 0 and 1 read the very same slice.
                x: &xs[if i == 1 { 0 } else { i }],
                n_tokens: shapes[i].3,
                y,
            })
            .collect();
        matmul_many(&pool, &mut jobs).unwrap();
        for (i, (y, w)) in ys.iter().zip(&want).enumerate() {
            assert_eq!(
                y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                w.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "job {i} with {n_threads} threads"
            );
        }
    }
}

#[test]
fn matmul_refuses_bad_shapes_with_numbers() {
    let pool = ThreadPool::new(1);
    let data = vec![0u8; 2 * 18];
    let w = WeightMatrix {
        dtype: DType::Q4_0,
        data: &data,
        rows: 2,
        cols: 32,
    };
    let mut y = vec![0f32; 2];
    let e = matmul(&pool, &w, &[0f32; 31], 1, &mut y).unwrap_err();
    assert!(
        matches!(
            e,
            MatmulError::InputLen {
                expected: 32,
                got: 31,
                ..
            }
        ),
        "{e}"
    );
    let e = matmul(&pool, &w, &[0f32; 32], 1, &mut [0f32; 3]).unwrap_err();
    assert!(
        matches!(
            e,
            MatmulError::OutputLen {
                expected: 2,
                got: 3,
                ..
            }
        ),
        "{e}"
    );
    let short = WeightMatrix {
        data: &data[..35],
        ..w
    };
    let e = matmul(&pool, &short, &[0f32; 32], 1, &mut y).unwrap_err();
    assert!(
        e.to_string().contains("36") && e.to_string().contains("35"),
        "{e}"
    );
    let odd = WeightMatrix { cols: 48, ..w };
    assert!(matches!(
        matmul(&pool, &odd, &[0f32; 48], 1, &mut y),
        Err(MatmulError::Quant(QuantError::NotWholeBlocks { .. }))
    ));
    let iq = WeightMatrix {
        dtype: DType::IQ2_XXS,
        data: &[],
        rows: 0,
        cols: 256,
    };
    let e = matmul(&pool, &iq, &[], 0, &mut []).unwrap_err();
    assert!(e.to_string().contains("IQ2_XXS"), "{e}");
    // Empty work is fine.
    let empty = WeightMatrix {
        data: &[],
        rows: 0,
        ..w
    };
    matmul(&pool, &empty, &[0f32; 64], 2, &mut []).unwrap();
}
