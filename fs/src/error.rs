//! Typed errors of the file-system layer and the ONE place they become errno values.
//!
//! Backends (the in-memory one, the hyperdrive adapter) return [`FsError`]; only
//! [`errno`] turns them into the integers the kernel sees, so every mapping is visible
//! and tested here.

use std::time::Duration;

/// What went wrong, with the drive path it happened on.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("{path}: no such file or directory")]
    NotFound { path: String },
    #[error("{path}: not a directory")]
    NotADirectory { path: String },
    #[error("{path}: is a directory")]
    IsADirectory { path: String },
    #[error("{path}: already exists")]
    Exists { path: String },
    #[error("{path}: directory not empty")]
    NotEmpty { path: String },
    #[error("{path}: drive is read-only")]
    ReadOnly { path: String },
    #[error("{path}: too many levels of symbolic links")]
    Loop { path: String },
    #[error("{path}: invalid argument: {reason}")]
    Invalid { path: String, reason: String },
    #[error("{path}: not a symbolic link")]
    NotASymlink { path: String },
    #[error("{path}: no such extended attribute {name}")]
    NoAttr { path: String, name: String },
    #[error("{path}: operation not permitted: {reason}")]
    NotPermitted { path: String, reason: String },
    #[error("{path}: operation not supported: {op}")]
    Unsupported { path: String, op: &'static str },
    #[error("{path}: name too long")]
    NameTooLong { path: String },
    #[error("{path}: result does not fit in {limit} bytes")]
    Range { path: String, limit: u32 },
    #[error("{path}: stale file handle")]
    Stale { path: String },
    #[error("{path}: no answer within {after:?}")]
    Timeout { path: String, after: Duration },
    #[error("{path}: data failed verification")]
    Corrupt { path: String },
    #[error("{path}: I/O error: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl FsError {
    /// The drive path the error is about.
    pub fn path(&self) -> &str {
        match self {
            FsError::NotFound { path }
            | FsError::NotADirectory { path }
            | FsError::IsADirectory { path }
            | FsError::Exists { path }
            | FsError::NotEmpty { path }
            | FsError::ReadOnly { path }
            | FsError::Loop { path }
            | FsError::Invalid { path, .. }
            | FsError::NotASymlink { path }
            | FsError::NoAttr { path, .. }
            | FsError::NotPermitted { path, .. }
            | FsError::Unsupported { path, .. }
            | FsError::NameTooLong { path }
            | FsError::Range { path, .. }
            | FsError::Stale { path }
            | FsError::Timeout { path, .. }
            | FsError::Corrupt { path }
            | FsError::Io { path, .. } => path,
        }
    }

    pub(crate) fn io(path: &str, source: std::io::Error) -> Self {
        FsError::Io {
            path: path.to_string(),
            source,
        }
    }

    pub(crate) fn invalid(path: &str, reason: impl Into<String>) -> Self {
        FsError::Invalid {
            path: path.to_string(),
            reason: reason.into(),
        }
    }
}

/// The errno the kernel (and so the calling program) gets for an error.
pub fn errno(err: &FsError) -> i32 {
    match err {
        FsError::NotFound { .. } => libc::ENOENT,
        FsError::NotADirectory { .. } => libc::ENOTDIR,
        FsError::IsADirectory { .. } => libc::EISDIR,
        FsError::Exists { .. } => libc::EEXIST,
        FsError::NotEmpty { .. } => libc::ENOTEMPTY,
        FsError::ReadOnly { .. } => libc::EROFS,
        FsError::Loop { .. } => libc::ELOOP,
        FsError::Invalid { .. } => libc::EINVAL,
        // readlink(2) of something that is not a link is EINVAL.
        FsError::NotASymlink { .. } => libc::EINVAL,
        FsError::NoAttr { .. } => libc::ENODATA,
        FsError::NotPermitted { .. } => libc::EPERM,
        FsError::Unsupported { .. } => libc::EOPNOTSUPP,
        FsError::NameTooLong { .. } => libc::ENAMETOOLONG,
        FsError::Range { .. } => libc::ERANGE,
        FsError::Stale { .. } => libc::ESTALE,
        // Data no peer delivered in time: an I/O error, as a disk that cannot read a
        // sector would give (the warning log names the file and the wait).
        FsError::Timeout { .. } => libc::EIO,
        // Never hand out unverified bytes; the caller sees an I/O error.
        FsError::Corrupt { .. } => libc::EIO,
        FsError::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> String {
        "/a/b".to_string()
    }

    #[test]
    fn not_found() {
        assert_eq!(errno(&FsError::NotFound { path: p() }), libc::ENOENT);
    }
    #[test]
    fn not_a_directory() {
        assert_eq!(errno(&FsError::NotADirectory { path: p() }), libc::ENOTDIR);
    }
    #[test]
    fn is_a_directory() {
        assert_eq!(errno(&FsError::IsADirectory { path: p() }), libc::EISDIR);
    }
    #[test]
    fn exists() {
        assert_eq!(errno(&FsError::Exists { path: p() }), libc::EEXIST);
    }
    #[test]
    fn not_empty() {
        assert_eq!(errno(&FsError::NotEmpty { path: p() }), libc::ENOTEMPTY);
    }
    #[test]
    fn read_only() {
        assert_eq!(errno(&FsError::ReadOnly { path: p() }), libc::EROFS);
    }
    #[test]
    fn symlink_loop() {
        assert_eq!(errno(&FsError::Loop { path: p() }), libc::ELOOP);
    }
    #[test]
    fn invalid() {
        assert_eq!(errno(&FsError::invalid("/a", "bad name")), libc::EINVAL);
    }
    #[test]
    fn not_a_symlink() {
        assert_eq!(errno(&FsError::NotASymlink { path: p() }), libc::EINVAL);
    }
    #[test]
    fn no_attr() {
        let e = FsError::NoAttr {
            path: p(),
            name: "user.x".into(),
        };
        assert_eq!(errno(&e), libc::ENODATA);
    }
    #[test]
    fn not_permitted() {
        let e = FsError::NotPermitted {
            path: p(),
            reason: "chown".into(),
        };
        assert_eq!(errno(&e), libc::EPERM);
    }
    #[test]
    fn unsupported() {
        let e = FsError::Unsupported {
            path: p(),
            op: "exchange",
        };
        assert_eq!(errno(&e), libc::EOPNOTSUPP);
    }
    #[test]
    fn name_too_long() {
        assert_eq!(
            errno(&FsError::NameTooLong { path: p() }),
            libc::ENAMETOOLONG
        );
    }
    #[test]
    fn range() {
        assert_eq!(
            errno(&FsError::Range {
                path: p(),
                limit: 4
            }),
            libc::ERANGE
        );
    }
    #[test]
    fn stale() {
        assert_eq!(errno(&FsError::Stale { path: p() }), libc::ESTALE);
    }
    #[test]
    fn timeout() {
        let e = FsError::Timeout {
            path: p(),
            after: Duration::from_secs(1),
        };
        assert_eq!(errno(&e), libc::EIO);
    }
    #[test]
    fn corrupt() {
        assert_eq!(errno(&FsError::Corrupt { path: p() }), libc::EIO);
    }
    #[test]
    fn io_keeps_os_errno() {
        let e = FsError::io("/a", std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(errno(&e), libc::ENOSPC);
    }
    #[test]
    fn io_without_os_errno_is_eio() {
        let e = FsError::io("/a", std::io::Error::other("boom"));
        assert_eq!(errno(&e), libc::EIO);
        assert_eq!(e.path(), "/a");
    }
}
