//! `hearth convert DIR OUT.gguf`: a Hugging Face checkpoint folder to a GGUF file.

use anyhow::Context;
use hearth_convert::{ConvertOptions, OutType};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Folder with config.json, tokenizer.json, tokenizer_config.json and *.safetensors.
    pub dir: PathBuf,
    /// The GGUF file to write (replaced atomically).
    pub out: PathBuf,
    /// Type of the weight matrices: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q6_k.
    #[arg(long, default_value = "f16")]
    pub outtype: String,
    /// tokenizer.ggml.pre to write when the pre-tokenizer is not recognised (qwen2, llama-bpe, deepseek-v3, gpt-2, ...).
    #[arg(long)]
    pub pre: Option<String>,
    /// general.name (default: the folder's name).
    #[arg(long)]
    pub name: Option<String>,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let opts = ConvertOptions {
        outtype: OutType::parse(&a.outtype)?,
        pre: a.pre,
        name: a.name,
    };
    let r = hearth_convert::convert(&a.dir, &a.out, &opts)
        .with_context(|| format!("converting {}", a.dir.display()))?;
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
