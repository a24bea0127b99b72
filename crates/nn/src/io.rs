//! Safetensors checkpoints of named tensors, written atomically.
//!
//! [`save`] writes `path.tmp`, fsyncs it and renames it over `path`, so an
//! interrupted save never leaves a truncated checkpoint under the final name.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use noprop_tensor::{DType, Tensor};
use safetensors::tensor::{Dtype as StDtype, TensorView};
use safetensors::SafeTensors;

use crate::{Error, Result};

/// Named tensors in file order.
pub type NamedTensors = Vec<(String, Tensor)>;
/// A checkpoint's tensors and its string metadata.
pub type Loaded = (NamedTensors, HashMap<String, String>);

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn bytes_of(t: &Tensor) -> Result<Vec<u8>> {
    // A device tensor is copied to the host first.
    let host;
    let t = if t.is_on_host() {
        t
    } else {
        host = t.to_device(&noprop_tensor::Device::Cpu)?;
        &host
    };
    Ok(match t.dtype() {
        DType::F32 => t
            .as_slice::<f32>()
            .map(|s| s.iter().flat_map(|v| v.to_le_bytes()).collect())
            .unwrap_or_default(),
        DType::F64 => t
            .as_slice::<f64>()
            .map(|s| s.iter().flat_map(|v| v.to_le_bytes()).collect())
            .unwrap_or_default(),
    })
}

/// Serialise named tensors plus string metadata to safetensors bytes.
pub fn to_bytes(
    tensors: &[(String, Tensor)],
    metadata: &HashMap<String, String>,
) -> Result<Vec<u8>> {
    let raw: Vec<(String, Vec<u8>, &Tensor)> = tensors
        .iter()
        .map(|(n, t)| Ok((n.clone(), bytes_of(t)?, t)))
        .collect::<Result<_>>()?;
    let mut views = Vec::with_capacity(raw.len());
    for (n, b, t) in &raw {
        let dt = match t.dtype() {
            DType::F32 => StDtype::F32,
            DType::F64 => StDtype::F64,
        };
        let v = TensorView::new(dt, t.shape().to_vec(), b).map_err(|e| Error::Checkpoint {
            path: PathBuf::from("<memory>"),
            what: format!("tensor `{n}`: {e}"),
        })?;
        views.push((n.clone(), v));
    }
    safetensors::serialize(views, Some(metadata.clone())).map_err(|e| Error::Checkpoint {
        path: PathBuf::from("<memory>"),
        what: e.to_string(),
    })
}

/// Parse safetensors bytes into named tensors (file order) and metadata.
pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Loaded> {
    let bad = |what: String| Error::Checkpoint {
        path: path.to_path_buf(),
        what,
    };
    let (_, meta) = SafeTensors::read_metadata(bytes)
        .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let st =
        SafeTensors::deserialize(bytes).map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let mut out = Vec::new();
    let mut names: Vec<String> = st.names().into_iter().map(|s| s.to_string()).collect();
    names.sort();
    for name in names {
        let v = st
            .tensor(&name)
            .map_err(|e| bad(format!("tensor `{name}`: {e}")))?;
        let shape = v.shape().to_vec();
        let data = v.data();
        let t = match v.dtype() {
            StDtype::F32 => Tensor::from_vec(
                data.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect::<Vec<_>>(),
                &shape,
            ),
            StDtype::F64 => Tensor::from_vec(
                data.chunks_exact(8)
                    .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect::<Vec<_>>(),
                &shape,
            ),
            other => {
                return Err(bad(format!(
                    "tensor `{name}` has unsupported dtype {other:?}"
                )))
            }
        }
        .map_err(|e| bad(format!("tensor `{name}`: {e}")))?;
        out.push((name, t));
    }
    let metadata = meta.metadata().clone().unwrap_or_default();
    Ok((out, metadata))
}

/// Atomically write named tensors and metadata to `path`.
pub fn save(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: &HashMap<String, String>,
) -> Result<()> {
    let bytes = to_bytes(tensors, metadata).map_err(|e| match e {
        Error::Checkpoint { what, .. } => Error::Checkpoint {
            path: path.to_path_buf(),
            what,
        },
        e => e,
    })?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    Ok(())
}

