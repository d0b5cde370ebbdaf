//! Folder ↔ drive copies: `import` (make a writable drive match a folder: adds,
//! changes by size or mtime, deletions) and `export` (copy a drive subtree out).
//!
//! Files are streamed in 512 KiB blocks, so neither direction holds a whole file in
//! memory.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use hyperdrive::drive::{Drive, DriveError, WriteOptions, MAX_BLOCK_SIZE};

/// A local entry, keyed by its drive path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Local {
    Dir { mode: u32 },
    File { size: u64, mtime: u64, mode: u32 },
    Symlink { target: String },
}

/// What `import` did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ImportSummary {
    pub added: u64,
    pub changed: u64,
    pub removed: u64,
    pub unchanged: u64,
    pub bytes: u64,
}

impl std::fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} added, {} changed, {} removed, {} unchanged, {} bytes written",
            self.added, self.changed, self.removed, self.unchanged, self.bytes
        )
    }
}

fn mtime_ms(meta: &std::fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn walk(root: &Path) -> Result<BTreeMap<String, Local>> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let rd = std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
        for e in rd {
            let e = e.with_context(|| format!("reading {}", dir.display()))?;
            let Some(name) = e.file_name().to_str().map(str::to_owned) else {
                tracing::warn!(path = %e.path().display(), "skipping a name that is not UTF-8");
                continue;
            };
            let path = e.path();
            let meta = std::fs::symlink_metadata(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let drive_path = format!("{rel}/{name}");
            let ft = meta.file_type();
            let mode = meta.permissions().mode() & 0o7777;
            if ft.is_dir() {
                out.insert(drive_path.clone(), Local::Dir { mode });
                stack.push((path, drive_path));
            } else if ft.is_file() {
                out.insert(
                    drive_path,
                    Local::File {
                        size: meta.len(),
                        mtime: mtime_ms(&meta),
                        mode,
                    },
                );
            } else if ft.is_symlink() {
                let target = std::fs::read_link(&path)
                    .with_context(|| format!("reading link {}", path.display()))?;
                let Some(target) = target.to_str() else {
                    tracing::warn!(path = %path.display(), "skipping a link target that is not UTF-8");
                    continue;
                };
                out.insert(
                    drive_path,
                    Local::Symlink {
                        target: target.to_owned(),
                    },
                );
            } else {
                tracing::warn!(path = %path.display(), "skipping (not a file, folder or link)");
            }
        }
    }
    Ok(out)
}

fn drive_ctx(drive: &Drive, path: &str) -> String {
    format!("hyper://{}{}", hex::encode(drive.key()), path)
}

/// Makes `drive` match the folder `src`.
pub async fn import_dir(drive: &Drive, src: &Path) -> Result<ImportSummary> {
    if !src.is_dir() {
        bail!("{} is not a folder", src.display());
    }
    let local = walk(src)?;
    let mut summary = ImportSummary::default();

    // What the drive has now (own entries only: mounted drives are left alone).
    let mut remote: BTreeMap<String, hyperdrive::drive::Stat> = BTreeMap::new();
    let listed = drive
        .readdir_recursive("/", true)
        .await
        .with_context(|| format!("listing {}", drive_ctx(drive, "/")))?;
    for rel in listed {
        let p = format!("/{rel}");
        match drive.lstat(&p).await {
            Ok(st) => {
                remote.insert(p, st);
            }
            Err(DriveError::NotFound { .. }) => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", drive_ctx(drive, &p))),
        }
    }

    // Deletions (and entries whose type changed), children before parents.
    for (p, st) in remote.iter().rev() {
        if st.mount.is_some() {
            continue;
        }
        let keep = match local.get(p) {
            Some(Local::Dir { .. }) => st.is_dir(),
            Some(Local::File { .. }) => st.is_file(),
            Some(Local::Symlink { .. }) => st.is_symlink(),
            None => false,
        };
        if keep {
            continue;
        }
        let r = if st.is_dir() {
            drive.rmdir(p).await
        } else {
            drive.unlink(p).await
        };
        match r {
            Ok(()) | Err(DriveError::NotFound { .. }) => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", drive_ctx(drive, p))),
        }
        if !local.contains_key(p) {
            summary.removed += 1;
        }
    }

    // Adds and changes, parents before children.
    for (p, entry) in &local {
        let existing = match remote.get(p) {
            Some(st) if st.mount.is_none() => {
                let same_kind = match entry {
                    Local::Dir { .. } => st.is_dir(),
                    Local::File { .. } => st.is_file(),
                    Local::Symlink { .. } => st.is_symlink(),
                };
                same_kind.then_some(st)
            }
            Some(_) => {
                tracing::warn!(path = %p, "skipping: a drive is mounted there");
                continue;
            }
            None => None,
        };
        let ctx = || format!("writing {}", drive_ctx(drive, p));
        match entry {
            Local::Dir { mode } => {
                if existing.is_some() {
                    summary.unchanged += 1;
                    continue;
                }
                // A folder implied by files already written exists without a node.
                match drive.stat(p).await {
                    Ok(st) if st.is_dir() => {
                        summary.unchanged += 1;
                        continue;
                    }
                    _ => {}
                }
                let opts = WriteOptions {
                    mode: *mode,
                    ..Default::default()
                };
                drive.mkdir(p, opts).await.with_context(ctx)?;
                summary.added += 1;
            }
            Local::File { size, mtime, mode } => {
                if let Some(st) = existing {
                    if st.size == *size && st.mtime == *mtime {
                        summary.unchanged += 1;
                        continue;
                    }
                }
                let file = src.join(p.trim_start_matches('/'));
                let written = write_file(drive, p, &file, *mode, *mtime)
                    .await
                    .with_context(ctx)?;
                summary.bytes += written;
                if existing.is_some() {
                    summary.changed += 1;
                } else {
                    summary.added += 1;
                }
            }
            Local::Symlink { target } => {
                if let Some(st) = existing {
                    if st.linkname.as_deref() == Some(target.as_str()) {
                        summary.unchanged += 1;
                        continue;
                    }
                    drive.unlink(p).await.with_context(ctx)?;
                    summary.changed += 1;
                } else {
                    summary.added += 1;
                }
                drive.symlink(target, p).await.with_context(ctx)?;
            }
        }
    }
    Ok(summary)
}

