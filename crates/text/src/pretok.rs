//! Pre-tokenizer regexes for byte-level BPE vocabularies, chosen by `tokenizer.ggml.pre` as llama.cpp chooses them.
//!
//! llama.cpp splits text with a list of regexes applied in turn (each one splits the pieces the previous one left,
//! keeping both matches and the text between them); here each becomes a `Split(regex, Isolated)` in a sequence.
//! Contractions are spelled `'[sS]` rather than `(?i:'s)`, as llama.cpp does, so Unicode case folding (`'ſ`) does
//! not change the split.

/// GPT-2's split: contractions, letters, digits, other symbols, whitespace.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// Llama 3's split (numbers in groups of up to three digits).
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen2's split: Llama 3's with one digit per piece.
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// DeepSeek-LLM: letters of cased scripts (an explicit list of ranges), ASCII and full-width punctuation, CJK.
const DEEPSEEK_LLM_LETTERS: &str = r"\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+";
const DEEPSEEK_LLM_PUNCT: &str = r"\s?[!-/:-~！-／：-～‘-‟　-。]+";
const CJK_HANGUL: &str = r"[一-龥ࠀ-一가-퟿]+";

/// DeepSeek-V3's main split.
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
        },
        "dbrx" | "smaug-bpe" | "chatglm-bpe" | "glm4" => p(vec![LLAMA3]),
        "qwen2" | "deepseek-r1-qwen" | "stablelm2" | "megrez" | "hunyuan" => p(vec![QWEN2]),
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
