//! GGUF v3 writer: metadata of every value type, tensor index with alignment padding, written atomically.
//!
//! Tensor data is streamed: [`GgufWriter::add_tensor`] records name, shape and type (so offsets are known up front),
//! and [`GgufWriter::write`] asks a callback for each tensor's bytes in order, so a converter never holds more than
//! one tensor in memory. The file is written to a temporary name beside the target and renamed into place.
//!
//! ```
//! use hearth_gguf::{DType, Gguf, GgufWriter, MetaValue, WriteError};
//! let dir = std::env::temp_dir().join(format!("hearth-writer-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("tiny.gguf");
//! let mut w = GgufWriter::new();
//! w.add_meta("general.architecture", MetaValue::Str("llama".into())).unwrap();
//! w.add_tensor("output_norm.weight", vec![4], DType::F32).unwrap();
//! w.write(&path, |_i, buf: &mut Vec<u8>| -> Result<(), WriteError> {
//!     buf.extend([1.0f32, 2.0, 3.0, 4.0].iter().flat_map(|x| x.to_le_bytes()));
//!     Ok(())
//! }).unwrap();
//! let g = Gguf::open(&path).unwrap();
//! assert_eq!(g.architecture().unwrap(), "llama");
//! assert_eq!(g.tensor("output_norm.weight").unwrap().dims, vec![4]);
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

use crate::{Array, DType, Value, ValueType};
use std::collections::HashSet;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Alignment of the data section and of each tensor when `general.alignment` is not set.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// An owned metadata value, as written to a file.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    Str(String),
    Array(MetaArray),
}

/// An owned, homogeneous metadata array.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaArray {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bool(Vec<bool>),
    Str(Vec<String>),
}

/// Why a file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("metadata key {key:?} was added twice")]
    DuplicateKey { key: String },
    #[error("tensor {name:?} was added twice")]
    DuplicateTensor { name: String },
    #[error("tensor {name:?} has shape {dims:?}: {why}")]
    BadShape {
        name: String,
        dims: Vec<u64>,
        why: String,
    },
    #[error(
        "tensor {name:?} ({dtype}, shape {dims:?}) needs {expected} bytes but {got} were supplied"
    )]
    DataLength {
        name: String,
        dtype: DType,
        dims: Vec<u64>,
        expected: u64,
        got: u64,
    },
    #[error("general.alignment must be a non-zero power of two held as u32, found {0}")]
    BadAlignment(String),
    #[error("metadata key {key:?}: {why}")]
    BadValue { key: String, why: String },
}

/// A tensor recorded for writing.
#[derive(Debug, Clone)]
pub struct TensorSpec {
    pub name: String,
    /// Innermost first, as ggml stores them: `dims[0]` is the row length.
    pub dims: Vec<u64>,
    pub dtype: DType,
    /// Byte size of the tensor's data.
    pub n_bytes: u64,
}

/// Builds a GGUF v3 file: metadata and tensor index first, then the tensors' bytes from a callback.
#[derive(Debug, Default)]
pub struct GgufWriter {
    meta: Vec<(String, MetaValue)>,
    tensors: Vec<TensorSpec>,
    keys: HashSet<String>,
    names: HashSet<String>,
}

impl GgufWriter {
    pub fn new() -> GgufWriter {
        GgufWriter::default()
    }

    /// Adds a metadata entry; keys keep the order they were added in.
    pub fn add_meta(&mut self, key: impl Into<String>, value: MetaValue) -> Result<(), WriteError> {
        let key = key.into();
        if key == "general.alignment" {
            match value {
                MetaValue::U32(a) if a.is_power_of_two() => {}
                ref v => return Err(WriteError::BadAlignment(format!("{v:?}"))),
            }
        }
        if !self.keys.insert(key.clone()) {
            return Err(WriteError::DuplicateKey { key });
        }
        self.meta.push((key, value));
        Ok(())
    }

    /// Adds or replaces a metadata entry (replacing keeps its position).
    pub fn set_meta(&mut self, key: impl Into<String>, value: MetaValue) -> Result<(), WriteError> {
        let key = key.into();
        if let Some(slot) = self.meta.iter_mut().find(|(k, _)| *k == key) {
            if key == "general.alignment"
                && !matches!(value, MetaValue::U32(a) if a.is_power_of_two())
            {
                return Err(WriteError::BadAlignment(format!("{value:?}")));
            }
            slot.1 = value;
            return Ok(());
        }
        self.add_meta(key, value)
    }

