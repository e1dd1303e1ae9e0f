//! Pre-tokenizer regexes for byte-level BPE vocabularies, chosen by `tokenizer.ggml.pre` as llama.cpp chooses them.
//!
//! llama.cpp splits text with a list of regexes applied in turn (each one splits the pieces the previous one left,
//! keeping both matches and the text between them); here each becomes a `Split(regex, Isolated)` in a sequence.
//! Most contractions are spelled `'[sS]`, as llama.cpp spells them; Qwen2's keep the `(?i:'s|…)` of its Hub
//! tokenizer.json, whose Unicode case folding also takes `'ſ` (long s) as a contraction, as HF `tokenizers`,
//! tiktoken and Qwen's own tokenizer all do (tests/hf_tokenizers.rs, tests/qwen_tiktoken.rs).

use crate::error::TextError;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::SplitDelimiterBehavior;

/// GPT-2's split: contractions, letters, digits, other symbols, whitespace.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// Llama 3's split (numbers in groups of up to three digits).
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen2's split: Llama 3's with one digit per piece, contractions case-insensitive as in the `Split` of Qwen2.5's
/// tokenizer.json (and transformers' `Qwen2Converter`). llama.cpp spells them `'[sS]`…, which differs only on
/// `'ſ` inside a word (`x'ſt`: HF `x`,`'ſ`,`t`; llama.cpp `x`,`'ſt`); we follow HF, as Qwen trained on it.
const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// DeepSeek-LLM: letters of cased scripts (an explicit list of ranges), ASCII and full-width punctuation, CJK.
/// Written with escapes: several of its code points (U+1F7D, U+1FBE, U+2126, U+212A, …) have canonical equivalents
/// that an editor normalising to NFC would silently substitute.
const DEEPSEEK_LLM_LETTERS: &str = "\\s?[A-Za-z\u{B5}\u{C0}-\u{D6}\u{D8}-\u{F6}\u{F8}-\u{1BA}\u{1BC}-\u{1BF}\u{1C4}-\u{293}\u{295}-\u{2AF}\u{370}-\u{373}\u{376}\u{377}\u{37B}-\u{37D}\u{37F}\u{386}\u{388}-\u{38A}\u{38C}\u{38E}-\u{3A1}\u{3A3}-\u{3F5}\u{3F7}-\u{481}\u{48A}-\u{52F}\u{531}-\u{556}\u{10A0}-\u{10C5}\u{13A0}-\u{13F5}\u{13F8}-\u{13FD}\u{1C90}-\u{1CBA}\u{1CBD}-\u{1CBF}\u{1D00}-\u{1D2B}\u{1D6B}-\u{1D77}\u{1D79}-\u{1D9A}\u{1E00}-\u{1F15}\u{1F18}-\u{1F1D}\u{1F20}-\u{1F45}\u{1F48}-\u{1F4D}\u{1F50}-\u{1F57}\u{1F59}\u{1F5B}\u{1F5D}\u{1F5F}-\u{1F7D}\u{1F80}-\u{1FB4}\u{1FB6}-\u{1FBC}\u{1FBE}\u{1FC2}-\u{1FC4}\u{1FC6}-\u{1FCC}\u{1FD0}-\u{1FD3}\u{1FD6}-\u{1FDB}\u{1FE0}-\u{1FEC}\u{1FF2}-\u{1FF4}\u{1FF6}-\u{1FFC}\u{2102}\u{2107}\u{210A}-\u{2113}\u{2115}\u{2119}-\u{211D}\u{2124}\u{2126}\u{2128}\u{212A}-\u{212D}\u{212F}-\u{2134}\u{2139}\u{213C}-\u{213F}\u{2145}-\u{2149}\u{214E}\u{2183}\u{2184}\u{2C00}-\u{2C7B}\u{2C7E}-\u{2CE4}\u{2CEB}-\u{2CEE}\u{2CF2}\u{2CF3}\u{A640}-\u{A66D}\u{A680}-\u{A69B}\u{A722}-\u{A76F}\u{A771}-\u{A787}\u{A78B}-\u{A78E}\u{AB70}-\u{ABBF}\u{FB00}-\u{FB06}\u{FB13}-\u{FB17}\u{FF21}-\u{FF3A}\u{FF41}-\u{FF5A}\u{10400}-\u{1044F}\u{104B0}-\u{104D3}\u{104D8}-\u{104FB}\u{10C80}-\u{10CB2}\u{10CC0}-\u{10CF2}\u{118A0}-\u{118DF}\u{1E900}-\u{1E943}]+";
const DEEPSEEK_LLM_PUNCT: &str = r"\s?[!-/:-~！-／：-～‘-‟　-。]+";
const CJK_HANGUL: &str = r"[一-龥ࠀ-一가-퟿]+";

