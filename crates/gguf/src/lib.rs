//! Zero-copy, fully validated reader for GGUF (v2 and v3) model files.
//!
//! [`Gguf`] maps a file (or owns a byte buffer), checks every offset, size and count against the file length, and
//! then hands out metadata values and tensor bytes as borrows of the mapping: no `String` per vocabulary entry.
//!
//! ```
//! # fn main() -> Result<(), hearth_gguf::GgufError> {
//! // A minimal GGUF v3 file: no tensors, one metadata key.
//! let mut b = b"GGUF".to_vec();
//! b.extend(3u32.to_le_bytes());                    // version
//! b.extend(0u64.to_le_bytes());                    // tensor count
//! b.extend(1u64.to_le_bytes());                    // metadata count
//! b.extend(20u64.to_le_bytes()); b.extend(b"general.architecture");
//! b.extend(8u32.to_le_bytes());                    // type: string
//! b.extend(5u64.to_le_bytes()); b.extend(b"llama");
//! let g = hearth_gguf::Gguf::from_bytes(b)?;
//! assert_eq!(g.architecture()?, "llama");
//! # Ok(()) }
//! ```

mod error;
mod mapped;
mod parse;
mod value;
mod writer;

pub use error::GgufError;
pub use hearth_kernels::DType;
pub use mapped::EXIT_FILE_CHANGED;
pub use value::{Array, Value, ValueType};
pub use writer::{GgufWriter, MetaArray, MetaValue, TensorSpec, WriteError, DEFAULT_ALIGNMENT};

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

/// One tensor's entry in the file's index.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions, innermost first as ggml stores them: `dims[0]` is the row length.
    pub dims: Vec<u64>,
    pub dtype: DType,
    /// Offset of the tensor's bytes from the start of the data section.
    pub offset: u64,
    /// Size of the tensor's bytes.
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

enum Backing {
    Mmap(memmap2::Mmap),
    Owned(Vec<u8>),
}

/// A parsed GGUF file. Metadata is decoded on access from the validated byte ranges.
pub struct Gguf {
    /// For a mapped file: what it was when mapped. Declared before `backing` so it is dropped (and the mapping
    /// unregistered from the bus-error report) before the mapping goes.
    watch: Option<mapped::Watch>,
    backing: Backing,
    version: u32,
    /// Metadata entries in file order: key, type, byte range of the value.
    entries: Vec<parse::Entry>,
    by_key: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    by_name: HashMap<String, usize>,
    alignment: u64,
    data_offset: u64,
}

