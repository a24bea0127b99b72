//! Safetensors checkpoints of named tensors, written atomically.
//!
//! [`save`] writes `path.tmp`, fsyncs it and renames it over `path`, so an
//! interrupted save never leaves a truncated checkpoint under the final name.
//!
//! A model is checkpointed by [`save_model`] and rebuilt by [`load_model`]:
//! its tensors are those of its [`StateDict`] walk, its metadata holds its
//! configuration and method ([`HasConfig`]).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use noprop_tensor::{DType, Tensor};
use safetensors::tensor::{Dtype as StDtype, TensorView};
use safetensors::SafeTensors;

use crate::state::{StateDict, StateLoader, StateSaver, StateVisitor};
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

/// The largest header [`read_metadata`] accepts (safetensors' own limit).
const MAX_HEADER: u64 = 100_000_000;

/// Only the metadata of a safetensors file (its `__metadata__` map), read
/// from the header without reading the tensors: what a caller needs to
/// decide how to load a checkpoint (its `method`, its `config`).
pub fn read_metadata(path: &Path) -> Result<HashMap<String, String>> {
    use std::io::Read;
    let bad = |what: String| Error::Checkpoint {
        path: path.to_path_buf(),
        what,
    };
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|e| bad(format!("not a safetensors file (no header length): {e}")))?;
    let n = u64::from_le_bytes(len);
    if n > MAX_HEADER {
        return Err(bad(format!("not a safetensors file (header of {n} bytes)")));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header)
        .map_err(|e| bad(format!("not a safetensors file (truncated header): {e}")))?;
    let mut json: HashMap<String, serde_json::Value> = serde_json::from_slice(&header)
        .map_err(|e| bad(format!("not a safetensors file (header is not JSON): {e}")))?;
    match json.remove("__metadata__") {
        None => Ok(HashMap::new()),
        Some(m) => serde_json::from_value(m)
            .map_err(|e| bad(format!("metadata is not a map of strings: {e}"))),
    }
}

/// Copy loaded tensors into a module's parameters and buffers by name
/// (after stripping `prefix.`); every parameter must be present with the
/// right shape. Other tensors in `tensors` are left alone.
pub fn load_into(
    path: &Path,
    tensors: &HashMap<String, Tensor>,
    prefix: &str,
    module: &mut dyn crate::Module,
) -> Result<()> {
    module.visit_state(prefix, &mut StateLoader::new(path, tensors))
}

/// Copy `tensors[key]` into `dst`, converted to `dst`'s dtype; a missing
/// tensor or a shape that differs from `dst`'s is an error naming `path` and `key`.
pub fn restore(
    path: &Path,
    tensors: &HashMap<String, Tensor>,
    key: &str,
    dst: &mut Tensor,
) -> Result<()> {
    StateLoader::new(path, tensors).tensor(key, dst)
}

/// A module's parameters and buffers as named tensors under `prefix.`; two
/// with the same name are [`Error::DuplicateTensor`].
pub fn named_tensors(prefix: &str, module: &mut dyn crate::Module) -> Result<NamedTensors> {
    let mut saver = StateSaver::default();
    module.visit_state(prefix, &mut saver)?;
    Ok(saver.into_tensors())
}

/// What a checkpoint records about the model besides its tensors: the
/// configuration (as JSON, metadata key `config`) and the method name
/// (metadata key `method`).
pub trait HasConfig {
    /// Everything that defines the model; rebuilding needs only this and the tensors.
    type Config: serde::Serialize + serde::de::DeserializeOwned;
    /// The configuration.
    fn config(&self) -> &Self::Config;
    /// The method name, e.g. `noprop-dt`.
    fn method(&self) -> &str;
}

/// A model [`load_model`] can rebuild: built from its configuration, then
/// its state loaded by the same [`StateDict`] walk that saved it.
pub trait FromCheckpoint: StateDict + HasConfig + Sized {
    /// The model crate's error type.
    type Error: From<Error>;
    /// A fresh model for `config`, before its state is loaded. `tensors` gives
    /// read access to the checkpoint (e.g. to `W_Embed`, which some
    /// embeddings need to be built).
    fn from_config(
        config: Self::Config,
        tensors: &StateLoader<'_>,
    ) -> std::result::Result<Self, Self::Error>;
    /// Checks on the loaded state (default: none).
    fn check_loaded(&mut self, path: &Path) -> std::result::Result<(), Self::Error> {
        let _ = path;
        Ok(())
    }
}

/// Atomically write `model`'s checkpoint: every tensor of its [`StateDict`]
/// walk, plus `metadata` with the configuration and method of [`HasConfig`]
/// added ([`save_checkpoint`]).
pub fn save_model<M: StateDict + HasConfig + ?Sized>(
    model: &mut M,
    path: &Path,
    metadata: HashMap<String, String>,
) -> Result<()> {
    let tensors = crate::state::state_tensors(model)?;
    save_checkpoint(path, &tensors, model.config(), model.method(), metadata)
}

/// Rebuild a model from a checkpoint written by [`save_model`]: its
/// configuration, then every tensor of its [`StateDict`] walk (missing,
/// mis-shaped or left-over tensors are errors naming `path` and the tensor),
/// then [`FromCheckpoint::check_loaded`]. Returns the model and the metadata.
pub fn load_model<M: FromCheckpoint>(
    path: &Path,
) -> std::result::Result<(M, HashMap<String, String>), M::Error> {
    let (config, metadata, tensors) = load_checkpoint::<M::Config>(path)?;
    let mut loader = StateLoader::new(path, &tensors);
    let mut model = M::from_config(config, &loader)?;
    model.visit_state("", &mut loader)?;
    loader.finish()?;
    model.check_loaded(path)?;
    Ok((model, metadata))
}

/// Whether two safetensors files hold the same checkpoint: byte-identical,
/// or differing only in the order of the keys of the JSON header (the
/// safetensors writer emits the metadata map in hash order, which differs
/// between processes). The tensor data must be byte-identical.
pub fn same_checkpoint(a: &[u8], b: &[u8]) -> bool {
    fn split(x: &[u8]) -> Option<(serde_json::Value, &[u8])> {
        let n = u64::from_le_bytes(x.get(..8)?.try_into().ok()?);
        let end = 8usize.checked_add(usize::try_from(n).ok()?)?;
        let header = serde_json::from_slice(x.get(8..end)?).ok()?;
        Some((header, x.get(end..)?))
    }
    if a == b {
        return true;
    }
    match (split(a), split(b)) {
        (Some((ha, da)), Some((hb, db))) => ha == hb && da == db,
        _ => false,
    }
}
