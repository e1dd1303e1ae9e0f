//! hearth-text: everything between text and token ids, built from a GGUF file's metadata and matching llama.cpp.
//!
//! - [`Tokenizer`]: `encode` (with llama.cpp's special-token rules), `decode`, the exact bytes of every token, BOS,
//!   EOS and end-of-generation ids. Byte-level BPE (`tokenizer.ggml.model = "gpt2"`: SmolLM2, Qwen, DeepSeek,
//!   Llama 3) and SentencePiece (`"llama"`: Gemma) vocabularies.
//! - [`Detokenizer`]: streaming ids to text, never emitting half a UTF-8 character.
//! - [`TextStream`]: generated ids to text deltas for every front-end: detokenizing, the reasoning split
//!   ([`Reasoning`]), stop strings.
//! - [`ChatTemplate`]: the file's Jinja chat template (or the family's built-in turn format), fuel-limited.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use hearth_text::{ChatMessage, ChatTemplate, Tokenizer};
//! let g = hearth_gguf::Gguf::open("smollm2-135m.gguf")?;
//! let tok = Tokenizer::from_gguf(&g)?;
//! let chat = ChatTemplate::from_gguf_with(&g, &tok)?;
//! let prompt = chat.render(&[ChatMessage::new("user", "Hi!")], true)?;
//! let ids = tok.encode(&prompt, true, true)?;
//! assert_eq!(tok.decode(&ids), prompt);
//! # Ok(()) }
//! ```

mod detok;
mod error;
mod pretok;
mod pyjson;
mod reasoning;
mod spm;
mod stream;
mod template;
mod tokenizer;
mod vocab;

pub use detok::Detokenizer;
pub use error::{Result, TextError};
pub use reasoning::{ReasoningPart, ReasoningSplitter};
pub use stream::{Delta, Reasoning, TextStream};
pub use template::{
    ChatMessage, ChatTemplate, TemplateSource, DEFAULT_FUEL, MAX_RENDERED_BYTES, MAX_TEMPLATE_BYTES,
};
pub use tokenizer::Tokenizer;
pub use vocab::{ModelKind, TokenType};
