//! The inode table: which inode number the kernel knows each path by.
//!
//! Inode numbers are handed out on LOOKUP (and READDIRPLUS, CREATE, MKDIR, SYMLINK) with
//! a lookup count; FORGET lowers the count and drops the entry at zero, so the table holds
//! exactly what the kernel's inode cache holds, capped at [`MAX_INODES`]. The root is
//! inode 1 and never forgotten. Paths of removed nodes stay attached to their inode until
//! the kernel forgets it, but no longer resolve by path.

use std::collections::HashMap;

use crate::backend::join;

/// Upper bound on remembered inodes; lookups beyond it fail with ENFILE.
pub const MAX_INODES: usize = 1 << 20;

pub const ROOT: u64 = fuser::FUSE_ROOT_ID;

#[derive(Debug)]
struct Entry {
    path: String,
    lookups: u64,
}

/// Path ↔ inode number.
#[derive(Debug)]
pub struct InodeTable {
    by_ino: HashMap<u64, Entry>,
    by_path: HashMap<String, u64>,
    next: u64,
}

impl Default for InodeTable {
    fn default() -> Self {
        Self::new()
    }
}

impl InodeTable {
    pub fn new() -> Self {
        let mut t = InodeTable {
            by_ino: HashMap::new(),
            by_path: HashMap::new(),
            next: ROOT + 1,
        };
        t.by_ino.insert(
            ROOT,
            Entry {
                path: "/".into(),
                lookups: 1,
            },
        );
        t.by_path.insert("/".into(), ROOT);
        t
    }

    pub fn len(&self) -> usize {
        self.by_ino.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_ino.is_empty()
    }

    /// Every inode number held.
    pub fn inodes(&self) -> Vec<u64> {
        self.by_ino.keys().copied().collect()
    }

    pub fn path(&self, ino: u64) -> Option<&str> {
        self.by_ino.get(&ino).map(|e| e.path.as_str())
    }

    /// The inode of `path` if the kernel currently knows it.
    pub fn ino(&self, path: &str) -> Option<u64> {
        self.by_path.get(path).copied()
    }

    /// Hands `path` to the kernel once more: returns its inode and counts the lookup.
    /// `None` when the table is full.
    pub fn remember(&mut self, path: &str) -> Option<u64> {
        if let Some(&ino) = self.by_path.get(path) {
            if let Some(e) = self.by_ino.get_mut(&ino) {
                e.lookups += 1;
            }
            return Some(ino);
        }
        if self.by_ino.len() >= MAX_INODES {
            return None;
        }
        let ino = self.next;
        self.next += 1;
        self.by_ino.insert(
            ino,
            Entry {
                path: path.to_string(),
                lookups: 1,
            },
        );
        self.by_path.insert(path.to_string(), ino);
        Some(ino)
    }

    /// The kernel dropped `n` references to `ino`.
    pub fn forget(&mut self, ino: u64, n: u64) {
        if ino == ROOT {
            return;
        }
        let gone = match self.by_ino.get_mut(&ino) {
            Some(e) => {
                e.lookups = e.lookups.saturating_sub(n);
                e.lookups == 0
            }
            None => false,
        };
        if gone {
            if let Some(e) = self.by_ino.remove(&ino) {
                if self.by_path.get(&e.path) == Some(&ino) {
                    self.by_path.remove(&e.path);
                }
            }
        }
    }

    /// `path` was removed: a new node there must get a new inode.
    pub fn unlinked(&mut self, path: &str) {
        self.by_path.remove(path);
    }

    /// Everything at or under `from` now lives under `to`.
    pub fn renamed(&mut self, from: &str, to: &str) {
        self.by_path.remove(to);
        let prefix = if from == "/" {
            "/".to_string()
        } else {
            format!("{from}/")
        };
        let moved: Vec<(String, u64)> = self
            .by_path
            .iter()
            .filter(|(p, _)| p.as_str() == from || p.starts_with(&prefix))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        for (old, ino) in moved {
            let new = format!("{to}{}", &old[from.len()..]);
            self.by_path.remove(&old);
            // A child of the target that the kernel still knows is now unreachable.
            if let Some(prev) = self.by_path.insert(new.clone(), ino) {
                if prev != ino {
                    if let Some(e) = self.by_ino.get_mut(&prev) {
                        e.path = format!("{new}\0stale");
                    }
                }
            }
            if let Some(e) = self.by_ino.get_mut(&ino) {
                e.path = new;
            }
        }
    }

    /// Path of `name` inside directory inode `parent`.
    pub fn child(&self, parent: u64, name: &str) -> Option<String> {
        self.path(parent).map(|p| join(p, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_and_forget() {
        let mut t = InodeTable::new();
        let a = t.remember("/a").expect("ino");
        assert_eq!(t.remember("/a"), Some(a));
        assert_eq!(t.len(), 2);
        t.forget(a, 1);
        assert_eq!(t.path(a), Some("/a"));
        t.forget(a, 1);
        assert_eq!(t.path(a), None);
        assert_eq!(t.ino("/a"), None);
        t.forget(ROOT, 100);
        assert_eq!(t.path(ROOT), Some("/"));
    }

    #[test]
    fn rename_moves_descendants_only() {
        let mut t = InodeTable::new();
        let d = t.remember("/d").expect("ino");
        let x = t.remember("/d/x").expect("ino");
        let dz = t.remember("/d-z").expect("ino");
        t.renamed("/d", "/e");
        assert_eq!(t.path(d), Some("/e"));
        assert_eq!(t.path(x), Some("/e/x"));
        assert_eq!(t.path(dz), Some("/d-z"));
        assert_eq!(t.ino("/e/x"), Some(x));
        assert_eq!(t.ino("/d/x"), None);
    }

    #[test]
    fn unlinked_path_gets_a_new_inode() {
        let mut t = InodeTable::new();
        let a = t.remember("/a").expect("ino");
        t.unlinked("/a");
        let b = t.remember("/a").expect("ino");
        assert_ne!(a, b);
        t.forget(a, 1);
        assert_eq!(t.ino("/a"), Some(b));
    }
}
