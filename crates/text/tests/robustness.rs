//! No input makes the library panic: random text through encode/decode/detokenize on the real vocabularies, and
//! broken tokenizer metadata gives a clear error.

mod common;

use hearth_gguf::Gguf;
use hearth_text::{Detokenizer, TextError, Tokenizer};

/// xorshift64*: deterministic pseudo-random numbers without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Random text mixing ASCII, whitespace runs, multi-byte characters and pieces of special tokens.
fn random_text(rng: &mut Rng, specials: &[&str]) -> String {
    const BITS: &[&str] = &[
        " ",
        "  ",
        "\n",
        "\n\n",
        "\t",
        "\r\n",
        "a",
        "Z",
        "0",
        "42",
        "'s",
        "'LL",
        "é",
        "ß",
        "中",
        "語",
        "🚀",
        "👨‍👩‍👧",
        "\u{200d}",
        "\u{feff}",
        "\u{0}",
        "\u{7f}",
        "▁",
        "Ġ",
        "<",
        ">",
        "|",
        "<0x0A>",
        "\u{10ffff}",
        "𓀀",
    ];
    let mut s = String::new();
    for _ in 0..rng.below(40) {
        match rng.below(10) {
            0 if !specials.is_empty() => {
                let sp = specials[rng.below(specials.len() as u64) as usize];
                // Whole, or cut at a character boundary.
                let cut = sp
                    .char_indices()
                    .map(|(i, _)| i)
                    .nth(rng.below(4) as usize)
                    .unwrap_or(sp.len());
                s.push_str(if rng.below(2) == 0 { sp } else { &sp[..cut] });
            }
            1 => s.push(char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('?')),
            _ => s.push_str(BITS[rng.below(BITS.len() as u64) as usize]),
        }
    }
    s
}

/// GPT-2's byte-to-character map (byte-level BPE vocabularies spell byte `b` as this character).
fn byte_char(b: u8) -> char {
    let printable =
        |c: u32| (33..=126).contains(&c) || (161..=172).contains(&c) || (174..=255).contains(&c);
    if printable(b as u32) {
        return char::from(b);
    }
    let rank = (0..b as u32).filter(|&c| !printable(c)).count() as u32;
    char::from_u32(256 + rank).unwrap()
}

/// `lossless`: byte-level BPE, whose decode gives back the text, except that bytes without a token in the
/// vocabulary are dropped (SmolLM2 has no token for 0x04, 0xC0, 0xF1, … ; llama.cpp drops them as well).
fn hammer(tok: &Tokenizer, specials: &[&str], seed: u64, lossless: bool) {
    let mut rng = Rng(seed);
    let n = tok.vocab_size() as u64;
    for _ in 0..300 {
        let text = random_text(&mut rng, specials);
        let lossless = lossless
            && text
                .bytes()
                .all(|b| tok.token_id(&byte_char(b).to_string()).is_some());
        for (add, parse) in [(false, false), (true, true), (false, true)] {
            let ids = tok.encode(&text, add, parse).unwrap();
            assert!(ids.iter().all(|&i| (i as u64) < n));
            if lossless && !add && !parse {
                assert_eq!(tok.decode(&ids), text, "round trip of {text:?}");
            }
            let mut d = Detokenizer::new(tok);
            let mut streamed: String = ids.iter().map(|&i| d.push(i)).collect();
            streamed += &d.flush();
            if lossless && !add {
                assert_eq!(streamed, text);
            }
        }
        // Arbitrary ids, including out-of-range ones.
        let ids: Vec<u32> = (0..rng.below(20))
            .map(|_| rng.below(n + 10) as u32)
            .collect();
        let _ = tok.decode(&ids);
        let _ = tok.decode_with(&ids, true);
        let mut d = Detokenizer::new(tok).skip_special(true);
        for &i in &ids {
            let _ = d.push(i);
            let _ = tok.token_bytes(i);
            let _ = tok.is_special(i);
        }
        let _ = d.flush();
    }
}

