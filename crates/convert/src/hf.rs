//! Reading a Hugging Face checkpoint folder: JSON files with typed key access, and safetensors shards by tensor name.

use crate::ConvertError;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A parsed JSON file that remembers its path, so every error names it.
pub struct JsonFile {
    pub path: String,
    pub root: Value,
}

impl JsonFile {
    pub fn read(path: &Path) -> Result<JsonFile, ConvertError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConvertError::Io {
            path: p.clone(),
            source,
        })?;
        let root = serde_json::from_str(&text).map_err(|source| ConvertError::Json {
            path: p.clone(),
            source,
        })?;
        Ok(JsonFile { path: p, root })
    }

    /// The value at `key` (dots are not special); `None` when absent or null.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.root.get(key).filter(|v| !v.is_null())
    }

    /// `key` holds `found` where `expected` was wanted.
    pub fn bad(
        &self,
        key: &str,
        expected: &'static str,
        found: &dyn std::fmt::Display,
    ) -> ConvertError {
        ConvertError::BadKey {
            path: self.path.clone(),
            key: key.into(),
            expected,
            found: found.to_string(),
        }
    }

    pub fn missing(&self, key: &str) -> ConvertError {
        ConvertError::MissingKey {
            path: self.path.clone(),
            key: key.into(),
        }
    }

    pub fn opt_usize(&self, key: &str) -> Result<Option<usize>, ConvertError> {
        self.get(key)
            .map(|v| {
                v.as_u64()
                    .map(|x| x as usize)
                    .ok_or_else(|| self.bad(key, "a non-negative integer", v))
            })
            .transpose()
    }

    pub fn usize(&self, key: &str) -> Result<usize, ConvertError> {
        self.opt_usize(key)?.ok_or_else(|| self.missing(key))
    }

    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>, ConvertError> {
        self.get(key)
            .map(|v| v.as_f64().ok_or_else(|| self.bad(key, "a number", v)))
            .transpose()
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, ConvertError> {
        self.get(key)
            .map(|v| v.as_bool().ok_or_else(|| self.bad(key, "true or false", v)))
            .transpose()
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&str>, ConvertError> {
        self.get(key)
            .map(|v| v.as_str().ok_or_else(|| self.bad(key, "a string", v)))
            .transpose()
    }

    /// A number inside a nested object (e.g. `rope_scaling.factor`), named `outer.key` in errors.
    pub fn nested_f64(
        &self,
        obj: &Value,
        outer: &str,
        key: &str,
    ) -> Result<Option<f64>, ConvertError> {
        match obj.get(key).filter(|v| !v.is_null()) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.bad(&format!("{outer}.{key}"), "a number", v)),
        }
    }
}

/// One tensor of the checkpoint: where its bytes are and how to read them.
#[derive(Debug, Clone)]
pub struct TensorRef {
    pub shard: usize,
    pub shape: Vec<usize>,
    pub dtype: safetensors::Dtype,
    /// Byte range within the shard's mapping.
    pub start: usize,
    pub end: usize,
}

/// All `*.safetensors` files of a folder, mapped, with a name → tensor index.
pub struct Checkpoint {
    pub dir: String,
    pub paths: Vec<PathBuf>,
    maps: Vec<memmap2::Mmap>,
    pub tensors: HashMap<String, TensorRef>,
}

impl Checkpoint {
    pub fn open(dir: &Path) -> Result<Checkpoint, ConvertError> {
        let d = dir.display().to_string();
        let io = |path: &Path| {
            let p = path.display().to_string();
            move |source| ConvertError::Io { path: p, source }
        };
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        paths.sort();
        if paths.is_empty() {
            return Err(ConvertError::NoWeights { dir: d });
        }
        let mut maps = Vec::new();
        let mut tensors: HashMap<String, TensorRef> = HashMap::new();
        for (shard, path) in paths.iter().enumerate() {
            let file = std::fs::File::open(path).map_err(io(path))?;
            // SAFETY: read-only mapping of a checkpoint file that we do not modify; like every mmap reader we rely
            // on the file not being truncated while the conversion runs.
            let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io(path))?;
            let (header_len, meta) =
                safetensors::SafeTensors::read_metadata(&map).map_err(|e| {
                    ConvertError::BadSafetensors {
                        path: path.display().to_string(),
                        why: e.to_string(),
                    }
                })?;
            let base = 8 + header_len;
            for (name, info) in meta.tensors() {
                let (s, e) = info.data_offsets;
                if let Some(prev) = tensors.get(&name) {
                    return Err(ConvertError::DuplicateTensor {
                        name,
                        a: paths[prev.shard].display().to_string(),
                        b: path.display().to_string(),
                    });
                }
                tensors.insert(
                    name,
                    TensorRef {
                        shard,
                        shape: info.shape.clone(),
                        dtype: info.dtype,
                        start: base + s,
                        end: base + e,
                    },
                );
            }
            maps.push(map);
        }
        Ok(Checkpoint {
            dir: d,
            paths,
            maps,
            tensors,
        })
    }

    pub fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    pub fn get(&self, name: &str) -> Result<&TensorRef, ConvertError> {
        self.tensors
            .get(name)
            .ok_or_else(|| ConvertError::MissingTensor {
                name: name.into(),
                dir: self.dir.clone(),
            })
    }

    /// The shape of `name`, checked against `expected`.
    pub fn check_shape(&self, name: &str, expected: &[usize]) -> Result<(), ConvertError> {
        let t = self.get(name)?;
        if t.shape != expected {
            return Err(ConvertError::ShapeMismatch {
                name: name.into(),
                path: self.paths[t.shard].display().to_string(),
                expected: expected.to_vec(),
                found: t.shape.clone(),
            });
        }
        Ok(())
    }

    /// The tensor's elements as f32 (row-major, as stored).
    pub fn read_f32(&self, name: &str) -> Result<Vec<f32>, ConvertError> {
        let t = self.get(name)?;
        let b = &self.maps[t.shard][t.start..t.end];
        use safetensors::Dtype as D;
        Ok(match t.dtype {
            D::F32 => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            D::F16 => b
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            D::BF16 => b
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(ConvertError::TensorType {
                    name: name.into(),
                    path: self.paths[t.shard].display().to_string(),
                    dtype: format!("{other:?}"),
                })
            }
        })
    }
}