async fn write_file(drive: &Drive, p: &str, file: &Path, mode: u32, mtime: u64) -> Result<u64> {
    let mut f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let opts = WriteOptions {
        mode,
        mtime: Some(mtime),
        ..Default::default()
    };
    let mut w = drive.create_writer(p, opts).await?;
    let mut buf = vec![0u8; MAX_BLOCK_SIZE];
    let mut total = 0u64;
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            let n = f
                .read(&mut buf[filled..])
                .with_context(|| format!("reading {}", file.display()))?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 && total > 0 {
            break;
        }
        // An empty file still gets its one empty block, as the reference writes it.
        w.write(&buf[..filled]).await?;
        total += filled as u64;
        if filled < buf.len() {
            break;
        }
    }
    w.finish().await?;
    Ok(total)
}

/// What `export` wrote.
#[derive(Debug, Default, Clone, Copy)]
pub struct ExportSummary {
    pub files: u64,
    pub dirs: u64,
    pub links: u64,
    pub bytes: u64,
}

/// A drive-relative path as a safe relative filesystem path (no `..`, no root).
fn safe_rel(rel: &str) -> Option<PathBuf> {
    let p = Path::new(rel);
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// Copies `path` of `drive` (a file, or a folder recursively, crossing mounts) to `dest`.
pub async fn export_tree(drive: &Drive, path: &str, dest: &Path) -> Result<ExportSummary> {
    let mut s = ExportSummary::default();
    let st = drive
        .stat(path)
        .await
        .with_context(|| format!("{} does not exist", drive_ctx(drive, path)))?;
    if !st.is_dir() {
        let target = if dest.is_dir() {
            let name = path.rsplit('/').next().unwrap_or("file");
            dest.join(name)
        } else {
            dest.to_path_buf()
        };
        s.bytes += export_file(drive, path, &target, &st).await?;
        s.files += 1;
        return Ok(s);
    }
    std::fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
    let entries = drive
        .readdir_recursive(path, false)
        .await
        .with_context(|| format!("listing {}", drive_ctx(drive, path)))?;
    for rel in entries {
        let Some(relpath) = safe_rel(&rel) else {
            tracing::warn!(path = %rel, "skipping an entry whose name leaves the folder");
            continue;
        };
        let full = if path == "/" {
            format!("/{rel}")
        } else {
            format!("{path}/{rel}")
        };
        let st = match drive.lstat(&full).await {
            Ok(st) => st,
            Err(DriveError::NotFound { .. }) => continue,
            Err(e) => {
                return Err(e).with_context(|| format!("reading {}", drive_ctx(drive, &full)))
            }
        };
        let target = dest.join(&relpath);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        if st.is_dir() {
            std::fs::create_dir_all(&target)
                .with_context(|| format!("creating {}", target.display()))?;
            s.dirs += 1;
        } else if st.is_symlink() {
            let link = st.linkname.clone().unwrap_or_default();
            if std::fs::symlink_metadata(&target).is_ok() {
                std::fs::remove_file(&target)
                    .with_context(|| format!("replacing {}", target.display()))?;
            }
            std::os::unix::fs::symlink(&link, &target)
                .with_context(|| format!("creating link {}", target.display()))?;
            s.links += 1;
        } else if st.is_file() {
            s.bytes += export_file(drive, &full, &target, &st).await?;
            s.files += 1;
        }
    }
    Ok(s)
}

async fn export_file(
    drive: &Drive,
    path: &str,
    target: &Path,
    st: &hyperdrive::drive::Stat,
) -> Result<u64> {
    use std::os::unix::fs::PermissionsExt;
    let h = drive
        .open_file(path)
        .await
        .with_context(|| format!("opening {}", drive_ctx(drive, path)))?;
    let mut f =
        std::fs::File::create(target).with_context(|| format!("creating {}", target.display()))?;
    let mut off = 0u64;
    while off < st.size {
        let n = (st.size - off).min(1 << 20);
        let chunk = h
            .read(off, n)
            .await
            .with_context(|| format!("reading {}", drive_ctx(drive, path)))?;
        if chunk.is_empty() {
            bail!(
                "{} ended at byte {off} of {}",
                drive_ctx(drive, path),
                st.size
            );
        }
        f.write_all(&chunk)
            .with_context(|| format!("writing {}", target.display()))?;
        off += chunk.len() as u64;
    }
    let perm = st.mode & 0o777;
    if perm != 0 {
        let _ = f.set_permissions(std::fs::Permissions::from_mode(perm));
    }
    if st.mtime > 0 {
        let _ = f.set_modified(UNIX_EPOCH + Duration::from_millis(st.mtime));
    }
    Ok(off)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_rel_refuses_escapes() {
        assert_eq!(safe_rel("a/b"), Some(PathBuf::from("a/b")));
        assert_eq!(safe_rel("../x"), None);
        assert_eq!(safe_rel("/etc"), None);
        assert_eq!(safe_rel(""), None);
    }
}
