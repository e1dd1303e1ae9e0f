//! Fuzz targets for the GGUF reader (bolero). Under `cargo test` each runs on random inputs for a bounded time
//! (`BOLERO_RANDOM_TEST_TIME_MS`, 1 s by default) and replays the saved inputs under `tests/__fuzz__/`; for
//! coverage-guided runs use `scripts/fuzz.sh`. Whatever the bytes, the reader returns an error or a file whose
//! every accessor works: no panic, no out-of-bounds read, no huge allocation.

use hearth_gguf::{Gguf, GgufWriter, MetaArray, MetaValue};
use std::sync::OnceLock;

/// Everything a user of a parsed file can ask for, so a bad range or count shows up as a panic here.
fn exercise(g: &Gguf) {
    let _ = g.architecture();
    for k in g.keys() {
        let v = g.get(k).expect("listed keys exist");
        let _ = v.to_string();
        let _ = (g.get_str(k), g.get_uint(k), g.get_f32(k), g.get_bool(k));
        if let Ok(Some(a)) = g.get_array(k) {
            let _ = (a.strs(), a.to_i64_vec(), a.to_f32_vec());
        }
    }
    for t in g.tensors() {
        assert_eq!(g.tensor_data(t).len() as u64, t.n_bytes);
        let _ = t.n_elements();
    }
}

/// A small valid file to mutate: every value type, two tensors (F32 and Q8_0), a non-default alignment.
fn seed() -> &'static [u8] {
    static SEED: OnceLock<Vec<u8>> = OnceLock::new();
    SEED.get_or_init(|| {
        let mut w = GgufWriter::new();
        let m = |w: &mut GgufWriter, k: &str, v| w.add_meta(k, v).expect("meta");
        m(
            &mut w,
            "general.architecture",
            MetaValue::Str("llama".into()),
        );
        m(&mut w, "general.alignment", MetaValue::U32(64));
        m(&mut w, "llama.block_count", MetaValue::U32(1));
        m(&mut w, "x.i8", MetaValue::I8(-3));
        m(&mut w, "x.u16", MetaValue::U16(7));
        m(&mut w, "x.i64", MetaValue::I64(-9));
        m(&mut w, "x.f64", MetaValue::F64(0.5));
        m(&mut w, "x.bool", MetaValue::Bool(true));
        m(
            &mut w,
            "x.strs",
            MetaValue::Array(MetaArray::Str(vec!["a".into(), "bc".into()])),
        );
        m(
            &mut w,
            "x.f32s",
            MetaValue::Array(MetaArray::F32(vec![1.0, 2.0])),
        );
        w.add_tensor("a", vec![4, 2], hearth_gguf::DType::F32)
            .expect("tensor");
        w.add_tensor("b", vec![32], hearth_gguf::DType::Q8_0)
            .expect("tensor");
        let path = hearth_test_support::TempPath::new("fuzz-seed", "seed.gguf");
        w.write::<hearth_gguf::WriteError>(&path, |i, buf| {
            buf.resize([32, 34][i], 1);
            Ok(())
        })
        .expect("writing the seed");
        std::fs::read(&path).expect("reading the seed")
    })
}

/// Arbitrary bytes.
#[test]
fn fuzz_gguf_reader_bytes() {
    bolero::check!().for_each(|bytes: &[u8]| {
        if let Ok(g) = Gguf::from_bytes(bytes.to_vec()) {
            exercise(&g);
        }
        if let Ok(g) = Gguf::from_bytes_metadata_only(bytes.to_vec()) {
            let _ = g.keys().count();
        }
    });
}

/// The valid seed with a few bytes overwritten (counts, lengths, types, offsets) and maybe cut short: inputs
/// that get past the magic and the header, where the interesting checks are.
#[test]
fn fuzz_gguf_reader_mutations() {
    bolero::check!()
        .with_type::<(Vec<(u16, u8)>, Option<u16>)>()
        .for_each(|(edits, cut)| {
            let mut b = seed().to_vec();
            for &(at, byte) in edits {
                let n = b.len();
                b[at as usize % n] = byte;
            }
            if let Some(c) = cut {
                b.truncate(*c as usize % (b.len() + 1));
            }
            if let Ok(g) = Gguf::from_bytes(b) {
                exercise(&g);
            }
        });
}

#[test]
fn the_seed_is_valid() {
    let g = Gguf::from_bytes(seed().to_vec()).expect("the seed parses");
    assert_eq!(g.tensors().len(), 2);
    assert_eq!(g.alignment(), 64);
    exercise(&g);
}
