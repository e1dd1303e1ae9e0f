//! Hugging Face checkpoint folder → GGUF ([`convert`]), and GGUF → requantized GGUF ([`quantize`]).
//!
//! [`convert`] reads config.json, tokenizer.json, tokenizer_config.json, the chat template and the (possibly sharded)
//! *.safetensors, and writes llama.cpp's metadata keys and tensor names for `llama` (Llama-3 RoPE scaling included),
//! `qwen2`, `qwen3`, `qwen3moe`, `deepseek2` (DeepSeek-V2/V3, Kimi K2) and `bert` (sentence-embedding encoders
//! such as all-MiniLM-L6-v2, `bert.rs`). Weight rewrites llama.cpp does at
//! conversion time happen here too: q/k rows permuted for adjacent-pair RoPE (llama), experts stacked into 3-D
//! tensors, MLA's `kv_b_proj` split into `attn_k_b`/`attn_v_b`, Llama-3 frequency factors as `rope_freqs.weight`.
//!
//! ```no_run
//! use hearth_convert::{convert, ConvertOptions, OutType};
//! let opts = ConvertOptions { outtype: OutType::parse("q8_0")?, ..Default::default() };
//! let report = convert("Qwen3-0.6B/".as_ref(), "qwen3-0.6b-q8_0.gguf".as_ref(), &opts)?;
//! println!("{} tensors written", report.n_tensors);
//! # Ok::<(), hearth_convert::ConvertError>(())
//! ```

mod arch;
mod bert;
mod config;
mod error;
mod hf;
mod meta;
mod plan;
mod source;
mod tokenizer;

pub use arch::{ArchSpec, AttentionKind, Body, Gating, Moe, ARCHS};
pub use config::{yarn_mscale, Attention, HfConfig, Mla, RopeScaling};
pub use error::ConvertError;
pub use source::llama3_rope_factors;

use hearth_gguf::{DType, Gguf, GgufWriter, MetaValue};
use std::path::Path;

/// The requested output type: the type of 2-D+ weights; 1-D tensors (norms, biases) and MoE routers stay F32, and
/// matrices whose rows are not whole blocks fall back as llama.cpp's tools do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutType(pub DType);

impl Default for OutType {
    fn default() -> Self {
        OutType(DType::F16)
    }
}

impl OutType {
    pub fn parse(s: &str) -> Result<OutType, ConvertError> {
        let d = DType::from_name(s).ok_or_else(|| ConvertError::BadOutType(s.into()))?;
        match d {
            DType::F32
            | DType::F16
            | DType::BF16
            | DType::Q8_0
            | DType::Q4_0
            | DType::Q4_1
            | DType::Q5_0
            | DType::Q5_1
            | DType::Q4_K
            | DType::Q6_K => Ok(OutType(d)),
            _ => Err(ConvertError::BadOutType(s.into())),
        }
    }

    /// llama.cpp's `general.file_type` (LLAMA_FTYPE_*) for a file mostly of this type.
    pub fn file_type(self) -> u32 {
        match self.0 {
            DType::F32 => 0,
            DType::F16 => 1,
            DType::Q4_0 => 2,
            DType::Q4_1 => 3,
            DType::Q8_0 => 7,
            DType::Q5_0 => 8,
            DType::Q5_1 => 9,
            DType::Q4_K => 14, // Q4_K_S: every matrix Q4_K
            DType::Q6_K => 18,
            DType::BF16 => 32,
            _ => 1,
        }
    }

    /// The type a tensor called `name` with GGUF dims `dims` gets.
    pub fn for_tensor(self, name: &str, dims: &[u64]) -> DType {
        if dims.len() < 2 || name.ends_with("ffn_gate_inp.weight") || name == "rope_freqs.weight" {
            return DType::F32;
        }
        let fits = |d: DType| dims[0].is_multiple_of(d.block_size() as u64);
        let mut t = self.0;
        // llama.cpp's fallbacks for rows that are not whole super-blocks.
        if !fits(t) {
            t = match t {
                DType::Q4_K => DType::Q5_0,
                DType::Q6_K => DType::Q8_0,
                other => other,
            };
        }
        if !fits(t) {
            t = DType::F16;
        }
        t
    }
}

#[derive(Debug, Clone, Default)]
pub struct ConvertOptions {
    pub outtype: OutType,
    /// `tokenizer.ggml.pre` to write instead of the one recognised from tokenizer.json.
    pub pre: Option<String>,
    /// `general.name` (default: the folder's name).
    pub name: Option<String>,
}

/// What a conversion or requantization wrote.
#[derive(Debug, Clone)]
pub struct Report {
    pub arch: String,
    pub n_tensors: usize,
    pub bytes: u64,
    /// How many tensors of each type.
    pub types: Vec<(DType, usize)>,
}

fn count_types(types: impl Iterator<Item = DType>) -> Vec<(DType, usize)> {
    let mut out: Vec<(DType, usize)> = Vec::new();
    for t in types {
        match out.iter_mut().find(|(d, _)| *d == t) {
            Some(e) => e.1 += 1,
            None => out.push((t, 1)),
        }
    }
    out
}

