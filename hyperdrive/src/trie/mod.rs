//! Hypertrie 5 (with mountable-hypertrie 2.8): a hash trie over a hypercore. Built in
//! the drive issue.
