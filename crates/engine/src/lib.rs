//! hearth's engine: GGUF → model → tokens. Synchronous; no HTTP, no async runtime.
//!
//! - [`Model`] maps a GGUF file and runs the one configuration-driven transformer block ([`Model::forward`]) over
//!   a batch of sequences, each with its own [`KvCache`].
//! - [`batch::Engine`] is the one decode loop: `hearth run` and the server submit to it; [`Sampler`] picks tokens.
//! - [`Session`] reads tokens into one cache with plain forward passes (teacher forcing, fidelity probes, the
//!   [`greedy_reference`] tests compare against).
//! - [`perplexity`] scores a token stream as llama.cpp's `llama-perplexity` does.

#![forbid(unsafe_code)]

mod attention;
pub mod batch;
pub mod config;
mod error;
mod kv_cache;
mod mla;
mod model;
mod moe;
pub mod perplexity;
pub mod sampler;
mod session;
pub mod weights;

pub use batch::{Finish, Step};
pub use config::ModelConfig;
pub use error::EngineError;
pub use hearth_kernels::ThreadPool;
pub use kv_cache::{KvCache, KvLayout, KvType};
pub use model::{ForwardOut, Model, SeqBatch};
pub use sampler::{Sampler, SamplingParams};
pub use session::{greedy_reference, Session};
