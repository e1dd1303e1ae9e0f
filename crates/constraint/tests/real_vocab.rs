//! The constraint engine on the real SmolLM2 (49k, byte-level BPE) and Gemma3 (262k, SentencePiece) vocabularies:
//! the token table, masks that only allow what the grammar allows, random walks through the masks whose text always
//! parses, forced tokens, special tokens named in Lark, and clear errors for grammars that cannot compile.

use hearth_constraint::tools::{self, CallParser, Piece, Tool, ToolChoice};
use hearth_constraint::{token_table, ConstraintError, Grammar, GrammarConstraint, Guide};
use hearth_engine::batch::Constraint;
use hearth_text::Tokenizer;
use serde_json::{json, Value};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

struct Setup {
    tok: Arc<Tokenizer>,
    guide: Arc<Guide>,
}

fn setup(name: &str) -> Setup {
    let g = hearth_gguf::Gguf::open(hearth_test_support::model_path(name)).expect("open gguf");
    let tok = Arc::new(Tokenizer::from_gguf(&g).expect("tokenizer"));
    let t = Instant::now();
    let guide = Arc::new(Guide::new(tok.clone(), tok.vocab_size()).expect("guide"));
    eprintln!("{name}: guide built in {:?}", t.elapsed());
    Setup { tok, guide }
}

fn smollm2() -> &'static Setup {
    static S: OnceLock<Setup> = OnceLock::new();
    S.get_or_init(|| setup("smollm2-135m"))
}

fn gemma3() -> &'static Setup {
    static S: OnceLock<Setup> = OnceLock::new();
    S.get_or_init(|| setup("gemma3-270m"))
}

fn both() -> [&'static Setup; 2] {
    [smollm2(), gemma3()]
}

/// A seeded random walk through the masks: at each step a random allowed token (or the end, half the time, where
/// the grammar accepts). Returns the generated text and whether it ended because the grammar accepted.
fn walk(s: &Setup, c: &mut GrammarConstraint, seed: u64, max_steps: usize) -> (String, bool) {
    let mut rng = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng >> 33) as usize
    };
    let mut ids = Vec::new();
    for _ in 0..max_steps {
        if c.is_finished() {
            return (s.tok.decode(&ids), true);
        }
        let m = c.mask().expect("mask");
        let allowed: Vec<u32> = (0..s.guide.n_vocab() as u32)
            .filter(|&i| m.is_allowed(i))
            .collect();
        for &id in &allowed {
            assert!(
                m.accepting || !s.tok.is_eog(id),
                "end of generation allowed where the grammar does not accept"
            );
        }
        // The end is the engine's business (it allows the stop ids where the grammar accepts): not a token here.
        let allowed: Vec<u32> = allowed
            .into_iter()
            .filter(|&id| !s.tok.is_eog(id))
            .collect();
        if m.accepting && (allowed.is_empty() || next().is_multiple_of(2)) {
            return (s.tok.decode(&ids), true);
        }
        assert!(
            !allowed.is_empty(),
            "nothing allowed and not accepting after {:?}",
            s.tok.decode(&ids)
        );
        let id = allowed[next() % allowed.len()];
        c.consume(id).expect("consume an allowed token");
        ids.push(id);
        ids.extend(c.forced());
    }
    (s.tok.decode(&ids), false)
}

fn compile(s: &Setup, g: Grammar) -> GrammarConstraint {
    s.guide.compile(&g).unwrap_or_else(|e| panic!("{g:?}: {e}"))
}

#[test]
fn special_tokens_are_marked_and_text_tokens_keep_their_bytes() {
    let s = smollm2();
    let table = token_table(&s.tok, s.tok.vocab_size());
    let im_end = s.tok.token_id("<|im_end|>").expect("<|im_end|>");
    assert_eq!(table[im_end as usize], b"\xFF<|im_end|>");
    let hello = s.tok.encode("Hello world", false, false).unwrap();
    let joined: Vec<u8> = hello
        .iter()
        .flat_map(|&i| table[i as usize].clone())
        .collect();
    assert_eq!(joined, b"Hello world");

    let s = gemma3();
    let table = token_table(&s.tok, s.tok.vocab_size());
    let eot = s.tok.token_id("<end_of_turn>").expect("<end_of_turn>");
    assert_eq!(table[eot as usize], b"\xFF<end_of_turn>");
    let byte_a = s.tok.token_id("<0x41>").expect("<0x41>");
    assert_eq!(table[byte_a as usize], b"A");
    let ids = s.tok.encode("Hello world", false, false).unwrap();
    let joined: Vec<u8> = ids
        .iter()
        .flat_map(|&i| table[i as usize].clone())
        .collect();
    assert_eq!(joined, b"Hello world");
}

