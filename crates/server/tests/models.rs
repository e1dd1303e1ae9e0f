//! Many models in one server: the memory planner over the engine's shape, loading on demand, keep-alive and
//! names.

mod common;

use common::model_path;
use hearth_engine::batch::BatchConfig;
use hearth_engine::KvType;
use hearth_gguf::Gguf;
use hearth_server::plan;
use hearth_store::memory;

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