#[test]
fn smollm2_random_text() {
    let g = Gguf::open(common::model_path("smollm2-135m")).unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    // Byte-level BPE is lossless.
    hammer(
        &tok,
        &["<|im_start|>", "<|im_end|>", "<|endoftext|>"],
        0x9E37_79B9_7F4A_7C15,
        true,
    );
}

#[test]
fn gemma3_random_text() {
    let g = Gguf::open(common::model_path("gemma3-270m")).unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    // SentencePiece writes spaces as ▁, so text that contains ▁ does not round-trip; no panics is what counts.
    hammer(
        &tok,
        &[
            "<start_of_turn>",
            "<end_of_turn>",
            "<bos>",
            "\n\n\n",
            "</div>",
        ],
        0xD1B5_4A32_D192_ED03,
        false,
    );
}

/// A GGUF v3 image with the given key/values (string, string array, integer array, u32 or bool values).
enum V<'a> {
    Str(&'a str),
    Strs(&'a [&'a str]),
    I32s(&'a [i32]),
    U32(u32),
    Bool(bool),
}

fn gguf(kvs: &[(&str, V)]) -> Gguf {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    b.extend((kvs.len() as u64).to_le_bytes());
    let s = |b: &mut Vec<u8>, s: &str| {
        b.extend((s.len() as u64).to_le_bytes());
        b.extend(s.as_bytes());
    };
    for (k, v) in kvs {
        s(&mut b, k);
        match v {
            V::Str(x) => {
                b.extend(8u32.to_le_bytes());
                s(&mut b, x);
            }
            V::Strs(xs) => {
                b.extend(9u32.to_le_bytes());
                b.extend(8u32.to_le_bytes());
                b.extend((xs.len() as u64).to_le_bytes());
                for x in *xs {
                    s(&mut b, x);
                }
            }
            V::I32s(xs) => {
                b.extend(9u32.to_le_bytes());
                b.extend(5u32.to_le_bytes());
                b.extend((xs.len() as u64).to_le_bytes());
                for x in *xs {
                    b.extend(x.to_le_bytes());
                }
            }
            V::U32(x) => {
                b.extend(4u32.to_le_bytes());
                b.extend(x.to_le_bytes());
            }
            V::Bool(x) => {
                b.extend(7u32.to_le_bytes());
                b.push(*x as u8);
            }
        }
    }
    Gguf::from_bytes(b).unwrap()
}

const TOKENS: &[&str] = &["a", "b", "ab", "Ġ", "<s>"];

#[test]
fn broken_metadata_is_an_error() {
    let err = |kvs: &[(&str, V)]| match Tokenizer::from_gguf(&gguf(kvs)) {
        Err(e) => e,
        Ok(_) => panic!("expected an error"),
    };
    assert!(matches!(
        err(&[]),
        TextError::MissingKey {
            key: "tokenizer.ggml.model"
        }
    ));
    assert!(matches!(
        err(&[("tokenizer.ggml.model", V::Str("t5"))]),
        TextError::UnsupportedModel(m) if m == "t5"
    ));
    assert!(matches!(
        err(&[("tokenizer.ggml.model", V::U32(3))]),
        TextError::Gguf(_)
    ));
    assert!(matches!(
        err(&[("tokenizer.ggml.model", V::Str("gpt2"))]),
        TextError::MissingKey {
            key: "tokenizer.ggml.tokens"
        }
    ));
    let unknown_pre = err(&[
        ("tokenizer.ggml.model", V::Str("gpt2")),
        ("tokenizer.ggml.pre", V::Str("klingon")),
        ("tokenizer.ggml.tokens", V::Strs(TOKENS)),
        ("tokenizer.ggml.merges", V::Strs(&["a b"])),
    ]);
    assert!(unknown_pre.to_string().contains("klingon"), "{unknown_pre}");
    assert!(matches!(
        err(&[
            ("tokenizer.ggml.model", V::Str("gpt2")),
            ("tokenizer.ggml.pre", V::Str("gpt-2")),
            ("tokenizer.ggml.tokens", V::Strs(&["a", "a"])),
            ("tokenizer.ggml.merges", V::Strs(&[])),
        ]),
        TextError::BadMetadata {
            key: "tokenizer.ggml.tokens",
            ..
        }
    ));
    assert!(matches!(
        err(&[
            ("tokenizer.ggml.model", V::Str("gpt2")),
            ("tokenizer.ggml.tokens", V::Strs(TOKENS)),
            ("tokenizer.ggml.token_type", V::I32s(&[1, 1])),
            ("tokenizer.ggml.merges", V::Strs(&[])),
        ]),
        TextError::BadMetadata {
            key: "tokenizer.ggml.token_type",
            ..
        }
    ));
    assert!(matches!(
        err(&[
            ("tokenizer.ggml.model", V::Str("gpt2")),
            ("tokenizer.ggml.tokens", V::Strs(TOKENS)),
            ("tokenizer.ggml.merges", V::Strs(&[])),
            ("tokenizer.ggml.add_bos_token", V::Bool(true)),
        ]),
        TextError::BadMetadata {
            key: "tokenizer.ggml.add_bos_token",
            ..
        }
    ));
    assert!(matches!(
        err(&[
            ("tokenizer.ggml.model", V::Str("llama")),
            ("tokenizer.ggml.tokens", V::Strs(TOKENS))
        ]),
        TextError::MissingKey {
            key: "tokenizer.ggml.scores"
        }
    ));
}