#[test]
fn masks_allow_exactly_the_grammars_continuations() {
    for s in both() {
        let mut c = compile(s, Grammar::Regex("(yes|no)".into()));
        let m = c.mask().unwrap();
        assert!(!m.accepting);
        let n = s.guide.n_vocab() as u32;
        let allowed: Vec<String> = (0..n)
            .filter(|&i| m.is_allowed(i))
            .map(|i| String::from_utf8_lossy(s.tok.token_bytes_ref(i)).into_owned())
            .collect();
        assert!(allowed.iter().any(|t| t == "yes") && allowed.iter().any(|t| t == "no"));
        for t in &allowed {
            assert!(
                "yes".starts_with(t.as_str()) || "no".starts_with(t.as_str()),
                "{t:?} allowed"
            );
        }
        let yes = s.tok.encode("yes", false, false).unwrap();
        for &id in &yes {
            c.consume(id).unwrap();
        }
        assert!(c.is_finished(), "nothing can follow \"yes\"");
        let m = c.mask().unwrap();
        assert!(m.accepting && m.allowed.iter().all(|&w| w == 0));
        // A token outside the grammar is refused.
        let mut c = compile(s, Grammar::Regex("(yes|no)".into()));
        let x = s.tok.encode("maybe", false, false).unwrap()[0];
        assert!(c.consume(x).is_err());
    }
}

fn check_person(v: &Value) {
    let o = v.as_object().expect("object");
    let name = o["name"].as_str().expect("name");
    assert!((1..=8).contains(&name.chars().count()), "{name:?}");
    let age = o["age"].as_i64().expect("age");
    assert!((0..=120).contains(&age));
    assert!(["red", "green"].contains(&o["color"].as_str().expect("color")));
    assert_eq!(o["kind"], json!("person"));
    let tags = o["tags"].as_array().expect("tags");
    assert!(tags.len() <= 3);
    for t in tags {
        assert!(
            t.is_null() || t.as_str().is_some_and(|s| s.chars().count() <= 4),
            "{t}"
        );
    }
    if let Some(p) = o.get("pet") {
        assert!(
            p.get("legs")
                .and_then(Value::as_u64)
                .is_some_and(|l| l <= 8),
            "{p}"
        );
    }
    assert!(o
        .keys()
        .all(|k| ["name", "age", "color", "kind", "tags", "pet"].contains(&k.as_str())));
}

#[test]
fn random_walks_through_a_schema_always_parse() {
    let schema = json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 8},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "color": {"enum": ["red", "green"]},
            "kind": {"const": "person"},
            "tags": {"type": "array", "maxItems": 3, "items": {"anyOf": [{"type": "string", "maxLength": 4}, {"type": "null"}]}},
            "pet": {"$ref": "#/$defs/pet"}
        },
        "required": ["name", "age", "color", "kind", "tags"],
        "additionalProperties": false,
        "$defs": {"pet": {"type": "object", "properties": {"legs": {"type": "integer", "minimum": 0, "maximum": 8}}, "required": ["legs"], "additionalProperties": false}}
    });
    for s in both() {
        let base = compile(s, Grammar::JsonSchema(schema.clone()));
        for seed in 0..12 {
            let mut c = base.clone();
            let (text, done) = walk(s, &mut c, seed, 400);
            assert!(done, "seed {seed}: did not finish: {text:?}");
            let v: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("seed {seed}: {e}: {text:?}"));
            check_person(&v);
            // Compact separators, as json.dumps writes them: no tabs or newlines.
            assert!(!text.contains('\t') && !text.contains('\n'), "{text:?}");
        }
    }
}