/// Encodes f32 rows (of `dims[0]`) as `dtype` into `buf`.
fn encode(
    name: &str,
    dtype: DType,
    dims: &[u64],
    data: &[f32],
    buf: &mut Vec<u8>,
) -> Result<(), ConvertError> {
    let row = dims[0] as usize;
    let row_bytes = dtype.row_bytes(dims[0]).unwrap_or(0) as usize;
    let q = |why: String| ConvertError::Quantize {
        name: name.into(),
        dtype,
        why,
    };
    if row == 0 || !data.len().is_multiple_of(row) {
        return Err(q(format!("{} elements are not rows of {row}", data.len())));
    }
    let start = buf.len();
    buf.resize(start + data.len() / row * row_bytes, 0);
    for (src, dst) in data
        .chunks_exact(row)
        .zip(buf[start..].chunks_exact_mut(row_bytes))
    {
        hearth_kernels::quantize_row(dtype, src, dst).map_err(|e| q(e.to_string()))?;
    }
    Ok(())
}

/// Converts the Hugging Face checkpoint folder `dir` into the GGUF file `out`.
pub fn convert(dir: &Path, out: &Path, opts: &ConvertOptions) -> Result<Report, ConvertError> {
    let cfg_file = hf::JsonFile::read(&dir.join("config.json"))?;
    let cfg = HfConfig::parse(&cfg_file)?;
    let ck = hf::Checkpoint::open(dir)?;
    let plan = plan::plan(&cfg, &ck)?;
    let tok = match cfg.spec.body {
        Body::Decoder => tokenizer::metadata(
            dir,
            cfg.n_vocab,
            cfg.bos_token_id,
            cfg.eos_token_id,
            opts.pre.as_deref(),
        )?,
        Body::Bert => bert::vocab_metadata(dir, cfg.n_vocab)?,
    };

    let mut w = GgufWriter::new();
    let name = opts.name.clone().unwrap_or_else(|| {
        dir.canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "model".into())
    });
    w.add_meta("general.architecture", MetaValue::Str(cfg.spec.arch.into()))?;
    w.add_meta("general.name", MetaValue::Str(name))?;
    w.add_meta(
        "general.file_type",
        MetaValue::U32(opts.outtype.file_type()),
    )?;
    let quantized = !matches!(opts.outtype.0, DType::F32 | DType::F16 | DType::BF16);
    if quantized {
        w.add_meta("general.quantization_version", MetaValue::U32(2))?;
    }
    for (k, v) in plan.meta.into_iter().chain(tok) {
        w.add_meta(k, v)?;
    }
    let mut types = Vec::new();
    for t in &plan.tensors {
        let dims: Vec<u64> = t.shape.iter().rev().map(|&d| d as u64).collect();
        let dtype = opts.outtype.for_tensor(&t.name, &dims);
        types.push(dtype);
        w.add_tensor(t.name.clone(), dims, dtype)?;
    }
    let specs = w.tensors().to_vec();
    w.write(out, |i, buf: &mut Vec<u8>| -> Result<(), ConvertError> {
        let data = source::materialize(&ck, &plan.tensors[i])?;
        encode(&specs[i].name, specs[i].dtype, &specs[i].dims, &data, buf)
    })?;
    Ok(Report {
        arch: cfg.spec.arch.into(),
        n_tensors: specs.len(),
        bytes: std::fs::metadata(out).map(|m| m.len()).unwrap_or(0),
        types: count_types(types.into_iter()),
    })
}

/// Rewrites the GGUF file `input` with its weights in `outtype` (dequantize, then quantize), keeping all metadata
/// but `general.file_type` (updated) and `general.quantization_version`.
pub fn quantize(input: &Path, out: &Path, outtype: OutType) -> Result<Report, ConvertError> {
    let g = Gguf::open(input)?;
    let mut w = GgufWriter::new();
    for key in g.keys() {
        if key == "general.quantization_version" || key == "general.alignment" {
            continue;
        }
        let v = g.get(key).ok_or_else(|| ConvertError::MissingKey {
            path: input.display().to_string(),
            key: key.into(),
        })?;
        let mv = match key {
            "general.file_type" => MetaValue::U32(outtype.file_type()),
            _ => MetaValue::from_value(key, &v)?,
        };
        w.add_meta(key, mv)?;
    }
    if g.get("general.file_type").is_none() {
        w.add_meta("general.file_type", MetaValue::U32(outtype.file_type()))?;
    }
    if !matches!(outtype.0, DType::F32 | DType::F16 | DType::BF16) {
        w.add_meta("general.quantization_version", MetaValue::U32(2))?;
    }
    let mut types = Vec::new();
    for t in g.tensors() {
        // Tensors that are not floating-point weights (e.g. I32 tables) are copied untouched.
        let dtype = if hearth_kernels::dequantize_row(t.dtype, &[], &mut []).is_ok() {
            outtype.for_tensor(&t.name, &t.dims)
        } else {
            t.dtype
        };
        types.push(dtype);
        w.add_tensor(t.name.clone(), t.dims.clone(), dtype)?;
    }
    let specs = w.tensors().to_vec();
    w.write(out, |i, buf: &mut Vec<u8>| -> Result<(), ConvertError> {
        let t = &g.tensors()[i];
        let src = g.tensor_data(t);
        if specs[i].dtype == t.dtype {
            buf.extend_from_slice(src);
            return Ok(());
        }
        let mut f = vec![0f32; t.n_elements() as usize];
        hearth_kernels::dequantize_row(t.dtype, src, &mut f).map_err(|e| {
            ConvertError::Quantize {
                name: t.name.clone(),
                dtype: specs[i].dtype,
                why: format!("cannot read its {} data: {e}", t.dtype),
            }
        })?;
        encode(&t.name, specs[i].dtype, &t.dims, &f, buf)
    })?;
    Ok(Report {
        arch: g.architecture().unwrap_or("?").to_string(),
        n_tensors: specs.len(),
        bytes: std::fs::metadata(out).map(|m| m.len()).unwrap_or(0),
        types: count_types(types.into_iter()),
    })
}
