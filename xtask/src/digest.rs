//! `cargo xtask digest FILE...`: the tensor digest of safetensors checkpoints.
//!
//! A checkpoint file's own hash changes from run to run, because its
//! metadata records wall-clock seconds; the digest covers only the tensors.
//! It is the SHA-256 of, for every tensor in name order: the name, a zero
//! byte, the dtype (`F32`, `F64`, …), a zero byte, the shape as
//! comma-separated decimals, a zero byte, and the tensor's raw little-endian
//! bytes. Two checkpoints with the same digest hold bit-identical tensors:
//! this is how "nothing changes on the CPU" is checked across a change.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

/// Arguments of `cargo xtask digest`.
#[derive(clap::Args, Debug)]
pub struct DigestArgs {
    /// The `.safetensors` files to digest.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Print `DIGEST  FILE` for every file.
pub fn run(args: DigestArgs) -> Result<()> {
    for f in &args.files {
        println!("{}  {}", digest(f)?, f.display());
    }
    Ok(())
}

/// The tensor digest of one safetensors file (see the module doc).
pub fn digest(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    digest_bytes(&bytes).with_context(|| format!("{}: not a safetensors file", path.display()))
}

fn digest_bytes(bytes: &[u8]) -> Result<String> {
    let Some(len) = bytes.get(..8) else {
        bail!("shorter than the 8-byte header length");
    };
    let n = u64::from_le_bytes(len.try_into()?) as usize;
    let Some(header) = bytes.get(8..8usize.saturating_add(n)) else {
        bail!("truncated: the header claims {n} bytes");
    };
    let data = &bytes[8 + n..];
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(header).context("the header is not a JSON object")?;
    let mut names: Vec<&String> = header.keys().filter(|k| *k != "__metadata__").collect();
    names.sort();
    let mut h = Sha256::new();
    for name in names {
        let t = &header[name];
        let dtype = t["dtype"].as_str().context(format!("{name}: no dtype"))?;
        let shape: Vec<String> = t["shape"]
            .as_array()
            .context(format!("{name}: no shape"))?
            .iter()
            .map(|d| d.to_string())
            .collect();
        let offs = t["data_offsets"]
            .as_array()
            .context(format!("{name}: no data_offsets"))?;
        let (a, b) = match (
            offs.first().and_then(|v| v.as_u64()),
            offs.get(1).and_then(|v| v.as_u64()),
        ) {
            (Some(a), Some(b)) if a <= b => (a as usize, b as usize),
            _ => bail!("{name}: bad data_offsets {offs:?}"),
        };
        let Some(raw) = data.get(a..b) else {
            bail!(
                "{name}: data {a}..{b} beyond the file's {} data bytes",
                data.len()
            );
        };
        for part in [
            name.as_bytes(),
            b"\0",
            dtype.as_bytes(),
            b"\0",
            shape.join(",").as_bytes(),
            b"\0",
            raw,
        ] {
            h.update(part);
        }
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(meta: &str, data: &[u8]) -> Vec<u8> {
        let header = format!(
            r#"{{"__metadata__":{{"t":"{meta}"}},"w":{{"dtype":"F32","shape":[2],"data_offsets":[0,8]}},"b":{{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}}}"#
        );
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend(header.as_bytes());
        out.extend(data);
        out
    }

    #[test]
    fn metadata_does_not_count_but_every_tensor_byte_does() {
        let data: Vec<u8> = (0..12).collect();
        let a = digest_bytes(&file("1.5 s", &data)).unwrap();
        assert_eq!(a, digest_bytes(&file("2.5 s", &data)).unwrap());
        let mut other = data.clone();
        other[11] ^= 1;
        assert_ne!(a, digest_bytes(&file("1.5 s", &other)).unwrap());
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn truncated_files_are_errors() {
        let data: Vec<u8> = (0..12).collect();
        let f = file("x", &data);
        assert!(digest_bytes(&f[..5]).is_err());
        assert!(digest_bytes(&f[..20]).is_err());
        let e = digest_bytes(&f[..f.len() - 1]).unwrap_err().to_string();
        assert!(e.contains("beyond"), "{e}");
    }
}
