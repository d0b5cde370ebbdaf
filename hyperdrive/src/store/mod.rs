//! Many feeds in one folder, laid out and keyed as corestore 5 does it.
//!
//! This module owns the store root: the `master_key` file, key derivation from names, the
//! `dk[0:2]/dk[2:4]/dk` core folders and their `name` files, and the cache of open feeds
//! (see [`open`]): one [`SharedFeed`](crate::protocol::replicate::SharedFeed) per core,
//! shared by every user and every replication connection, with a bounded number of cores
//! holding files open. A store written by the Node reference opens here and the other way
//! round, so nothing here may invent a file or a name format corestore does not use (in
//! particular, derived cores never get a `secret_key` file: their secret is re-derived
//! from `name`).

mod derive;
mod layout;
pub mod open;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::core::crypto::{discovery_key, KeyPair};
use crate::core::CoreError;

pub use derive::{
    content_name, derive_key_prefix, derive_keypair, derive_seed, namespace_name, CONTENT_SUFFIX,
    DEFAULT_NAME, NAMESPACE, NAMESPACE_SEPARATOR,
};
pub use layout::{
    core_dir, core_dir_relative, decode_name, encode_name, load_or_create_master_key,
    read_name_file, write_name_file, CorePaths, CORE_FILES, MASTER_KEY_FILE, MAX_NAME_FILE,
    NAME_FILE,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid corestore name file {path}: {reason}")]
    InvalidNameFile { path: PathBuf, reason: String },
    #[error("invalid core key {key}: {reason}")]
    InvalidKey { key: String, reason: String },
    /// corestore's "Stored an incorrect name.": the name derives another core's key.
    #[error("name file in {path} derives discovery key {derived}, not the folder's {expected}")]
    NameMismatch {
        path: PathBuf,
        derived: String,
        expected: String,
    },
    /// Opening or creating the core's feed failed (I/O, corrupt files, locked folder).
    #[error(transparent)]
    Core(#[from] CoreError),
}

/// A corestore-5 store: its root, master key and the cache of open feeds. Cheap to clone;
/// clones share the cache (and so hand out the same feeds).
#[derive(Clone)]
pub struct Corestore {
    /// Empty for an in-memory store.
    root: PathBuf,
    master_key: [u8; 32],
    cache: Arc<open::Cache>,
}

impl std::fmt::Debug for Corestore {
    // Never print the master key: it is every derived core's secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Corestore")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// A core located in the store: where its files are and its key pair (with the secret
/// when it was derived from a name).
#[derive(Debug, Clone)]
pub struct CoreLocation {
    pub paths: CorePaths,
    pub keypair: KeyPair,
    /// The derivation name, for cores created by name.
    pub name: Option<Vec<u8>>,
}

impl CoreLocation {
    pub fn discovery_key(&self) -> [u8; 32] {
        self.keypair.discovery_key()
    }
}

impl Corestore {
    /// Opens (creating if needed) the store at `root`, loading or creating its master key.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        let master_key = load_or_create_master_key(&root)?;
        Ok(Self::with_master_key(root, master_key))
    }

    /// A store at `root` with a given master key (corestore's `opts.masterKey`); the
    /// `master_key` file is neither read nor written.
    pub fn with_master_key(root: impl Into<PathBuf>, master_key: [u8; 32]) -> Self {
        Corestore {
            root: root.into(),
            master_key,
            cache: Arc::new(open::Cache::new(false)),
        }
    }

    /// A store whose cores live in memory only (tests, scratch drives). Nothing is
    /// written anywhere; cores are never closed while the store lives, because closing
    /// would lose them.
    pub fn in_memory(master_key: [u8; 32]) -> Self {
        Corestore {
            root: PathBuf::new(),
            master_key,
            cache: Arc::new(open::Cache::new(true)),
        }
    }

    /// The store folder (empty for an in-memory store).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether cores live in memory only.
    pub fn is_in_memory(&self) -> bool {
        self.cache.in_memory()
    }

    pub fn master_key(&self) -> &[u8; 32] {
        &self.master_key
    }

    /// The key pair of the core called `name`.
    pub fn keypair_for_name(&self, name: &[u8]) -> KeyPair {
        derive_keypair(&self.master_key, name)
    }

    /// The folder and file paths of the core with `discovery_key`.
    pub fn paths_for_discovery_key(&self, discovery_key: &[u8; 32]) -> CorePaths {
        CorePaths::new(core_dir(&self.root, discovery_key))
    }

    /// Where the core called `name` lives and its (writable) key pair. Nothing is written.
    pub fn locate_by_name(&self, name: &[u8]) -> CoreLocation {
        let keypair = self.keypair_for_name(name);
        CoreLocation {
            paths: self.paths_for_discovery_key(&keypair.discovery_key()),
            keypair,
            name: Some(name.to_vec()),
        }
    }

    /// `store.default()`: the core called "default" (a Hyperdrive's metadata core).
    pub fn locate_default(&self) -> CoreLocation {
        self.locate_by_name(DEFAULT_NAME.as_bytes())
    }

    /// The content core of the Hyperdrive whose metadata key is `metadata_key`, when this
    /// store created that drive (its name derives from the metadata key).
    pub fn locate_content(&self, metadata_key: &[u8; 32]) -> CoreLocation {
        self.locate_by_name(content_name(metadata_key).as_bytes())
    }

    /// Where the core with public key `key` lives. If its folder has a `name` file, the key
    /// pair is re-derived from it (writable) and must match the folder; otherwise the key
    /// pair is read-only (a `secret_key` file, written by older stores, is the feed's to
    /// read).
    pub fn locate_by_key(&self, key: &[u8; 32]) -> Result<CoreLocation, StoreError> {
        let dk = discovery_key(key);
        let paths = self.paths_for_discovery_key(&dk);
        match read_name_file(&paths.dir)? {
            Some(name) => {
                let keypair = self.keypair_for_name(&name);
                let derived = keypair.discovery_key();
                if derived != dk {
                    return Err(StoreError::NameMismatch {
                        path: paths.name.clone(),
                        derived: hex::encode(derived),
                        expected: hex::encode(dk),
                    });
                }
                Ok(CoreLocation {
                    paths,
                    keypair,
                    name: Some(name),
                })
            }
            None => {
                let keypair = KeyPair::from_public(key).map_err(|e| StoreError::InvalidKey {
                    key: hex::encode(key),
                    reason: e.to_string(),
                })?;
                Ok(CoreLocation {
                    paths,
                    keypair,
                    name: None,
                })
            }
        }
    }

    /// Records `name` for a core about to be created by name, so the next open re-derives
    /// its secret. Call before the feed writes its first file.
    pub fn write_name(&self, location: &CoreLocation) -> Result<(), StoreError> {
        match &location.name {
            Some(name) => write_name_file(&location.paths.dir, name),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// `core.json` from the shared vectors folder (`$HYPERMOUNT_VECTORS`, then
    /// `$HYPERMOUNT_SHARED/vectors`, beside the repository, then `/work/shared/vectors`).
    fn corestore_vectors() -> Value {
        let mut candidates = Vec::new();
        if let Some(dir) = std::env::var_os("HYPERMOUNT_VECTORS") {
            candidates.push(PathBuf::from(dir));
        }
        if let Some(dir) = std::env::var_os("HYPERMOUNT_SHARED") {
            candidates.push(PathBuf::from(dir).join("vectors"));
        }
        candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors"));
        candidates.push(PathBuf::from("/work/shared/vectors"));
        for dir in &candidates {
            if let Ok(text) = std::fs::read_to_string(dir.join("core.json")) {
                let v: Value = serde_json::from_str(&text).expect("core.json is JSON");
                return v["corestore"].clone();
            }
        }
        panic!("core.json not found in any of {candidates:?}");
    }

    fn unhex(v: &Value) -> Vec<u8> {
        hex::decode(v.as_str().expect("hex string")).expect("hex")
    }

    fn hex32(v: &Value) -> [u8; 32] {
        unhex(v).try_into().expect("32 bytes")
    }

    #[test]
    fn derive_key_prefix_vector() {
        let v = corestore_vectors();
        assert_eq!(derive_key_prefix(NAMESPACE), unhex(&v["deriveKeyPrefix"]));
    }

    #[test]
    fn derived_seeds_and_keys_match_vectors() {
        let v = corestore_vectors();
        let mk = hex32(&v["masterKey"]);
        for case in ["derivedDefault", "derivedContent", "derivedNamespaced"] {
            let c = &v[case];
            let name = c["name"].as_str().unwrap();
            assert_eq!(name.as_bytes(), unhex(&c["nameHex"]), "{case}");
            assert_eq!(
                derive_seed(&mk, name.as_bytes()),
                hex32(&c["seed"]),
                "{case}"
            );
            let kp = derive_keypair(&mk, name.as_bytes());
            assert_eq!(kp.public_bytes(), hex32(&c["publicKey"]), "{case}");
            assert_eq!(kp.discovery_key(), hex32(&c["discoveryKey"]), "{case}");
            assert!(kp.secret.is_some());
        }
        // The content vector's name is the default key's content name.
        let default_key = hex32(&v["derivedDefault"]["publicKey"]);
        assert_eq!(
            content_name(&default_key),
            v["derivedContent"]["name"].as_str().unwrap()
        );
        assert_eq!(
            namespace_name(&["my-namespace"]),
            v["derivedNamespaced"]["name"]
        );
        assert_eq!(namespace_name(&[]), v["derivedDefault"]["name"]);
    }

    #[test]
    fn real_corestore_and_hyperdrive_vectors() {
        let v = corestore_vectors();
        let real = &v["real"];
        let store = Corestore::with_master_key("/store", hex32(&v["masterKey"]));

        let default = store.locate_default();
        assert_eq!(default.keypair.public_bytes(), hex32(&real["defaultKey"]));
        assert_eq!(
            default.paths.dir,
            Path::new("/store").join(real["defaultCoreDir"].as_str().unwrap())
        );
        assert_eq!(
            encode_name(DEFAULT_NAME.as_bytes()),
            unhex(&real["nameFile"])
        );

        let content = store.locate_content(&default.keypair.public_bytes());
        assert_eq!(content.keypair.public_bytes(), hex32(&real["contentKey"]));
        let ns = store.locate_by_name(namespace_name(&["my-namespace"]).as_bytes());
        assert_eq!(
            ns.keypair.public_bytes(),
            hex32(&real["namespacedDefaultKey"])
        );

        // Every path the real corestore opened is one of our three cores' files.
        let mut ours: Vec<String> = Vec::new();
        for loc in [&default, &content, &ns] {
            let rel = core_dir_relative(&loc.discovery_key());
            for f in CORE_FILES {
                ours.push(rel.join(f).to_str().unwrap().to_owned());
            }
        }
        ours.sort();
        let mut opened: Vec<String> = real["pathsOpened"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_owned())
            .collect();
        opened.sort();
        assert_eq!(ours, opened);

        let hd = &v["hyperdrive"];
        assert_eq!(default.keypair.public_bytes(), hex32(&hd["metadataKey"]));
        assert_eq!(content.keypair.public_bytes(), hex32(&hd["contentKey"]));
    }

    #[test]
    fn locate_by_key_rederives_from_the_name_file() {
        let v = corestore_vectors();
        let tmp = tempfile::tempdir().unwrap();
        let store = Corestore::with_master_key(tmp.path(), hex32(&v["masterKey"]));
        let default = store.locate_default();
        let key = default.keypair.public_bytes();

        // Known only by key: read-only.
        let loc = store.locate_by_key(&key).unwrap();
        assert!(loc.keypair.secret.is_none());
        assert_eq!(loc.name, None);

        store.write_name(&default).unwrap();
        assert_eq!(
            std::fs::read(&default.paths.name).unwrap(),
            unhex(&v["real"]["nameFile"])
        );
        let loc = store.locate_by_key(&key).unwrap();
        assert_eq!(loc.keypair.public_bytes(), key);
        assert!(loc.keypair.secret.is_some());
        assert_eq!(loc.paths, default.paths);

        // A name that derives some other core is refused, as corestore does.
        write_name_file(&default.paths.dir, b"not-default").unwrap();
        assert!(matches!(
            store.locate_by_key(&key),
            Err(StoreError::NameMismatch { .. })
        ));
    }

    #[test]
    fn open_persists_the_master_key() {
        let tmp = tempfile::tempdir().unwrap();
        let a = Corestore::open(tmp.path().join("s")).unwrap();
        let b = Corestore::open(tmp.path().join("s")).unwrap();
        assert_eq!(a.master_key(), b.master_key());
        assert_eq!(
            a.locate_default().keypair.public_bytes(),
            b.locate_default().keypair.public_bytes()
        );
        let shown = format!("{a:?}");
        assert!(!shown.contains("master"), "{shown}");
    }
}
