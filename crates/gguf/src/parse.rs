//! The GGUF header parser: every count, length and offset is checked against the file length before it is used.
//!
//! Layout: magic "GGUF", u32 version, u64 tensor count, u64 metadata count, the metadata key/values, the tensor infos
//! (name, u32 n_dims, u64 dims[n_dims], u32 type, u64 offset), padding to `general.alignment`, then the tensor data.

use crate::value::ValueType;
use crate::{DType, GgufError, TensorInfo};
use std::collections::HashSet;
use std::ops::Range;

/// A metadata entry: its value's byte range is validated for its type.
pub(crate) struct Entry {
    pub key: String,
    pub ty: ValueType,
    /// Element type and count, for arrays.
    pub elem: ValueType,
    pub count: u64,
    pub value: Range<u64>,
}

pub(crate) struct Parsed {
    pub version: u32,
    pub entries: Vec<Entry>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    pub data_offset: u64,
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: u64,
}

impl<'a> Cursor<'a> {
    fn len(&self) -> u64 {
        self.b.len() as u64
    }

    fn remaining(&self) -> u64 {
        self.len() - self.pos
    }

    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8], GgufError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.len())
            .ok_or_else(|| GgufError::Truncated {
                what: what(),
                start: self.pos,
                end: self.pos.saturating_add(n),
                len: self.len(),
            })?;
        let s = &self.b[self.pos as usize..end as usize];
        self.pos = end;
        Ok(s)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(
            self.take(4, what)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(
            self.take(8, what)?.try_into().expect("8 bytes"),
        ))
    }

    /// A length-prefixed UTF-8 string.
    fn string(&mut self, what: &dyn Fn() -> String) -> Result<&'a str, GgufError> {
        let n = self.u64(what)?;
        let bytes = self.take(n, what)?;
        std::str::from_utf8(bytes).map_err(|_| GgufError::BadUtf8 { what: what() })
    }
}

pub(crate) fn parse(b: &[u8], check_data: bool) -> Result<Parsed, GgufError> {
    let mut c = Cursor { b, pos: 0 };
    let magic = c.take(4, &|| "the magic number".into())?;
    if magic != b"GGUF" {
        return Err(GgufError::BadMagic {
            found: magic.try_into().expect("4 bytes"),
        });
    }
    let version = c.u32(&|| "the version".into())?;
    if !(2..=3).contains(&version) {
        return Err(GgufError::UnsupportedVersion(version));
    }
    let n_tensors = c.u64(&|| "the tensor count".into())?;
    let n_kv = c.u64(&|| "the metadata count".into())?;
    // The smallest metadata entry takes 13 bytes (empty key, type, one byte); the smallest tensor info 32.
    if n_kv > c.remaining() / 13 {
        return Err(GgufError::AbsurdCount {
            what: "metadata",
            count: n_kv,
            len: c.len(),
        });
    }
    if n_tensors > c.remaining() / 32 {
        return Err(GgufError::AbsurdCount {
            what: "tensor",
            count: n_tensors,
            len: c.len(),
        });
    }

    let mut entries = Vec::with_capacity(n_kv as usize);
    let mut keys = HashSet::new();
    for i in 0..n_kv {
        let key = c.string(&|| format!("metadata key #{i}"))?.to_string();
        let ty_id = c.u32(&|| format!("the type of metadata key {key:?}"))?;
        let ty = ValueType::from_id(ty_id).ok_or(GgufError::UnknownValueType {
            index: i,
            ty: ty_id,
        })?;
        let start = c.pos;
        let (elem, count) = read_value(&mut c, ty, &key)?;
        if !keys.insert(key.clone()) {
            return Err(GgufError::DuplicateKey { key });
        }
        entries.push(Entry {
            key,
            ty,
            elem,
            count,
            value: start..c.pos,
        });
    }

    let alignment = match entries.iter().find(|e| e.key == "general.alignment") {
        None => 32,
        Some(e) => {
            let v = crate::Value::decode(
                e.ty,
                e.elem,
                e.count,
                &b[e.value.start as usize..e.value.end as usize],
            );
            let a = v.as_u64().ok_or_else(|| GgufError::WrongType {
                key: e.key.clone(),
                expected: "unsigned integer",
                found: v.type_name(),
            })?;
            if a == 0 || !a.is_power_of_two() {
                return Err(GgufError::BadAlignment(a));
            }
            a
        }
    };

    let mut tensors = Vec::with_capacity(n_tensors as usize);
    let mut names = HashSet::new();
    for i in 0..n_tensors {
        let name = c
            .string(&|| format!("the name of tensor #{i}"))?
            .to_string();
        let what = || format!("the index entry of tensor {name:?}");
        let n_dims = c.u32(&what)?;
        if n_dims == 0 || n_dims > 4 {
            return Err(GgufError::TooManyDims { name, n_dims });
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(c.u64(&what)?);
        }
        let type_id = c.u32(&what)?;
        let offset = c.u64(&what)?;
        let dtype = DType::from_id(type_id).ok_or_else(|| GgufError::UnknownDType {
            name: name.clone(),
            id: type_id,
        })?;
        let n_bytes = tensor_bytes(&name, &dims, dtype)?;
        if !offset.is_multiple_of(alignment) {
            return Err(GgufError::MisalignedTensor {
                name,
                offset,
                alignment,
            });
        }
        if !names.insert(name.clone()) {
            return Err(GgufError::DuplicateTensor { name });
        }
        tensors.push(TensorInfo {
            name,
            dims,
            dtype,
            offset,
            n_bytes,
        });
    }

    let data_offset = c.pos.div_ceil(alignment) * alignment;
    let data_len = c.len().saturating_sub(data_offset);
    for t in &tensors {
        let end = t.offset.checked_add(t.n_bytes);
        if check_data && end.is_none_or(|e| e > data_len) {
            return Err(GgufError::TensorOutOfBounds {
                name: t.name.clone(),
                start: data_offset.saturating_add(t.offset),
                end: data_offset
                    .saturating_add(t.offset)
                    .saturating_add(t.n_bytes),
                len: c.len(),
            });
        }
    }
    let mut by_offset: Vec<&TensorInfo> = tensors.iter().collect();
    by_offset.sort_by_key(|t| t.offset);
    for w in by_offset.windows(2) {
        if w[0].offset.saturating_add(w[0].n_bytes) > w[1].offset {
            return Err(GgufError::OverlappingTensors {
                a: w[0].name.clone(),
                b: w[1].name.clone(),
            });
        }
    }

    Ok(Parsed {
        version,
        entries,
        tensors,
        alignment,
        data_offset,
    })
}

