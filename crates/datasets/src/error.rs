//! The crate's error type.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while locating, verifying, downloading or
/// parsing a dataset.
///
/// Parse errors name the file (`file`), the byte offset in the *decompressed*
/// payload where the problem was found (`offset`) and what was expected, so a
/// message like
/// `t10k-images-idx3-ubyte.gz: truncated at byte 16: expected 7840000 pixel bytes, found 123`
/// is enough to act on. In-memory parsers use the label the caller passed as
/// `file`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A file does not start with the magic number of its format.
    #[error("{}: bad magic number at byte {offset}: expected {expected}, found {found}", file.display())]
    BadMagic {
        /// The file.
        file: PathBuf,
        /// Byte offset of the magic number.
        offset: u64,
        /// What the format requires.
        expected: String,
        /// What the file holds.
        found: String,
    },

    /// A file ends before the data its header (or format) announces.
    #[error("{}: truncated at byte {offset}: expected {expected} bytes of {what}, found {actual}", file.display())]
    Truncated {
        /// The file.
        file: PathBuf,
        /// Offset where the missing data starts.
        offset: u64,
        /// What is missing (`"IDX header"`, `"pixel data"`, `"CIFAR-10 record"` ...).
        what: &'static str,
        /// Bytes needed from `offset` on.
        expected: u64,
        /// Bytes present from `offset` on.
        actual: u64,
    },

    /// A file holds more bytes than its header announces.
    #[error("{}: {extra} unexpected trailing bytes at byte {offset} (expected the file to end there)", file.display())]
    TrailingBytes {
        /// The file.
        file: PathBuf,
        /// Offset where the file should have ended.
        offset: u64,
        /// Number of extra bytes.
        extra: u64,
    },

    /// A header field has a value the reader cannot accept (zero or
    /// overflowing dimensions, wrong number of dimensions, wrong element type).
    #[error("{}: bad header field at byte {offset}: {message}", file.display())]
    BadHeader {
        /// The file.
        file: PathBuf,
        /// Offset of the header field.
        offset: u64,
        /// What is wrong and what was expected.
        message: String,
    },

    /// The image file and the label file disagree on the number of examples.
    #[error("{} holds {images} images but {} holds {labels} labels", images_file.display(), labels_file.display())]
    CountMismatch {
        /// The image file.
        images_file: PathBuf,
        /// The label file.
        labels_file: PathBuf,
        /// Number of images.
        images: usize,
        /// Number of labels.
        labels: usize,
    },

    /// A label is not below the dataset's class count.
    #[error("{}: label {label} at byte {offset} is out of range: expected a value below {classes}", file.display())]
    LabelOutOfRange {
        /// The file holding the label.
        file: PathBuf,
        /// Byte offset of the label.
        offset: u64,
        /// The label found.
        label: u32,
        /// The number of classes.
        classes: usize,
    },

    /// A gzip stream is corrupt or ends early.
    #[error("{}: broken gzip stream after {offset} decompressed bytes: {source}", file.display())]
    Gzip {
        /// The file.
        file: PathBuf,
        /// Number of decompressed bytes produced before the error.
        offset: u64,
        /// The decoder's error.
        #[source]
        source: std::io::Error,
    },

    /// A decompressed payload exceeds the size limit (a guard against gzip
    /// bombs; every real dataset file is far below it).
    #[error("{}: decompressed data exceeds the limit of {limit} bytes", file.display())]
    TooLarge {
        /// The file.
        file: PathBuf,
        /// The limit in bytes.
        limit: u64,
    },

    /// A file's size differs from the one pinned in the manifest.
    #[error("{}: size mismatch{}: expected {expected} bytes, found {actual}", file.display(), if *.decompressed { " (of the decompressed payload)" } else { "" })]
    SizeMismatch {
        /// The file.
        file: PathBuf,
        /// Whether the size is that of the decompressed payload.
        decompressed: bool,
        /// Size pinned in the manifest.
        expected: u64,
        /// Size found.
        actual: u64,
    },

    /// A file's checksum differs from the one pinned in the manifest.
    #[error("{}: {algorithm} mismatch{}: expected {expected}, found {actual}", file.display(), if *.decompressed { " (of the decompressed payload)" } else { "" })]
    ChecksumMismatch {
        /// The file.
        file: PathBuf,
        /// `"sha256"` or `"md5"`.
        algorithm: &'static str,
        /// Whether the checksum covers the decompressed payload (rather than
        /// the bytes on disk).
        decompressed: bool,
        /// Hex digest pinned in the manifest.
        expected: String,
        /// Hex digest of the file.
        actual: String,
    },

    /// A dataset was not found in any of the places searched.
    #[error("dataset `{dataset}` not found; looked in:\n{}\nDownload it with `{fetch_command}` (or pass --data-dir / set $NOPROP_DATA)", format_searched(searched))]
    NotFound {
        /// The dataset's name.
        dataset: String,
        /// Every directory searched, with what was missing there.
        searched: Vec<(PathBuf, String)>,
        /// The command that downloads the dataset.
        fetch_command: String,
    },

    /// A dataset name that this crate does not know.
    #[error("unknown dataset `{name}`: expected one of {expected}")]
    UnknownDataset {
        /// The name given.
        name: String,
        /// The accepted names.
        expected: String,
    },

    /// The manifest could not be parsed or lacks an entry.
    #[error("manifest {source_name}: {message}")]
    Manifest {
        /// Where the manifest came from.
        source_name: String,
        /// What is wrong.
        message: String,
    },

    /// A download failed (every URL was tried).
    #[error("downloading {file} failed: {message}")]
    Download {
        /// The file being downloaded.
        file: String,
        /// One line per URL tried, with its error.
        message: String,
    },

    /// A tar archive is malformed or lacks a member listed in the manifest.
    #[error("{}: archive error: {message}", file.display())]
    Archive {
        /// The archive.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },

    /// A dataset directory does not have the published layout (a missing
    /// `wnids.txt`, annotation file or class folder, a malformed line).
    #[error("{}: {message}", path.display())]
    Layout {
        /// The missing or malformed file or directory.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },

    /// An image file does not decode, or has the wrong size.
    #[error("{}: {message}", file.display())]
    Image {
        /// The image file.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },

    /// An argument is out of range (batch size 0, a split past the end, an
    /// index out of bounds ...).
    #[error("invalid argument: {message}")]
    InvalidArgument {
        /// What is wrong.
        message: String,
    },
}

fn format_searched(searched: &[(PathBuf, String)]) -> String {
    searched
        .iter()
        .map(|(p, why)| format!("  {} ({why})", p.display()))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidArgument {
            message: message.into(),
        }
    }
}
