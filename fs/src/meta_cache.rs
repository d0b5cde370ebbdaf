//! What the adapter knows about paths at one backend generation: attributes (with
//! extended attributes), directory link counts and directory listings.
//!
//! Why: `ls -l` asks for two extended attributes per file and the kernel caches no
//! answer to them; walks revalidate every entry once its 1 s TTL is over. Each of those
//! calls is cheap to answer from what `readdir`/`stat` already returned, and expensive as
//! a backend call from a spawned task. So the FUSE thread answers them from this cache
//! when it can, and only spawns a task on a miss.
//!
//! Correctness rests on [`crate::Backend::generation`]: every entry belongs to the
//! generation read *before* the backend call that produced it, and is served only while
//! the backend is still at that generation. A write (ours or replicated) moves the
//! generation before it returns, so the next call misses and asks the backend again; a
//! result read at an older generation is never stored over a newer one.

use std::collections::HashMap;
use std::sync::Arc;

use crate::backend::{join, split, Attr, DirEntry, FileKind};

/// Bound on cached attributes; the cache starts over when it is full.
pub const MAX_ATTRS: usize = 1 << 17;
/// Bound on cached directory listings.
pub const MAX_LISTINGS: usize = 4096;

/// Attributes of one path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cached {
    pub attr: Attr,
    /// Link count; `None` for a directory whose listing was not counted yet (files and
    /// symlinks always have 1).
    pub nlink: Option<u32>,
}

/// Per-generation attributes and listings, bounded.
#[derive(Debug, Default)]
pub struct MetaCache {
    generation: u64,
    attrs: HashMap<String, Cached>,
    /// Listing, and whether it is sorted by name (the backend contract; checked once,
    /// so a backend that breaks it gets slower negative lookups, never wrong ones).
    listings: HashMap<String, (Arc<Vec<DirEntry>>, bool)>,
}

impl MetaCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves to `generation` (dropping everything older); whether entries of
    /// `generation` may be read or stored.
    fn at(&mut self, generation: u64) -> bool {
        if generation > self.generation {
            self.generation = generation;
            self.attrs.clear();
            self.listings.clear();
        }
        generation == self.generation
    }

    /// Attributes of `path` at `generation`, if known.
    pub fn attr(&mut self, generation: u64, path: &str) -> Option<&Cached> {
        if !self.at(generation) {
            return None;
        }
        self.attrs.get(path)
    }

    /// Attributes and link count of `path` at `generation`, if both are known.
    pub fn complete(&mut self, generation: u64, path: &str) -> Option<(&Attr, u32)> {
        let c = self.attr(generation, path)?;
        c.nlink.map(|n| (&c.attr, n))
    }

    /// Records `attr` for `path`, read at `generation`. Keeps a known link count when
    /// the attributes did not change.
    pub fn put_attr(&mut self, generation: u64, path: &str, attr: Attr) {
        if !self.at(generation) {
            return;
        }
        let nlink = match attr.kind {
            FileKind::Dir => self
                .attrs
                .get(path)
                .filter(|c| c.attr == attr)
                .and_then(|c| c.nlink),
            FileKind::File | FileKind::Symlink => Some(1),
        };
        if self.attrs.len() >= MAX_ATTRS && !self.attrs.contains_key(path) {
            self.attrs.clear();
        }
        self.attrs.insert(path.to_string(), Cached { attr, nlink });
    }

    /// Records the link count of directory `path` (its attributes must be known).
    pub fn put_nlink(&mut self, generation: u64, path: &str, nlink: u32) {
        if !self.at(generation) {
            return;
        }
        if let Some(c) = self.attrs.get_mut(path) {
            c.nlink = Some(nlink);
        }
    }

    /// The listing of directory `path` at `generation`, if known.
    pub fn listing(&mut self, generation: u64, path: &str) -> Option<Arc<Vec<DirEntry>>> {
        if !self.at(generation) {
            return None;
        }
        self.listings.get(path).map(|(l, _)| l.clone())
    }

    /// Records the listing of `path` read at `generation`, with the attributes of every
    /// child it names, and the directory's link count when its attributes are known.
    pub fn put_listing(&mut self, generation: u64, path: &str, list: Arc<Vec<DirEntry>>) {
        if !self.at(generation) {
            return;
        }
        for e in list.iter() {
            self.put_attr(generation, &join(path, &e.name), e.attr.clone());
        }
        let nlink = dir_nlink(&list);
        self.put_nlink(generation, path, nlink);
        if self.listings.len() >= MAX_LISTINGS && !self.listings.contains_key(path) {
            self.listings.clear();
        }
        let sorted = list.windows(2).all(|w| w[0].name < w[1].name);
        self.listings.insert(path.to_string(), (list, sorted));
    }

    /// Whether `path` is known not to exist at `generation`: its parent's listing is
    /// cached and does not name it.
    pub fn absent(&mut self, generation: u64, path: &str) -> bool {
        let (parent, name) = split(path);
        if name.is_empty() {
            return false;
        }
        if !self.at(generation) {
            return false;
        }
        match self.listings.get(parent) {
            Some((list, true)) => list
                .binary_search_by(|e| e.name.as_str().cmp(name))
                .is_err(),
            Some((list, false)) => !list.iter().any(|e| e.name == name),
            None => false,
        }
    }
}