/// Checks the value's bytes (for arrays: element type, count and every string) and moves past them.
fn read_value(c: &mut Cursor<'_>, ty: ValueType, key: &str) -> Result<(ValueType, u64), GgufError> {
    let what = || format!("the value of metadata key {key:?}");
    match ty {
        ValueType::String => {
            c.string(&what)?;
            Ok((ty, 0))
        }
        ValueType::Array => {
            let elem_id = c.u32(&what)?;
            let elem = ValueType::from_id(elem_id).ok_or(GgufError::UnknownValueType {
                index: 0,
                ty: elem_id,
            })?;
            let count = c.u64(&what)?;
            match elem {
                ValueType::Array => Err(GgufError::NestedArray {
                    key: key.to_string(),
                }),
                ValueType::String => {
                    if count > c.remaining() / 8 {
                        return Err(GgufError::AbsurdCount {
                            what: "array element",
                            count,
                            len: c.len(),
                        });
                    }
                    for j in 0..count {
                        c.string(&|| format!("element {j} of metadata array {key:?}"))?;
                    }
                    Ok((elem, count))
                }
                _ => {
                    let size = elem.fixed_size().expect("scalar");
                    let n = count.checked_mul(size).filter(|&n| n <= c.remaining());
                    let n = n.ok_or(GgufError::AbsurdCount {
                        what: "array element",
                        count,
                        len: c.len(),
                    })?;
                    c.take(n, &what)?;
                    Ok((elem, count))
                }
            }
        }
        _ => {
            c.take(ty.fixed_size().expect("scalar"), &what)?;
            Ok((ty, 0))
        }
    }
}

/// Byte size of a tensor, refusing shapes that do not fit its blocks or overflow.
fn tensor_bytes(name: &str, dims: &[u64], dtype: DType) -> Result<u64, GgufError> {
    let bad = |why: String| GgufError::BadShape {
        name: name.to_string(),
        dims: dims.to_vec(),
        why,
    };
    if dims.contains(&0) {
        return Err(bad("has a zero dimension".into()));
    }
    let row = dtype.row_bytes(dims[0]).ok_or_else(|| {
        bad(format!(
            "is not a whole number of {} blocks of {} elements",
            dtype.name(),
            dtype.block_size()
        ))
    })?;
    dims[1..]
        .iter()
        .try_fold(row, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n < (1u64 << 48))
        .ok_or_else(|| bad("is too large".into()))
}
