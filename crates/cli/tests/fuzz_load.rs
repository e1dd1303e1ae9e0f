//! Fuzz target for loading a model and running one decode step (bolero): a tiny valid model of each architecture
//! with bytes of its metadata and tensor index changed. Loading either fails with an error or gives a model that
//! runs a step (or fails it with an error); never a panic or a huge allocation. `cargo test` runs it for a bounded
//! time; `scripts/fuzz.sh` for longer.

mod hostile;

use hearth_engine::{Model, SeqBatch, ThreadPool};
use hearth_gguf::Gguf;
use std::sync::OnceLock;

/// The base model of each architecture, and where its data section starts (edits stay before it: changing
/// weights is the corpus's job, not a fuzzer's).
fn seeds() -> &'static [(Vec<u8>, usize)] {
    static SEEDS: OnceLock<Vec<(Vec<u8>, usize)>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        hostile::models::ARCHS
            .iter()
            .map(|arch| {
                let bytes = hostile::models::base(arch).bytes();
                let data = Gguf::from_bytes(bytes.clone())
                    .expect("a valid base")
                    .data_offset();
                (bytes, data as usize)
            })
            .collect()
    })
}

#[test]
fn fuzz_load_and_decode() {
    // Any panic fails the test, so no state is observed after one: asserting unwind safety is sound.
    let pool = std::panic::AssertUnwindSafe(ThreadPool::new(1));
    bolero::check!()
        .with_type::<(u8, Vec<(u16, u8)>)>()
        .for_each(|(which, edits)| {
            let (seed, data) = &seeds()[*which as usize % seeds().len()];
            let mut b = seed.clone();
            for &(at, byte) in edits {
                b[at as usize % data] = byte;
            }
            let Ok(g) = Gguf::from_bytes(b) else { return };
            let Ok(model) = Model::from_gguf(g) else {
                return;
            };
            let mut cache = model.new_cache(8);
            let tokens = [1u32, 2];
            let _ = model.forward(
                &*pool,
                &mut [SeqBatch {
                    cache: &mut cache,
                    tokens: &tokens,
                    logits_from: 1,
                }],
            );
        });
}