impl Gguf {
    /// Maps and validates the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Gguf, GgufError> {
        Self::open_with(path.as_ref(), true)
    }

    /// Maps the file and validates header, metadata and tensor index, but not that the tensor data is present.
    /// For reading the metadata (vocabulary, template) of a file of which only the first part is at hand.
    pub fn open_metadata_only(path: impl AsRef<Path>) -> Result<Gguf, GgufError> {
        Self::open_with(path.as_ref(), false)
    }

    fn open_with(path: &Path, check_data: bool) -> Result<Gguf, GgufError> {
        let io = |e| GgufError::Io {
            path: path.display().to_string(),
            source: e,
        };
        // A directory cannot be mapped and opening a FIFO blocks until someone writes to it: only regular files.
        let kind = std::fs::metadata(path).map_err(io)?.file_type();
        if !kind.is_file() {
            return Err(GgufError::NotAFile {
                path: path.display().to_string(),
                kind: file_kind(&kind),
            });
        }
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the mapping is read-only. Like every mmap reader we rely on the file not being truncated while
        // mapped; the store never rewrites files in place (it writes a temporary file and renames). For a user's
        // file that is changed anyway, `Gguf::changed_on_disk` notices and a bus error is reported (see `mapped`).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        let watch = mapped::Watch::new(file, path.display().to_string(), &map).map_err(io)?;
        let mut g = Self::parse(Backing::Mmap(map), check_data)?;
        g.watch = Some(watch);
        Ok(g)
    }

    /// Why the bytes of a mapped file may no longer be what was read and checked (the file was truncated or written
    /// in place since); None while it is untouched, and always for a file held in memory. One `fstat`.
    pub fn changed_on_disk(&self) -> Option<String> {
        self.watch.as_ref().and_then(mapped::Watch::changed)
    }

    /// Validates a GGUF image held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Gguf, GgufError> {
        Self::parse(Backing::Owned(bytes), true)
    }

    /// Like [`Gguf::from_bytes`] but without requiring the tensor data (see [`Gguf::open_metadata_only`]).
    pub fn from_bytes_metadata_only(bytes: Vec<u8>) -> Result<Gguf, GgufError> {
        Self::parse(Backing::Owned(bytes), false)
    }

    fn parse(backing: Backing, check_data: bool) -> Result<Gguf, GgufError> {
        let bytes: &[u8] = match &backing {
            Backing::Mmap(m) => m,
            Backing::Owned(v) => v,
        };
        let p = parse::parse(bytes, check_data)?;
        let by_key = p
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.key.clone(), i))
            .collect();
        let by_name = p
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(Gguf {
            watch: None,
            backing,
            version: p.version,
            entries: p.entries,
            by_key,
            tensors: p.tensors,
            by_name,
            alignment: p.alignment,
            data_offset: p.data_offset,
        })
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        match &self.backing {
            Backing::Mmap(m) => m,
            Backing::Owned(v) => v,
        }
    }

    /// Tells the OS this process no longer needs the mapped pages wholly inside `range` (bytes of [`Gguf::bytes`]),
    /// for data that was copied elsewhere (repacked weights): they leave this process's resident memory and are
    /// read back from the file if touched again. Best effort: a no-op for files held in memory.
    pub fn release_pages(&self, range: std::ops::Range<usize>) {
        #[cfg(unix)]
        if let Backing::Mmap(m) = &self.backing {
            const PAGE: usize = 4096;
            let start = range.start.div_ceil(PAGE) * PAGE;
            let end = range.end.min(m.len()) / PAGE * PAGE;
            if start < end {
                // SAFETY: the mapping is read-only and file-backed, so dropping its pages loses nothing: the next
                // access reads the same bytes from the file. The range is inside the mapping.
                let _ = unsafe {
                    m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
                };
            }
        }
    }

    /// GGUF format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// `general.alignment` (32 when absent).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Offset of the tensor data section in the file.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Metadata keys in file order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.key.as_str())
    }

    /// The value stored under `key`.
    pub fn get(&self, key: &str) -> Option<Value<'_>> {
        let e = &self.entries[*self.by_key.get(key)?];
        Some(Value::decode(
            e.ty,
            e.elem,
            e.count,
            &self.bytes()[range(&e.value)],
        ))
    }

    /// A string value; `Err` if the key holds another type.
    pub fn get_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s)),
            Some(v) => Err(wrong_type(key, "string", &v)),
        }
    }

    /// A non-negative integer value of any integer width; `Err` if the key holds another type or a negative number.
    pub fn get_uint(&self, key: &str) -> Result<Option<u64>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| wrong_type(key, "unsigned integer", &v)),
        }
    }

    /// A floating-point value (f32 or f64, or an integer); `Err` for other types.
    pub fn get_f32(&self, key: &str) -> Result<Option<f32>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(|x| Some(x as f32))
                .ok_or_else(|| wrong_type(key, "number", &v)),
        }
    }

    /// A boolean value; `Err` for other types.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(v) => Err(wrong_type(key, "bool", &v)),
        }
    }

    /// An array value; `Err` for other types.
    pub fn get_array(&self, key: &str) -> Result<Option<Array<'_>>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(v) => Err(wrong_type(key, "array", &v)),
        }
    }

    /// `general.architecture`, which every model file must have.
    pub fn architecture(&self) -> Result<&str, GgufError> {
        self.get_str("general.architecture")?
            .ok_or_else(|| GgufError::MissingKey {
                key: "general.architecture".into(),
            })
    }

    /// All tensors in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }

    /// The bytes of a tensor of this file. Empty when the file was opened metadata-only and the data is not there.
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        let start = self.data_offset + t.offset;
        self.bytes()
            .get(start as usize..(start + t.n_bytes) as usize)
            .unwrap_or(&[])
    }
}

/// What a path that is not a regular file is, in words.
pub fn file_kind(kind: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if kind.is_socket() {
            return "a socket";
        }
        if kind.is_block_device() || kind.is_char_device() {
            return "a device";
        }
    }
    if kind.is_dir() {
        "a directory"
    } else if kind.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

fn range(r: &Range<u64>) -> Range<usize> {
    r.start as usize..r.end as usize
}

fn wrong_type(key: &str, expected: &'static str, found: &Value<'_>) -> GgufError {
    GgufError::WrongType {
        key: key.to_string(),
        expected,
        found: found.type_name(),
    }
}
