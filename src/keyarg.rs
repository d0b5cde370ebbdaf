//! Drive references on the command line: `HEX`, `HEX+V`, `HEX+V/path`,
//! `hyper://HEX[+V][/path]` and `dat://HEX[+V][/path]`.
//!
//! Parsed into a key, an optional version and a drive path (always starting with `/`),
//! so every command names drives the same way and a typo gets one clear message.

use std::fmt;
use std::str::FromStr;

/// A parsed drive reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveRef {
    pub key: [u8; 32],
    /// A checkout version (`+V`); `None` means the latest.
    pub version: Option<u64>,
    /// Drive path, `/` when none was given.
    pub path: String,
}

/// Why a drive reference did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    pub input: String,
    pub reason: String,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bad drive key {:?}: {} (expected 64 hex characters, optionally as \
             hyper://KEY[+VERSION][/PATH])",
            self.input, self.reason
        )
    }
}

impl std::error::Error for KeyError {}

impl DriveRef {
    /// The key as 64 lowercase hex characters.
    pub fn hex(&self) -> String {
        hex::encode(self.key)
    }
}

impl fmt::Display for DriveRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "hyper://{}", self.hex())?;
        if let Some(v) = self.version {
            write!(f, "+{v}")?;
        }
        if self.path != "/" {
            write!(f, "{}", self.path)?;
        }
        Ok(())
    }
}

impl FromStr for DriveRef {
    type Err = KeyError;

    fn from_str(input: &str) -> Result<Self, KeyError> {
        let err = |reason: &str| KeyError {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = input.trim();
        let lower_scheme = trimmed.get(..8).map(str::to_ascii_lowercase);
        let rest = if lower_scheme.as_deref() == Some("hyper://") {
            &trimmed[8..]
        } else if trimmed.get(..6).map(str::to_ascii_lowercase).as_deref() == Some("dat://") {
            &trimmed[6..]
        } else if trimmed.contains("://") {
            return Err(err("unknown scheme (use hyper:// or dat://)"));
        } else {
            trimmed
        };
        let (head, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (hexpart, version) = match head.find('+') {
            Some(i) => {
                let v = &head[i + 1..];
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err("the version after '+' must be a number"));
                }
                let v: u64 = v.parse().map_err(|_| err("the version is too large"))?;
                (&head[..i], Some(v))
            }
            None => (head, None),
        };
        if hexpart.is_empty() {
            return Err(err("no key"));
        }
        if hexpart.len() != 64 {
            return Err(err(&format!(
                "the key has {} characters, not 64",
                hexpart.len()
            )));
        }
        let bytes = hex::decode(hexpart).map_err(|_| err("the key is not hexadecimal"))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| err("the key is not 32 bytes"))?;
        if hyperdrive::core::KeyPair::from_public(&key).is_err() {
            return Err(err("not a valid ed25519 public key"));
        }
        let path = normalize_path(path);
        Ok(DriveRef { key, version, path })
    }
}

/// `/a//b/./c/` → `/a/b/c`; `..` is refused by dropping it at the root and popping
/// otherwise, so a path never climbs out of the drive.
pub fn normalize_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real (random) public key.
    fn k() -> String {
        hex::encode(hyperdrive::core::KeyPair::generate().public_bytes())
    }

    #[test]
    fn plain_hex() {
        let key = k();
        let key = key.as_str();
        let r: DriveRef = key.parse().unwrap();
        assert_eq!(r.hex(), key);
        assert_eq!(r.version, None);
        assert_eq!(r.path, "/");
    }

    #[test]
    fn uppercase_hex_and_whitespace() {
        let key = k();
        let key = key.as_str();
        let r: DriveRef = format!("  {}  ", key.to_uppercase()).parse().unwrap();
        assert_eq!(r.hex(), key);
    }

    #[test]
    fn hyper_url_with_version_and_path() {
        let key = k();
        let key = key.as_str();
        let r: DriveRef = format!("hyper://{key}+12/docs//a.txt").parse().unwrap();
        assert_eq!(r.hex(), key);
        assert_eq!(r.version, Some(12));
        assert_eq!(r.path, "/docs/a.txt");
        assert_eq!(r.to_string(), format!("hyper://{key}+12/docs/a.txt"));
    }

    #[test]
    fn dat_url_and_bare_path() {
        let key = k();
        let key = key.as_str();
        let r: DriveRef = format!("dat://{key}/x/").parse().unwrap();
        assert_eq!((r.version, r.path.as_str()), (None, "/x"));
        let r: DriveRef = format!("HYPER://{key}").parse().unwrap();
        assert_eq!(r.path, "/");
        let r: DriveRef = format!("{key}+3").parse().unwrap();
        assert_eq!(r.version, Some(3));
    }

    #[test]
    fn dotdot_cannot_escape() {
        let key = k();
        let key = key.as_str();
        let r: DriveRef = format!("{key}/../../etc/./passwd").parse().unwrap();
        assert_eq!(r.path, "/etc/passwd");
        assert_eq!(normalize_path("/a/b/../c"), "/a/c");
    }

    #[test]
    fn off_curve_key() {
        let e = "0000000000000000000000000000000000000000000000000000000000000001"
            .parse::<DriveRef>()
            .unwrap_err();
        assert!(e.to_string().contains("ed25519"), "{e}");
    }

    #[test]
    fn bad_keys() {
        let key = k();
        let key = key.as_str();
        for bad in [
            "",
            "hyper://",
            "abc",
            &key[..63],
            &format!("{key}0"),
            &format!("{}zz", &key[..62]),
            &format!("{key}+"),
            &format!("{key}+x"),
            &format!("{key}+-1"),
            &format!("{key}+99999999999999999999999"),
            &format!("http://{key}"),
        ] {
            let e = bad.parse::<DriveRef>().unwrap_err();
            assert!(e.to_string().contains("bad drive key"), "{bad}: {e}");
        }
    }
}
