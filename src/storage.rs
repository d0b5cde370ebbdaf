//! Where the command line keeps its feeds, and which drives it keeps them for.
//!
//! One storage folder is one corestore (`master_key` plus core folders, readable by the
//! Node reference too) and a small `drives.json` listing the drives created here
//! ("own") and mirrored here ("mirror"), so `seed` with no keys knows what to serve.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

/// File in the storage folder listing own and mirrored drives.
pub const REGISTRY_FILE: &str = "drives.json";

/// The storage folder: `--storage`, else `$HYPERMOUNT_STORAGE`, else
/// `$XDG_DATA_HOME/hypermount`, else `~/.local/share/hypermount`.
pub fn resolve_dir(flag: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(d) = flag {
        return Ok(d);
    }
    if let Some(d) = std::env::var_os("HYPERMOUNT_STORAGE").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("hypermount"));
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".local/share/hypermount")),
        None => bail!("no storage folder: pass --storage DIR or set HYPERMOUNT_STORAGE"),
    }
}

/// How a drive came to be in this storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Created here (writable).
    Own,
    /// Downloaded with `mirror`.
    Mirror,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Own => "own",
            Role::Mirror => "mirror",
        }
    }
}

/// The `drives.json` list: key (hex) → role.
#[derive(Debug, Default)]
pub struct Registry {
    path: PathBuf,
    drives: BTreeMap<String, Role>,
}

impl Registry {
    /// Reads `drives.json` in `dir` (an absent file is an empty list).
    pub fn load(dir: &Path) -> Result<Registry> {
        let path = dir.join(REGISTRY_FILE);
        let mut reg = Registry {
            path: path.clone(),
            drives: BTreeMap::new(),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(reg),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let v: Value = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not valid JSON; fix or delete it (it only lists drives to seed)",
                path.display()
            )
        })?;
        if let Some(list) = v.get("drives").and_then(Value::as_array) {
            for d in list {
                let (Some(key), Some(role)) = (
                    d.get("key").and_then(Value::as_str),
                    d.get("role").and_then(Value::as_str),
                ) else {
                    continue;
                };
                let role = match role {
                    "own" => Role::Own,
                    "mirror" => Role::Mirror,
                    _ => continue,
                };
                if key.len() == 64 && hex::decode(key).is_ok() {
                    reg.drives.insert(key.to_ascii_lowercase(), role);
                }
            }
        }
        Ok(reg)
    }

    /// Records `key` with `role` (an own drive stays own) and writes the file.
    pub fn add(&mut self, key: &[u8; 32], role: Role) -> Result<()> {
        let k = hex::encode(key);
        if self.drives.get(&k) == Some(&Role::Own) {
            return Ok(());
        }
        self.drives.insert(k, role);
        self.save()
    }

    /// Every listed drive.
    pub fn keys(&self) -> Vec<([u8; 32], Role)> {
        self.drives
            .iter()
            .filter_map(|(k, r)| {
                let b: [u8; 32] = hex::decode(k).ok()?.try_into().ok()?;
                Some((b, *r))
            })
            .collect()
    }

    fn save(&self) -> Result<()> {
        let list: Vec<Value> = self
            .drives
            .iter()
            .map(|(k, r)| json!({"key": k, "role": r.as_str()}))
            .collect();
        let text = serde_json::to_string_pretty(&json!({ "drives": list }))?;
        // Write beside and rename, so a crash never leaves half a file.
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, text + "\n").with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("writing {}", self.path.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_round_trip_and_own_wins() {
        let tmp = tempfile::tempdir().unwrap();
        let mut r = Registry::load(tmp.path()).unwrap();
        assert!(r.keys().is_empty());
        r.add(&[1; 32], Role::Own).unwrap();
        r.add(&[2; 32], Role::Mirror).unwrap();
        r.add(&[1; 32], Role::Mirror).unwrap();
        let r = Registry::load(tmp.path()).unwrap();
        assert_eq!(
            r.keys(),
            vec![([1; 32], Role::Own), ([2; 32], Role::Mirror)]
        );
    }

    #[test]
    fn corrupt_registry_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(REGISTRY_FILE), "{nope").unwrap();
        let e = Registry::load(tmp.path()).unwrap_err();
        assert!(format!("{e:#}").contains("not valid JSON"));
    }

    #[test]
    fn flag_wins() {
        assert_eq!(resolve_dir(Some("/x".into())).unwrap(), PathBuf::from("/x"));
    }
}
