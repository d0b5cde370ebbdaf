//! Hyperdrive 10: files, directories, symlinks and mounts over a metadata trie and a
//! content feed. Built in the drive issue.
