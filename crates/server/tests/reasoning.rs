//! `reasoning_content` end to end: the tiny random-weight Qwen3 checkpoint (tests/fixtures/tiny/qwen3, whose
//! vocabulary has `<think>` and `</think>`) converted with a chat template whose generation prompt opens `<think>`,
//! so the model's (seeded) output is reasoning until it emits `</think>`. The reference is the engine's token ids
//! for one request with the same sampling parameters, assembled into text here: its raw text, cut at the first
//! `</think>`, must be what the server returns as reasoning and answer, streamed or not.

use hearth_convert::{convert, ConvertOptions, OutType};
use hearth_engine::batch::{BatchConfig, Engine, Event, Request};
use hearth_engine::{Model, SamplingParams};
use hearth_server::{app, AppState, ServerConfig};
use hearth_text::{ChatMessage, ChatTemplate, Tokenizer};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::sync::{Arc, OnceLock};
use tower::ServiceExt;

/// Qwen3's turn format, with the generation prompt opening the reasoning as DeepSeek-R1's template does, or
/// writing an empty one when `enable_thinking` is false (as Qwen3's template does).
const TEMPLATE: &str = "{%- for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + \
    '<|im_end|>\n' }}{%- endfor %}{%- if add_generation_prompt %}{{ '<|im_start|>assistant\n<think>\n' }}\
    {%- if enable_thinking is defined and enable_thinking is false %}{{ '\n</think>\n\n' }}{%- endif %}\
    {%- endif %}";

/// A request whose sampled continuation closes `</think>` 21 tokens in, answers, and ends its turn (found by
/// trying seeds: greedy output of the random weights never closes the tag; the tests check it still does).
const USER: &str = "Why is the sky blue?";
const SEED: u64 = 412;
const MAX_TOKENS: usize = 48;

fn model() -> Arc<Model> {
    static M: OnceLock<Arc<Model>> = OnceLock::new();
    M.get_or_init(|| {
        let dir = hearth_test_support::tiny_with_template("qwen3", TEMPLATE);
        let out = dir.path().join("qwen3-think.gguf");
        let opts = ConvertOptions {
            outtype: OutType::parse("f32").expect("f32"),
            ..Default::default()
        };
        convert(dir.path(), &out, &opts).expect("converting the tiny qwen3");
        // The file goes with its directory; the model's mapping keeps its bytes.
        Arc::new(Model::load(&out).expect("loading the tiny qwen3"))
    })
    .clone()
}

fn tok() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| Tokenizer::from_gguf(&model().gguf).expect("tokenizer"))
}

fn router() -> axum::Router {
    static S: OnceLock<Arc<AppState>> = OnceLock::new();
    let state = S.get_or_init(|| {
        let config = ServerConfig {
            batch: BatchConfig {
                n_threads: 1,
                n_ctx: 256,
                max_running: 4,
                ..BatchConfig::default()
            },
            ..ServerConfig::new("tiny")
        };
        AppState::new(model(), config).expect("server state")
    });
    app(state.clone())
}

/// The engine's text for `USER`, tags written out, other control tokens left out; the number of tokens
/// generated; and how many of them are reasoning (up to and including the first `</think>`, when the prompt
/// opened the reasoning).
fn reference(max_tokens: usize) -> (String, usize, usize) {
    reference_with(max_tokens, true)
}