#[test]
fn json_object_walks_parse_as_objects() {
    for s in both() {
        for seed in 0..6 {
            let mut c = compile(s, Grammar::JsonObject);
            let (text, done) = walk(s, &mut c, seed, 60);
            if done {
                let v: Value =
                    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
                assert!(v.is_object(), "{text:?}");
            } else {
                assert!(text.starts_with('{'), "{text:?}");
            }
        }
    }
}

#[test]
fn forced_tokens_spell_the_only_way_forward() {
    let schema = json!({
        "type": "object",
        "properties": {"temperature_celsius": {"type": "integer"}},
        "required": ["temperature_celsius"],
        "additionalProperties": false
    });
    for s in both() {
        let mut c = compile(s, Grammar::JsonSchema(schema.clone()));
        // Nothing is chosen yet: the whole key is forced from the start.
        let forced = c.forced();
        let text = s.tok.decode(&forced);
        assert!(
            "{\"temperature_celsius\": ".starts_with(&text) && text.len() >= 10,
            "forced {text:?}"
        );
        let (rest, done) = walk(s, &mut c, 1, 50);
        assert!(done);
        let v: Value = serde_json::from_str(&format!("{text}{rest}")).unwrap();
        assert!(v["temperature_celsius"].is_i64());
    }
}

#[test]
fn lark_grammars_can_name_special_tokens() {
    let s = smollm2();
    let mut c = compile(s, Grammar::Lark("start: \"ok\" <|im_end|> \"!\"".into()));
    for id in s.tok.encode("ok", false, false).unwrap() {
        c.consume(id).unwrap();
    }
    let m = c.mask().unwrap();
    let im_end = s.tok.token_id("<|im_end|>").unwrap();
    assert!(m.is_allowed(im_end));
    assert_eq!(m.allowed.iter().map(|w| w.count_ones()).sum::<u32>(), 1);
}

#[test]
fn tool_call_grammars_yield_calls_that_parse() {
    let tools = [
        Tool {
            name: "get_weather".into(),
            parameters: Some(json!({
                "type": "object",
                "properties": {"city": {"type": "string", "maxLength": 6}, "unit": {"enum": ["c", "f"]}},
                "required": ["city", "unit"], "additionalProperties": false
            })),
        },
        Tool {
            name: "add".into(),
            parameters: Some(json!({
                "type": "object",
                "properties": {"a": {"$ref": "#/$defs/small"}, "b": {"$ref": "#/$defs/small"}},
                "required": ["a", "b"], "additionalProperties": false,
                "$defs": {"small": {"type": "integer", "minimum": 0, "maximum": 9}}
            })),
        },
    ];
    for s in both() {
        for (choice, parallel) in [
            (ToolChoice::Required, false),
            (ToolChoice::Required, true),
            (ToolChoice::Named("add".into()), false),
        ] {
            let g = tools::grammar(&tools, &choice, parallel).unwrap();
            let base = compile(s, g);
            for seed in 0..4 {
                let mut c = base.clone();
                let (text, done) = walk(s, &mut c, seed, 300);
                assert!(done, "{choice:?}: {text:?}");
                let mut p = CallParser::new();
                let mut pieces = p.push(&text);
                pieces.extend(p.finish());
                assert!(!pieces.is_empty());
                for piece in pieces {
                    let Piece::Call { call, .. } = piece else {
                        panic!("{choice:?}: text outside calls in {text:?}");
                    };
                    let args: Value = serde_json::from_str(&call.arguments).unwrap();
                    match call.name.as_str() {
                        "add" => assert!(args["a"].as_u64().unwrap() <= 9 && args["b"].is_u64()),
                        "get_weather" => {
                            assert!(choice != ToolChoice::Named("add".into()));
                            assert!(args["city"].is_string() && args["unit"].is_string());
                        }
                        other => panic!("unknown tool {other}"),
                    }
                }
                if !parallel {
                    assert_eq!(p.calls(), 1, "{text:?}");
                }
            }
        }
    }
}

