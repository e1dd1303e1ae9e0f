//! Pure compute for hearth: tensor formats and their dot products per ISA, f32 ops, and the compute thread pool.
//!
//! This is the only crate with SIMD `unsafe`. Model code calls into it and never touches `std::arch`.

pub mod dtype;
pub mod ops;

pub use dtype::DType;
