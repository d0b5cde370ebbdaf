//! Helpers for integration tests that run the Node.js reference (hypercore 9, hyperdrive 10,
//! hyperswarm 2) next to our code: find or install it, run a script with a timeout and parse
//! its JSON, and keep long-running peers (e.g. `swarm-peer.js seed`) that are killed when
//! the test ends, whether it passes or panics.
//!
//! Include it from a test file with `mod common;`. Each test binary uses only some helpers,
//! hence the `dead_code` allowance.
//!
//! The scripts live in `tests/js/`; `swarm-peer.js` lives in the installed reference.
#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Default bound for one short Node script (open, a few thousand blocks, close).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// How much of a child's stderr we keep for panic messages (the tail is what matters).
const STDERR_KEEP: usize = 64 * 1024;

/// Lines of stdout buffered from a long-running child before its reader thread waits.
const STDOUT_LINES: usize = 1024;

/// The repository root (the root package's manifest dir).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/js/<name>`.
pub fn js_script(name: &str) -> PathBuf {
    repo_root().join("tests").join("js").join(name)
}

/// The installed reference folder (holds `node_modules/` and `swarm-peer.js`).
///
/// `$HYPERMOUNT_REFERENCE` if set, else `<repo>/target/reference`. When that has no
/// `node_modules`, runs `scripts/install-reference.sh` once per process, under a file lock
/// so parallel test binaries do not install at the same time (the script locks too).
pub fn reference_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("HYPERMOUNT_REFERENCE") {
            let dir = PathBuf::from(dir);
            if dir.join("node_modules").is_dir() {
                return dir;
            }
            panic!(
                "HYPERMOUNT_REFERENCE={} has no node_modules; run scripts/install-reference.sh",
                dir.display()
            );
        }
        let dir = repo_root().join("target").join("reference");
        if !dir.join("node_modules").is_dir() {
            install_reference();
        }
        assert!(
            dir.join("node_modules").is_dir(),
            "scripts/install-reference.sh did not produce {}",
            dir.join("node_modules").display()
        );
        dir
    })
    .clone()
}

fn install_reference() {
    let target = repo_root().join("target");
    std::fs::create_dir_all(&target).expect("create target/");
    let lock_path = target.join(".reference-rust.lock");
    let lock = File::create(&lock_path)
        .unwrap_or_else(|e| panic!("open lock {}: {e}", lock_path.display()));
    lock.lock()
        .unwrap_or_else(|e| panic!("lock {}: {e}", lock_path.display()));
    let script = repo_root().join("scripts").join("install-reference.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed ({}):\n{}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // The lock is released when `lock` is dropped.
}

/// `<reference>/node_modules`, the value for `NODE_PATH`.
pub fn node_path() -> PathBuf {
    reference_dir().join("node_modules")
}

/// `<reference>/swarm-peer.js`.
pub fn swarm_peer() -> PathBuf {
    reference_dir().join("swarm-peer.js")
}

/// A `node SCRIPT ARGS…` command with `NODE_PATH` pointing at the reference.
pub fn node_command<S: AsRef<std::ffi::OsStr>>(script: &Path, args: &[S]) -> Command {
    let mut cmd = Command::new("node");
    cmd.arg(script).args(args).env("NODE_PATH", node_path());
    cmd
}

/// A child process that is killed (by its pid) and reaped when dropped, so a failing test
/// never leaves a Node process behind.
pub struct ChildGuard {
    child: Option<Child>,
}

impl ChildGuard {
    pub fn new(child: Child) -> Self {
        ChildGuard { child: Some(child) }
    }

    pub fn id(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    pub fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("child already taken")
    }

    /// Waits up to `timeout` for the child to exit; kills it and returns `None` if it
    /// does not.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child_mut();
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return None;
                }
                Ok(None) => thread::sleep(Duration::from_millis(10)),
                Err(e) => panic!("waiting for pid {}: {e}", child.id()),
            }
        }
    }

    /// Sends SIGTERM (so Node peers can unannounce and exit cleanly), waits up to `grace`,
    /// then kills. Returns the exit status if the child exited on its own.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        let pid = self.id();
        if let Ok(Some(status)) = self.child_mut().try_wait() {
            return Some(status);
        }
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        self.wait_timeout(grace)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

/// Output of a finished Node script.
#[derive(Debug)]
pub struct NodeOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl NodeOutput {
    /// The last non-empty stdout line parsed as JSON; panics with stdout and stderr if it
    /// is not JSON.
    pub fn json(&self) -> Value {
        let line = self
            .stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_else(|| panic!("no output on stdout; stderr:\n{}", self.stderr));
        serde_json::from_str(line).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

fn spawn_reader<R: Read + Send + 'static>(mut r: R) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// Runs `node SCRIPT ARGS…` to completion with a timeout (the child is killed when it runs
/// out). Does not check the exit status; see [`run_node_ok`] and [`run_node_json`].
pub fn run_node<S: AsRef<std::ffi::OsStr>>(
    script: &Path,
    args: &[S],
    timeout: Duration,
) -> NodeOutput {
    let mut cmd = node_command(script, args);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!(
            "spawn node {}: {e} (is Node.js installed?)",
            script.display()
        )
    });
    let out = spawn_reader(child.stdout.take().expect("piped stdout"));
    let err = spawn_reader(child.stderr.take().expect("piped stderr"));
    let mut guard = ChildGuard::new(child);
    let status = guard.wait_timeout(timeout);
    let stdout = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
    match status {
        Some(status) => NodeOutput {
            status,
            stdout,
            stderr,
        },
        None => panic!(
            "node {} {:?} timed out after {timeout:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            script.display(),
            args.iter().map(|a| a.as_ref()).collect::<Vec<_>>()
        ),
    }
}

