//! Pure compute for hearth: tensor formats and their dot products per ISA, f32 ops, and the compute thread pool.
//!
//! This is the only crate with SIMD `unsafe`. Model code calls into it and never touches `std::arch`.
//!
//! Main entry points:
//! - [`matmul`]: `y = W x` for a [`WeightMatrix`] in any supported GGUF format, rows split over a [`ThreadPool`];
//! - [`dequantize_row`] / [`quantize_row`]: convert whole blocks between f32 and a [`DType`] ([`QuantError`] when
//!   refused);
//! - [`detected_isa`] / [`selected_isa`]: which SIMD kernels run (override with `HEARTH_ISA`).
//!
//! ```
//! use hearth_kernels::{matmul, quantize_row, DType, ThreadPool, WeightMatrix};
//! let pool = ThreadPool::new(2);
//! let w_f32: Vec<f32> = (0..2 * 32).map(|i| i as f32 / 64.0).collect(); // (rows 2, cols 32)
//! let mut data = vec![0u8; 2 * DType::Q8_0.type_size()];
//! quantize_row(DType::Q8_0, &w_f32, &mut data).unwrap();
//! let w = WeightMatrix { dtype: DType::Q8_0, data: &data, rows: 2, cols: 32 };
//! let x = vec![1.0f32; 32]; // (n_tokens 1, cols 32)
//! let mut y = vec![0.0f32; 2]; // (n_tokens 1, rows 2)
//! matmul(&pool, &w, &x, 1, &mut y).unwrap();
//! assert!((y[0] - w_f32[..32].iter().sum::<f32>()).abs() < 0.05);
//! ```

pub mod attention;
pub mod dtype;
pub mod formats;
pub mod isa;
mod lanes;
pub mod matmul;
#[cfg(target_arch = "aarch64")]
mod neon;
pub mod ops;
pub mod packed;
#[cfg(target_arch = "x86_64")]
mod packed_x86;
pub mod pool;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use dtype::DType;
pub use formats::{dequantize_row, quantize_row, QuantError};
pub use isa::{detected_isa, selected_isa, Isa, IsaError};
pub use matmul::{matmul, matmul_many, MatmulError, MatmulJob, WeightMatrix};
pub use packed::{matmul_packed, matmul_packed_many, PackedJob, PackedMatrix};
pub use pool::ThreadPool;