/// A tiny well-formed vocabulary: merges that name missing pieces are ignored, an out-of-range BOS id is dropped,
/// and odd merge lines do not break anything.
#[test]
fn tiny_vocabulary_works() {
    let g = gguf(&[
        ("tokenizer.ggml.model", V::Str("gpt2")),
        ("tokenizer.ggml.pre", V::Str("gpt-2")),
        ("tokenizer.ggml.tokens", V::Strs(TOKENS)),
        ("tokenizer.ggml.token_type", V::I32s(&[1, 1, 1, 1, 3])),
        (
            "tokenizer.ggml.merges",
            V::Strs(&["a b", "x y", "nospace", "", " a"]),
        ),
        ("tokenizer.ggml.bos_token_id", V::U32(99)),
        ("tokenizer.ggml.eos_token_id", V::U32(4)),
    ]);
    let tok = Tokenizer::from_gguf(&g).unwrap();
    assert_eq!(tok.bos(), None);
    assert_eq!(tok.eos(), Some(4));
    assert_eq!(tok.eog_ids(), [4]);
    assert_eq!(tok.encode("ab a", false, false).unwrap(), [2, 3, 0]);
    assert_eq!(tok.encode("ab<s>", false, true).unwrap(), [2, 4]);
    assert_eq!(tok.decode(&[2, 3, 0, 4]), "ab a<s>");
    assert_eq!(tok.decode_with(&[2, 4], true), "ab");
}

/// Long runs (whitespace that the lookahead regexes backtrack over, one enormous word) neither panic nor crawl.
#[test]
fn pathological_long_inputs() {
    let smollm =
        Tokenizer::from_gguf(&Gguf::open(common::model_path("smollm2-135m")).unwrap()).unwrap();
    let gemma =
        Tokenizer::from_gguf(&Gguf::open(common::model_path("gemma3-270m")).unwrap()).unwrap();
    let inputs = [
        " ".repeat(100_000),
        format!("{}x", " \t".repeat(50_000)),
        "a".repeat(200_000),
        "😀".repeat(20_000),
        "1".repeat(100_000),
        "<|im_start|>".repeat(5_000),
    ];
    for tok in [&smollm, &gemma] {
        for text in &inputs {
            let start = std::time::Instant::now();
            // An error is acceptable (a regex engine limit); a panic or a hang is not.
            if let Ok(ids) = tok.encode(text, true, true) {
                assert!(!ids.is_empty());
            }
            let secs = start.elapsed().as_secs_f64();
            assert!(secs < 20.0, "{} bytes took {secs:.1} s", text.len());
        }
    }
}