/// [`run_node`], then asserts exit status 0 (stderr in the panic message).
pub fn run_node_ok<S: AsRef<std::ffi::OsStr>>(
    script: &Path,
    args: &[S],
    timeout: Duration,
) -> NodeOutput {
    let out = run_node(script, args, timeout);
    assert!(
        out.status.success(),
        "node {} {:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        script.display(),
        args.iter().map(|a| a.as_ref()).collect::<Vec<_>>(),
        out.status,
        out.stdout,
        out.stderr
    );
    out
}

/// [`run_node_ok`] and parse the last stdout line as JSON.
pub fn run_node_json<S: AsRef<std::ffi::OsStr>>(
    script: &Path,
    args: &[S],
    timeout: Duration,
) -> Value {
    run_node_ok(script, args, timeout).json()
}

/// A long-running Node process (a seed, a bootstrap node, a listening clone). Stdout lines
/// arrive on a bounded channel; stderr is kept (its last 64 KiB) for error messages. Killed
/// on drop.
pub struct NodeProcess {
    guard: ChildGuard,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    what: String,
}

/// Starts `node SCRIPT ARGS…` in the background.
pub fn spawn_node<S: AsRef<std::ffi::OsStr>>(script: &Path, args: &[S]) -> NodeProcess {
    let what = format!(
        "node {} {:?}",
        script.display(),
        args.iter().map(|a| a.as_ref()).collect::<Vec<_>>()
    );
    let mut cmd = node_command(script, args);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e} (is Node.js installed?)"));
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr_pipe = child.stderr.take().expect("piped stderr");
    let (tx, lines) = mpsc::sync_channel(STDOUT_LINES);
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let stderr = Arc::new(Mutex::new(String::new()));
    let keep = Arc::clone(&stderr);
    thread::spawn(move || {
        for line in BufReader::new(stderr_pipe).lines() {
            let Ok(line) = line else { break };
            let mut s = keep.lock().unwrap_or_else(|p| p.into_inner());
            s.push_str(&line);
            s.push('\n');
            if s.len() > STDERR_KEEP {
                let cut = s.len() - STDERR_KEEP / 2;
                let cut = (cut..s.len())
                    .find(|&i| s.is_char_boundary(i))
                    .unwrap_or(s.len());
                s.drain(..cut);
            }
        }
    });
    NodeProcess {
        guard: ChildGuard::new(child),
        lines,
        stderr,
        what,
    }
}

impl NodeProcess {
    pub fn pid(&self) -> u32 {
        self.guard.id()
    }

    /// What stderr said so far (its tail).
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The next stdout line, waiting at most `timeout`. Panics (with stderr) on timeout or
    /// if the process closed stdout.
    pub fn next_line(&mut self, timeout: Duration) -> String {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!(
                "{}: no stdout line within {timeout:?}\nstderr:\n{}",
                self.what,
                self.stderr()
            ),
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.guard.wait_timeout(Duration::from_secs(5));
                // Give the stderr reader a moment to drain the pipe.
                thread::sleep(Duration::from_millis(50));
                panic!(
                    "{}: exited ({status:?}) before printing a line\nstderr:\n{}",
                    self.what,
                    self.stderr()
                )
            }
        }
    }

    /// The next stdout line that parses as JSON (other lines, e.g. `ready`, are skipped).
    pub fn next_json(&mut self, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.next_line(left);
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                return v;
            }
        }
    }

    /// SIGTERM, then kill after `grace`. Returns the exit status if it exited by itself.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.guard.terminate(grace)
    }
}

/// Length of block `i` as `tests/js/blocks.js` makes it: `size` bytes, or with
/// `size == None` ("var") `1 + (i * 7919) % 4096`.
pub fn block_len(i: u64, size: Option<usize>) -> usize {
    match size {
        Some(n) => n,
        None => 1 + ((i * 7919) % 4096) as usize,
    }
}

/// Content of block `i` as `tests/js/blocks.js` makes it:
/// `byte[j] = (i*31 + j*7 + seed[(i+j) % seed.len()]) mod 256` (seed term 0 if empty).
pub fn block_content(i: u64, size: Option<usize>, seed: &[u8]) -> Vec<u8> {
    let len = block_len(i, size);
    let base = (i % 256) * 31;
    (0..len as u64)
        .map(|j| {
            let s = if seed.is_empty() {
                0
            } else {
                u64::from(seed[((i + j) % seed.len() as u64) as usize])
            };
            ((base + j * 7 + s) % 256) as u8
        })
        .collect()
}

/// Lowercase hex sha256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The `digest` field of `core-read.js`: sha256 over `u64be(len) ‖ block` for each block.
pub fn blocks_digest<'a, I: IntoIterator<Item = &'a [u8]>>(blocks: I) -> String {
    let mut h = Sha256::new();
    for b in blocks {
        h.update((b.len() as u64).to_be_bytes());
        h.update(b);
    }
    hex::encode(h.finalize())
}

/// A string field of a JSON object, or a panic naming the field and the object.
pub fn json_str<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get(field)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string field {field:?} in {v}"))
}

/// An unsigned integer field of a JSON object, or a panic naming the field and the object.
pub fn json_u64(v: &Value, field: &str) -> u64 {
    v.get(field)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no integer field {field:?} in {v}"))
}
