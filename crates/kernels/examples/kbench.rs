//! Quick best-of-N throughput table (robust on a shared machine): matmul GB/s per format and ISA (per-token
//! kernels and packed weights), and the thread pool's per-call overhead next to rayon's.
//!
//! `cargo run --release -p hearth-kernels --example kbench [-- FORMAT...]`

use hearth_kernels::matmul::matmul_with_isa;
use hearth_kernels::{
    matmul_packed, quantize_row, DType, Isa, PackedMatrix, ThreadPool, WeightMatrix,
};
use std::time::{Duration, Instant};

fn weights(dtype: DType, rows: usize, cols: usize) -> Vec<u8> {
    let row_bytes = dtype.row_bytes(cols as u64).unwrap() as usize;
    let mut data = vec![0u8; rows * row_bytes];
    let mut s = 0x9E37_79B9u32;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        s
    };
    let src: Vec<f32> = (0..cols)
        .map(|_| (next() % 2001) as f32 / 1000.0 - 1.0)
        .collect();
    let mut q = vec![0u8; row_bytes];
    if quantize_row(dtype, &src, &mut q).is_ok() {
        data.chunks_exact_mut(row_bytes)
            .for_each(|r| r.copy_from_slice(&q));
    } else {
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

/// Best time of `f` over repeated runs lasting about `budget`.
fn best(budget: Duration, mut f: impl FnMut()) -> Duration {
    f();
    let start = Instant::now();
    let mut best = Duration::MAX;
    while start.elapsed() < budget {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed());
    }
    best
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let formats: Vec<DType> = if args.is_empty() {
        [
            "Q4_1", "Q8_0", "Q5_0", "Q4_K", "Q6_K", "Q4_0", "Q5_1", "Q2_K", "Q3_K", "Q5_K", "F16",
            "BF16", "F32",
        ]
        .iter()
        .map(|n| DType::from_name(n).unwrap())
        .collect()
    } else {
        args.iter().filter_map(|n| DType::from_name(n)).collect()
    };
    let pool1 = ThreadPool::new(1);
    let (rows, cols) = std::env::var("KB_SHAPE")
        .ok()
        .and_then(|s| {
            let (a, b) = s.split_once("x")?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .unwrap_or((2048, 2048));
    println!("matmul {rows}x{cols}, one thread, best of ~0.3 s; GB/s of weight bytes (x tokens for prefill)");
    println!(
        "{:6} {:11} {:>10} {:>12}",
        "format", "isa", "decode t1", "prefill t32"
    );
    for dtype in formats {
        let data = weights(dtype, rows, cols);
        let w = WeightMatrix {
            dtype,
            data: &data,
            rows,
            cols,
        };
        for isa in Isa::available() {
            let mut cells = Vec::new();
            for n_tokens in [1usize, 32] {
                let x: Vec<f32> = (0..n_tokens * cols)
                    .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
                    .collect();
                let mut y = vec![0f32; n_tokens * rows];
                let t = best(Duration::from_millis(300), || {
                    matmul_with_isa(&pool1, &w, &x, n_tokens, &mut y, isa).unwrap()
                });
                cells.push((data.len() * n_tokens) as f64 / t.as_secs_f64() / 1e9);
            }
            println!(
                "{:6} {:11} {:>10.2} {:>12.2}",
                dtype.name(),
                isa.name(),
                cells[0],
                cells[1]
            );
        }
    }

    let isa = hearth_kernels::detected_isa();
    println!("\nDecode (1 token) on {isa} with 1 and 2 threads, GB/s:");
    let pool2 = ThreadPool::new(2);
    for name in ["Q4_1", "Q8_0", "Q4_K", "Q6_K", "Q5_0"] {
        let dtype = DType::from_name(name).unwrap();
        let data = weights(dtype, rows, cols);
        let w = WeightMatrix {
            dtype,
            data: &data,
            rows,
            cols,
        };
        let x: Vec<f32> = (0..cols)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let mut y = vec![0f32; rows];
        let t1 = best(Duration::from_millis(300), || {
            matmul_with_isa(&pool1, &w, &x, 1, &mut y, isa).unwrap()
        });
        let t2 = best(Duration::from_millis(300), || {
            matmul_with_isa(&pool2, &w, &x, 1, &mut y, isa).unwrap()
        });
        let gbps = |t: Duration| data.len() as f64 / t.as_secs_f64() / 1e9;
        let packed = PackedMatrix::new(&w).unwrap().unwrap();
        let p1 = best(Duration::from_millis(300), || {
            matmul_packed(&pool1, &packed, &x, 1, &mut y).unwrap()
        });
        let p2 = best(Duration::from_millis(300), || {
            matmul_packed(&pool2, &packed, &x, 1, &mut y).unwrap()
        });
        println!(
            "  {name:6} 1 thread {:6.2}   2 threads {:6.2}   packed: 1 thread {:6.2}   2 threads {:6.2}",
            gbps(t1),
            gbps(t2),
            gbps(p1),
            gbps(p2)
        );
    }

    println!("\nPrompt (64 tokens) with packed weights, GB/s of weights x tokens, 2 threads:");
    for name in ["Q4_1", "Q8_0", "Q4_K", "Q6_K", "Q5_0"] {
        let dtype = DType::from_name(name).unwrap();
        let data = weights(dtype, rows, cols);
        let w = WeightMatrix {
            dtype,
            data: &data,
            rows,
            cols,
        };
        let packed = PackedMatrix::new(&w).unwrap().unwrap();
        let x: Vec<f32> = (0..64 * cols)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let mut y = vec![0f32; 64 * rows];
        let t = best(Duration::from_millis(300), || {
            matmul_packed(&pool2, &packed, &x, 64, &mut y).unwrap()
        });
        println!(
            "  {name:6} {:7.1}",
            (data.len() * 64) as f64 / t.as_secs_f64() / 1e9
        );
    }

    // A decode step runs ~200 such calls per token on a 135M model, so the per-call cost is what matters.
    println!(
        "\nFork-join cost per call (n_threads x 4 trivial items), best and median of 20k calls:"
    );
    for n_threads in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(n_threads)
            .build()
            .unwrap();
        let sink = std::sync::atomic::AtomicUsize::new(0);
        let mut times: Vec<Duration> = (0..20_000)
            .map(|_| {
                let t = Instant::now();
                pool.install(|| {
                    use rayon::prelude::*;
                    (0..n_threads * 4).into_par_iter().for_each(|i| {
                        sink.fetch_add(i, std::sync::atomic::Ordering::Relaxed);
                    })
                });
                t.elapsed()
            })
            .collect();
        times.sort();
        println!(
            "  rayon      n_threads {n_threads}: best {:?}, median {:?}",
            times[0],
            times[times.len() / 2]
        );
    }
    for n_threads in [1, 2, 3] {
        let pool = ThreadPool::new(n_threads);
        let sink = std::sync::atomic::AtomicUsize::new(0);
        let mut times: Vec<Duration> = (0..20_000)
            .map(|_| {
                let t = Instant::now();
                pool.parallel_for(n_threads * 4, |i| {
                    sink.fetch_add(i, std::sync::atomic::Ordering::Relaxed);
                });
                t.elapsed()
            })
            .collect();
        times.sort();
        println!(
            "  ThreadPool n_threads {n_threads}: best {:?}, median {:?}",
            times[0],
            times[times.len() / 2]
        );
    }
}
