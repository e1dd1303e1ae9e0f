//! Many models in one server: the memory planner over the engine's shape, loading on demand, keep-alive and
//! names.

mod common;

use common::{model_path, post, read_response, spawn_server};
use hearth_engine::batch::BatchConfig;
use hearth_engine::{greedy_reference, KvType, Model, ThreadPool};
use hearth_gguf::Gguf;
use hearth_server::{plan, AppState, KeepAlive, ServerConfig};
use hearth_store::{format_bytes, memory, Store};
use hearth_text::{Detokenizer, Tokenizer};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

#[test]
fn memory_estimate_of_the_real_models_agrees_with_llama_cpp() {
    // llama.cpp allocates 45.00 MiB of f16 KV cache for SmolLM2-135M at n_ctx 2048 (30 layers × 3 KV heads × 64 × 2).
    let smol = Gguf::open(model_path("smollm2-135m")).unwrap();
    let shape = plan::shape_of_files(std::slice::from_ref(&smol), KvType::F16).unwrap();
    assert_eq!(memory::estimate(&shape, 2048, 1).kv_cache, 45 << 20);
    // q8_0 rows: 34 bytes per 32 elements.
    let q8 = plan::shape_of_files(std::slice::from_ref(&smol), KvType::Q8_0).unwrap();
    assert_eq!(
        memory::estimate(&q8, 2048, 1).kv_cache,
        2048 * 30 * 2 * (3 * 64 / 32 * 34)
    );
    // Peak RSS of llama-completion -c 2048 (../shared/reference/README.md): 168 MiB and 330 MiB. The estimate must
    // not be below what llama.cpp really used, nor wildly above it.
    for (g, rss_mib) in [
        (smol, 168u64),
        (Gguf::open(model_path("gemma3-270m")).unwrap(), 330),
    ] {
        let shape = plan::shape_of_files(std::slice::from_ref(&g), KvType::F16).unwrap();
        let e = memory::estimate(&shape, 2048, 1);
        let ratio = e.total as f64 / (rss_mib << 20) as f64;
        assert!(
            (1.0..1.6).contains(&ratio),
            "{}: {} vs {rss_mib} MiB",
            g.architecture().unwrap(),
            e.breakdown()
        );
    }
}

#[test]
fn a_served_model_counts_every_sequence_and_the_prefix_cache() {
    let smol = Gguf::open(model_path("smollm2-135m")).unwrap();
    let shape = plan::shape_of_files(std::slice::from_ref(&smol), KvType::F16).unwrap();
    let batch = BatchConfig {
        n_ctx: 2048,
        max_running: 4,
        prefix_cache_bytes: 1 << 20,
        ..BatchConfig::default()
    };
    let e = plan::served_estimate(&shape, &batch);
    assert_eq!(e.kv_cache, 4 * (45 << 20) + (1 << 20));
    assert_eq!(e.total, e.weights + e.kv_cache + e.scratch);
}

// ---- a server of the whole store: SmolLM2 and Gemma3 side by side ----

const SMOL: &str = "smollm2-135m";
const GEMMA: &str = "gemma3-270m";

/// A store in a temporary directory holding the two test models (linked, as the older fetch script's files).
fn two_model_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("models")).expect("mkdir");
    for name in [SMOL, GEMMA] {
        std::os::unix::fs::symlink(
            model_path(name),
            dir.path().join("models").join(format!("{name}.gguf")),
        )
        .expect("link the model");
    }
    let store = Store::open(dir.path()).expect("store");
    (dir, store)
}

fn store_config(keep_alive: KeepAlive, budget: Option<u64>) -> ServerConfig {
    ServerConfig {
        keep_alive,
        memory_budget: budget,
        ..common::config()
    }
}

/// Greedy text of `model` for a raw prompt (BOS as its tokenizer wants), as `hearth run --raw --temp 0` prints it.
fn greedy(model: &str, prompt: &str, max_tokens: usize) -> String {
    let m = Model::load(model_path(model)).expect("load");
    let tok = Tokenizer::from_gguf(&m.gguf).expect("tokenizer");
    let ids = tok.encode(prompt, true, true).expect("encode");
    let steps = greedy_reference(&m, &ThreadPool::new(1), &ids, max_tokens, 0).expect("greedy");
    let n = steps
        .iter()
        .position(|s| tok.is_eog(s.id))
        .map_or(steps.len(), |i| i + 1);
    let mut detok = Detokenizer::new(&tok).skip_special(true);
    let mut text: String = steps[..n].iter().map(|s| detok.push(s.id)).collect();
    text.push_str(&detok.flush());
    text
}

