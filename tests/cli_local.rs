//! The command line on one storage, no network: create → ls/cat/info/log, import
//! syncing, export of a version and a subtree, and every command's bad-input path.

#[path = "cli_common/mod.rs"]
mod cli_common;

use cli_common::*;
use serde_json::Value;

#[test]
fn create_then_read_on_the_same_storage() {
    let tmp = tempfile::tempdir().unwrap();
    let src = sample_tree(tmp.path());
    let st = tmp.path().join("store");
    let key = last_line(&ok(&st, &["create", "--import", src.to_str().unwrap()]));
    assert_eq!(key.len(), 64, "{key}");
    assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));

    let ls = ok(&st, &["ls", &key]);
    let names: Vec<&str> = ls.lines().collect();
    assert_eq!(names, ["docs", "empty", "hello.txt", "link", "zero.bin"]);
    let ls = ok(&st, &["ls", &format!("hyper://{key}/docs"), "-l"]);
    assert!(ls.contains("deep") && ls.contains("readme.md"), "{ls}");
    assert!(ls.lines().any(|l| l.starts_with("drwx")), "{ls}");
    let ls = ok(&st, &["ls", &format!("{key}/link"), "-l"]);
    assert!(ls.contains("link -> hello.txt"), "{ls}");

    assert_eq!(
        ok(&st, &["cat", &format!("dat://{key}/hello.txt")]),
        "hello, drive\n"
    );
    let big = run(&st, &["cat", &format!("{key}/docs/deep/big.bin")]);
    assert!(big.status.success());
    assert_eq!(
        big.stdout,
        std::fs::read(src.join("docs/deep/big.bin")).unwrap()
    );

    let info: Value = serde_json::from_str(&ok(&st, &["info", &key, "--json"])).unwrap();
    assert_eq!(info["key"], key.as_str());
    assert_eq!(info["discoveryKey"].as_str().unwrap().len(), 64);
    assert_eq!(info["writable"], true);
    assert_eq!(info["files"], 4);
    assert_eq!(info["bytes"], 13 + 9 + 1_300_000);
    assert!(info["bytesHeld"].as_u64().unwrap() >= 1_300_022);
    assert_eq!(info["peers"], 0);
    let version = info["version"].as_u64().unwrap();
    let text = ok(&st, &["info", &key]);
    assert!(
        text.contains(&key) && text.contains("writable:       true"),
        "{text}"
    );

    let log = ok(&st, &["log", &key]);
    assert!(log.starts_with("1 created"), "{log}");
    assert!(log.contains("+ /hello.txt (13 bytes)"), "{log}");
    assert!(log.contains("+ /link -> hello.txt"), "{log}");
    assert_eq!(
        log.lines()
            .last()
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse::<u64>()
            .unwrap(),
        version
    );

    // drives.json lists it as own.
    let reg = std::fs::read_to_string(st.join("drives.json")).unwrap();
    assert!(reg.contains(&key) && reg.contains("\"own\""), "{reg}");
}

#[test]
fn import_syncs_adds_changes_and_deletions() {
    let tmp = tempfile::tempdir().unwrap();
    let src = sample_tree(tmp.path());
    let st = tmp.path().join("store");
    let key = last_line(&ok(&st, &["create"]));
    let out = ok(&st, &["import", &key, src.to_str().unwrap()]);
    assert!(out.contains("added") && out.contains("0 removed"), "{out}");
    let v1: Value = serde_json::from_str(&ok(&st, &["info", &key, "--json"])).unwrap();

    // Unchanged folder: nothing written.
    let out = ok(&st, &["import", &key, src.to_str().unwrap()]);
    assert!(out.contains("0 added, 0 changed, 0 removed"), "{out}");
    let v2: Value = serde_json::from_str(&ok(&st, &["info", &key, "--json"])).unwrap();
    assert_eq!(v1["version"], v2["version"]);

    std::fs::write(src.join("hello.txt"), b"changed contents\n").unwrap();
    std::fs::remove_file(src.join("docs/deep/big.bin")).unwrap();
    std::fs::remove_dir(src.join("empty")).unwrap();
    std::fs::write(src.join("new.txt"), b"new").unwrap();
    let out = ok(&st, &["import", &key, src.to_str().unwrap()]);
    assert!(out.contains("1 added, 1 changed, 2 removed"), "{out}");

    let dest = tmp.path().join("out");
    ok(&st, &["export", &key, dest.to_str().unwrap()]);
    assert_same_tree(&src, &dest);
    let log = ok(&st, &["log", &key]);
    assert!(log.contains("- /docs/deep/big.bin"), "{log}");
    assert!(log.contains("~ /hello.txt (17 bytes)"), "{log}");
}

