//! Perplexity as llama.cpp's `llama-perplexity` computes it, so the two can be compared number for number.
//!
//! The token stream is cut into chunks of `n_ctx` (a short tail is dropped); with a BOS token, each chunk's first
//! token is replaced by BOS; the second half of each chunk (positions n_ctx/2 … n_ctx−2) is scored against the
//! next token, each chunk with an empty cache.

use crate::{EngineError, KvType, Model, SeqBatch, ThreadPool};

#[derive(Debug, Clone, Copy)]
pub struct Perplexity {
    pub ppl: f64,
    /// Mean negative log-likelihood per scored token.
    pub nll: f64,
    pub n_scored: usize,
    pub n_chunks: usize,
}

/// Scores `tokens` (already tokenized, with BOS in front when the model adds one).
/// `on_chunk(i, n_chunks, running_ppl)` reports progress.
pub fn perplexity(
    model: &Model,
    pool: &ThreadPool,
    tokens: &[u32],
    n_ctx: usize,
    bos: Option<u32>,
    kv_type: KvType,
    mut on_chunk: impl FnMut(usize, usize, f64),
) -> Result<Perplexity, EngineError> {
    if n_ctx < 4 {
        return Err(EngineError::BadInput(format!(
            "perplexity needs a context of at least 4 tokens, not {n_ctx}"
        )));
    }
    let n_chunks = tokens.len() / n_ctx;
    if n_chunks == 0 {
        return Err(EngineError::BadInput(format!(
            "the text has {} tokens, fewer than one chunk of {n_ctx}; use a longer text or a smaller --ctx",
            tokens.len()
        )));
    }
    let first = n_ctx / 2;
    let (mut nll, mut count) = (0f64, 0usize);
    for c in 0..n_chunks {
        let mut chunk = tokens[c * n_ctx..(c + 1) * n_ctx].to_vec();
        if let Some(b) = bos {
            chunk[0] = b;
        }
        let mut cache = model.new_cache_typed(n_ctx, kv_type)?;
        let logits = model.forward(
            pool,
            &mut [SeqBatch {
                cache: &mut cache,
                tokens: &chunk,
                logits_from: first,
            }],
        )?;
        let n_vocab = model.config.n_vocab;
        for j in first..n_ctx - 1 {
            let row = &logits[(j - first) * n_vocab..][..n_vocab];
            let target = tokens[c * n_ctx + j + 1] as usize;
            nll -= log_softmax_at(row, target);
            count += 1;
        }
        on_chunk(c, n_chunks, (nll / count as f64).exp());
    }
    let mean = nll / count as f64;
    Ok(Perplexity {
        ppl: mean.exp(),
        nll: mean,
        n_scored: count,
        n_chunks,
    })
}

/// log softmax(row)[i], in f64.
fn log_softmax_at(row: &[f32], i: usize) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = row.iter().map(|&l| (l as f64 - max).exp()).sum();
    row[i] as f64 - max - sum.ln()
}