/// DeepSeek-V3's main split, after `\p{N}{1,3}` and `[一-龥぀-ゟ゠-ヿ]+` (the three `Split`s of the pre-tokenizer
/// `Sequence` in deepseek-ai/DeepSeek-V3's tokenizer.json, which llama.cpp copies).
const DEEPSEEK_V3: &str = r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##;

/// How one `tokenizer.ggml.pre` value pre-tokenizes.
#[derive(Debug, Clone)]
pub(crate) struct PreTokenizer {
    /// Regexes applied in turn.
    pub regexes: Vec<&'static str>,
    /// A piece that is itself in the vocabulary is taken whole, without running merges (Llama 3).
    pub ignore_merges: bool,
    /// llama.cpp's default for `add_bos_token` when the file does not say.
    pub add_bos: bool,
    /// Text is put in Unicode NFC before splitting, as the Hub tokenizer.json's `NFC` normalizer does (Qwen2,
    /// Qwen2.5, Qwen3; Qwen's own tiktoken tokenizer too). llama.cpp does not normalize, so it differs from HF on
    /// decomposed text (`e` + U+0301); we follow HF, whose normalized text is what the model was trained on.
    pub nfc: bool,
}

impl PreTokenizer {
    /// One `Split(regex, Isolated)` per regex, in order: the pre-tokenizer without the byte-level map.
    pub fn split_steps(&self) -> Result<Vec<PreTokenizerWrapper>, TextError> {
        self.regexes
            .iter()
            .map(|r| {
                Split::new(
                    SplitPattern::Regex(r.to_string()),
                    SplitDelimiterBehavior::Isolated,
                    false,
                )
                .map(PreTokenizerWrapper::from)
                .map_err(|e| TextError::Build(format!("pre-tokenizer regex {r:?}: {e}")))
            })
            .collect()
    }
}

/// The `tokenizer.ggml.pre` values understood, for error messages.
pub(crate) const SUPPORTED: &str = "default, gpt-2 (gpt2, phi-2, mpt, olmo), smollm (starcoder, refact, command-r, codeshell, exaone, minerva-7b), llama3 (llama-v3, llama-bpe, falcon3, pixtral), dbrx, smaug-bpe, qwen2 (deepseek-r1-qwen, stablelm2, megrez, hunyuan), deepseek-llm, deepseek-coder, deepseek-v3, chatglm-bpe (glm4)";

