//! Fuzz targets for the tokenizers and the chat-template renderer (bolero). Under `cargo test` each runs on random
//! inputs for a bounded time (`BOLERO_RANDOM_TEST_TIME_MS`, 1 s by default) and replays the saved inputs under
//! `tests/__fuzz__/`; `scripts/fuzz.sh` runs them coverage-guided for longer.

mod common;

use hearth_gguf::Gguf;
use hearth_text::{ChatMessage, ChatTemplate, Detokenizer, Tokenizer};
use std::sync::OnceLock;

fn tokenizer(name: &'static str) -> &'static Tokenizer {
    static SMOL: OnceLock<Tokenizer> = OnceLock::new();
    static GEMMA: OnceLock<Tokenizer> = OnceLock::new();
    let cell = if name == "smollm2-135m" {
        &SMOL
    } else {
        &GEMMA
    };
    cell.get_or_init(|| {
        let g = Gguf::open_metadata_only(common::model_path(name)).expect("the model's metadata");
        Tokenizer::from_gguf(&g).expect("its tokenizer")
    })
}

/// Any text: encoding never fails or panics, byte-level BPE gives the text back exactly, and decoding the ids
/// one at a time (the streaming detokenizer) gives what decoding them at once does.
#[test]
fn fuzz_tokenizer_encode() {
    bolero::check!().for_each(|bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        for name in ["smollm2-135m", "gemma3-270m"] {
            let tok = tokenizer(name);
            for parse_special in [false, true] {
                let ids = tok
                    .encode(&text, true, parse_special)
                    .expect("encoding any text");
                let whole = tok.decode(&ids);
                let mut d = Detokenizer::new(tok);
                let mut streamed: String = ids.iter().map(|&id| d.push(id)).collect();
                streamed.push_str(&d.flush());
                assert_eq!(streamed, whole, "{name}: {text:?}");
                // Byte-level BPE gives the text back, except bytes without a token in the vocabulary (SmolLM2
                // has none for 0x04, 0xC0, …; llama.cpp drops them too), found by this target.
                let lossless = text
                    .bytes()
                    .all(|b| tok.token_id(&byte_char(b).to_string()).is_some());
                if name == "smollm2-135m" && !parse_special && lossless {
                    assert_eq!(whole, text, "byte-level BPE round trip");
                }
            }
        }
    });
}

/// GPT-2's byte-to-character map.
fn byte_char(b: u8) -> char {
    let printable =
        |c: u32| (33..=126).contains(&c) || (161..=172).contains(&c) || (174..=255).contains(&c);
    if printable(b as u32) {
        return char::from(b);
    }
    let rank = (0..b as u32).filter(|&c| !printable(c)).count() as u32;
    char::from_u32(256 + rank).expect("a char")
}

/// Any ids, in range or not: decoding and streaming never panic.
#[test]
fn fuzz_tokenizer_decode() {
    bolero::check!().with_type::<Vec<u32>>().for_each(|ids| {
        for name in ["smollm2-135m", "gemma3-270m"] {
            let tok = tokenizer(name);
            let _ = tok.decode(ids);
            let _ = tok.decode_with(ids, true);
            let mut d = Detokenizer::new(tok);
            for &id in ids {
                let _ = d.push(id);
            }
            let _ = d.flush();
        }
    });
}

/// A template with a typical structure (loops, conditions, filters, namespaces, macros), for mutation.
const SEED_TEMPLATE: &str = "{%- set ns = namespace(sys='') -%}{% macro t(r) %}<|{{ r }}|>{% endmacro %}\
{%- for m in messages -%}{%- if m['role'] == 'system' -%}{%- set ns.sys = m['content'] | trim -%}\
{%- else -%}{{ t(m.role) }}{{ ns.sys ~ m.content | replace('a', 'b') | upper }}{{ m | tojson }}\
{%- if loop.last and add_generation_prompt %}{{ t('assistant') }}{% endif -%}{%- endif -%}{%- endfor -%}";

/// Template sources (the seed with bytes changed, or arbitrary text) and message contents: compiling and rendering
/// end in text or an error, never a panic, a hang (fuel) or unbounded output.
#[test]
fn fuzz_chat_template() {
    bolero::check!()
        .with_type::<(Vec<(u16, u8)>, bool, String, String)>()
        .for_each(|(edits, arbitrary, source, content)| {
            let src = if *arbitrary {
                source.clone()
            } else {
                let mut b = SEED_TEMPLATE.as_bytes().to_vec();
                for &(at, byte) in edits {
                    let n = b.len();
                    b[at as usize % n] = byte;
                }
                String::from_utf8_lossy(&b).into_owned()
            };
            let Ok(t) = ChatTemplate::new(&src, "<s>", "</s>") else {
                return;
            };
            let msgs = [
                ChatMessage::new("system", content.clone()),
                ChatMessage::new("user", content.clone()),
            ];
            if let Ok(out) = t.render(&msgs, true) {
                assert!(out.len() <= hearth_text::MAX_RENDERED_BYTES);
            }
        });
}