/// Directories link to themselves, their parent's entry, and each subdirectory's `..`.
pub fn dir_nlink(list: &[DirEntry]) -> u32 {
    let subdirs = list.iter().filter(|e| e.attr.kind == FileKind::Dir).count();
    2 + u32::try_from(subdirs).unwrap_or(u32::MAX - 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn attr(kind: FileKind, size: u64) -> Attr {
        Attr {
            kind,
            size,
            mode: 0o644,
            mtime: SystemTime::UNIX_EPOCH,
            ctime: SystemTime::UNIX_EPOCH,
            xattrs: Arc::default(),
        }
    }

    fn entry(name: &str, kind: FileKind) -> DirEntry {
        DirEntry {
            name: name.into(),
            attr: attr(kind, 1),
        }
    }

    #[test]
    fn entries_live_only_at_their_generation() {
        let mut c = MetaCache::new();
        c.put_attr(5, "/f", attr(FileKind::File, 3));
        assert_eq!(c.complete(5, "/f").map(|(a, n)| (a.size, n)), Some((3, 1)));
        // A newer generation drops everything older.
        assert!(c.attr(6, "/f").is_none());
        // A result read at an older generation is not stored over a newer one...
        c.put_attr(5, "/f", attr(FileKind::File, 3));
        assert!(c.attr(6, "/f").is_none());
        // ...nor served.
        assert!(c.attr(5, "/f").is_none());
        c.put_attr(6, "/f", attr(FileKind::File, 4));
        assert_eq!(c.attr(6, "/f").map(|c| c.attr.size), Some(4));
    }

    #[test]
    fn listings_give_child_attrs_dir_nlink_and_absence() {
        let mut c = MetaCache::new();
        c.put_attr(1, "/d", attr(FileKind::Dir, 0));
        assert!(
            c.complete(1, "/d").is_none(),
            "nlink of a dir needs its listing"
        );
        let list = Arc::new(vec![
            entry("a", FileKind::File),
            entry("s", FileKind::Dir),
            entry("t", FileKind::Dir),
        ]);
        c.put_listing(1, "/d", list.clone());
        assert_eq!(c.complete(1, "/d").map(|(_, n)| n), Some(4));
        assert_eq!(c.complete(1, "/d/a").map(|(_, n)| n), Some(1));
        assert!(c.complete(1, "/d/s").is_none());
        assert_eq!(c.listing(1, "/d"), Some(list));
        assert!(c.absent(1, "/d/zz"));
        assert!(!c.absent(1, "/d/a"));
        assert!(!c.absent(1, "/other/x"), "unknown parent: not known absent");
        assert!(!c.absent(1, "/"));
        // Same attributes again keep the counted nlink; changed ones drop it.
        c.put_attr(1, "/d", attr(FileKind::Dir, 0));
        assert_eq!(c.complete(1, "/d").map(|(_, n)| n), Some(4));
        let mut changed = attr(FileKind::Dir, 0);
        changed.mode = 0o700;
        c.put_attr(1, "/d", changed);
        assert!(c.complete(1, "/d").is_none());
        assert!(!c.absent(2, "/d/zz"), "listing of an older generation");
        // An unsorted listing still answers right.
        let unsorted = Arc::new(vec![entry("b", FileKind::File), entry("a", FileKind::File)]);
        c.put_listing(2, "/u", unsorted);
        assert!(!c.absent(2, "/u/a") && !c.absent(2, "/u/b"));
        assert!(c.absent(2, "/u/c"));
    }

    #[test]
    fn bounded() {
        let mut c = MetaCache::new();
        for i in 0..MAX_ATTRS + 10 {
            c.put_attr(1, &format!("/f{i}"), attr(FileKind::File, 0));
        }
        assert!(c.attrs.len() <= MAX_ATTRS);
        for i in 0..MAX_LISTINGS + 10 {
            c.put_listing(1, &format!("/d{i}"), Arc::new(Vec::new()));
        }
        assert!(c.listings.len() <= MAX_LISTINGS);
    }
}
