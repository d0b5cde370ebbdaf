//! Helpers for the command-line tests: run the built `hypermount` binary, keep
//! long-running ones (seed, mirror) that are killed by pid when the test ends, and
//! build sample folders.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use hypermount_mount::{is_mount_point, is_stale, lazy_unmount};

pub const BIN: &str = env!("CARGO_BIN_EXE_hypermount");

/// `hypermount --storage DIR ARGS…`, with the environment cleared of storage hints and
/// the DHT off (`HYPERMOUNT_NO_DHT=1`): no test may reach the public bootstrap nodes.
/// Tests that use the DHT pass `--bootstrap 127.0.0.1:PORT` (see [`dht_args`]), which
/// turns it back on for that command only.
pub fn cmd(storage: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.arg("--storage")
        .arg(storage)
        .args(args)
        .env_remove("HYPERMOUNT_STORAGE")
        .env_remove("HYPERMOUNT_LOG")
        .env_remove("HYPERMOUNT_BOOTSTRAP")
        .stdin(Stdio::null());
    if !args.iter().any(|a| a.starts_with("--bootstrap")) {
        c.env("HYPERMOUNT_NO_DHT", "1");
    } else {
        assert!(
            args.windows(2)
                .any(|w| w[0] == "--bootstrap" && w[1].starts_with("127.")),
            "DHT tests must name a loopback bootstrap: {args:?}"
        );
        c.env_remove("HYPERMOUNT_NO_DHT");
    }
    c
}

/// `--bootstrap 127.0.0.1:PORT` followed by `args`.
pub fn dht_args<'a>(boot: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--bootstrap", boot];
    v.extend_from_slice(args);
    v
}

/// Runs to completion (bounded: killed after 120 s).
pub fn run(storage: &Path, args: &[&str]) -> Output {
    let child = cmd(storage, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hypermount");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(out) => out.expect("wait for hypermount"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("hypermount {args:?} did not finish within 120 s");
        }
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs and asserts success; returns stdout.
pub fn ok(storage: &Path, args: &[&str]) -> String {
    let o = run(storage, args);
    assert!(
        o.status.success(),
        "hypermount {args:?} failed: {}\nstdout: {}",
        stderr(&o),
        stdout(&o)
    );
    stdout(&o)
}

/// Runs and asserts exit status 1 with one error line containing every `needle`, and
/// no panic or backtrace.
pub fn fails(storage: &Path, args: &[&str], needles: &[&str]) -> String {
    let o = run(storage, args);
    let err = stderr(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "hypermount {args:?} should fail with 1: stderr {err} stdout {}",
        stdout(&o)
    );
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    for n in needles {
        assert!(err.contains(n), "{args:?}: stderr lacks {n:?}: {err}");
    }
    err
}

/// A background `hypermount` whose stdout lines can be awaited; killed by pid on drop.
pub struct Bg {
    child: Option<Child>,
    lines: Receiver<String>,
    pub what: String,
}

impl Bg {
    pub fn spawn(storage: &Path, args: &[&str]) -> Bg {
        let mut child = cmd(storage, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn hypermount");
        let out = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Bg {
            child: Some(child),
            lines,
            what: format!("{args:?}"),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// The next stdout line that starts with `prefix`.
    pub fn line_starting(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => return l,
                Ok(_) => {}
                Err(e) => panic!("{}: no line starting {prefix:?}: {e}", self.what),
            }
        }
    }

    /// `listening on ADDR` → ADDR.
    pub fn listening(&mut self) -> String {
        let l = self.line_starting("listening on ", Duration::from_secs(60));
        l.trim_start_matches("listening on ").trim().to_string()
    }

    /// SIGTERM, then wait; returns the exit code (kills after 10 s).
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(s)) = child.try_wait() {
                return s.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A sample folder: text, an empty file, a nested folder, an empty folder, a symlink
/// and a file spanning several 512 KiB blocks.
pub fn sample_tree(root: &Path) -> PathBuf {
    let src = root.join("src");
    std::fs::create_dir_all(src.join("docs/deep")).unwrap();
    std::fs::create_dir_all(src.join("empty")).unwrap();
    std::fs::write(src.join("hello.txt"), b"hello, drive\n").unwrap();
    std::fs::write(src.join("zero.bin"), b"").unwrap();
    std::fs::write(src.join("docs/readme.md"), b"# readme\n").unwrap();
    let big: Vec<u8> = (0..1_300_000u32).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(src.join("docs/deep/big.bin"), big).unwrap();
    std::os::unix::fs::symlink("hello.txt", src.join("link")).unwrap();
    src
}

/// `diff -r A B` is clean.
pub fn assert_same_tree(a: &Path, b: &Path) {
    let o = Command::new("diff")
        .arg("-r")
        .arg("--no-dereference")
        .arg(a)
        .arg(b)
        .output()
        .expect("run diff");
    assert!(
        o.status.success(),
        "diff -r {} {}:\n{}{}",
        a.display(),
        b.display(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The last non-empty stdout line (create prints the key there).
pub fn last_line(s: &str) -> String {
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string()
}

/// A mountpoint folder that is unmounted (lazily) when the test ends, however it ends.
pub struct MountDir(PathBuf);

impl MountDir {
    pub fn new(root: &Path, name: &str) -> MountDir {
        let p = root.join(name);
        std::fs::create_dir_all(&p).unwrap();
        MountDir(p.canonicalize().unwrap())
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn s(&self) -> &str {
        self.0.to_str().unwrap()
    }
    pub fn mounted(&self) -> bool {
        is_mount_point(&self.0).unwrap()
    }
}

impl Drop for MountDir {
    fn drop(&mut self) {
        for _ in 0..5 {
            if is_stale(&self.0) || is_mount_point(&self.0).unwrap_or(false) {
                let _ = lazy_unmount(&self.0);
            } else {
                break;
            }
        }
    }
}

/// A process known only by pid (a daemon): SIGKILLed on drop if still there.
pub struct PidGuard(pub u32);

impl Drop for PidGuard {
    fn drop(&mut self) {
        if alive(self.0) {
            let _ = Command::new("kill")
                .args(["-KILL", &self.0.to_string()])
                .status();
        }
    }
}

/// Running and not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let state = s.rfind(')').and_then(|i| s[i + 1..].trim().chars().next());
            !matches!(state, Some('Z') | Some('X') | None)
        }
        Err(_) => false,
    }
}

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A foreground `hypermount mount …`, waited for until it prints `mounted`.
pub fn mount_fg(storage: &Path, args: &[&str]) -> Bg {
    let mut all = vec!["mount"];
    all.extend_from_slice(args);
    let mut bg = Bg::spawn(storage, &all);
    bg.line_starting("mounted ", Duration::from_secs(60));
    bg
}