    /// Metadata entries added so far, in order.
    pub fn meta(&self) -> &[(String, MetaValue)] {
        &self.meta
    }

    /// Records a tensor of `dtype` with `dims` (innermost first). Its bytes are asked for by [`GgufWriter::write`].
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        dims: Vec<u64>,
        dtype: DType,
    ) -> Result<(), WriteError> {
        let name = name.into();
        let bad = |why: &str| WriteError::BadShape {
            name: name.clone(),
            dims: dims.clone(),
            why: why.to_string(),
        };
        if dims.is_empty() || dims.len() > 4 {
            return Err(bad("a tensor has 1 to 4 dimensions"));
        }
        if dims.contains(&0) {
            return Err(bad("a dimension is zero"));
        }
        let rows = dims[1..]
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .ok_or_else(|| bad("the element count overflows"))?;
        let row = dtype.row_bytes(dims[0]).ok_or_else(|| {
            bad(&format!(
                "rows of {} are not a whole number of {dtype} blocks of {}",
                dims[0],
                dtype.block_size()
            ))
        })?;
        let n_bytes = row
            .checked_mul(rows)
            .ok_or_else(|| bad("the byte size overflows"))?;
        if !self.names.insert(name.clone()) {
            return Err(WriteError::DuplicateTensor { name });
        }
        self.tensors.push(TensorSpec {
            name,
            dims,
            dtype,
            n_bytes,
        });
        Ok(())
    }

    /// Tensors recorded so far, in file order.
    pub fn tensors(&self) -> &[TensorSpec] {
        &self.tensors
    }

    fn alignment(&self) -> u64 {
        self.meta
            .iter()
            .find_map(|(k, v)| match (k.as_str(), v) {
                ("general.alignment", MetaValue::U32(a)) => Some(*a as u64),
                _ => None,
            })
            .unwrap_or(DEFAULT_ALIGNMENT)
    }

    /// Writes the file to `path` atomically. `data(i, buf)` must append exactly the bytes of tensor `i` (in the
    /// order added) to the empty `buf`. On any error the target is left untouched and the temporary file removed.
    pub fn write<E: From<WriteError>>(
        &self,
        path: impl AsRef<Path>,
        mut data: impl FnMut(usize, &mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        let path = path.as_ref();
        let tmp = temp_path(path);
        let result = self
            .write_to(&tmp, &mut data)
            .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| E::from(io_err(path, e))));
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    fn write_to<E: From<WriteError>>(
        &self,
        tmp: &Path,
        data: &mut impl FnMut(usize, &mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        let io = |e| E::from(io_err(tmp, e));
        let file = std::fs::File::create(tmp).map_err(io)?;
        let mut out = CountingWriter {
            inner: BufWriter::with_capacity(1 << 20, file),
            pos: 0,
        };
        let header = self.header();
        out.write_all(&header).map_err(io)?;
        let align = self.alignment();
        let mut buf = Vec::new();
        for (i, t) in self.tensors.iter().enumerate() {
            pad_to(&mut out, align).map_err(io)?;
            buf.clear();
            data(i, &mut buf)?;
            if buf.len() as u64 != t.n_bytes {
                return Err(E::from(WriteError::DataLength {
                    name: t.name.clone(),
                    dtype: t.dtype,
                    dims: t.dims.clone(),
                    expected: t.n_bytes,
                    got: buf.len() as u64,
                }));
            }
            out.write_all(&buf).map_err(io)?;
        }
        let file = out.inner.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        Ok(())
    }

    /// Magic, version, counts, metadata, tensor index and padding up to the data section.
    fn header(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(b"GGUF");
        b.extend(3u32.to_le_bytes());
        b.extend((self.tensors.len() as u64).to_le_bytes());
        b.extend((self.meta.len() as u64).to_le_bytes());
        for (k, v) in &self.meta {
            put_str(&mut b, k);
            put_value(&mut b, v);
        }
        let align = self.alignment();
        let mut offset = 0u64;
        for t in &self.tensors {
            put_str(&mut b, &t.name);
            b.extend((t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                b.extend(d.to_le_bytes());
            }
            b.extend((t.dtype as u32).to_le_bytes());
            b.extend(offset.to_le_bytes());
            offset = (offset + t.n_bytes).div_ceil(align) * align;
        }
        let padded = (b.len() as u64).div_ceil(align) * align;
        b.resize(padded as usize, 0);
        b
    }
}

fn io_err(path: &Path, source: std::io::Error) -> WriteError {
    WriteError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// `dir/.name.tmp-<pid>` beside the target, so the final rename stays on one filesystem.
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "out.gguf".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

struct CountingWriter<W: Write> {
    inner: W,
    pos: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn pad_to<W: Write>(out: &mut CountingWriter<W>, align: u64) -> std::io::Result<()> {
    let pad = out.pos.div_ceil(align) * align - out.pos;
    out.write_all(&vec![0u8; pad as usize])
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    b.extend((s.len() as u64).to_le_bytes());
    b.extend(s.as_bytes());
}

fn put_value(b: &mut Vec<u8>, v: &MetaValue) {
    b.extend((v.value_type() as u32).to_le_bytes());
    put_payload(b, v);
}

fn put_payload(b: &mut Vec<u8>, v: &MetaValue) {
    match v {
        MetaValue::U8(x) => b.push(*x),
        MetaValue::I8(x) => b.extend(x.to_le_bytes()),
        MetaValue::U16(x) => b.extend(x.to_le_bytes()),
        MetaValue::I16(x) => b.extend(x.to_le_bytes()),
        MetaValue::U32(x) => b.extend(x.to_le_bytes()),
        MetaValue::I32(x) => b.extend(x.to_le_bytes()),
        MetaValue::U64(x) => b.extend(x.to_le_bytes()),
        MetaValue::I64(x) => b.extend(x.to_le_bytes()),
        MetaValue::F32(x) => b.extend(x.to_le_bytes()),
        MetaValue::F64(x) => b.extend(x.to_le_bytes()),
        MetaValue::Bool(x) => b.push(*x as u8),
        MetaValue::Str(s) => put_str(b, s),
        MetaValue::Array(a) => {
            b.extend((a.elem_type() as u32).to_le_bytes());
            b.extend((a.len() as u64).to_le_bytes());
            match a {
                MetaArray::U8(v) => b.extend(v),
                MetaArray::I8(v) => v.iter().for_each(|x| b.extend(x.to_le_bytes())),
                MetaArray::U16(v) => v.iter().for_each(|x| b.extend(x.to_le_bytes())),
                MetaArray::I16(v) => v.iter().for_each(|x| b.extend(x.to_le_bytes())),
                MetaArray::U32(v) => v.iter().for_each(|x| b.extend(x.to_le_bytes())),
                MetaArray::I32(v) => v.iter().for_each(|x| b.extend(x.to_le_bytes())),
                MetaArray::U64(v) => v.iter().for_each(|x| b.extend(x.to_le_bytes())),
                MetaArray::I64(v) => v.iter().for_each(|x| b.extend(x.to_le_bytes())),
                MetaArray::F32(v) => v.iter().for_each(|x| b.extend(x.to_le_bytes())),
                MetaArray::F64(v) => v.iter().for_each(|x| b.extend(x.to_le_bytes())),
                MetaArray::Bool(v) => v.iter().for_each(|x| b.push(*x as u8)),
                MetaArray::Str(v) => v.iter().for_each(|s| put_str(b, s)),
            }
        }
    }
}

impl MetaValue {
    /// The GGUF type id this value is written with.
    pub fn value_type(&self) -> ValueType {
        match self {
            MetaValue::U8(_) => ValueType::U8,
            MetaValue::I8(_) => ValueType::I8,
            MetaValue::U16(_) => ValueType::U16,
            MetaValue::I16(_) => ValueType::I16,
            MetaValue::U32(_) => ValueType::U32,
            MetaValue::I32(_) => ValueType::I32,
            MetaValue::U64(_) => ValueType::U64,
            MetaValue::I64(_) => ValueType::I64,
            MetaValue::F32(_) => ValueType::F32,
            MetaValue::F64(_) => ValueType::F64,
            MetaValue::Bool(_) => ValueType::Bool,
            MetaValue::Str(_) => ValueType::String,
            MetaValue::Array(_) => ValueType::Array,
        }
    }

    /// An owned copy of a value read from a file (for rewriting a file's metadata). `key` names it in errors.
    pub fn from_value(key: &str, v: &Value<'_>) -> Result<MetaValue, WriteError> {
        Ok(match *v {
            Value::U8(x) => MetaValue::U8(x),
            Value::I8(x) => MetaValue::I8(x),
            Value::U16(x) => MetaValue::U16(x),
            Value::I16(x) => MetaValue::I16(x),
            Value::U32(x) => MetaValue::U32(x),
            Value::I32(x) => MetaValue::I32(x),
            Value::U64(x) => MetaValue::U64(x),
            Value::I64(x) => MetaValue::I64(x),
            Value::F32(x) => MetaValue::F32(x),
            Value::F64(x) => MetaValue::F64(x),
            Value::Bool(x) => MetaValue::Bool(x),
            Value::Str(s) => MetaValue::Str(s.to_string()),
            Value::Array(a) => MetaValue::Array(MetaArray::from_array(key, &a)?),
        })
    }
}

impl MetaArray {
    pub fn elem_type(&self) -> ValueType {
        match self {
            MetaArray::U8(_) => ValueType::U8,
            MetaArray::I8(_) => ValueType::I8,
            MetaArray::U16(_) => ValueType::U16,
            MetaArray::I16(_) => ValueType::I16,
            MetaArray::U32(_) => ValueType::U32,
            MetaArray::I32(_) => ValueType::I32,
            MetaArray::U64(_) => ValueType::U64,
            MetaArray::I64(_) => ValueType::I64,
            MetaArray::F32(_) => ValueType::F32,
            MetaArray::F64(_) => ValueType::F64,
            MetaArray::Bool(_) => ValueType::Bool,
            MetaArray::Str(_) => ValueType::String,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            MetaArray::U8(v) => v.len(),
            MetaArray::I8(v) => v.len(),
            MetaArray::U16(v) => v.len(),
            MetaArray::I16(v) => v.len(),
            MetaArray::U32(v) => v.len(),
            MetaArray::I32(v) => v.len(),
            MetaArray::U64(v) => v.len(),
            MetaArray::I64(v) => v.len(),
            MetaArray::F32(v) => v.len(),
            MetaArray::F64(v) => v.len(),
            MetaArray::Bool(v) => v.len(),
            MetaArray::Str(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An owned copy of an array read from a file, element type preserved.
    pub fn from_array(key: &str, a: &Array<'_>) -> Result<MetaArray, WriteError> {
        let bad = |why: &str| WriteError::BadValue {
            key: key.to_string(),
            why: why.to_string(),
        };
        let ints = || {
            a.to_i64_vec()
                .ok_or_else(|| bad("integer array out of range"))
        };
        // Narrowing casts below are exact: the values were read from arrays of exactly that element type.
        Ok(match a.elem_type() {
            ValueType::String => MetaArray::Str(
                a.strs()
                    .ok_or_else(|| bad("unreadable string array"))?
                    .into_iter()
                    .map(str::to_string)
                    .collect(),
            ),
            ValueType::U8 => MetaArray::U8(ints()?.into_iter().map(|x| x as u8).collect()),
            ValueType::I8 => MetaArray::I8(ints()?.into_iter().map(|x| x as i8).collect()),
            ValueType::U16 => MetaArray::U16(ints()?.into_iter().map(|x| x as u16).collect()),
            ValueType::I16 => MetaArray::I16(ints()?.into_iter().map(|x| x as i16).collect()),
            ValueType::U32 => MetaArray::U32(ints()?.into_iter().map(|x| x as u32).collect()),
            ValueType::I32 => MetaArray::I32(ints()?.into_iter().map(|x| x as i32).collect()),
            // u64 values above i64::MAX are refused by `to_i64_vec` (reported as out of range).
            ValueType::U64 => MetaArray::U64(ints()?.into_iter().map(|x| x as u64).collect()),
            ValueType::I64 => MetaArray::I64(ints()?),
            ValueType::Bool => MetaArray::Bool(ints()?.into_iter().map(|x| x != 0).collect()),
            ValueType::F32 => {
                MetaArray::F32(a.to_f32_vec().ok_or_else(|| bad("unreadable f32 array"))?)
            }
            ValueType::F64 => {
                MetaArray::F64(a.to_f64_vec().ok_or_else(|| bad("unreadable f64 array"))?)
            }
            ValueType::Array => return Err(bad("arrays of arrays are not supported")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Gguf;

    #[test]
    fn round_trips_every_value_type_and_tensor_layout() {
        let dir = hearth_test_support::temp_dir("gguf-writer-rt");
        let path = dir.path().join("rt.gguf");
        let mut w = GgufWriter::new();
        let vals = vec![
            ("a.u8", MetaValue::U8(200)),
            ("a.i8", MetaValue::I8(-100)),
            ("a.u16", MetaValue::U16(60000)),
            ("a.i16", MetaValue::I16(-30000)),
            ("a.u32", MetaValue::U32(4_000_000_000)),
            ("a.i32", MetaValue::I32(-2_000_000_000)),
            ("a.u64", MetaValue::U64(1 << 40)),
            ("a.i64", MetaValue::I64(-(1 << 40))),
            ("a.f32", MetaValue::F32(0.25)),
            ("a.f64", MetaValue::F64(-1.5e-300)),
            ("a.bool", MetaValue::Bool(true)),
            ("a.str", MetaValue::Str("héllo".into())),
            (
                "a.arr_str",
                MetaValue::Array(MetaArray::Str(vec!["x".into(), "".into(), "Ġthe".into()])),
            ),
            (
                "a.arr_i32",
                MetaValue::Array(MetaArray::I32(vec![1, -2, 3])),
            ),
            (
                "a.arr_f32",
                MetaValue::Array(MetaArray::F32(vec![0.5, -0.25])),
            ),
            ("a.arr_u8", MetaValue::Array(MetaArray::U8(vec![]))),
            (
                // Values f32 cannot hold: an f64 array must come back as f64 (quantize copies metadata).
                "a.arr_f64",
                MetaValue::Array(MetaArray::F64(vec![0.1, -1.5e-300, 1e300])),
            ),
            (
                "a.arr_bool",
                MetaValue::Array(MetaArray::Bool(vec![true, false])),
            ),
        ];
        for (k, v) in &vals {
            w.add_meta(*k, v.clone()).unwrap();
        }
        w.add_meta("general.alignment", MetaValue::U32(64)).unwrap();
        w.add_tensor("t.a", vec![3], DType::F32).unwrap();
        w.add_tensor("t.b", vec![32, 2], DType::Q8_0).unwrap();
        w.add_tensor("t.c", vec![5, 1, 1, 1], DType::F16).unwrap();
        let datas: Vec<Vec<u8>> = w
            .tensors()
            .iter()
            .map(|t| {
                (0..t.n_bytes)
                    .map(|i| (i * 7 + t.name.len() as u64) as u8)
                    .collect()
            })
            .collect();
        w.write(&path, |i, buf: &mut Vec<u8>| -> Result<(), WriteError> {
            buf.extend(&datas[i]);
            Ok(())
        })
        .unwrap();

        let g = Gguf::open(&path).unwrap();
        assert_eq!(g.version(), 3);
        assert_eq!(g.alignment(), 64);
        assert_eq!(g.data_offset() % 64, 0);
        for (k, v) in &vals {
            let back = MetaValue::from_value(k, &g.get(k).unwrap()).unwrap();
            assert_eq!(&back, v, "{k}");
        }
        let keys: Vec<_> = g.keys().collect();
        assert_eq!(keys.len(), vals.len() + 1);
        assert_eq!(keys[0], "a.u8");
        for (t, d) in w.tensors().iter().zip(&datas) {
            let info = g.tensor(&t.name).unwrap();
            assert_eq!(info.dims, t.dims);
            assert_eq!(info.dtype, t.dtype);
            assert_eq!(info.offset % 64, 0);
            assert_eq!(g.tensor_data(info), &d[..]);
        }
        assert!(!dir
            .path()
            .join(".rt.gguf.tmp-".to_string() + &std::process::id().to_string())
            .exists());
    }

    #[test]
    fn refuses_bad_input_and_leaves_target_untouched() {
        let dir = hearth_test_support::temp_dir("gguf-writer-bad");
        let path = dir.path().join("bad.gguf");
        std::fs::write(&path, b"previous").unwrap();
        let mut w = GgufWriter::new();
        assert!(matches!(
            w.add_tensor("q", vec![33, 2], DType::Q8_0),
            Err(WriteError::BadShape { .. })
        ));
        assert!(w.add_tensor("z", vec![0], DType::F32).is_err());
        assert!(w.add_meta("general.alignment", MetaValue::U32(24)).is_err());
        w.add_meta("k", MetaValue::U8(1)).unwrap();
        assert!(matches!(
            w.add_meta("k", MetaValue::U8(2)),
            Err(WriteError::DuplicateKey { .. })
        ));
        w.add_tensor("t", vec![4], DType::F32).unwrap();
        assert!(matches!(
            w.add_tensor("t", vec![4], DType::F32),
            Err(WriteError::DuplicateTensor { .. })
        ));
        let err = w
            .write(&path, |_, buf: &mut Vec<u8>| -> Result<(), WriteError> {
                buf.extend([0u8; 15]);
                Ok(())
            })
            .unwrap_err();
        assert!(err.to_string().contains("needs 16 bytes but 15"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"previous");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temporary file left behind");
    }
}
