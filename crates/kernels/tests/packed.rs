//! Packed weights (`PackedMatrix`, `matmul_packed`): the VNNI kernel equals the scalar reference bit for bit, a
//! token's output does not depend on how many tokens share its call, and both agree with the per-token kernels'
//! specification (ggml's dot products) up to summation order. Row counts are not multiples of the 16-row panels
//! and token counts cross the kernel's 4-token tiles and 64-token passes.

mod common;

use common::{activations, weights, Rng};
use hearth_kernels::matmul::matmul_with_isa;
use hearth_kernels::packed::{matmul_packed_many_with_isa, matmul_packed_with_isa, PackedJob};
use hearth_kernels::{dequantize_row, DType, Isa, PackedMatrix, ThreadPool, WeightMatrix};

/// The formats with a packed form (`PackedMatrix::supports`; the crate's own tests check which these are).
fn packed_formats() -> impl Iterator<Item = DType> {
    DType::ALL
        .into_iter()
        .filter(|&t| PackedMatrix::supports(t))
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn packed_matches_reference_and_is_batch_invariant() {
    let pool = ThreadPool::new(2);
    let mut rng = Rng(11);
    for dtype in packed_formats() {
        // (17, 288) and (33, 160): odd panel x group counts in the 32-element formats (a buffer overflow once).
        let odd: &[(usize, usize)] = if dtype.block_size() == 32 {
            &[(17, 288), (33, 160)]
        } else {
            &[]
        };
        for &(rows, cols) in [(1, 256), (37, 512), (64, 256), (300, 256)]
            .iter()
            .chain(odd)
        {
            let wb = weights(&mut rng, dtype, rows, cols);
            let w = WeightMatrix {
                dtype,
                data: &wb,
                rows,
                cols,
            };
            let m = PackedMatrix::new(&w)
                .unwrap()
                .expect("format has a packed form");
            let mut wf = vec![0f32; rows * cols];
            dequantize_row(dtype, &wb, &mut wf).unwrap();
            let n_tokens = 70;
            let x = activations(&mut rng, n_tokens * cols);
            let mut reference = vec![f32::NAN; n_tokens * rows];
            matmul_packed_with_isa(&pool, &m, &x, n_tokens, &mut reference, Isa::Scalar).unwrap();

            // Against ggml's per-token specification: only the summation order differs.
            let mut spec = vec![0f32; n_tokens * rows];
            matmul_with_isa(&pool, &w, &x, n_tokens, &mut spec, Isa::Scalar).unwrap();
            for t in 0..n_tokens {
                for r in 0..rows {
                    let abs: f32 = (0..cols)
                        .map(|c| (wf[r * cols + c] * x[t * cols + c]).abs())
                        .sum();
                    let (g, s) = (reference[t * rows + r], spec[t * rows + r]);
                    assert!(
                        (g - s).abs() <= 4e-6 * abs * (cols as f32).sqrt() + 1e-6,
                        "{dtype} {rows}x{cols} (r {r}, t {t}): packed {g} vs per-token spec {s}"
                    );
                }
            }
            for isa in [Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni] {
                if !isa.is_available() {
                    eprintln!("NOTE: no {isa} on this CPU: its packed kernel is not under test");
                    continue;
                }
                let mut all = vec![f32::NAN; n_tokens * rows];
                matmul_packed_with_isa(&pool, &m, &x, n_tokens, &mut all, isa).unwrap();
                assert_eq!(
                    bits(&all),
                    bits(&reference),
                    "{dtype} {rows}x{cols}: {isa} vs scalar reference"
                );
                // The same tokens in calls of other sizes give the same bits.
                for n in [1, 2, 3, 4, 5, 17] {
                    for t0 in [0, n_tokens - n] {
                        let mut part = vec![f32::NAN; n * rows];
                        let xs = &x[t0 * cols..(t0 + n) * cols];
                        matmul_packed_with_isa(&pool, &m, xs, n, &mut part, isa).unwrap();
                        assert_eq!(
                            bits(&part),
                            bits(&all[t0 * rows..(t0 + n) * rows]),
                            "{dtype} {rows}x{cols} on {isa}: tokens {t0}..{} alone vs in a call of {n_tokens}",
                            t0 + n
                        );
                    }
                }
            }
        }
    }
}

/// Several products in one call (a mixture of experts' gate, up and down): each job's output is bit for bit that
/// of its own call, whatever the other jobs are: another format, a shared input, a different token count, none.
#[test]
fn many_jobs_in_one_call_give_each_jobs_own_bits() {
    let pool = ThreadPool::new(2);
    let mut rng = Rng(23);
    let packed = |rng: &mut Rng, dtype: DType, rows: usize, cols: usize| {
        let wb = weights(rng, dtype, rows, cols);
        let w = WeightMatrix {
            dtype,
            data: &wb,
            rows,
            cols,
        };
        PackedMatrix::new(&w).unwrap().unwrap()
    };
    let (cols, n) = (512, 9);
    let ms = [
        packed(&mut rng, DType::Q4_K, 48, cols),
        packed(&mut rng, DType::Q4_K, 48, cols),
        packed(&mut rng, DType::Q6_K, 33, cols),
        packed(&mut rng, DType::Q8_0, 16, cols),
        packed(&mut rng, DType::Q4_0, 70, cols),
        packed(&mut rng, DType::Q4_1, 20, cols),
    ];
    let x = activations(&mut rng, n * cols);
    let x2 = activations(&mut rng, 3 * cols);
    // (matrix, input, tokens): jobs 0, 1 and 2 share `x` (two of them one prepared form), job 4 has no tokens;
    // jobs 5 and 6 share `x2` with the same group and offset but other activation formats (Q8_K, Q8_1).
    let plan: [(usize, &[f32], usize); 7] = [
        (0, &x, n),
        (1, &x, n),
        (2, &x, n),
        (3, &x2, 3),
        (4, &x[..0], 0),
        (0, &x2, 3),
        (5, &x2, 3),
    ];
    for isa in [Isa::Scalar, Isa::Avx2, Isa::Avx512Vnni] {
        if !isa.is_available() {
            eprintln!("NOTE: no {isa} on this CPU: its packed kernel is not under test");
            continue;
        }
        let mut ys: Vec<Vec<f32>> = plan
            .iter()
            .map(|&(m, _, t)| vec![f32::NAN; t * ms[m].rows])
            .collect();
        let mut jobs: Vec<PackedJob> = plan
            .iter()
            .zip(&mut ys)
            .map(|(&(m, x, n_tokens), y)| PackedJob {
                w: &ms[m],
                x,
                n_tokens,
                y,
            })
            .collect();
        matmul_packed_many_with_isa(&pool, &mut jobs, isa).unwrap();
        for (&(m, x, t), y) in plan.iter().zip(&ys) {
            let mut alone = vec![f32::NAN; t * ms[m].rows];
            matmul_packed_with_isa(&pool, &ms[m], x, t, &mut alone, isa).unwrap();
            assert_eq!(
                bits(y),
                bits(&alone),
                "{} x {t} tokens on {isa}",
                ms[m].dtype
            );
        }
    }
}

/// A packed matrix's rows dequantize to exactly the file rows' values (a tied token embedding reads its rows from
/// the packed logits matrix); a row past the end, or a wrong length, is an error.
#[test]
fn packed_rows_dequantize_as_the_file_rows_do() {
    let mut rng = Rng(5);
    for dtype in packed_formats() {
        let (rows, cols) = (37, 512);
        let wb = weights(&mut rng, dtype, rows, cols);
        let w = WeightMatrix {
            dtype,
            data: &wb,
            rows,
            cols,
        };
        let m = PackedMatrix::new(&w).unwrap().unwrap();
        let mut want = vec![0f32; rows * cols];
        dequantize_row(dtype, &wb, &mut want).unwrap();
        let mut got = vec![f32::NAN; cols];
        for r in 0..rows {
            m.dequantize_row(r, &mut got).unwrap();
            assert_eq!(
                bits(&got),
                bits(&want[r * cols..][..cols]),
                "{dtype} row {r}"
            );
        }
        assert!(m.dequantize_row(rows, &mut got).is_err());
        assert!(m.dequantize_row(0, &mut got[1..]).is_err());
    }
}

#[test]
fn packed_refuses_what_it_does_not_cover() {
    let data = vec![0u8; 4 * 32 * 4];
    let w = WeightMatrix {
        dtype: DType::F32,
        data: &data,
        rows: 4,
        cols: 32,
    };
    assert!(PackedMatrix::new(&w).unwrap().is_none());
    let w = WeightMatrix {
        dtype: DType::Q8_0,
        data: &data[..10],
        rows: 4,
        cols: 32,
    };
    let e = PackedMatrix::new(&w).unwrap_err().to_string();
    assert!(e.contains("needs 136 bytes, got 10"), "{e}");
}
