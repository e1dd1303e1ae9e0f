//! hearth's engine: GGUF → model → tokens. Synchronous; no HTTP, no async runtime.
//!
//! - [`Model`] maps a GGUF file and runs the one configuration-driven transformer block ([`Model::forward`]) over
//!   a batch of sequences, each with its own [`KvCache`].
//! - [`Session`] + [`generate`] are the decode loop `hearth run` and the server share; [`Sampler`] picks tokens.
//! - [`perplexity`] scores a token stream as llama.cpp's `llama-perplexity` does.

mod attention;
pub mod batch;
pub mod config;
mod error;
pub mod generate;
mod kv_cache;
mod mla;
mod model;
mod moe;
mod parallel;
pub mod perplexity;
pub mod sampler;
pub mod weights;

pub use config::ModelConfig;
pub use error::EngineError;
pub use generate::{generate, Finish, GenerateOptions, Session, Step};
pub use hearth_kernels::ThreadPool;
pub use kv_cache::{KvCache, KvLayout, KvType};
pub use model::{Model, SeqBatch};
pub use sampler::{Sampler, SamplingParams};
