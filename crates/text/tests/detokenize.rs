//! Streaming detokenization: characters split over several tokens come out whole, never as U+FFFD.

mod common;

use hearth_gguf::Gguf;
use hearth_text::{Detokenizer, TokenType, Tokenizer};

/// Pushes ids one by one; returns the pieces and checks they join to `text` without replacement characters.
fn stream(tok: &Tokenizer, text: &str) -> Vec<String> {
    let ids = tok.encode(text, false, false).unwrap();
    let mut d = Detokenizer::new(tok);
    let mut pieces: Vec<String> = ids.iter().map(|&id| d.push(id)).collect();
    pieces.push(d.flush());
    let joined: String = pieces.concat();
    assert!(
        !joined.contains('\u{FFFD}'),
        "{text:?} streamed as {pieces:?}"
    );
    assert_eq!(joined, text);
    pieces
}

#[test]
fn gemma3_byte_fallback_characters_come_out_whole() {
    let g = Gguf::open(common::model_path("gemma3-270m")).unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    // Characters Gemma's vocabulary lacks are spelled with <0xXX> byte tokens.
    for text in [
        "𓀀𓀁 hieroglyphs",
        "Gothic 𐌰𐌱𐌲",
        "rare 𠀀𠀁 CJK",
        "中国的人工智能 🚀🤖 emojis",
    ] {
        let ids = tok.encode(text, false, false).unwrap();
        let n_bytes = ids
            .iter()
            .filter(|&&i| tok.token_type(i) == Some(TokenType::Byte))
            .count();
        if text.starts_with('𓀀') {
            assert!(n_bytes >= 4, "{text:?} should use byte tokens: {ids:?}");
        }
        let pieces = stream(&tok, text);
        if n_bytes > 0 {
            assert!(
                pieces.iter().any(|p| p.is_empty()),
                "partial characters should be held back: {pieces:?}"
            );
        }
    }
}

#[test]
fn smollm2_byte_level_characters_come_out_whole() {
    let g = Gguf::open(common::model_path("smollm2-135m")).unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    // llama.cpp spells "🚀🤖" with 6 tokens (reference/smollm2-135m-q4_1/tokenize.json).
    let pieces = stream(&tok, "🚀🤖 emojis");
    assert_eq!(&pieces[..3], ["", "", "🚀"]);
    for text in [
        "日本語のテキスト",
        "中国的人工智能",
        "Ünïcödé ñ ß ø å",
        "👨‍👩‍👧‍👦 family",
    ] {
        stream(&tok, text);
    }
}

#[test]
fn special_tokens_render_unless_skipped() {
    let g = Gguf::open(common::model_path("smollm2-135m")).unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    let ids = tok
        .encode("<|im_start|>user\nhi<|im_end|>", false, true)
        .unwrap();
    assert_eq!(ids, [1, 4093, 198, 6004, 2]);
    let mut d = Detokenizer::new(&tok);
    let all: String = ids.iter().map(|&i| d.push(i)).collect();
    assert_eq!(all, "<|im_start|>user\nhi<|im_end|>");
    let mut d = Detokenizer::new(&tok).skip_special(true);
    let text: String = ids.iter().map(|&i| d.push(i)).collect();
    assert_eq!(text, "user\nhi");
    assert_eq!(tok.decode_with(&ids, true), "user\nhi");
}