/// The pre-tokenizer for `name`, or `None` when llama.cpp's name is not one we know.
/// An absent `tokenizer.ggml.pre` means "default", as in llama.cpp.
pub(crate) fn for_name(name: &str) -> Option<PreTokenizer> {
    let p = |regexes: Vec<&'static str>| PreTokenizer {
        regexes,
        ignore_merges: false,
        add_bos: false,
        nfc: false,
    };
    Some(match name {
        "default" => p(vec![
            r"[\p{P}\$\+<=>\^~\|]+",
            GPT2,
            r"\p{N}+",
            "[0-9][0-9][0-9]",
        ]),
        "gpt-2" | "gpt2" | "phi-2" | "mpt" | "olmo" => p(vec![GPT2]),
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva-7b" => {
            p(vec![r"\p{N}", GPT2])
        }
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "pixtral" => PreTokenizer {
            regexes: vec![LLAMA3],
            ignore_merges: true,
            add_bos: true,
            nfc: false,
        },
        "dbrx" | "smaug-bpe" | "chatglm-bpe" | "glm4" => p(vec![LLAMA3]),
        // Only "qwen2" is known to come with NFC; DeepSeek-R1-Distill-Qwen and the others keep llama.cpp's way.
        "qwen2" => PreTokenizer {
            nfc: true,
            ..p(vec![QWEN2])
        },
        "deepseek-r1-qwen" | "stablelm2" | "megrez" | "hunyuan" => p(vec![QWEN2]),
        "deepseek-llm" => p(vec![
            "[\r\n]",
            DEEPSEEK_LLM_LETTERS,
            DEEPSEEK_LLM_PUNCT,
            r"\s+$",
            CJK_HANGUL,
            r"\p{N}+",
        ]),
        "deepseek-coder" => p(vec![
            "[\r\n]",
            r"\s?\p{L}+",
            r"\s?\p{P}+",
            CJK_HANGUL,
            r"\p{N}",
        ]),
        "deepseek-v3" => p(vec![r"\p{N}{1,3}", "[一-龥぀-ゟ゠-ヿ]+", DEEPSEEK_V3]),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pieces `pre`'s split steps make of `text`, after NFC where `pre` asks for it.
    fn pieces(pre: &PreTokenizer, text: &str) -> Vec<String> {
        use tokenizers::{
            NormalizedString, Normalizer, OffsetReferential, OffsetType, PreTokenizedString,
            PreTokenizer as _,
        };
        let seq = tokenizers::pre_tokenizers::sequence::Sequence::new(
            pre.split_steps().expect("regexes compile"),
        );
        let mut n = NormalizedString::from(text);
        if pre.nfc {
            tokenizers::normalizers::unicode::NFC
                .normalize(&mut n)
                .expect("NFC");
        }
        let mut p = PreTokenizedString::from(n);
        seq.pre_tokenize(&mut p).expect("split");
        p.get_splits(OffsetReferential::Normalized, OffsetType::Byte)
            .into_iter()
            .map(|(s, _, _)| s.to_string())
            .collect()
    }

    /// The pieces our split steps make of every corpus string are the pieces HF `tokenizers` (Oniguruma) makes
    /// with the Split steps of Qwen2.5's and DeepSeek-V3's Hub tokenizer.json, after their normalizer
    /// (tests/data/hf-tokenizers-expected.json, from scripts/hf_tokenizers_reference.py). Unlike token ids, this
    /// sees splits the Qwen vocabulary would hide (it has no multi-digit tokens).
    #[test]
    fn pieces_match_hf_tokenizers() {
        let fixture: serde_json::Value =
            serde_json::from_str(include_str!("../tests/data/hf-tokenizers-expected.json"))
                .expect("fixture JSON");
        let cases = fixture["cases"].as_array().expect("cases");
        assert!(cases.len() > 250);
        let mut bad = Vec::new();
        for name in ["qwen2", "deepseek-v3"] {
            let pre = for_name(name).expect("known");
            for c in cases {
                let text = c["text"].as_str().expect("text");
                let want: Vec<&str> = c[format!("{name} pieces")]
                    .as_array()
                    .expect("pieces")
                    .iter()
                    .map(|p| p.as_str().expect("piece"))
                    .collect();
                let got = pieces(&pre, text);
                if got != want {
                    bad.push(format!(
                        "{name} {text:?}\n   hf     {want:?}\n   hearth {got:?}"
                    ));
                }
            }
        }
        assert!(
            bad.is_empty(),
            "{} of {} (pre-tokenizer, string) pairs split differently from HF tokenizers:\n{}",
            bad.len(),
            2 * cases.len(),
            bad.join("\n")
        );
    }

    /// Every code point (but surrogates) in six contexts splits as HF `tokenizers` splits it: this catches Unicode
    /// table differences between Oniguruma and the regex crate (`\p{L}`, `\p{M}`, `\p{P}`, `\s`, case folding).
    /// The fixture holds one FNV-1a hash of the pieces per 4,096 code points (scripts/hf_tokenizers_reference.py
    /// says how); a differing region is named, and the script's `every_code_point` shows its pieces.
    /// Slow (about 4 minutes on one core): `cargo test -p hearth-text -- --ignored every_code_point`.
    #[test]
    #[ignore = "slow: splits 21 million pieces"]
    fn every_code_point_splits_like_hf() {
        let fixture: serde_json::Value = serde_json::from_str(include_str!(
            "../tests/data/hf-pieces-every-code-point.json"
        ))
        .expect("fixture JSON");
        let mut bad = Vec::new();
        for name in ["qwen2", "deepseek-v3"] {
            let pre = for_name(name).expect("known");
            let want = fixture[name].as_array().expect("hashes");
            assert_eq!(want.len(), 0x110000 / 4096);
            for (r, want) in want.iter().enumerate() {
                let mut h: u64 = 0xCBF2_9CE4_8422_2325;
                let region = r as u32 * 4096;
                for start in (region..region + 4096).step_by(64) {
                    let text: String = (start..start + 64)
                        .filter_map(char::from_u32)
                        .map(|c| format!("a{c}b 1{c}2 {c}{c} '{c}\n{c}"))
                        .collect();
                    if text.is_empty() {
                        continue;
                    }
                    for p in pieces(&pre, &text) {
                        for &b in p.as_bytes().iter().chain(&[0xFF]) {
                            h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3);
                        }
                    }
                }
                if format!("{h:016x}") != want.as_str().expect("hash") {
                    bad.push(format!("{name} U+{region:04X}..U+{:04X}", region + 4095));
                }
            }
        }
        assert!(
            bad.is_empty(),
            "{} regions split differently from HF tokenizers: {}",
            bad.len(),
            bad.join(", ")
        );
    }

    #[test]
    fn every_regex_compiles() {
        for name in [
            "default",
            "gpt-2",
            "smollm",
            "llama3",
            "dbrx",
            "qwen2",
            "deepseek-llm",
            "deepseek-coder",
            "deepseek-v3",
        ] {
            for r in for_name(name).expect("known").regexes {
                let pattern = tokenizers::pre_tokenizers::split::SplitPattern::Regex(r.to_string());
                tokenizers::pre_tokenizers::split::Split::new(
                    pattern,
                    tokenizers::SplitDelimiterBehavior::Isolated,
                    false,
                )
                .unwrap_or_else(|e| panic!("{name}: {r}: {e}"));
            }
        }
        assert!(for_name("nonsense").is_none());
    }
}
