//! The AVX-512 VNNI prefill path (`matmul` with many tokens) against the scalar specification, at row counts that
//! are not multiples of its 4-row tiles and token counts that are not multiples of its 16-token groups.

mod common;

use common::{activations, weights, Rng};
use hearth_kernels::matmul::{matmul_with_isa, PREFILL_MIN_TOKENS};
use hearth_kernels::{dequantize_row, DType, Isa, ThreadPool, WeightMatrix};

#[test]
fn prefill_matches_scalar_on_odd_shapes() {
    if !Isa::Avx512Vnni.is_available() {
        eprintln!("no AVX-512 VNNI on this CPU: the prefill path is not under test");
        return;
    }
    // The path is opt-in (see `fast_prefill_enabled`); this binary's only test turns it on before any matmul.
    std::env::set_var("HEARTH_FAST_PREFILL", "1");
    assert!(hearth_kernels::matmul::fast_prefill_enabled());
    let pool = ThreadPool::new(2);
    let mut rng = Rng(7);
    for dtype in [DType::Q4_1, DType::Q4_K, DType::Q6_K, DType::Q8_0] {
        for (rows, cols) in [(1, 256), (5, 512), (37, 768), (64, 256)] {
            let wb = weights(&mut rng, dtype, rows, cols);
            let w = WeightMatrix {
                dtype,
                data: &wb,
                rows,
                cols,
            };
            let mut wf = vec![0f32; rows * cols];
            dequantize_row(dtype, &wb, &mut wf).unwrap();
            for n_tokens in [PREFILL_MIN_TOKENS, 17, 31, 33, 65] {
                let x = activations(&mut rng, n_tokens * cols);
                let mut want = vec![0f32; n_tokens * rows];
                let mut got = vec![f32::NAN; n_tokens * rows];
                matmul_with_isa(&pool, &w, &x, n_tokens, &mut want, Isa::Scalar).unwrap();
                matmul_with_isa(&pool, &w, &x, n_tokens, &mut got, Isa::Avx512Vnni).unwrap();
                for t in 0..n_tokens {
                    for r in 0..rows {
                        // Bound for summation-order differences: a few ulps of the sum of |terms| (activations
                        // taken unquantized: close enough for a bound).
                        let abs: f32 = (0..cols)
                            .map(|c| (wf[r * cols + c] * x[t * cols + c]).abs())
                            .sum();
                        let (g, s) = (got[t * rows + r], want[t * rows + r]);
                        assert!(
                            (g - s).abs() <= 4e-6 * abs * (cols as f32).sqrt() + 1e-6,
                            "{dtype} {rows}x{cols} n_tokens {n_tokens} (r {r}, t {t}): prefill {g} vs scalar {s}"
                        );
                    }
                }
            }
        }
    }
}
