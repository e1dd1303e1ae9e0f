//! Metadata values, decoded on access from validated byte ranges of the file.

/// The GGUF metadata value types, by their ids in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    pub(crate) fn from_id(id: u32) -> Option<ValueType> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// Size in bytes of a fixed-size value; `None` for strings and arrays.
    pub(crate) fn fixed_size(self) -> Option<u64> {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            String | Array => None,
        }
    }

    pub fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            F32 => "f32",
            Bool => "bool",
            String => "string",
            Array => "array",
            U64 => "u64",
            I64 => "i64",
            F64 => "f64",
        }
    }
}

/// A metadata value borrowed from the file.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
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
    Str(&'a str),
    Array(Array<'a>),
}

/// An array of scalars or strings, borrowed from the file. Strings were checked to be UTF-8 when the file was opened.
#[derive(Debug, Clone, Copy)]
pub struct Array<'a> {
    elem: ValueType,
    len: usize,
    /// The raw element bytes (for strings: each a u64 length then the bytes).
    raw: &'a [u8],
}

fn le<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[..N]);
    a
}

/// Decodes a fixed-size scalar. The caller guarantees `b` holds at least its size (validated at parse time).
fn scalar(ty: ValueType, b: &[u8]) -> Value<'_> {
    use ValueType as T;
    match ty {
        T::U8 => Value::U8(b[0]),
        T::I8 => Value::I8(b[0] as i8),
        T::Bool => Value::Bool(b[0] != 0),
        T::U16 => Value::U16(u16::from_le_bytes(le(b))),
        T::I16 => Value::I16(i16::from_le_bytes(le(b))),
        T::U32 => Value::U32(u32::from_le_bytes(le(b))),
        T::I32 => Value::I32(i32::from_le_bytes(le(b))),
        T::F32 => Value::F32(f32::from_le_bytes(le(b))),
        T::U64 => Value::U64(u64::from_le_bytes(le(b))),
        T::I64 => Value::I64(i64::from_le_bytes(le(b))),
        T::F64 => Value::F64(f64::from_le_bytes(le(b))),
        T::String | T::Array => unreachable!("not a scalar type"),
    }
}

/// Splits validated string-array bytes into strings.
fn strings(raw: &[u8]) -> impl Iterator<Item = &str> {
    let mut rest = raw;
    std::iter::from_fn(move || {
        if rest.len() < 8 {
            return None;
        }
        let n = u64::from_le_bytes(le(rest)) as usize;
        let s = &rest[8..8 + n];
        rest = &rest[8 + n..];
        // Validated as UTF-8 at parse time; an empty string can never be produced from bad data here.
        Some(std::str::from_utf8(s).unwrap_or(""))
    })
}

impl<'a> Value<'a> {
    /// Decodes a value from its validated bytes. `elem`/`count` describe arrays.
    pub(crate) fn decode(ty: ValueType, elem: ValueType, count: u64, b: &'a [u8]) -> Value<'a> {
        match ty {
            ValueType::String => Value::Str(std::str::from_utf8(&b[8..]).unwrap_or("")),
            ValueType::Array => Value::Array(Array {
                elem,
                len: count as usize,
                raw: &b[12..],
            }),
            t => scalar(t, b),
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Value::U8(_) => "u8",
            Value::I8(_) => "i8",
            Value::U16(_) => "u16",
            Value::I16(_) => "i16",
            Value::U32(_) => "u32",
            Value::I32(_) => "i32",
            Value::U64(_) => "u64",
            Value::I64(_) => "i64",
            Value::F32(_) => "f32",
            Value::F64(_) => "f64",
            Value::Bool(_) => "bool",
            Value::Str(_) => "string",
            Value::Array(_) => "array",
        }
    }

    /// Any integer (or bool) as i64.
    pub fn as_i64(&self) -> Option<i64> {
        Some(match *self {
            Value::U8(x) => x as i64,
            Value::I8(x) => x as i64,
            Value::U16(x) => x as i64,
            Value::I16(x) => x as i64,
            Value::U32(x) => x as i64,
            Value::I32(x) => x as i64,
            Value::U64(x) => i64::try_from(x).ok()?,
            Value::I64(x) => x,
            Value::Bool(b) => b as i64,
            _ => return None,
        })
    }

    /// A non-negative integer as u64.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U64(x) => Some(x),
            _ => u64::try_from(self.as_i64()?).ok(),
        }
    }

    /// Any number as f64.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(x) => Some(x as f64),
            Value::F64(x) => Some(x),
            Value::Bool(_) => None,
            _ => self.as_i64().map(|x| x as f64),
        }
    }
}

impl std::fmt::Display for Value<'_> {
    /// A short rendering for `hearth inspect`: long arrays are abbreviated.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Str(s) if s.len() > 80 => {
                let cut = s.char_indices().nth(77).map_or(s.len(), |(i, _)| i);
                write!(f, "{:?}… ({} bytes)", &s[..cut], s.len())
            }
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Array(a) => write!(f, "[{} × {}]", a.len(), a.elem_type().name()),
            Value::F32(x) => write!(f, "{x}"),
            Value::F64(x) => write!(f, "{x}"),
            Value::Bool(b) => write!(f, "{b}"),
            v => write!(f, "{}", v.as_i64().unwrap_or_default()),
        }
    }
}

impl<'a> Array<'a> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn elem_type(&self) -> ValueType {
        self.elem
    }

    /// The elements as strings; `None` if they are not strings.
    pub fn strs(&self) -> Option<Vec<&'a str>> {
        (self.elem == ValueType::String).then(|| strings(self.raw).collect())
    }

    fn scalars(&self) -> Option<impl Iterator<Item = Value<'a>> + '_> {
        let size = self.elem.fixed_size()? as usize;
        let elem = self.elem;
        Some(self.raw.chunks_exact(size).map(move |c| scalar(elem, c)))
    }

    /// The elements as f32; `None` unless they are numbers.
    pub fn to_f32_vec(&self) -> Option<Vec<f32>> {
        self.scalars()?
            .map(|v| v.as_f64().map(|x| x as f32))
            .collect()
    }

    /// The elements as f64 (exact for f64 and f32 arrays); `None` unless they are numbers.
    pub fn to_f64_vec(&self) -> Option<Vec<f64>> {
        self.scalars()?.map(|v| v.as_f64()).collect()
    }

    /// The elements as i64; `None` unless they are integers or bools.
    pub fn to_i64_vec(&self) -> Option<Vec<i64>> {
        self.scalars()?.map(|v| v.as_i64()).collect()
    }
}
