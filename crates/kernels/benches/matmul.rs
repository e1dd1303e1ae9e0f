//! Weight throughput of matmul per format and ISA: decode (1 token) and prefill (32 tokens), one thread; for the
//! formats with a packed form, also the packed kernels (`packed-<isa>`).
//!
//! `cargo bench -p hearth-kernels --bench matmul [-- FILTER]`; throughput is bytes of weights read per second
//! (for prefill, weight bytes x tokens, i.e. the work a token-at-a-time engine would do).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hearth_kernels::matmul::matmul_with_isa;
use hearth_kernels::packed::matmul_packed_with_isa;
use hearth_kernels::PackedMatrix;
use hearth_kernels::{quantize_row, DType, Isa, ThreadPool, WeightMatrix};
use std::time::Duration;

const FORMATS: [DType; 13] = [
    DType::Q4_1,
    DType::Q8_0,
    DType::Q5_0,
    DType::Q4_K,
    DType::Q6_K,
    DType::Q4_0,
    DType::Q5_1,
    DType::Q2_K,
    DType::Q3_K,
    DType::Q5_K,
    DType::F16,
    DType::BF16,
    DType::F32,
];

fn weights(dtype: DType, rows: usize, cols: usize) -> Vec<u8> {
    let row_bytes = dtype.row_bytes(cols as u64).unwrap() as usize;
    let mut data = vec![0u8; rows * row_bytes];
    let mut s = 0x1234_5678u32;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        s
    };
    if quantize_row(
        dtype,
        &[0.0; 256],
        &mut vec![0u8; dtype.row_bytes(256).unwrap() as usize],
    )
    .is_ok()
    {
        let src: Vec<f32> = (0..cols)
            .map(|_| (next() % 2001) as f32 / 1000.0 - 1.0)
            .collect();
        for row in data.chunks_exact_mut(row_bytes) {
            quantize_row(dtype, &src, row).unwrap();
        }
    } else {
        // K-quants: random bytes; scales are small f16 values so nothing overflows.
        data.iter_mut().for_each(|b| *b = next() as u8);
        let fields: &[usize] = match dtype {
            DType::Q2_K => &[80, 82],
            DType::Q3_K => &[108],
            DType::Q6_K => &[208],
            _ => &[0, 2],
        };
        for block in data.chunks_exact_mut(dtype.type_size()) {
            for &f in fields {
                block[f..f + 2].copy_from_slice(&half::f16::from_f32(0.01).to_le_bytes());
            }
        }
    }
    data
}

fn bench(c: &mut Criterion) {
    let pool = ThreadPool::new(1);
    let (rows, cols) = (2048, 2048);
    for n_tokens in [1usize, 32] {
        let mut group = c.benchmark_group(format!("matmul_{rows}x{cols}_t{n_tokens}"));
        group.warm_up_time(Duration::from_millis(300));
        group.measurement_time(Duration::from_millis(1000));
        group.sample_size(10);
        for dtype in FORMATS {
            let data = weights(dtype, rows, cols);
            let w = WeightMatrix {
                dtype,
                data: &data,
                rows,
                cols,
            };
            let x: Vec<f32> = (0..n_tokens * cols)
                .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
                .collect();
            let mut y = vec![0f32; n_tokens * rows];
            group.throughput(Throughput::Bytes((data.len() * n_tokens) as u64));
            for isa in Isa::available() {
                if n_tokens > 1 && isa == Isa::Scalar && !matches!(dtype, DType::Q4_1 | DType::Q8_0)
                {
                    continue; // slow and uninteresting
                }
                group.bench_with_input(
                    BenchmarkId::new(dtype.name(), isa.name()),
                    &isa,
                    |b, &isa| {
                        b.iter(|| matmul_with_isa(&pool, &w, &x, n_tokens, &mut y, isa).unwrap())
                    },
                );
            }
            let Some(packed) = PackedMatrix::new(&w).unwrap() else {
                continue;
            };
            for isa in [Isa::Avx2, Isa::Avx512Vnni] {
                if !isa.is_available() {
                    continue;
                }
                group.bench_with_input(
                    BenchmarkId::new(dtype.name(), format!("packed-{}", isa.name())),
                    &isa,
                    |b, &isa| {
                        b.iter(|| {
                            matmul_packed_with_isa(&pool, &packed, &x, n_tokens, &mut y, isa)
                                .unwrap()
                        })
                    },
                );
            }
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
