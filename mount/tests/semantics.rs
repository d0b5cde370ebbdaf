//! Walks the table in docs/SEMANTICS.md against real mounts: every row, every column.

mod common;

use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::Fixture;
use hypermount_fs::{HyperFsOptions, MemoryBackend};

const COLUMNS: [&str; 4] = ["read-only", "sparse", "mirrored", "writable"];

struct Row {
    id: String,
    cells: Vec<String>,
}

fn parse_table() -> Vec<Row> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/SEMANTICS.md");
    let text = fs::read_to_string(&path).expect("read SEMANTICS.md");
    let mut rows = Vec::new();
    let mut header_ok = false;
    for line in text.lines() {
        let cols: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split(" | ")
            .map(str::trim)
            .collect();
        if cols.first() == Some(&"id") {
            assert_eq!(&cols[2..], COLUMNS, "table header changed");
            header_ok = true;
            continue;
        }
        if !line.starts_with("| `") {
            continue;
        }
        assert_eq!(cols.len(), 6, "row has {} columns: {line}", cols.len());
        rows.push(Row {
            id: cols[0].trim_matches('`').to_string(),
            cells: cols[2..].iter().map(|s| s.to_string()).collect(),
        });
    }
    assert!(header_ok && rows.len() > 30, "table not found");
    rows
}

fn errno_name(e: i32) -> String {
    let names = [
        (libc::ENOENT, "ENOENT"),
        (libc::ENOTDIR, "ENOTDIR"),
        (libc::EISDIR, "EISDIR"),
        (libc::EEXIST, "EEXIST"),
        (libc::ENOTEMPTY, "ENOTEMPTY"),
        (libc::EROFS, "EROFS"),
        (libc::EINVAL, "EINVAL"),
        (libc::ENODATA, "ENODATA"),
        (libc::EPERM, "EPERM"),
        (libc::EACCES, "EACCES"),
        (libc::ETIMEDOUT, "ETIMEDOUT"),
        (libc::EIO, "EIO"),
        (libc::ENOSYS, "ENOSYS"),
        (libc::EOPNOTSUPP, "EOPNOTSUPP"),
        (libc::EBADF, "EBADF"),
    ];
    names
        .iter()
        .find(|(n, _)| *n == e)
        .map(|(_, s)| s.to_string())
        .unwrap_or_else(|| format!("errno {e}"))
}

type Res = Result<(), i32>;

fn io(r: std::io::Result<impl Sized>) -> Res {
    r.map(|_| ()).map_err(|e| e.raw_os_error().unwrap_or(-1))
}

/// A wrong result that is not an error: reported as a distinct pseudo-errno.
const WRONG: i32 = -1000;

fn check(cond: bool) -> Res {
    if cond {
        Ok(())
    } else {
        Err(WRONG)
    }
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("cstr")
}

fn last() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
}

fn rc(r: libc::c_int) -> Res {
    if r == 0 {
        Ok(())
    } else {
        Err(last())
    }
}

fn read_all(p: &Path) -> Result<Vec<u8>, i32> {
    let mut v = Vec::new();
    fs::File::open(p)
        .and_then(|mut f| f.read_to_end(&mut v))
        .map_err(|e| e.raw_os_error().unwrap_or(-1))?;
    Ok(v)
}

fn uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0)
}