fn reference_with(max_tokens: usize, thinking: bool) -> (String, usize, usize) {
    let (model, tok) = (model(), tok());
    let template = ChatTemplate::from_gguf_with(&model.gguf, tok).expect("template");
    let messages = [ChatMessage::new("user", USER)];
    let prompt = template
        .render_with(
            &messages,
            true,
            &serde_json::json!({"enable_thinking": thinking})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        )
        .expect("render");
    let end = if thinking {
        "<think>\n"
    } else {
        "<think>\n\n</think>\n\n"
    };
    assert!(prompt.ends_with(end), "{prompt:?}");
    let ids = tok.encode(&prompt, false, true).expect("encode");
    let req = Request {
        prompt: ids,
        max_tokens,
        sampling: SamplingParams {
            temperature: 1.0,
            seed: SEED,
            ..SamplingParams::default()
        },
        stop_ids: tok.eog_ids().to_vec(),
        ..Request::default()
    };
    let engine = Engine::start(
        model,
        BatchConfig {
            n_threads: 1,
            n_ctx: 256,
            ..BatchConfig::default()
        },
    );
    let (tx, rx) = std::sync::mpsc::channel();
    engine.submit(req, Box::new(tx)).expect("submit");
    let mut out = Vec::new();
    for ev in rx {
        match ev {
            Event::Token(s) => out.push(s.id),
            Event::Done { .. } => break,
            Event::Failed(m) => panic!("{m}"),
        }
    }
    let n = out.len();
    let tags: Vec<u32> = ["<think>", "</think>"]
        .iter()
        .map(|t| tok.token_id(t).expect("tag token"))
        .collect();
    let n_reasoning = match thinking {
        true => out
            .iter()
            .position(|&id| id == tags[1])
            .map_or(n, |i| i + 1),
        false => 0,
    };
    let mut text = String::new();
    for seg in out.split_inclusive(|id| tags.contains(id)) {
        match seg.split_last() {
            Some((last, body)) if tags.contains(last) => {
                text += &tok.decode_with(body, true);
                text += tok.token_text(*last).expect("tag text");
            }
            _ => text += &tok.decode_with(seg, true),
        }
    }
    (text, n, n_reasoning)
}

async fn post(body: Value) -> (u16, String) {
    let req = axum::http::Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .expect("request");
    let res = router().oneshot(req).await.expect("infallible");
    let status = res.status().as_u16();
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8(bytes.to_vec()).expect("utf-8"))
}

/// Usage's (completion_tokens, completion_tokens_details.reasoning_tokens).
fn token_counts(usage: &Value) -> Option<(u64, u64)> {
    Some((
        usage["completion_tokens"].as_u64()?,
        usage["completion_tokens_details"]["reasoning_tokens"].as_u64()?,
    ))
}

/// (reasoning_content or None, content, finish_reason, token counts) of a whole response.
async fn chat(extra: Value) -> (Option<String>, String, String, (u64, u64)) {
    let mut body = json!({"messages": [{"role": "user", "content": USER}], "seed": SEED});
    body.as_object_mut()
        .expect("object")
        .extend(extra.as_object().expect("object").clone());
    let (status, text) = post(body).await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).expect("json");
    let m = &v["choices"][0]["message"];
    (
        m.get("reasoning_content")
            .map(|r| r.as_str().expect("a string").to_string()),
        m["content"].as_str().expect("content").to_string(),
        v["choices"][0]["finish_reason"]
            .as_str()
            .expect("finish")
            .to_string(),
        token_counts(&v["usage"]).expect("usage"),
    )
}

/// The same, streamed: deltas joined; asserts no delta is empty or mixes in a tag.
async fn chat_stream(extra: Value) -> (Option<String>, String, String, (u64, u64)) {
    let mut body = json!({"messages": [{"role": "user", "content": USER}], "seed": SEED,
        "stream": true, "stream_options": {"include_usage": true}});
    body.as_object_mut()
        .expect("object")
        .extend(extra.as_object().expect("object").clone());
    let (status, text) = post(body).await;
    assert_eq!(status, 200, "{text}");
    let (mut reasoning, mut content, mut finish, mut usage) =
        (None::<String>, String::new(), None, (0, 0));
    for d in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
        if d == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(d).expect("chunk json");
        if let Some(counts) = token_counts(&v["usage"]) {
            usage = counts;
        }
        let Some(c) = v["choices"].get(0) else {
            continue;
        };
        let delta = &c["delta"];
        assert!(!delta.to_string().contains("think>"), "{d}");
        if let Some(r) = delta.get("reasoning_content") {
            reasoning
                .get_or_insert_with(String::new)
                .push_str(r.as_str().expect("string"));
        }
        content += delta["content"].as_str().unwrap_or("");
        if let Some(f) = c["finish_reason"].as_str() {
            finish = Some(f.to_string());
        }
    }
    (reasoning, content, finish.expect("a finish chunk"), usage)
}

/// The reference cut at the first `</think>` the way the API reports it: (reasoning, answer).
fn expected(raw: &str) -> (String, String) {
    let at = raw
        .find("</think>")
        .unwrap_or_else(|| panic!("the output never closes </think>: {raw:?}"));
    (
        raw[..at].to_string(),
        raw[at + 8..].trim_start().to_string(),
    )
}