#[test]
fn export_version_and_subtree() {
    let tmp = tempfile::tempdir().unwrap();
    let src = sample_tree(tmp.path());
    let st = tmp.path().join("store");
    let key = last_line(&ok(&st, &["create", "--import", src.to_str().unwrap()]));
    let log = ok(&st, &["log", &key]);
    // The version right after hello.txt was added.
    let v = log
        .lines()
        .find(|l| l.contains("+ /hello.txt"))
        .and_then(|l| l.split(' ').next())
        .unwrap()
        .to_string();
    std::fs::write(src.join("hello.txt"), b"v2").unwrap();
    ok(&st, &["import", &key, src.to_str().unwrap()]);

    let old = tmp.path().join("old");
    ok(
        &st,
        &["export", &format!("{key}+{v}"), old.to_str().unwrap()],
    );
    assert_eq!(
        std::fs::read(old.join("hello.txt")).unwrap(),
        b"hello, drive\n"
    );
    assert_eq!(
        ok(&st, &["cat", &format!("{key}+{v}/hello.txt")]),
        "hello, drive\n"
    );
    assert_eq!(ok(&st, &["cat", &format!("{key}/hello.txt")]), "v2");

    let sub = tmp.path().join("sub");
    ok(
        &st,
        &["export", &format!("{key}/docs"), sub.to_str().unwrap()],
    );
    assert_same_tree(&src.join("docs"), &sub);

    let one = tmp.path().join("one.md");
    ok(
        &st,
        &[
            "export",
            &format!("{key}/docs/readme.md"),
            one.to_str().unwrap(),
        ],
    );
    assert_eq!(std::fs::read(one).unwrap(), b"# readme\n");
}

#[test]
fn bad_input_gives_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let src = sample_tree(tmp.path());
    let st = tmp.path().join("store");
    let key = last_line(&ok(&st, &["create", "--import", src.to_str().unwrap()]));
    let dest = tmp.path().join("d");
    let d = dest.to_str().unwrap();
    // A valid key of a drive this storage has never seen.
    let missing = last_line(&ok(&tmp.path().join("other"), &["create"]));
    let missing = missing.as_str();

    // Bad keys, for every command that takes one.
    for args in [
        vec!["ls", "xyz"],
        vec!["cat", "hyper://abcd/x"],
        vec!["info", "nothex"],
        vec!["log", "1234"],
        vec!["export", "zz", d],
        vec!["import", "zz", d],
        vec!["mirror", "zz", "--connect", "127.0.0.1:9"],
        vec!["seed", "zz", "--listen", "127.0.0.1:0"],
    ] {
        fails(&st, &args, &["bad drive key"]);
    }
    // Missing arguments are usage errors (clap exits 2).
    let o = run(&st, &["cat"]);
    assert_eq!(o.status.code(), Some(2));

    // A key this storage does not hold, with no peers to ask.
    for args in [
        vec!["ls", missing],
        vec!["cat", &format!("{missing}/a")],
        vec!["info", missing],
        vec!["log", missing],
        vec!["export", missing, d],
    ] {
        fails(&st, &args, &[missing, "not in storage", "--connect"]);
    }
    fails(
        &st,
        &["import", missing, src.to_str().unwrap()],
        &[missing, "not in storage"],
    );

    // Missing paths.
    fails(
        &st,
        &["cat", &format!("{key}/nope.txt")],
        &["/nope.txt", "no such file"],
    );
    fails(&st, &["ls", &format!("{key}/nope")], &["no such file"]);
    fails(
        &st,
        &["export", &format!("{key}/nope"), d],
        &["/nope", "no such file"],
    );
    fails(&st, &["cat", &key], &["cat needs a file"]);
    fails(&st, &["cat", &format!("{key}/docs")], &["docs"]);
    fails(
        &st,
        &["create", "--import", "/no/such/folder"],
        &["not a folder"],
    );
    fails(&st, &["import", &key, "/no/such/folder"], &["not a folder"]);

    // Unknown versions.
    fails(
        &st,
        &["ls", &format!("{key}+999")],
        &[&key, "no version 999"],
    );
    fails(
        &st,
        &["cat", &format!("{key}+0/hello.txt")],
        &["no version 0"],
    );

    // Transports: unknown names, and uTP without the DHT it runs on.
    fails(
        &st,
        &["--transports", "quic", "ls", &key],
        &["unknown transport"],
    );
    fails(
        &st,
        &["--transports", "utp", "seed"],
        &["needs the DHT", "--no-dht"],
    );

    // Commands that need peers.
    fails(&st, &["seed"], &["--listen"]);
    fails(&st, &["mirror", &key], &["--connect"]);
    let empty = tmp.path().join("empty-store");
    fails(
        &empty,
        &["seed", "--listen", "127.0.0.1:0"],
        &["no drives to seed"],
    );
    fails(
        &empty,
        &["seed", &key, "--listen", "127.0.0.1:0"],
        &[&key, "not in storage"],
    );
}

#[test]
fn import_into_a_read_only_drive_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let src = sample_tree(tmp.path());
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    let key = last_line(&ok(&a, &["create", "--import", src.to_str().unwrap()]));
    // Give b a read-only copy by copying the core folders (not the master key).
    copy_cores(&a, &b);
    let out = ok(&b, &["cat", &format!("{key}/hello.txt")]);
    assert_eq!(out, "hello, drive\n");
    fails(
        &b,
        &["import", &key, src.to_str().unwrap()],
        &[&key, "not writable"],
    );
}

/// Copies every core folder (`xx/yy/dk`) of `from` into `to`, without `name` files, so
/// `to` holds the feeds but not their secrets.
fn copy_cores(from: &std::path::Path, to: &std::path::Path) {
    for e in walk(from) {
        let rel = e.strip_prefix(from).unwrap();
        let s = rel.to_str().unwrap();
        if s == "master_key" || s == "drives.json" || s.ends_with("/name") {
            continue;
        }
        let dest = to.join(rel);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&e, &dest).unwrap();
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
