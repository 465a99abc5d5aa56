//! The one error type of the engine.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in edgestore.
///
/// The variants are stable: the C ABI and the Python package map each one to
/// its own status code / exception class.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O error, with what the engine was doing.
    Io {
        /// What the engine was doing (e.g. "fsync WAL 000003.wal").
        context: String,
        /// The underlying error.
        source: io::Error,
    },
    /// A checksum, magic number or structural check failed in a file.
    Corruption {
        /// The file that failed the check.
        file: PathBuf,
        /// Byte offset of the failing structure inside the file.
        offset: u64,
        /// What was wrong.
        detail: String,
    },
    /// The caller passed something the engine refuses (too long, empty, wrong shape).
    InvalidArgument(String),
    /// Another process (or another `Engine` in this process) holds the database lock.
    Locked(PathBuf),
    /// The engine was closed with [`crate::Engine::close`].
    Closed,
    /// A write or fsync failed earlier; the engine refuses further writes until it
    /// is reopened, because the state of unsynced data on disk is unknown.
    Poisoned(String),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn corruption(
        file: impl Into<PathBuf>,
        offset: u64,
        detail: impl Into<String>,
    ) -> Self {
        Error::Corruption {
            file: file.into(),
            offset,
            detail: detail.into(),
        }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }

    /// Stable short name of the variant ("io", "corruption", ...).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Error::Io { .. } => "io",
            Error::Corruption { .. } => "corruption",
            Error::InvalidArgument(_) => "invalid_argument",
            Error::Locked(_) => "locked",
            Error::Closed => "closed",
            Error::Poisoned(_) => "poisoned",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { context, source } => write!(f, "I/O error while {context}: {source}"),
            Error::Corruption {
                file,
                offset,
                detail,
            } => {
                write!(
                    f,
                    "corruption in {} at offset {offset}: {detail}",
                    file.display()
                )
            }
            Error::InvalidArgument(msg) => write!(f, "invalid argument: {msg}"),
            Error::Locked(path) => write!(
                f,
                "database {} is locked by another process or handle",
                path.display()
            ),
            Error::Closed => write!(f, "database is closed"),
            Error::Poisoned(why) => write!(
                f,
                "database refuses writes after an earlier failure ({why}); reopen it"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
