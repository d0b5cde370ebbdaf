//! Whether an open may keep the kernel's cached pages of a file (`FOPEN_KEEP_CACHE`).
//!
//! Why: without it the kernel drops a file's page cache on every open, so a second `cat`
//! of a live drive's file reads everything through the adapter again (well under 1 GiB/s
//! instead of memory speed). Keeping pages is right only when the content they hold is
//! still the content: so an open keeps them only if the file's attributes are the same
//! as at the previous open of that inode. A rewrite always changes them (new size, or a
//! new ctime), and then the open drops the pages. Changes that arrive while a file stays
//! open are the invalidator's job (`mount/`), as before.

use std::collections::HashMap;

use crate::backend::Attr;
use crate::inode::MAX_INODES;

/// Attributes of each inode at its last open.
#[derive(Debug, Default)]
pub struct KeepCache {
    last: HashMap<u64, Attr>,
}

impl KeepCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// `ino` is opened for reading with attributes `attr`: whether the kernel may keep
    /// the pages it holds. Remembers `attr` for the next open.
    pub fn open(&mut self, ino: u64, attr: &Attr) -> bool {
        if self.last.get(&ino) == Some(attr) {
            return true;
        }
        if self.last.len() >= MAX_INODES {
            self.last.clear();
        }
        self.last.insert(ino, attr.clone());
        false
    }

    /// The content of `ino` may change outside what its attributes show (it is open for
    /// writing, or the attributes could not be read): the next open must drop the pages.
    pub fn changed(&mut self, ino: u64) {
        self.last.remove(&ino);
    }

    /// The kernel forgot `ino`: so do we (a new inode starts with no pages).
    pub fn forget(&mut self, ino: u64) {
        self.last.remove(&ino);
    }

    pub fn len(&self) -> usize {
        self.last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::FileKind;
    use std::time::{Duration, SystemTime};

    fn attr(size: u64, ctime_s: u64) -> Attr {
        Attr {
            kind: FileKind::File,
            size,
            mode: 0o644,
            mtime: SystemTime::UNIX_EPOCH,
            ctime: SystemTime::UNIX_EPOCH + Duration::from_secs(ctime_s),
            xattrs: Default::default(),
        }
    }

    #[test]
    fn keeps_only_unchanged_content() {
        let mut k = KeepCache::new();
        assert!(!k.open(7, &attr(10, 1)), "first open: nothing to keep");
        assert!(k.open(7, &attr(10, 1)), "same attributes: keep");
        assert!(!k.open(7, &attr(10, 2)), "rewritten (new ctime): drop");
        assert!(k.open(7, &attr(10, 2)));
        assert!(!k.open(7, &attr(11, 2)), "new size: drop");
        k.changed(7);
        assert!(
            !k.open(7, &attr(11, 2)),
            "opened for writing in between: drop"
        );
        assert!(k.open(7, &attr(11, 2)));
        assert!(!k.open(8, &attr(11, 2)), "per inode");
        k.forget(7);
        k.forget(8);
        assert!(k.is_empty());
        assert!(!k.open(7, &attr(11, 2)));
        assert_eq!(k.len(), 1);
    }
}