#[test]
fn auto_tool_choice_allows_text_and_takes_over_at_the_marker() {
    let s = smollm2();
    let tools = [Tool {
        name: "f".into(),
        parameters: Some(
            json!({"type": "object", "properties": {"x": {"type": "boolean"}}, "required": ["x"], "additionalProperties": false}),
        ),
    }];
    let base = compile(s, tools::grammar(&tools, &ToolChoice::Auto, false).unwrap());
    // Free text is fine and may end anywhere.
    let mut c = base.clone();
    for id in s.tok.encode("Sure, here you go.", false, false).unwrap() {
        c.consume(id).unwrap();
    }
    assert!(c.mask().unwrap().accepting);
    // Once the marker is written, only a valid call may follow.
    let mut c = base.clone();
    for id in s
        .tok
        .encode("Let me check.<tool_call>", false, false)
        .unwrap()
    {
        c.consume(id).unwrap();
    }
    let m = c.mask().unwrap();
    assert!(!m.accepting);
    let bad = s.tok.encode("hello", false, false).unwrap()[0];
    assert!(!m.is_allowed(bad));
    let (rest, done) = walk(s, &mut c, 3, 100);
    assert!(done);
    let mut p = CallParser::new();
    let mut pieces = p.push(&format!("Let me check.<tool_call>{rest}"));
    pieces.extend(p.finish());
    assert_eq!(pieces[0], Piece::Text("Let me check.".into()));
    assert!(
        matches!(&pieces[1], Piece::Call { call, .. } if call.name == "f"),
        "{pieces:?}"
    );
}

#[test]
fn bad_grammars_are_refused_with_their_cause() {
    let s = smollm2();
    let cases: Vec<(Grammar, &str)> = vec![
        (
            Grammar::JsonSchema(json!({"type": "no-such-type"})),
            "no-such-type",
        ),
        (Grammar::Regex("(unclosed".into()), "unclosed"),
        (
            Grammar::Lark("start: undefined_rule".into()),
            "undefined_rule",
        ),
        (
            Grammar::JsonSchema(json!({"type": "integer", "minimum": 5, "maximum": 1})),
            "nsatisfiable",
        ),
    ];
    for (g, needle) in cases {
        match s.guide.compile(&g) {
            Err(ConstraintError::Compile(msg)) => assert!(msg.contains(needle), "{g:?}: {msg}"),
            Err(e) => panic!("{g:?}: unexpected {e}"),
            Ok(_) => panic!("{g:?} compiled"),
        }
    }
}

#[test]
fn pathological_schemas_fail_within_seconds() {
    let s = smollm2();
    let mut deep = json!({"type": "integer"});
    for _ in 0..60 {
        deep = json!({"type": "object", "properties": {"a": deep}, "required": ["a"]});
    }
    let huge_enum: Vec<String> = (0..200_000)
        .map(|i| format!("value number {i} {}", i * 7919 % 100_003))
        .collect();
    for (what, schema) in [("deep", deep), ("huge enum", json!({"enum": huge_enum}))] {
        let t = Instant::now();
        let r = s
            .guide
            .compile_bounded(Grammar::JsonSchema(schema), Duration::from_secs(10));
        let took = t.elapsed();
        let e = r.err().unwrap_or_else(|| panic!("{what} compiled"));
        eprintln!("{what}: {e} after {took:?}");
        assert!(took < Duration::from_secs(11), "{what} took {took:?}");
    }
}

#[test]
fn mask_time_per_token() {
    // Not a timing assertion: prints the mean mask time on each vocabulary for the notes.
    let schema = json!({
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "integer"}, "label": {"type": "string", "maxLength": 12}}, "required": ["id", "label"]}, "maxItems": 4},
            "ok": {"type": "boolean"}
        },
        "required": ["items", "ok"]
    });
    for (name, s) in [("smollm2", smollm2()), ("gemma3", gemma3())] {
        let mut c = compile(s, Grammar::JsonSchema(schema.clone()));
        let mut n = 0;
        let mut total = Duration::ZERO;
        let mut rng = 7u64;
        while n < 200 && !c.is_finished() {
            let t = Instant::now();
            let m = c.mask().unwrap();
            total += t.elapsed();
            n += 1;
            let allowed: Vec<u32> = (0..s.guide.n_vocab() as u32)
                .filter(|&i| m.is_allowed(i))
                .collect();
            if allowed.is_empty() {
                break;
            }
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1);
            c.consume(allowed[(rng >> 33) as usize % allowed.len()])
                .unwrap();
        }
        eprintln!(
            "{name}: {n} masks, mean {:?} per mask",
            total / n.max(1) as u32
        );
        assert!(n > 0);
    }
}
