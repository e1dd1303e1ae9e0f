//! `hearth quantize IN.gguf OUT.gguf TYPE`: requantize a GGUF file's weights, keeping its metadata.

use anyhow::Context;
use hearth_convert::OutType;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The GGUF file to read.
    pub input: PathBuf,
    /// The GGUF file to write (replaced atomically).
    pub out: PathBuf,
    /// Target type of the weight matrices: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q6_k.
    pub r#type: String,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let t = OutType::parse(&a.r#type)?;
    let r = hearth_convert::quantize(&a.input, &a.out, t)
        .with_context(|| format!("quantizing {}", a.input.display()))?;
    let types: Vec<String> = r.types.iter().map(|(t, n)| format!("{n} {t}")).collect();
    println!(
        "wrote {} ({}, {} tensors: {}, {:.1} MiB)",
        a.out.display(),
        r.arch,
        r.n_tensors,
        types.join(", "),
        r.bytes as f64 / (1 << 20) as f64
    );
    Ok(())
}
