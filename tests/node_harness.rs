//! Smoke tests for the Node interop harness (`tests/common`, `tests/js`): the reference runs,
//! its JSON is read back, the deterministic block contents agree between JS and Rust, the
//! checks in `core-read.js` catch a corrupted feed, and timeouts and long-running children
//! are handled.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn append(dir: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let mut a = vec![dir.to_str().expect("utf-8 temp path")];
    a.extend_from_slice(args);
    run_node_json(&js_script("core-append.js"), &a, DEFAULT_TIMEOUT)
}

#[test]
fn append_then_read_three_blocks() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("feed");
    let seed = [0xa5u8, 0x01, 0x7f];
    let written = append(
        &dir,
        &[
            "--blocks", "3", "--batch", "2", "--size", "var", "--seed", "a5017f",
        ],
    );

    let expected: Vec<Vec<u8>> = (0..3).map(|i| block_content(i, None, &seed)).collect();
    let total: u64 = expected.iter().map(|b| b.len() as u64).sum();
    assert_eq!(json_u64(&written, "length"), 3);
    assert_eq!(json_u64(&written, "byteLength"), total);

    let key: [u8; 32] = hex::decode(json_str(&written, "key"))
        .unwrap()
        .try_into()
        .expect("32-byte key");
    assert_eq!(
        json_str(&written, "discoveryKey"),
        hex::encode(hyperdrive::core::discovery_key(&key))
    );
    assert_eq!(std::fs::read(dir.join("key")).unwrap(), key);

    let read = run_node_json(
        &js_script("core-read.js"),
        &[dir.to_str().unwrap()],
        DEFAULT_TIMEOUT,
    );
    assert_eq!(json_str(&read, "key"), json_str(&written, "key"));
    assert_eq!(json_u64(&read, "length"), 3);
    assert_eq!(json_u64(&read, "byteLength"), total);
    assert_eq!(read["writable"], serde_json::Value::Bool(true));
    assert_eq!(json_u64(&read, "leavesVerified"), 3);
    // Two appends (blocks 0-1, then block 2): one signature each.
    assert_eq!(json_u64(&read, "signaturesVerified"), 2);
    let hashes: Vec<String> = read["blocks"]
        .as_array()
        .expect("blocks list")
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let want: Vec<String> = expected.iter().map(|b| sha256_hex(b)).collect();
    assert_eq!(hashes, want);
    assert_eq!(
        json_str(&read, "digest"),
        blocks_digest(expected.iter().map(Vec::as_slice))
    );

    // The data file is the blocks back to back.
    assert_eq!(std::fs::read(dir.join("data")).unwrap(), expected.concat());
}

#[test]
fn fixed_size_blocks_and_appending_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("feed");
    append(&dir, &["--blocks", "5", "--batch", "5", "--size", "100"]);
    let again = append(&dir, &["--blocks", "2", "--size", "100"]);
    assert_eq!(json_u64(&again, "length"), 7);
    let read = run_node_json(
        &js_script("core-read.js"),
        &[dir.to_str().unwrap(), "--hashes", "rolling"],
        DEFAULT_TIMEOUT,
    );
    assert!(read.get("blocks").is_none(), "rolling mode lists no blocks");
    let expected: Vec<Vec<u8>> = (0..7).map(|i| block_content(i, Some(100), &[])).collect();
    assert_eq!(
        json_str(&read, "digest"),
        blocks_digest(expected.iter().map(Vec::as_slice))
    );
    assert_eq!(json_u64(&read, "signaturesVerified"), 3);
}

#[test]
fn corrupted_block_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("feed");
    append(&dir, &["--blocks", "4", "--size", "16"]);
    let data = dir.join("data");
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[16 * 2 + 3] ^= 0x40;
    std::fs::write(&data, bytes).unwrap();
    let out = run_node(
        &js_script("core-read.js"),
        &[dir.to_str().unwrap()],
        DEFAULT_TIMEOUT,
    );
    assert!(
        !out.status.success(),
        "corruption went unnoticed: {}",
        out.stdout
    );
    assert!(
        out.stderr.contains("block 2 does not match its tree node"),
        "unexpected error: {}",
        out.stderr
    );
}

#[test]
fn a_script_that_hangs_is_killed_at_its_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("hang.js");
    std::fs::write(&script, "setTimeout(() => {}, 600000)\n").unwrap();
    let started = Instant::now();
    let res = std::panic::catch_unwind(|| {
        run_node(&script, &[] as &[&str], Duration::from_millis(500));
    });
    let msg = res.expect_err("a hanging script must fail the test");
    let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("timed out"), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn long_running_peer_prints_ready_and_is_stopped() {
    let mut boot = spawn_node(&swarm_peer(), &["bootstrap", "0", "--host", "127.0.0.1"]);
    let line = boot.next_line(Duration::from_secs(30));
    let port: u16 = line
        .strip_prefix("ready ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    assert!(port > 0);
    let pid = boot.pid();
    boot.terminate(Duration::from_secs(5));
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "pid {pid} still exists after terminate"
    );
}
