//! Malformed and malicious GGUF files: each is refused with an error that names the problem, never a panic.

use hearth_gguf::{Gguf, GgufError};

/// Builds GGUF images byte by byte, so each test can break exactly one thing.
struct Builder {
    b: Vec<u8>,
}

impl Builder {
    fn header(version: u32, n_tensors: u64, n_kv: u64) -> Builder {
        let mut b = b"GGUF".to_vec();
        b.extend(version.to_le_bytes());
        b.extend(n_tensors.to_le_bytes());
        b.extend(n_kv.to_le_bytes());
        Builder { b }
    }
    fn str(mut self, s: &[u8]) -> Self {
        self.b.extend((s.len() as u64).to_le_bytes());
        self.b.extend(s);
        self
    }
    fn u32(mut self, x: u32) -> Self {
        self.b.extend(x.to_le_bytes());
        self
    }
    fn u64(mut self, x: u64) -> Self {
        self.b.extend(x.to_le_bytes());
        self
    }
    fn kv_str(self, k: &str, v: &str) -> Self {
        self.str(k.as_bytes()).u32(8).str(v.as_bytes())
    }
    fn kv_u32(self, k: &str, v: u32) -> Self {
        self.str(k.as_bytes()).u32(4).u32(v)
    }
    /// A tensor info: name, dims, type id, offset.
    fn tensor(mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> Self {
        self = self.str(name.as_bytes()).u32(dims.len() as u32);
        for &d in dims {
            self = self.u64(d);
        }
        self.u32(ty).u64(offset)
    }
    /// Pads to 32 bytes, then appends `n` data bytes.
    fn data(mut self, n: usize) -> Vec<u8> {
        while !self.b.len().is_multiple_of(32) {
            self.b.push(0);
        }
        self.b.extend(std::iter::repeat_n(7u8, n));
        self.b
    }
}

/// A valid file: one F32 tensor of 4x2 and two metadata keys.
fn valid() -> Vec<u8> {
    Builder::header(3, 1, 2)
        .kv_str("general.architecture", "llama")
        .kv_u32("llama.block_count", 2)
        .tensor("w", &[4, 2], 0, 0)
        .data(32)
}

fn refuse(bytes: Vec<u8>) -> GgufError {
    match Gguf::from_bytes(bytes) {
        Ok(_) => panic!("a malformed file was accepted"),
        Err(e) => e,
    }
}

#[test]
fn the_valid_file_parses() {
    let g = Gguf::from_bytes(valid()).unwrap();
    assert_eq!(g.architecture().unwrap(), "llama");
    assert_eq!(g.get_uint("llama.block_count").unwrap(), Some(2));
    let t = g.tensor("w").unwrap();
    assert_eq!((t.dims.clone(), t.n_bytes), (vec![4, 2], 32));
    assert_eq!(g.tensor_data(t), &[7u8; 32]);
}

#[test]
fn bad_magic() {
    let mut b = valid();
    b[0] = b'X';
    assert!(matches!(refuse(b), GgufError::BadMagic { .. }));
}

#[test]
fn unsupported_version() {
    let mut b = valid();
    b[4] = 1;
    let e = refuse(b);
    assert!(matches!(e, GgufError::UnsupportedVersion(1)));
    assert!(e.to_string().contains("versions 2 and 3"));
}

#[test]
fn every_truncation_is_refused() {
    let b = valid();
    // Cut at every length from empty to one byte short: no panic, always an error.
    for n in 0..b.len() - 1 {
        let e = refuse(b[..n].to_vec());
        assert!(
            matches!(
                e,
                GgufError::Truncated { .. }
                    | GgufError::TensorOutOfBounds { .. }
                    | GgufError::AbsurdCount { .. }
            ),
            "cut at {n}: {e}"
        );
    }
}

#[test]
fn truncated_tensor_data_says_incomplete() {
    let mut b = valid();
    b.truncate(b.len() - 1);
    let e = refuse(b);
    assert!(
        matches!(e, GgufError::TensorOutOfBounds { ref name, .. } if name == "w"),
        "{e}"
    );
}

#[test]
fn absurd_metadata_count() {
    let b = Builder::header(3, 0, u64::MAX).data(0);
    assert!(matches!(
        refuse(b),
        GgufError::AbsurdCount {
            what: "metadata",
            ..
        }
    ));
}

#[test]
fn absurd_tensor_count() {
    let b = Builder::header(3, 1 << 40, 0).data(64);
    assert!(matches!(
        refuse(b),
        GgufError::AbsurdCount { what: "tensor", .. }
    ));
}

#[test]
fn absurd_string_length() {
    let b = Builder::header(3, 0, 1).u64(u64::MAX - 3).data(64);
    assert!(matches!(refuse(b), GgufError::Truncated { .. }));
}

#[test]
fn absurd_array_length() {
    let b = Builder::header(3, 0, 1)
        .str(b"tokenizer.ggml.scores")
        .u32(9)
        .u32(6)
        .u64(u64::MAX / 2)
        .data(0);
    assert!(matches!(
        refuse(b),
        GgufError::AbsurdCount {
            what: "array element",
            ..
        }
    ));
}

#[test]
fn unknown_value_type() {
    let b = Builder::header(3, 0, 1).str(b"k").u32(99).u32(0).data(0);
    assert!(matches!(
        refuse(b),
        GgufError::UnknownValueType { ty: 99, .. }
    ));
}

#[test]
fn nested_array() {
    let b = Builder::header(3, 0, 1)
        .str(b"k")
        .u32(9)
        .u32(9)
        .u64(1)
        .data(0);
    assert!(matches!(refuse(b), GgufError::NestedArray { .. }));
}

#[test]
fn invalid_utf8_key() {
    let b = Builder::header(3, 0, 1)
        .str(&[0xff, 0xfe])
        .u32(4)
        .u32(1)
        .data(0);
    assert!(matches!(refuse(b), GgufError::BadUtf8 { .. }));
}

#[test]
fn duplicate_key() {
    let b = Builder::header(3, 0, 2)
        .kv_u32("a", 1)
        .kv_u32("a", 2)
        .data(0);
    assert!(matches!(refuse(b), GgufError::DuplicateKey { .. }));
}

#[test]
fn unknown_tensor_type() {
    let b = Builder::header(3, 1, 0).tensor("w", &[32], 4, 0).data(64);
    let e = refuse(b);
    assert!(matches!(e, GgufError::UnknownDType { id: 4, .. }), "{e}");
}

#[test]
fn too_many_dimensions() {
    let b = Builder::header(3, 1, 0)
        .tensor("w", &[1, 1, 1, 1, 1], 0, 0)
        .data(64);
    assert!(matches!(
        refuse(b),
        GgufError::TooManyDims { n_dims: 5, .. }
    ));
}

#[test]
fn row_not_whole_blocks() {
    let b = Builder::header(3, 1, 0).tensor("w", &[33], 8, 0).data(64);
    assert!(matches!(refuse(b), GgufError::BadShape { .. }));
}

#[test]
fn overflowing_shape() {
    let b = Builder::header(3, 1, 0)
        .tensor("w", &[1 << 40, 1 << 40], 0, 0)
        .data(64);
    assert!(matches!(refuse(b), GgufError::BadShape { .. }));
}

#[test]
fn tensor_past_the_end() {
    let b = Builder::header(3, 1, 0)
        .tensor("w", &[8], 0, 1 << 30)
        .data(64);
    assert!(matches!(refuse(b), GgufError::TensorOutOfBounds { .. }));
}

#[test]
fn misaligned_tensor() {
    let b = Builder::header(3, 1, 0).tensor("w", &[8], 0, 4).data(64);
    assert!(matches!(refuse(b), GgufError::MisalignedTensor { .. }));
}

#[test]
fn overlapping_tensors() {
    let b = Builder::header(3, 2, 0)
        .tensor("a", &[8], 0, 0)
        .tensor("b", &[8], 0, 0)
        .data(64);
    assert!(matches!(refuse(b), GgufError::OverlappingTensors { .. }));
}

#[test]
fn duplicate_tensor() {
    let b = Builder::header(3, 2, 0)
        .tensor("a", &[8], 0, 0)
        .tensor("a", &[8], 0, 32)
        .data(64);
    assert!(matches!(refuse(b), GgufError::DuplicateTensor { .. }));
}

#[test]
fn bad_alignment() {
    let b = Builder::header(3, 0, 1)
        .kv_u32("general.alignment", 3)
        .data(0);
    assert!(matches!(refuse(b), GgufError::BadAlignment(3)));
}

#[test]
fn wrong_type_is_an_error_not_a_default() {
    let g = Gguf::from_bytes(valid()).unwrap();
    assert!(matches!(
        g.get_str("llama.block_count"),
        Err(GgufError::WrongType { .. })
    ));
    assert!(matches!(
        g.get_uint("general.architecture"),
        Err(GgufError::WrongType { .. })
    ));
    assert_eq!(g.get_uint("missing").unwrap(), None);
}

#[test]
fn random_corruption_never_panics() {
    // A fixed-seed xorshift flips bytes of the valid file; whatever comes out must be Ok or Err, never a panic.
    let base = valid();
    let mut s: u64 = 0x9e3779b97f4a7c15;
    for _ in 0..5000 {
        let mut b = base.clone();
        for _ in 0..3 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let i = (s % b.len() as u64) as usize;
            b[i] = (s >> 32) as u8;
        }
        let _ = Gguf::from_bytes(b);
    }
}