#[tokio::test]
async fn reasoning_is_split_from_the_answer_streamed_or_not() {
    let (raw, n, n_reasoning) = reference(MAX_TOKENS);
    let (want_r, want_a) = expected(&raw);
    assert!(
        !want_r.is_empty() && !want_a.is_empty(),
        "the test needs both reasoning and an answer: {raw:?}"
    );
    let whole = chat(json!({"max_tokens": MAX_TOKENS})).await;
    assert_eq!(whole.0.as_deref(), Some(want_r.as_str()), "raw {raw:?}");
    assert_eq!(whole.1, want_a, "raw {raw:?}");
    assert!(!whole.1.contains("think>"));
    assert_eq!(
        whole.3,
        (n as u64, n_reasoning as u64),
        "completion tokens count reasoning too; reasoning_tokens end at </think>"
    );
    assert!(0 < n_reasoning && n_reasoning < n);
    let want_finish = if n == MAX_TOKENS { "length" } else { "stop" };
    assert_eq!(whole.2, want_finish);
    assert_eq!(chat_stream(json!({"max_tokens": MAX_TOKENS})).await, whole);
}

#[tokio::test]
async fn length_limit_while_thinking_leaves_the_answer_empty() {
    let (raw, _, _) = reference(MAX_TOKENS);
    let (want_r, _) = expected(&raw);
    // Three tokens cannot reach `</think>` (it comes later in this output).
    let (short, n, _) = reference(3);
    assert!(!short.contains("</think>") && n == 3, "{short:?}");
    assert!(want_r.starts_with(&short), "{short:?} vs {want_r:?}");
    let whole = chat(json!({"max_tokens": 3})).await;
    assert_eq!(whole, (Some(short), String::new(), "length".into(), (3, 3)));
    assert_eq!(chat_stream(json!({"max_tokens": 3})).await, whole);
}

#[tokio::test]
async fn stop_strings_apply_to_the_answer_only() {
    let (raw, _, _) = reference(MAX_TOKENS);
    let (want_r, want_a) = expected(&raw);
    // A stop string taken from the reasoning (and absent from the answer) ends nothing.
    let in_reasoning: String = want_r.chars().take(3).collect();
    assert!(!want_a.contains(&in_reasoning), "pick another stop");
    let whole = chat(json!({"max_tokens": MAX_TOKENS, "stop": [in_reasoning]})).await;
    assert_eq!(whole.0.as_deref(), Some(want_r.as_str()));
    assert_eq!(whole.1, want_a);
    // One from the middle of the answer cuts the answer there, and is not sent.
    let chars: Vec<char> = want_a.chars().collect();
    let stop: String = chars[chars.len() / 2..][..2.min(chars.len() / 2)]
        .iter()
        .collect();
    let at = want_a.find(&stop).expect("stop in answer");
    for result in [
        chat(json!({"max_tokens": MAX_TOKENS, "stop": stop})).await,
        chat_stream(json!({"max_tokens": MAX_TOKENS, "stop": stop})).await,
    ] {
        assert_eq!(result.0.as_deref(), Some(want_r.as_str()));
        assert_eq!(result.1, want_a[..at]);
        assert_eq!(result.2, "stop");
    }
}

#[tokio::test]
async fn chat_template_kwargs_reach_the_template() {
    // Thinking switched off: the prompt closes an empty `<think>`, so all output is answer.
    let (raw, n, _) = reference_with(MAX_TOKENS, false);
    assert!(!raw.contains("think>"), "{raw:?}");
    let extra =
        json!({"max_tokens": MAX_TOKENS, "chat_template_kwargs": {"enable_thinking": false}});
    let whole = chat(extra.clone()).await;
    assert_eq!(whole.0, None, "no reasoning_content when there is none");
    assert_eq!((whole.1.as_str(), whole.3), (raw.as_str(), (n as u64, 0)));
    assert_eq!(chat_stream(extra).await, whole);
    let (s, body) =
        post(json!({"messages": [{"role": "user", "content": "x"}], "chat_template_kwargs": 3}))
            .await;
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("chat_template_kwargs"), "{body}");
}