fn run(id: &str, b: &Path) -> Res {
    let file = b.join("dir/file.txt");
    let f = cstr(&file);
    match id {
        "stat-file" => io(fs::metadata(&file)),
        "stat-missing" => io(fs::metadata(b.join("missing"))),
        "read-file" => check(read_all(&file)? == b"hello"),
        "read-timeout" => read_all(&file).map(|_| ()),
        "readdir" => {
            let mut names: Vec<_> = fs::read_dir(b.join("dir"))
                .map_err(|e| e.raw_os_error().unwrap_or(-1))?
                .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect();
            names.sort();
            check(names == ["file.txt", "sub"])
        }
        "readdir-file" => io(fs::read_dir(&file)),
        "readlink" => check(
            fs::read_link(b.join("link")).map_err(|e| e.raw_os_error().unwrap_or(-1))?
                == Path::new("dir/file.txt"),
        ),
        "readlink-file" => io(fs::read_link(&file)),
        "getxattr" | "getxattr-missing" | "getxattr-acl" | "getxattr-label" => {
            let name = CString::new(match id {
                "getxattr" => "user.k",
                "getxattr-acl" => "system.posix_acl_access",
                "getxattr-label" => "security.selinux",
                _ => "user.none",
            })
            .expect("cstr");
            let mut buf = [0u8; 16];
            // SAFETY: valid C strings and a buffer whose length is passed with it.
            let n = unsafe {
                libc::getxattr(
                    f.as_ptr(),
                    name.as_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            };
            if n < 0 {
                return Err(last());
            }
            check(&buf[..n as usize] == b"v")
        }
        "listxattr" => {
            let mut buf = [0u8; 64];
            // SAFETY: valid C string and a buffer whose length is passed with it.
            let n = unsafe { libc::listxattr(f.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                return Err(last());
            }
            check(&buf[..n as usize] == b"user.k\0")
        }
        "statfs" => {
            // SAFETY: statvfs is plain old data; zeroed is a valid value to overwrite.
            let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
            // SAFETY: valid C string and a pointer to a live statvfs.
            rc(unsafe { libc::statvfs(cstr(b).as_ptr(), &mut st) })
        }
        // SAFETY: valid C string.
        "access-write" => rc(unsafe { libc::access(f.as_ptr(), libc::W_OK) }),
        "open-write" => io(OpenOptions::new().write(true).open(&file)),
        "create" => io(OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(b.join("new"))),
        "create-excl-existing" => io(OpenOptions::new().write(true).create_new(true).open(&file)),
        "write-read-back" => {
            io(fs::write(b.join("new"), b"abc"))?;
            check(read_all(&b.join("new"))? == b"abc")
        }
        "append" => {
            let mut h = OpenOptions::new()
                .append(true)
                .open(&file)
                .map_err(|e| e.raw_os_error().unwrap_or(-1))?;
            io(h.write_all(b"!"))?;
            drop(h);
            check(read_all(&file)? == b"hello!")
        }
        "truncate" => {
            // SAFETY: valid C string.
            rc(unsafe { libc::truncate(f.as_ptr(), 2) })?;
            check(read_all(&file)? == b"he")
        }
        "mkdir" => io(fs::create_dir(b.join("newdir"))),
        "mkdir-existing" => io(fs::create_dir(b.join("dir"))),
        "rmdir-empty" => io(fs::remove_dir(b.join("empty"))),
        "rmdir-nonempty" => io(fs::remove_dir(b.join("dir"))),
        "rmdir-file" => io(fs::remove_dir(&file)),
        "unlink" => io(fs::remove_file(&file)),
        "unlink-dir" => io(fs::remove_file(b.join("dir"))),
        "unlink-missing" => io(fs::remove_file(b.join("missing"))),
        "rename-file" => io(fs::rename(&file, b.join("dir/moved"))),
        "rename-dir" => {
            io(fs::rename(b.join("dir"), b.join("dir2")))?;
            check(read_all(&b.join("dir2/file.txt"))? == b"hello")
        }
        "rename-over-nonempty" => io(fs::rename(b.join("empty"), b.join("dir"))),
        "rename-noreplace" => {
            let (from, to) = (cstr(&b.join("empty")), cstr(&b.join("dir")));
            // SAFETY: valid C strings; AT_FDCWD with absolute paths.
            let r = unsafe {
                libc::renameat2(
                    libc::AT_FDCWD,
                    from.as_ptr(),
                    libc::AT_FDCWD,
                    to.as_ptr(),
                    libc::RENAME_NOREPLACE,
                )
            };
            rc(r)
        }
        "symlink" => io(std::os::unix::fs::symlink(
            "dir/file.txt",
            b.join("newlink"),
        )),
        "hardlink" => io(fs::hard_link(&file, b.join("hard"))),
        "mkfifo" => {
            // SAFETY: valid C string.
            rc(unsafe { libc::mkfifo(cstr(&b.join("fifo")).as_ptr(), 0o644) })
        }
        "chmod" => {
            use std::os::unix::fs::PermissionsExt;
            io(fs::set_permissions(
                &file,
                fs::Permissions::from_mode(0o600),
            ))?;
            use std::os::unix::fs::MetadataExt;
            check(fs::metadata(&file).map(|m| m.mode() & 0o7777).ok() == Some(0o600))
        }
        "chown-self" => io(std::os::unix::fs::chown(&file, Some(uid()), None)),
        "chown-other" => io(std::os::unix::fs::chown(&file, Some(uid() + 1), None)),
        "utimens" => {
            let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
            let times = [
                libc::timespec {
                    tv_sec: 1_000_000_000,
                    tv_nsec: 0,
                },
                libc::timespec {
                    tv_sec: 1_000_000_000,
                    tv_nsec: 0,
                },
            ];
            // SAFETY: valid C string and a two-element timespec array.
            rc(unsafe { libc::utimensat(libc::AT_FDCWD, f.as_ptr(), times.as_ptr(), 0) })?;
            check(fs::metadata(&file).and_then(|m| m.modified()).ok() == Some(t))
        }
        "setxattr" => {
            let name = CString::new("user.n").expect("cstr");
            // SAFETY: valid C strings and a value buffer with its length.
            rc(unsafe { libc::setxattr(f.as_ptr(), name.as_ptr(), b"1".as_ptr().cast(), 1, 0) })
        }
        "removexattr" | "removexattr-missing" => {
            let name = CString::new(if id == "removexattr" {
                "user.k"
            } else {
                "user.none"
            })
            .expect("cstr");
            // SAFETY: valid C strings.
            rc(unsafe { libc::removexattr(f.as_ptr(), name.as_ptr()) })
        }
        other => panic!("SEMANTICS.md row `{other}` has no test: add it to semantics.rs"),
    }
}

fn seeded(writable: bool, ids: &[&str]) -> Arc<MemoryBackend> {
    let b = Arc::new(MemoryBackend::new(writable));
    for id in ids {
        b.insert_file(&format!("/{id}/dir/file.txt"), b"hello", 0o644);
        b.insert_xattr(&format!("/{id}/dir/file.txt"), "user.k", b"v");
        b.insert_dir(&format!("/{id}/dir/sub"));
        b.insert_dir(&format!("/{id}/empty"));
        b.insert_symlink(&format!("/{id}/link"), "dir/file.txt");
    }
    b
}

#[test]
fn semantics_table_matches_behaviour() {
    let rows = parse_table();
    let mut failures = Vec::new();
    for (col, name) in COLUMNS.iter().enumerate() {
        let ids: Vec<&str> = rows
            .iter()
            .filter(|r| r.cells[col] != "n/a" && r.id != "read-timeout")
            .map(|r| r.id.as_str())
            .collect();
        let fx = Fixture::live(seeded(*name == "writable", &ids));
        for id in &ids {
            let row = rows.iter().find(|r| r.id == *id).expect("row");
            let got = match run(id, &fx.mnt().join(id)) {
                Ok(()) => "ok".to_string(),
                Err(WRONG) => "wrong result".to_string(),
                Err(e) => errno_name(e),
            };
            if got != row.cells[col] {
                failures.push(format!(
                    "{id} on {name}: doc says {}, got {got}",
                    row.cells[col]
                ));
            }
        }
        fx.finish();
    }

    // The sparse timeout row: a read that outlives the operation timeout.
    let row = rows
        .iter()
        .find(|r| r.id == "read-timeout")
        .expect("read-timeout row");
    for (col, name) in COLUMNS.iter().enumerate() {
        if row.cells[col] == "n/a" {
            continue;
        }
        let b = seeded(false, &["read-timeout"]);
        let opts = HyperFsOptions {
            op_timeout: Duration::from_millis(200),
            ..HyperFsOptions::live()
        };
        let fx = Fixture::new(b.clone(), opts);
        let base = fx.mnt().join("read-timeout");
        fs::metadata(base.join("dir/file.txt")).expect("stat before delay");
        b.set_delay("/read-timeout/dir/file.txt", Duration::from_secs(1));
        let got = match run("read-timeout", &base) {
            Ok(()) => "ok".to_string(),
            Err(e) => errno_name(e),
        };
        if got != row.cells[col] {
            failures.push(format!(
                "read-timeout on {name}: doc says {}, got {got}",
                row.cells[col]
            ));
        }
        b.set_delay("/read-timeout/dir/file.txt", Duration::ZERO);
        fx.finish();
    }
    assert!(
        failures.is_empty(),
        "SEMANTICS.md disagrees:\n{}",
        failures.join("\n")
    );
}

/// The same fixture in a hyperdrive (all rows' trees in one drive).
async fn seeded_drive(ids: &[&str]) -> hyperdrive::drive::Drive {
    use hyperdrive::drive::{Drive, DriveOptions, MemoryProvider, WriteOptions};
    let provider = Arc::new(MemoryProvider::new([9; 32]));
    let d = Drive::named(provider, "default", DriveOptions::default())
        .await
        .expect("drive");
    let opts = || WriteOptions {
        mode: 0o644,
        ..WriteOptions::default()
    };
    for id in ids {
        let dir = WriteOptions {
            mode: 0o755,
            ..WriteOptions::default()
        };
        d.mkdir(&format!("/{id}"), dir.clone())
            .await
            .expect("mkdir");
        d.mkdir(&format!("/{id}/dir"), dir.clone())
            .await
            .expect("mkdir");
        let f = format!("/{id}/dir/file.txt");
        d.write_file(&f, b"hello", opts()).await.expect("write");
        d.set_xattr(&f, "user.k", b"v").await.expect("xattr");
        d.mkdir(&format!("/{id}/dir/sub"), dir.clone())
            .await
            .expect("mkdir");
        d.mkdir(&format!("/{id}/empty"), dir).await.expect("mkdir");
        d.symlink("dir/file.txt", &format!("/{id}/link"))
            .await
            .expect("symlink");
    }
    d
}

/// The read-only and writable columns against the hyperdrive adapter (a read-only
/// mount of a drive, and a writable one): the drive must behave as the table says.
#[test]
fn semantics_table_matches_drive_backend() {
    use hypermount_mount::{mount_drive, DriveMountOptions};
    let rows = parse_table();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut failures = Vec::new();
    for (col, name) in COLUMNS.iter().enumerate() {
        if *name != "read-only" && *name != "writable" {
            continue;
        }
        let ids: Vec<&str> = rows
            .iter()
            .filter(|r| r.cells[col] != "n/a" && r.id != "read-timeout")
            .map(|r| r.id.as_str())
            .collect();
        let drive = rt.block_on(seeded_drive(&ids));
        let dir = tempfile::tempdir().expect("tmp");
        let opts = DriveMountOptions {
            read_only: *name == "read-only",
            ..DriveMountOptions::default()
        };
        let m = mount_drive(drive, dir.path(), &opts, rt.handle()).expect("mount");
        for id in &ids {
            let row = rows.iter().find(|r| r.id == *id).expect("row");
            let got = match run(id, &dir.path().join(id)) {
                Ok(()) => "ok".to_string(),
                Err(WRONG) => "wrong result".to_string(),
                Err(e) => errno_name(e),
            };
            if got != row.cells[col] {
                failures.push(format!(
                    "{id} on {name} drive: doc says {}, got {got}",
                    row.cells[col]
                ));
            }
        }
        m.unmount().expect("unmount");
    }
    assert!(
        failures.is_empty(),
        "the drive adapter disagrees with SEMANTICS.md:\n{}",
        failures.join("\n")
    );
}