/// A checkpoint read by [`load_checkpoint`]: config, metadata, tensors by name.
pub type Checkpoint<C> = (C, HashMap<String, String>, HashMap<String, Tensor>);

/// Atomically write a model checkpoint: `tensors`, plus `metadata` with the
/// model's `config` (as JSON, under `config`) and its `method` name added.
/// [`load_checkpoint`] reads it back.
pub fn save_checkpoint<C: serde::Serialize>(
    path: &Path,
    tensors: &[(String, Tensor)],
    config: &C,
    method: &str,
    mut metadata: HashMap<String, String>,
) -> Result<()> {
    let config = serde_json::to_string(config).map_err(|e| Error::Checkpoint {
        path: path.to_path_buf(),
        what: format!("could not serialise the config: {e}"),
    })?;
    metadata.insert("config".into(), config);
    metadata.insert("method".into(), method.into());
    save(path, tensors, &metadata)
}

/// Read a checkpoint written by [`save_checkpoint`]: its config, metadata and
/// tensors by name. A missing or unparsable config is an error naming `path`.
pub fn load_checkpoint<C: serde::de::DeserializeOwned>(path: &Path) -> Result<Checkpoint<C>> {
    let (tensors, meta) = load(path)?;
    let bad = |what: String| Error::Checkpoint {
        path: path.to_path_buf(),
        what,
    };
    let text = meta
        .get("config")
        .ok_or_else(|| bad("no `config` in the metadata (not a noprop checkpoint?)".into()))?;
    let method = meta.get("method").map_or("unknown", String::as_str);
    let config = serde_json::from_str(text).map_err(|e| {
        bad(format!(
            "bad config for this model (checkpoint method `{method}`): {e}"
        ))
    })?;
    Ok((config, meta, tensors.into_iter().collect()))
}

/// Read a safetensors file written by [`save`] (or by any safetensors writer
/// using F32/F64 tensors).
pub fn load(path: &Path) -> Result<Loaded> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    from_bytes(&bytes, path)
}

/// Copy loaded tensors into a module's parameters and buffers by name
/// (after stripping `prefix.`); every parameter must be present with the
/// right shape.
pub fn load_into(
    path: &Path,
    tensors: &HashMap<String, Tensor>,
    prefix: &str,
    module: &mut dyn crate::Module,
) -> Result<()> {
    let full = |n: &str| {
        if prefix.is_empty() {
            n.to_string()
        } else {
            format!("{prefix}.{n}")
        }
    };
    let copy = |name: &str, dst: &mut Tensor| restore(path, tensors, &full(name), dst);
    for p in module.params() {
        copy(&p.name, p.value)?;
    }
    for (name, dst) in module.buffers() {
        copy(&name, dst)?;
    }
    Ok(())
}

/// Copy `tensors[key]` into `dst`, converted to `dst`'s dtype; a missing
/// tensor or a shape that differs from `dst`'s is an error naming `path` and `key`.
pub fn restore(
    path: &Path,
    tensors: &HashMap<String, Tensor>,
    key: &str,
    dst: &mut Tensor,
) -> Result<()> {
    let src = tensors.get(key).ok_or_else(|| Error::Checkpoint {
        path: path.to_path_buf(),
        what: format!("missing tensor `{key}`"),
    })?;
    if src.shape() != dst.shape() {
        return Err(Error::Checkpoint {
            path: path.to_path_buf(),
            what: format!(
                "tensor `{key}` has shape {:?}, the model needs {:?}",
                src.shape(),
                dst.shape()
            ),
        });
    }
    *dst = src.to_dtype(dst.dtype()).to_device(&dst.device())?;
    Ok(())
}

/// A module's parameters and buffers as named tensors under `prefix.`.
pub fn named_tensors(prefix: &str, module: &mut dyn crate::Module) -> Vec<(String, Tensor)> {
    let full = |n: &str| {
        if prefix.is_empty() {
            n.to_string()
        } else {
            format!("{prefix}.{n}")
        }
    };
    let mut out: Vec<(String, Tensor)> = module
        .params()
        .into_iter()
        .map(|p| (full(&p.name), p.value.clone()))
        .collect();
    out.extend(
        module
            .buffers()
            .into_iter()
            .map(|(n, t)| (full(&n), t.clone())),
    );
    out
}
