//! hearth-constraint: structured output. A [`Grammar`] (a JSON Schema, "any JSON object", a regular expression or
//! an llguidance Lark grammar) becomes a [`GrammarConstraint`], the per-sequence state the batch engine asks for a
//! token mask each step (it implements [`hearth_engine::batch::Constraint`]).
//!
//! - [`Guide`]: built once per model from its tokenizer (the token-bytes trie and llguidance's `ParserFactory`,
//!   a few hundred milliseconds); cheap to share.
//! - [`Guide::compile`] compiles a grammar under llguidance's limits plus our own (schema depth and size);
//!   [`Guide::compile_bounded`] does it on its own thread with a deadline, so a pathological grammar costs its
//!   caller a clear error within a few seconds and never blocks the engine thread.
//! - [`tools`]: the grammar of OpenAI tool calls in a `<tool_call>{"name":…,"arguments":…}</tool_call>` format.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use hearth_constraint::{Grammar, Guide};
//! use hearth_engine::batch::Constraint;
//! use std::sync::Arc;
//! let g = hearth_gguf::Gguf::open("smollm2-135m.gguf")?;
//! let tok = Arc::new(hearth_text::Tokenizer::from_gguf(&g)?);
//! let guide = Guide::new(tok.clone(), tok.vocab_size())?;
//! let schema = serde_json::json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]});
//! let mut c = guide.compile(&Grammar::JsonSchema(schema))?;
//! let mask = c.mask()?; // which tokens may come first
//! # Ok(()) }
//! ```

mod matcher;
pub mod tools;
mod vocab;

pub use matcher::GrammarConstraint;
pub use vocab::{token_table, HearthTokEnv};

use hearth_text::Tokenizer;
use llguidance::api::{ParserLimits, TopLevelGrammar};
use llguidance::toktrie::{InferenceCapabilities, TokEnv};
use llguidance::{Matcher, ParserFactory};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// What a client can ask the output to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Grammar {
    /// Any JSON object (OpenAI's `response_format: {"type": "json_object"}`).
    JsonObject,
    /// A JSON Schema (draft 2020-12 as llguidance supports it; `oneOf` is read as `anyOf`).
    JsonSchema(Value),
    /// A regular expression the whole output must match.
    Regex(String),
    /// An llguidance Lark grammar (`start: …`; `%json {…}` embeds a schema; `<|im_end|>` names a special token).
    Lark(String),
}

/// Why a grammar was refused (a client error: the message names the cause).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConstraintError {
    #[error("the JSON schema is nested {depth} levels deep; at most {max} are supported")]
    TooDeep { depth: usize, max: usize },
    #[error("the grammar is {bytes} bytes; at most {max} are supported")]
    TooBig { bytes: usize, max: usize },
    #[error("the grammar does not compile: {0}")]
    Compile(String),
    #[error("compiling the grammar took longer than {secs} s (it is too complex)")]
    Timeout { secs: u64 },
    #[error("building the vocabulary for constrained decoding: {0}")]
    Vocab(String),
}

/// Nesting levels of JSON a schema may have (objects and arrays inside each other).
pub const MAX_SCHEMA_DEPTH: usize = 64;
/// Bytes a grammar's source (a schema as JSON, a regex, a Lark grammar) may have.
pub const MAX_GRAMMAR_BYTES: usize = 1 << 20;
/// Stack of the thread [`Guide::compile_bounded`] compiles on (llguidance recurses over the grammar).
const COMPILE_STACK: usize = 64 << 20;

/// Compiles grammars for one model's vocabulary.
pub struct Guide {
    factory: ParserFactory,
}

impl Guide {
    /// Builds the trie of `n_vocab` token ids (the model's; ids the tokenizer lacks are never allowed) and the parser
    /// factory, with llguidance's default limits.
    pub fn new(tok: Arc<Tokenizer>, n_vocab: usize) -> Result<Guide, ConstraintError> {
        let env: TokEnv = Arc::new(HearthTokEnv::new(tok, n_vocab));
        let mut factory = ParserFactory::new(
            &env,
            InferenceCapabilities {
                ff_tokens: true,
                ..Default::default()
            },
            &llguidance::earley::SlicedBiasComputer::general_slices(),
        )
        .map_err(|e| ConstraintError::Vocab(e.to_string()))?;
        factory.quiet();
        *factory.limits_mut() = ParserLimits::default();
        Ok(Guide { factory })
    }

    /// The vocabulary size masks cover.
    pub fn n_vocab(&self) -> usize {
        self.factory.tok_env().tok_trie().vocab_size()
    }