async fn post_to(path: &str, body: Value) -> (u16, String) {
    let req = axum::http::Request::post(path)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .expect("request");
    let res = router().oneshot(req).await.expect("infallible");
    let status = res.status().as_u16();
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8(bytes.to_vec()).expect("utf-8"))
}

#[tokio::test]
async fn ollama_think_puts_the_reasoning_in_thinking() {
    let (raw, n, _) = reference(MAX_TOKENS);
    let (want_r, want_a) = expected(&raw);
    // The reference's sampler: temperature 1, no top-k/top-p cut (Ollama's defaults would cut).
    let options = json!({"seed": SEED, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "num_predict": MAX_TOKENS});
    let body = json!({"model": "tiny", "messages": [{"role": "user", "content": USER}], "think": true,
                      "options": options, "stream": false});
    let (s, text) = post_to("/api/chat", body.clone()).await;
    assert_eq!(s, 200, "{text}");
    let v: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["message"]["thinking"], want_r.as_str(), "raw {raw:?}");
    assert_eq!(v["message"]["content"], want_a.as_str(), "raw {raw:?}");
    assert_eq!(v["eval_count"], n);
    let mut streamed = body;
    streamed["stream"] = json!(true);
    let (s, text) = post_to("/api/chat", streamed).await;
    assert_eq!(s, 200, "{text}");
    let (mut thinking, mut content) = (String::new(), String::new());
    for l in text.lines() {
        let v: Value = serde_json::from_str(l).expect("line json");
        thinking += v["message"]["thinking"].as_str().unwrap_or("");
        content += v["message"]["content"].as_str().expect("content");
    }
    assert_eq!((thinking, content), (want_r, want_a));
    // think: false reaches the template as enable_thinking.
    let (raw, _, _) = reference_with(MAX_TOKENS, false);
    let body = json!({"model": "tiny", "messages": [{"role": "user", "content": USER}], "think": false,
                      "options": options, "stream": false});
    let (_, text) = post_to("/api/chat", body).await;
    let v: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["message"]["content"], raw.as_str());
    assert!(v["message"].get("thinking").is_none(), "{v}");
}

#[tokio::test]
async fn anthropic_thinking_blocks_streamed_or_not() {
    // Greedy output of the random weights never closes </think>: with thinking on, all of it is one thinking block.
    let body = json!({"model": "tiny", "max_tokens": 12, "temperature": 0,
                      "thinking": {"type": "enabled", "budget_tokens": 1024},
                      "messages": [{"role": "user", "content": USER}]});
    let (s, text) = post_to("/v1/messages", body.clone()).await;
    assert_eq!(s, 200, "{text}");
    let v: Value = serde_json::from_str(&text).expect("json");
    let content = v["content"].as_array().expect("content");
    assert_eq!(content.len(), 1, "{v}");
    assert_eq!(content[0]["type"], "thinking");
    let thinking = content[0]["thinking"].as_str().expect("thinking");
    assert!(!thinking.is_empty() && !thinking.contains("think>"), "{v}");
    assert_eq!(v["stop_reason"], "max_tokens");
    let mut streamed = body;
    streamed["stream"] = json!(true);
    let (_, text) = post_to("/v1/messages", streamed).await;
    let mut names = Vec::new();
    let mut joined = String::new();
    for d in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
        let e: Value = serde_json::from_str(d).expect("event json");
        if e["type"] == "content_block_start" {
            assert_eq!(e["content_block"]["type"], "thinking", "{e}");
        }
        if e["type"] == "content_block_delta" {
            assert_eq!(e["delta"]["type"], "thinking_delta", "{e}");
            joined += e["delta"]["thinking"].as_str().expect("thinking");
        }
        let name = e["type"].as_str().expect("type").to_string();
        if names.last() != Some(&name) {
            names.push(name);
        }
    }
    assert_eq!(
        names,
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(joined, thinking);
    // Thinking not asked for: the template closes an empty one, and the answer is text.
    let (s, text) = post_to(
        "/v1/messages",
        json!({"model": "tiny", "max_tokens": 12, "temperature": 0, "messages": [{"role": "user", "content": USER}]}),
    )
    .await;
    assert_eq!(s, 200, "{text}");
    let v: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["content"][0]["type"], "text", "{v}");
}