async fn get(addr: SocketAddr, path: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    s
}

async fn complete(addr: SocketAddr, model: &str, prompt: &str) -> (u16, Value) {
    let body = json!({"model": model, "prompt": prompt, "max_tokens": 8, "temperature": 0});
    let (status, _, body) = read_response(post(addr, "/v1/completions", &body).await).await;
    (
        status,
        serde_json::from_str(&body).unwrap_or_else(|_| json!({ "raw": body })),
    )
}

/// Waits (up to 20 s) until `cond` holds.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
}

fn loaded_ids(state: &AppState) -> Vec<String> {
    state.models.loaded().into_iter().map(|m| m.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_models_answer_interleaved_clients_each_loaded_once() {
    let (_dir, store) = two_model_store();
    let state = AppState::store(store, store_config(KeepAlive::Forever, None));
    let addr = spawn_server(state.clone()).await;
    let prompts = ["The capital of France is", "One, two, three,"];
    let want: Vec<(&str, &str, String)> = [SMOL, GEMMA]
        .iter()
        .flat_map(|m| prompts.iter().map(move |p| (*m, *p)))
        .map(|(m, p)| (m, p, greedy(m, p, 8)))
        .collect();
    // Six clients start at once, each asking both models in turn: the first requests for a model all wait on
    // one load.
    let clients: Vec<_> = (0..6)
        .map(|c| {
            let want = want.clone();
            tokio::spawn(async move {
                for k in 0..want.len() {
                    let (model, prompt, text) = &want[(c + k) % want.len()];
                    let (status, v) = complete(addr, model, prompt).await;
                    assert_eq!(status, 200, "{v}");
                    assert_eq!(v["model"], *model, "{v}");
                    assert_eq!(
                        v["choices"][0]["text"], **text,
                        "{model} on {prompt:?}: {v}"
                    );
                }
            })
        })
        .collect();
    for c in clients {
        c.await.expect("client");
    }
    assert_eq!(state.models.loads(), 2, "each model loaded exactly once");
    assert_eq!(loaded_ids(&state), [GEMMA, SMOL]);
    let listed = state.listing();
    assert_eq!(
        listed.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
        [GEMMA, SMOL]
    );
    let (status, _, body) = read_response(get(addr, "/v1/models").await).await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["data"][1]["id"], SMOL, "{v}");
    // A name the store does not have: 404 naming it, nothing loaded.
    let (status, v) = complete(addr, "no-such-model", "x").await;
    assert_eq!(status, 404, "{v}");
    assert_eq!(state.models.loads(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_model_unloads_after_its_keep_alive_and_reloads_on_the_next_request() {
    let (_dir, store) = two_model_store();
    let state = AppState::store(
        store,
        store_config(KeepAlive::For(Duration::from_secs(1)), None),
    );
    let addr = spawn_server(state.clone()).await;
    let want = greedy(SMOL, "One, two, three,", 8);
    let (status, v) = complete(addr, SMOL, "One, two, three,").await;
    assert_eq!(
        (status, v["choices"][0]["text"].clone()),
        (200, json!(want))
    );
    assert_eq!(loaded_ids(&state), [SMOL]);
    let (_, in_use) = state.models.memory();
    assert!(
        in_use > 100 << 20,
        "the planner counts the loaded model: {in_use}"
    );
    let expires = state.models.loaded()[0]
        .expires_at
        .expect("an idle model expires");
    assert!(expires <= SystemTime::now() + Duration::from_secs(1));
    eventually("the idle model is unloaded", || {
        state.models.loaded().is_empty()
    })
    .await;
    assert_eq!(
        state.models.memory().1,
        0,
        "its memory is returned to the budget"
    );
    // The next request loads it again.
    let (status, v) = complete(addr, SMOL, "One, two, three,").await;
    assert_eq!(
        (status, v["choices"][0]["text"].clone()),
        (200, json!(want))
    );
    assert_eq!(state.models.loads(), 2);
    // A request's own keep-alive of 0 unloads it as soon as the request ends; forever keeps it.
    let lease = state
        .served(Some(SMOL), Some(KeepAlive::Forever))
        .await
        .expect("lease");
    drop(lease);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        loaded_ids(&state),
        [SMOL],
        "kept by the request's keep-alive"
    );
    let lease = state
        .served(Some(SMOL), Some(KeepAlive::For(Duration::ZERO)))
        .await
        .expect("lease");
    assert_eq!(state.models.loaded()[0].active, 1);
    drop(lease);
    eventually("keep_alive 0 unloads it", || {
        state.models.loaded().is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_does_not_fit_is_refused_with_the_numbers_until_the_busy_one_is_idle() {
    let (_dir, store) = two_model_store();
    let batch = common::config().batch;
    let size = |name: &str| {
        let g = Gguf::open(model_path(name)).unwrap();
        let shape = plan::shape_of_files(std::slice::from_ref(&g), batch.kv_type).unwrap();
        plan::served_estimate(&shape, &batch)
    };
    let (smol, gemma) = (size(SMOL), size(GEMMA));
    // Either fits alone, not both.
    let budget = smol.total.max(gemma.total) + smol.total.min(gemma.total) / 2;
    let state = AppState::store(store, store_config(KeepAlive::Forever, Some(budget)));
    let addr = spawn_server(state.clone()).await;
    let busy = state.served(Some(SMOL), None).await.expect("smol");
    assert_eq!(state.models.memory(), (budget, smol.total));
    let (status, v) = complete(addr, GEMMA, "Hello").await;
    assert_eq!(status, 503, "{v}");
    let msg = v["error"]["message"]
        .as_str()
        .expect("a message")
        .to_string();
    for part in [
        format_bytes(gemma.total),
        format_bytes(budget - smol.total),
        format_bytes(budget),
        format!("{SMOL} ({})", format_bytes(smol.total)),
    ] {
        assert!(msg.contains(&part), "{part:?} missing from {msg}");
    }
    assert_eq!(
        loaded_ids(&state),
        [SMOL],
        "nothing was unloaded for a refusal"
    );
    // Once SmolLM2 is idle, it is unloaded to make room.
    drop(busy);
    let (status, v) = complete(addr, GEMMA, "Hello").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(loaded_ids(&state), [GEMMA]);
    assert_eq!(state.models.memory(), (budget, gemma.total));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ollama_lists_the_store_shows_what_is_loaded_and_unloads_with_keep_alive_0() {
    let (_dir, store) = two_model_store();
    let state = AppState::store(store, store_config(KeepAlive::Forever, None));
    let addr = spawn_server(state.clone()).await;
    let json_of = |body: String| serde_json::from_str::<Value>(&body).expect("json");
    let (status, _, body) = read_response(get(addr, "/api/tags").await).await;
    assert_eq!(status, 200, "{body}");
    let mut names: Vec<String> = json_of(body)["models"]
        .as_array()
        .expect("models")
        .iter()
        .map(|m| m["name"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    assert_eq!(names, [GEMMA, SMOL]);
    assert!(loaded_ids(&state).is_empty(), "listing loads nothing");
    // An empty generate loads the model (named with Ollama's tag) ...
    let load = json!({"model": format!("{SMOL}:latest"), "stream": false});
    let (status, _, body) = read_response(post(addr, "/api/generate", &load).await).await;
    assert_eq!(
        (status, json_of(body)["done_reason"].clone()),
        (200, json!("load"))
    );
    assert_eq!(loaded_ids(&state), [SMOL]);
    let (status, _, body) = read_response(get(addr, "/api/ps").await).await;
    assert_eq!(status, 200, "{body}");
    let ps = json_of(body);
    assert_eq!(ps["models"][0]["name"], SMOL, "{ps}");
    assert!(ps["models"][0]["size"].as_u64() > Some(0), "{ps}");
    assert!(ps["models"][0]["expires_at"].is_string(), "{ps}");
    // ... and one with keep_alive 0 unloads it.
    let unload = json!({"model": SMOL, "keep_alive": 0, "stream": false});
    let (status, _, body) = read_response(post(addr, "/api/generate", &unload).await).await;
    assert_eq!(
        (status, json_of(body)["done_reason"].clone()),
        (200, json!("unload"))
    );
    eventually("keep_alive 0 unloads it", || {
        state.models.loaded().is_empty()
    })
    .await;
}
