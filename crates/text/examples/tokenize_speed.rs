//! Times tokenizer construction and the encoding of a text file (default: the shared perplexity text).
//!
//! `cargo run -p hearth-text --example tokenize_speed -- MODEL.gguf [TEXT]`

use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let model = args
        .next()
        .ok_or("usage: tokenize_speed MODEL.gguf [TEXT]")?;
    let text_path = args
        .next()
        .unwrap_or_else(|| "../shared/reference/ppl-text-gpl3.txt".into());
    let text = std::fs::read_to_string(&text_path)?;

    let t0 = Instant::now();
    let g = hearth_gguf::Gguf::open(&model)?;
    let tok = hearth_text::Tokenizer::from_gguf(&g)?;
    let load = t0.elapsed();

    let mut best = f64::MAX;
    let mut n = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let ids = tok.encode(&text, true, false)?;
        best = best.min(t.elapsed().as_secs_f64());
        n = ids.len();
    }
    println!(
        "{model}: load {:.0} ms; {text_path}: {} bytes -> {n} tokens, best of 5 {:.1} ms ({:.2} MB/s)",
        load.as_secs_f64() * 1e3,
        text.len(),
        best * 1e3,
        text.len() as f64 / best / 1e6
    );
    Ok(())
}