    /// Compiles `grammar` on the calling thread (see [`Guide::compile_bounded`] for a deadline).
    pub fn compile(&self, grammar: &Grammar) -> Result<GrammarConstraint, ConstraintError> {
        let top = top_level(grammar)?;
        let parser = llguidance::panic_utils::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.factory.create_parser(top)
        }));
        let matcher = Matcher::new(parser);
        if let Some(e) = matcher.get_error() {
            return Err(ConstraintError::Compile(e));
        }
        GrammarConstraint::start(matcher)
    }

    /// [`Guide::compile`] on a thread of its own (with a large stack), waiting at most `deadline`; the thread
    /// finishes in the background (llguidance's fuel limits bound it) when the deadline passes first.
    pub fn compile_bounded(
        self: &Arc<Self>,
        grammar: Grammar,
        deadline: Duration,
    ) -> Result<GrammarConstraint, ConstraintError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let guide = self.clone();
        std::thread::Builder::new()
            .name("hearth-grammar".into())
            .stack_size(COMPILE_STACK)
            .spawn(move || {
                let _ = tx.send(guide.compile(&grammar));
            })
            .map_err(|e| ConstraintError::Compile(format!("starting the compile thread: {e}")))?;
        match rx.recv_timeout(deadline) {
            Ok(r) => r,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(ConstraintError::Timeout {
                secs: deadline.as_secs().max(1),
            }),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(ConstraintError::Compile(
                "the compiler stopped unexpectedly".into(),
            )),
        }
    }
}

/// llguidance's form of `grammar`, after our own checks. JSON schemas get compact separators (`", "` and `": "`,
/// as Python's `json.dumps` writes) unless they set their own `x-guidance` options: with flexible whitespace a
/// small model fills objects with tabs and newlines.
fn top_level(grammar: &Grammar) -> Result<TopLevelGrammar, ConstraintError> {
    let size = match grammar {
        Grammar::JsonObject => 0,
        Grammar::JsonSchema(v) => v.to_string().len(),
        Grammar::Regex(s) | Grammar::Lark(s) => s.len(),
    };
    if size > MAX_GRAMMAR_BYTES {
        return Err(ConstraintError::TooBig {
            bytes: size,
            max: MAX_GRAMMAR_BYTES,
        });
    }
    Ok(match grammar {
        Grammar::JsonObject => {
            TopLevelGrammar::from_json_schema(with_options(json!({"type": "object"})))
        }
        Grammar::JsonSchema(schema) => {
            let depth = json_depth(schema);
            if depth > MAX_SCHEMA_DEPTH {
                return Err(ConstraintError::TooDeep {
                    depth,
                    max: MAX_SCHEMA_DEPTH,
                });
            }
            TopLevelGrammar::from_json_schema(with_options(schema.clone()))
        }
        Grammar::Regex(rx) => TopLevelGrammar::from_regex(rx),
        Grammar::Lark(src) => TopLevelGrammar::from_lark(src.clone()),
    })
}

/// The JSON compile options hearth uses (see [`top_level`]); a schema's own `x-guidance` wins.
pub fn json_options() -> Value {
    json!({
        "whitespace_flexible": false,
        "item_separator": ", ",
        "key_separator": ": ",
        "coerce_one_of": true,
    })
}

fn with_options(mut schema: Value) -> Value {
    if let Some(obj) = schema.as_object_mut() {
        obj.entry("x-guidance").or_insert_with(json_options);
    }
    schema
}

/// Nesting depth of a JSON value (a scalar is 0), without recursion.
fn json_depth(v: &Value) -> usize {
    let mut max = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, d)) = stack.pop() {
        max = max.max(d);
        match v {
            Value::Array(a) => stack.extend(a.iter().map(|x| (x, d + 1))),
            Value::Object(o) => stack.extend(o.values().map(|x| (x, d + 1))),
            _ => {}
        }
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_nesting() {
        assert_eq!(json_depth(&json!(1)), 0);
        assert_eq!(json_depth(&json!({"a": [1, {"b": 2}]})), 3);
    }

    #[test]
    fn options_are_added_unless_the_schema_sets_its_own() {
        let s = with_options(json!({"type": "object"}));
        assert_eq!(s["x-guidance"], json_options());
        let own = json!({"type": "object", "x-guidance": {"whitespace_flexible": true}});
        assert_eq!(with_options(own.clone()), own);
        assert_eq!(with_options(json!(true)), json!(true));
    }

    #[test]
    fn deep_and_big_grammars_are_refused_before_compiling() {
        let mut deep = json!({"type": "string"});
        for _ in 0..40 {
            deep = json!({"type": "object", "properties": {"x": deep}});
        }
        assert!(matches!(
            top_level(&Grammar::JsonSchema(deep)),
            Err(ConstraintError::TooDeep { depth: 81, .. })
        ));
        let big = Grammar::Regex("a".repeat(MAX_GRAMMAR_BYTES + 1));
        assert!(matches!(
            top_level(&big),
            Err(ConstraintError::TooBig { .. })
        ));
    }
}
