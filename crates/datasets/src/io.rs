//! Reading files whole and decompressing gzip in one go.

use crate::error::{Error, Result};
use flate2::bufread::MultiGzDecoder;
use std::io::Read;
use std::path::Path;

/// Upper bound on a decompressed payload (a guard against gzip bombs). The
/// largest real file, CIFAR-100 `train.bin`, is 153.7 MB.
pub const MAX_DECOMPRESSED: u64 = 1 << 31;

/// Largest ratio a deflate stream can achieve; used to bound the capacity
/// hint taken from the (untrusted) gzip trailer.
const MAX_DEFLATE_RATIO: u64 = 1032;

/// Whether `path` names a gzip file (by its `.gz` extension).
pub fn is_gz(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"))
}

/// Reads a whole file.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// Decompresses a (possibly multi-member) gzip stream held in memory.
///
/// The output capacity is reserved from the gzip trailer's size field only
/// after bounding it by the input length times the maximum deflate ratio and
/// by `limit`; output beyond `limit` bytes is an [`Error::TooLarge`]. `file`
/// labels errors.
pub fn gunzip(bytes: &[u8], file: &Path, limit: u64) -> Result<Vec<u8>> {
    let hint = if bytes.len() >= 18 {
        let t = &bytes[bytes.len() - 4..];
        u64::from(u32::from_le_bytes([t[0], t[1], t[2], t[3]]))
    } else {
        0
    };
    let cap = hint
        .min((bytes.len() as u64).saturating_mul(MAX_DEFLATE_RATIO))
        .min(limit);
    let mut out = Vec::with_capacity(usize::try_from(cap).unwrap_or(0));
    let mut dec = MultiGzDecoder::new(bytes).take(limit.saturating_add(1));
    match dec.read_to_end(&mut out) {
        Ok(_) if out.len() as u64 > limit => Err(Error::TooLarge {
            file: file.to_path_buf(),
            limit,
        }),
        Ok(_) => Ok(out),
        Err(source) => Err(Error::Gzip {
            file: file.to_path_buf(),
            offset: out.len() as u64,
            source,
        }),
    }
}

/// Reads a file and, when its name ends in `.gz`, decompresses it. Returns
/// the payload and the bytes as stored on disk (`None` when not compressed,
/// to avoid a copy).
pub(crate) fn read_payload(path: &Path) -> Result<(Vec<u8>, Option<Vec<u8>>)> {
    let raw = read_file(path)?;
    if is_gz(path) {
        let payload = gunzip(&raw, path, MAX_DECOMPRESSED)?;
        Ok((payload, Some(raw)))
    } else {
        Ok((raw, None))
    }
}

/// Reads a file and decompresses it when its name ends in `.gz`.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    read_payload(path).map(|(payload, _)| payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{write::GzEncoder, Compression};
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn roundtrip_and_errors() {
        let p = Path::new("x.gz");
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 7) as u8).collect();
        let z = gz(&data);
        assert_eq!(gunzip(&z, p, MAX_DECOMPRESSED).unwrap(), data);
        // Two members concatenated.
        let mut two = z.clone();
        two.extend_from_slice(&gz(b"tail"));
        assert_eq!(gunzip(&two, p, MAX_DECOMPRESSED).unwrap().len(), 5004);
        // Limit.
        assert!(matches!(gunzip(&z, p, 100), Err(Error::TooLarge { .. })));
        // Truncated stream.
        assert!(matches!(
            gunzip(&z[..z.len() / 2], p, MAX_DECOMPRESSED),
            Err(Error::Gzip { .. })
        ));
        // Corrupt header.
        let mut bad = z.clone();
        bad[0] = 0;
        assert!(matches!(
            gunzip(&bad, p, MAX_DECOMPRESSED),
            Err(Error::Gzip { .. })
        ));
        // A lying size trailer does not cause a huge allocation.
        let mut lie = z;
        let n = lie.len();
        lie[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(gunzip(&lie, p, MAX_DECOMPRESSED).is_err());
    }
}
