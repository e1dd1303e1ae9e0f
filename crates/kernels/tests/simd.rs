//! Every SIMD tile kernel against the scalar specification, on every ISA this CPU has, at tile shapes and row
//! lengths that hit every remainder path of the tiling drivers.

mod common;

use common::{activations, weights, Rng};
use hearth_kernels::formats::weight_formats;
use hearth_kernels::matmul::{activation_dtype, tile_with_isa};
use hearth_kernels::{dequantize_row, quantize_row, DType, Isa};

fn dequantized(dtype: DType, bytes: &[u8], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; rows * cols];
    let rb = bytes.len() / rows;
    for r in 0..rows {
        dequantize_row(
            dtype,
            &bytes[r * rb..(r + 1) * rb],
            &mut out[r * cols..(r + 1) * cols],
        )
        .unwrap();
    }
    out
}

#[test]
fn every_isa_matches_scalar_at_every_tile_shape() {
    let isas: Vec<Isa> = Isa::available()
        .into_iter()
        .filter(|i| *i != Isa::Scalar)
        .collect();
    eprintln!("ISAs under test: {isas:?}");
    let mut rng = Rng(99);
    for dtype in weight_formats() {
        let act = activation_dtype(dtype).unwrap();
        let block = dtype.block_size().max(act.block_size());
        // Float formats: lengths that are and are not multiples of the SIMD widths.
        let lens: Vec<usize> = if block == 1 {
            vec![1, 7, 8, 16, 40, 67, 256]
        } else {
            vec![1, 2, 3, 5]
        };
        for &len in &lens {
            let cols = if block == 1 { len } else { len * block };
            for (nr, nt) in [
                (1, 1),
                (3, 1),
                (4, 1),
                (7, 1),
                (1, 4),
                (2, 4),
                (3, 4),
                (5, 9),
                (6, 6),
            ] {
                let w = weights(&mut rng, dtype, nr, cols);
                let x = activations(&mut rng, nt * cols);
                let act_rb = act.row_bytes(cols as u64).unwrap() as usize;
                let mut a = vec![0u8; nt * act_rb];
                for t in 0..nt {
                    quantize_row(
                        act,
                        &x[t * cols..(t + 1) * cols],
                        &mut a[t * act_rb..(t + 1) * act_rb],
                    )
                    .unwrap();
                }
                let mut want = vec![0f32; nr * nt];
                tile_with_isa(dtype, Isa::Scalar, &w, nr, &a, nt, &mut want).unwrap();
                // Bound for summation-order differences: a few ulps of the sum of |terms|.
                let wf = dequantized(dtype, &w, nr, cols);
                let af = dequantized(act, &a, nt, cols);
                for &isa in &isas {
                    let mut got = vec![f32::NAN; nr * nt];
                    tile_with_isa(dtype, isa, &w, nr, &a, nt, &mut got).unwrap();
                    for t in 0..nt {
                        for r in 0..nr {
                            let abs: f32 = (0..cols)
                                .map(|c| (wf[r * cols + c] * af[t * cols + c]).abs())
                                .sum();
                            let (g, s) = (got[t * nr + r], want[t * nr + r]);
                            assert!(
                                (g - s).abs() <= 2e-6 * abs * (cols as f32).sqrt().max(4.0) + 1e-6,
                                "{dtype} {isa} cols {cols} tile {nr}x{nt} (r {r}, t {t}): simd {g} vs scalar {s}"
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn simd_refuses_missing_isa() {
    if let Some(missing) = Isa::ALL.iter().copied().find(|i| !i.is_available()) {
        let e = tile_with_isa(
            DType::Q8_0,
            missing,
            &[0u8; 34],
            1,
            &[0u8; 34],
            1,
            &mut [0f32],
        )
        .unwrap_err();
        assert!(e.to_string().contains("lacks"), "{e}");
    }
}

#[test]
fn simd_activation_quantizers_match_scalar_bytes() {
    use hearth_kernels::matmul::quantize_activations_with_isa;
    let mut rng = Rng(5);
    for act in [DType::Q8_0, DType::Q8_1, DType::Q8_K] {
        for n_blocks in [1, 2, 7] {
            let n = n_blocks * act.block_size();
            let mut x = activations(&mut rng, n);
            // Edge cases: exact .5 ties at scale 1, a zero block start, a negative extreme.
            x[0] = 127.0;
            for (i, v) in x.iter_mut().enumerate().take(act.block_size()).skip(1) {
                *v = (i as f32 - 40.0) + 0.5;
            }
            if n_blocks > 1 {
                let bs = act.block_size();
                x[bs..2 * bs].iter_mut().for_each(|v| *v = 0.0);
            }
            if n_blocks > 2 {
                x[3 * act.block_size() + 3] = -1e4;
            }
            let bytes = act.row_bytes(n as u64).unwrap() as usize;
            let mut want = vec![0u8; bytes];
            quantize_row(act, &x, &mut want).unwrap();
            for isa in Isa::available() {
                let mut got = vec![0xA5u8; bytes];
                quantize_activations_with_isa(act, isa, &x, &mut got).unwrap();
                assert_eq!(got, want, "{act} on {isa}, {n_blocks} blocks");
            }
        }
    }
}
