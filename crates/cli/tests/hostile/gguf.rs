//! A GGUF encoder for tests that can write anything, valid or not: counts, lengths, types, offsets and alignment are
//! fields to set, and [`File::encode`] records where each structure starts so a test can cut the file there.

/// A metadata value. `Raw` writes a type id and bytes as given (unknown types, wrong lengths).
#[derive(Debug, Clone)]
pub enum V {
    U32(u32),
    I32(i32),
    U64(u64),
    F32(f32),
    Bool(bool),
    Str(String),
    /// A string whose bytes need not be UTF-8.
    Bytes(Vec<u8>),
    Strs(Vec<String>),
    I32s(Vec<i32>),
    F32s(Vec<f32>),
    /// A type id, then these bytes verbatim.
    Raw(u32, Vec<u8>),
}

/// A tensor: index entry fields plus its data. `offset: None` places it after the previous one, aligned.
#[derive(Debug, Clone)]
pub struct T {
    pub name: Vec<u8>,
    pub dims: Vec<u64>,
    pub ty: u32,
    pub offset: Option<u64>,
    pub data: Vec<u8>,
}

/// A whole file. `n_kv`/`n_tensors` override the counts written in the header.
#[derive(Debug, Clone)]
pub struct File {
    pub magic: [u8; 4],
    pub version: u32,
    pub kvs: Vec<(Vec<u8>, V)>,
    pub tensors: Vec<T>,
    /// Alignment used to lay out the data (write `general.alignment` yourself to change what readers use).
    pub alignment: u64,
    pub n_kv: Option<u64>,
    pub n_tensors: Option<u64>,
}

impl File {
    pub fn new() -> File {
        File {
            magic: *b"GGUF",
            version: 3,
            kvs: Vec::new(),
            tensors: Vec::new(),
            alignment: 32,
            n_kv: None,
            n_tensors: None,
        }
    }

    pub fn kv(&mut self, key: &str, v: V) -> &mut File {
        self.kvs.push((key.as_bytes().to_vec(), v));
        self
    }

    /// Sets `key` (replacing an existing value) .
    pub fn set(&mut self, key: &str, v: V) -> &mut File {
        match self.kvs.iter_mut().find(|(k, _)| k == key.as_bytes()) {
            Some(e) => e.1 = v,
            None => {
                self.kv(key, v);
            }
        }
        self
    }

    pub fn remove_kv(&mut self, key: &str) -> &mut File {
        self.kvs.retain(|(k, _)| k != key.as_bytes());
        self
    }

    pub fn tensor(&mut self, name: &str) -> Option<&mut T> {
        self.tensors.iter_mut().find(|t| t.name == name.as_bytes())
    }

    pub fn remove_tensor(&mut self, name: &str) -> &mut File {
        self.tensors.retain(|t| t.name != name.as_bytes());
        self
    }

    pub fn add_tensor(&mut self, name: &str, dims: &[u64], ty: u32, data: Vec<u8>) -> &mut File {
        self.tensors.push(T {
            name: name.as_bytes().to_vec(),
            dims: dims.to_vec(),
            ty,
            offset: None,
            data,
        });
        self
    }

    /// The file's bytes and the offsets where each structure starts (header fields, each key, value, tensor
    /// entry, the data section and each tensor's data), in order.
    pub fn encode(&self) -> (Vec<u8>, Vec<usize>) {
        let mut b = Vec::new();
        let mut marks = vec![0];
        b.extend(self.magic);
        marks.push(b.len());
        b.extend(self.version.to_le_bytes());
        marks.push(b.len());
        let n_tensors = self.n_tensors.unwrap_or(self.tensors.len() as u64);
        b.extend(n_tensors.to_le_bytes());
        marks.push(b.len());
        b.extend(self.n_kv.unwrap_or(self.kvs.len() as u64).to_le_bytes());
        for (k, v) in &self.kvs {
            marks.push(b.len());
            put_bytes(&mut b, k);
            marks.push(b.len());
            put_value(&mut b, v);
        }
        // Data offsets: each tensor after the previous one, aligned.
        let mut offsets = Vec::new();
        let mut next = 0u64;
        for t in &self.tensors {
            let off = t
                .offset
                .unwrap_or(next.div_ceil(self.alignment).saturating_mul(self.alignment));
            offsets.push(off);
            next = off.saturating_add(t.data.len() as u64);
        }
        for (t, off) in self.tensors.iter().zip(&offsets) {
            marks.push(b.len());
            put_bytes(&mut b, &t.name);
            b.extend((t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                b.extend(d.to_le_bytes());
            }
            b.extend(t.ty.to_le_bytes());
            b.extend(off.to_le_bytes());
        }
        marks.push(b.len());
        let data_start = (b.len() as u64).div_ceil(self.alignment) * self.alignment;
        b.resize(data_start as usize, 0);
        for (t, &off) in self.tensors.iter().zip(&offsets) {
            // Offsets a test set past any sane size are written in the index only.
            let Some(at) = (data_start as usize).checked_add(off as usize) else {
                continue;
            };
            if at > b.len() + (1 << 24) {
                continue;
            }
            marks.push(at);
            if b.len() < at + t.data.len() {
                b.resize(at + t.data.len(), 0);
            }
            b[at..at + t.data.len()].copy_from_slice(&t.data);
        }
        marks.sort_unstable();
        marks.dedup();
        (b, marks)
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.encode().0
    }
}

pub fn put_bytes(b: &mut Vec<u8>, s: &[u8]) {
    b.extend((s.len() as u64).to_le_bytes());
    b.extend(s);
}

fn put_value(b: &mut Vec<u8>, v: &V) {
    let array = |b: &mut Vec<u8>, elem: u32, n: usize| {
        b.extend(9u32.to_le_bytes());
        b.extend(elem.to_le_bytes());
        b.extend((n as u64).to_le_bytes());
    };
    match v {
        V::U32(x) => {
            b.extend(4u32.to_le_bytes());
            b.extend(x.to_le_bytes());
        }
        V::I32(x) => {
            b.extend(5u32.to_le_bytes());
            b.extend(x.to_le_bytes());
        }
        V::F32(x) => {
            b.extend(6u32.to_le_bytes());
            b.extend(x.to_le_bytes());
        }
        V::Bool(x) => {
            b.extend(7u32.to_le_bytes());
            b.push(*x as u8);
        }
        V::Str(s) => {
            b.extend(8u32.to_le_bytes());
            put_bytes(b, s.as_bytes());
        }
        V::Bytes(s) => {
            b.extend(8u32.to_le_bytes());
            put_bytes(b, s);
        }
        V::U64(x) => {
            b.extend(10u32.to_le_bytes());
            b.extend(x.to_le_bytes());
        }
        V::Strs(v) => {
            array(b, 8, v.len());
            for s in v {
                put_bytes(b, s.as_bytes());
            }
        }
        V::I32s(v) => {
            array(b, 5, v.len());
            v.iter().for_each(|x| b.extend(x.to_le_bytes()));
        }
        V::F32s(v) => {
            array(b, 6, v.len());
            v.iter().for_each(|x| b.extend(x.to_le_bytes()));
        }
        V::Raw(ty, bytes) => {
            b.extend(ty.to_le_bytes());
            b.extend(bytes);
        }
    }
}
