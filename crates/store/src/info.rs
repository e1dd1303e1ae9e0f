//! What the store records about a model, read from its GGUF metadata: architecture, quantization, context length.

use hearth_gguf::{DType, Gguf};
use std::collections::HashMap;

/// A summary of a model's GGUF file(s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    pub architecture: String,
    /// The quantization label (`Q4_K_M`), from `general.file_type`, else the type holding most weight bytes.
    pub quant: String,
    pub context_length: Option<u64>,
    /// Number of weights in all tensors.
    pub parameters: u64,
    /// Bytes of tensor data.
    pub weight_bytes: u64,
}

impl ModelInfo {
    /// Summarizes a model made of one or more GGUF files (split files in order; the metadata is in the first).
    pub fn from_parts(parts: &[Gguf]) -> Result<ModelInfo, hearth_gguf::GgufError> {
        let Some(first) = parts.first() else {
            return Err(hearth_gguf::GgufError::MissingKey {
                key: "general.architecture".into(),
            });
        };
        let architecture = first.architecture()?.to_string();
        let context_length = first.get_uint(&format!("{architecture}.context_length"))?;
        let tensors = parts.iter().flat_map(|g| g.tensors());
        let parameters = tensors.clone().map(|t| t.n_elements()).sum();
        let weight_bytes = tensors.map(|t| t.n_bytes).sum();
        let quant = match first.get_uint("general.file_type").ok().flatten() {
            Some(ft) => file_type_name(ft).map(str::to_string),
            None => None,
        }
        .unwrap_or_else(|| dominant_dtype(parts));
        Ok(ModelInfo {
            architecture,
            quant,
            context_length,
            parameters,
            weight_bytes,
        })
    }
}

/// The name of a `general.file_type` value (llama.cpp's `llama_ftype`).
pub fn file_type_name(ft: u64) -> Option<&'static str> {
    Some(match ft {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4_MOE",
        _ => return None,
    })
}

/// The tensor type holding the most bytes among matrices (vectors are usually F32 whatever the quantization).
fn dominant_dtype(parts: &[Gguf]) -> String {
    let mut bytes: HashMap<DType, u64> = HashMap::new();
    for t in parts.iter().flat_map(|g| g.tensors()) {
        if t.dims.iter().filter(|&&d| d > 1).count() >= 2 {
            *bytes.entry(t.dtype).or_default() += t.n_bytes;
        }
    }
    bytes
        .into_iter()
        .max_by_key(|&(d, b)| (b, d as u32))
        .map_or_else(|| "unknown".to_string(), |(d, _)| d.name().to_string())
}

/// Finds a quantization label in a file name: `model.Q4_K_M.gguf`, `model-q8_0.gguf`, `model-IQ4_XS-00001-of-00002.gguf`.
pub fn quant_in_file_name(path: &str) -> Option<String> {
    let upper = path.to_ascii_uppercase();
    let tokens: Vec<&str> = upper
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|s| !s.is_empty())
        .collect();
    // Longest known label first so `Q4_K_M` wins over `Q4_K`.
    let mut best: Option<&str> = None;
    for t in &tokens {
        for label in KNOWN_QUANTS {
            let hit = t == label || t.ends_with(&format!("_{label}"));
            if hit && best.is_none_or(|b| label.len() > b.len()) {
                best = Some(label);
            }
        }
    }
    best.map(str::to_string)
}

/// Quantization labels seen in GGUF file names.
const KNOWN_QUANTS: &[&str] = &[
    "F32", "F16", "BF16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_K_L", "Q5_0", "Q5_1", "Q4_K_M",
    "Q4_K_S", "Q4_K_L", "Q4_K_XL", "Q4_0", "Q4_1", "Q3_K_M", "Q3_K_S", "Q3_K_L", "Q3_K_XL", "Q2_K",
    "Q2_K_S", "Q2_K_L", "IQ4_XS", "IQ4_NL", "IQ3_M", "IQ3_S", "IQ3_XS", "IQ3_XXS", "IQ2_M",
    "IQ2_S", "IQ2_XS", "IQ2_XXS", "IQ1_M", "IQ1_S", "TQ1_0", "TQ2_0", "MXFP4", "Q4_K", "Q5_K",
    "Q3_K",
];

/// Preference when the requested quantization (default Q4_K_M) is missing: good quality per byte first.
pub const QUANT_PREFERENCE: &[&str] = &[
    "Q4_K_M", "Q4_K_XL", "Q4_K_S", "Q4_K", "Q5_K_M", "Q4_K_L", "Q5_K_S", "Q5_K", "IQ4_XS",
    "IQ4_NL", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q6_K", "Q8_0", "MXFP4", "Q3_K_L", "Q3_K_M",
    "Q3_K_XL", "Q3_K", "IQ3_M", "Q3_K_S", "IQ3_S", "IQ3_XS", "IQ3_XXS", "Q2_K_L", "Q2_K", "Q2_K_S",
    "IQ2_M", "IQ2_S", "IQ2_XS", "IQ2_XXS", "BF16", "F16", "IQ1_M", "IQ1_S", "TQ2_0", "TQ1_0",
    "F32",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quant_from_names() {
        let cases = [
            ("SmolLM2-135M-Instruct.Q4_1.gguf", Some("Q4_1")),
            ("qwen2.5-0.5b-instruct-q4_k_m.gguf", Some("Q4_K_M")),
            ("Q4_K_M/Model-Q4_K_M-00001-of-00002.gguf", Some("Q4_K_M")),
            ("gemma-3-270m-it-IQ4_XS.gguf", Some("IQ4_XS")),
            ("model-UD-Q4_K_XL.gguf", Some("Q4_K_XL")),
            ("model-f16.gguf", Some("F16")),
            ("model.gguf", None),
        ];
        for (name, want) in cases {
            assert_eq!(quant_in_file_name(name).as_deref(), want, "{name}");
        }
    }
}
