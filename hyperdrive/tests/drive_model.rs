//! Random operation sequences against a `BTreeMap<path, content>` model, plus bad-input
//! tests (invalid and missing paths, symlink loops, mount cycles, corrupt entries).

use std::collections::BTreeMap;
use std::sync::Arc;

use hyperdrive::drive::{Drive, DriveError, DriveOptions, MemoryProvider, Stat, WriteOptions};
use proptest::prelude::*;

const PATHS: &[&str] = &["/a", "/b", "/d/x", "/d/y", "/d/e/z", "/ü n"];

#[derive(Clone, Debug)]
enum Op {
    Write(usize, Vec<u8>),
    WriteChunks(usize, Vec<Vec<u8>>),
    Unlink(usize),
    Truncate(usize, u64),
    Copy(usize, usize),
    Read(usize, u64, u64),
}

fn op() -> impl Strategy<Value = Op> {
    let p = 0..PATHS.len();
    prop_oneof![
        (p.clone(), prop::collection::vec(any::<u8>(), 0..300)).prop_map(|(i, d)| Op::Write(i, d)),
        (
            p.clone(),
            prop::collection::vec(prop::collection::vec(any::<u8>(), 0..100), 0..5)
        )
            .prop_map(|(i, c)| Op::WriteChunks(i, c)),
        p.clone().prop_map(Op::Unlink),
        (p.clone(), 0u64..400).prop_map(|(i, n)| Op::Truncate(i, n)),
        (p.clone(), p.clone()).prop_map(|(a, b)| Op::Copy(a, b)),
        (p, 0u64..400, 0u64..400).prop_map(|(i, o, l)| Op::Read(i, o, l)),
    ]
}

async fn new_drive() -> Drive {
    let provider = Arc::new(MemoryProvider::new(rand::random()));
    Drive::named(provider, "default", DriveOptions::default())
        .await
        .unwrap()
}

async fn check(d: &Drive, model: &BTreeMap<String, Vec<u8>>) {
    for p in PATHS {
        match model.get(*p) {
            Some(c) => {
                assert_eq!(&d.read_file(p).await.unwrap(), c, "{p}");
                let st = d.stat(p).await.unwrap();
                assert_eq!(st.size, c.len() as u64);
                assert!(st.is_file());
            }
            None => assert!(
                matches!(d.stat(p).await, Err(DriveError::NotFound { .. })),
                "{p}"
            ),
        }
    }
    // Top-level names from the model.
    let mut want: Vec<String> = model
        .keys()
        .map(|k| k[1..].split('/').next().unwrap().to_string())
        .collect();
    want.dedup();
    want.sort();
    want.dedup();
    let got: Vec<String> = d
        .readdir("/", false)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(got, want);
    let mut want_d: Vec<String> = model
        .keys()
        .filter_map(|k| k.strip_prefix("/d/"))
        .map(|k| k.split('/').next().unwrap().to_string())
        .collect();
    want_d.sort();
    want_d.dedup();
    match d.readdir("/d", false).await {
        Ok(e) => assert_eq!(e.into_iter().map(|e| e.name).collect::<Vec<_>>(), want_d),
        Err(DriveError::NotFound { .. }) => assert!(want_d.is_empty()),
        Err(e) => panic!("{e}"),
    }
}

async fn run(ops: Vec<Op>) {
    let d = new_drive().await;
    let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut history = vec![(d.version(), model.clone())];
    for op in ops {
        match op {
            Op::Write(i, data) => {
                d.write_file(PATHS[i], &data, WriteOptions::default())
                    .await
                    .unwrap();
                model.insert(PATHS[i].into(), data);
            }
            Op::WriteChunks(i, chunks) => {
                let mut w = d
                    .create_writer(PATHS[i], WriteOptions::default())
                    .await
                    .unwrap();
                for c in &chunks {
                    w.write(c).await.unwrap();
                }
                w.finish().await.unwrap();
                model.insert(PATHS[i].into(), chunks.concat());
            }
            Op::Unlink(i) => {
                let r = d.unlink(PATHS[i]).await;
                if model.remove(PATHS[i]).is_some() {
                    r.unwrap();
                } else {
                    assert!(matches!(r, Err(DriveError::NotFound { .. })));
                }
            }
            Op::Truncate(i, n) => {
                d.truncate(PATHS[i], n).await.unwrap();
                let e = model.entry(PATHS[i].into()).or_default();
                e.resize(n as usize, 0);
            }
            Op::Copy(a, b) => {
                let r = d.copy(PATHS[a], PATHS[b]).await;
                match model.get(PATHS[a]).cloned() {
                    Some(c) => {
                        r.unwrap();
                        model.entry(PATHS[b].into()).or_insert(c);
                    }
                    None => assert!(matches!(r, Err(DriveError::NotFound { .. }))),
                }
            }
            Op::Read(i, o, l) => {
                let r = d.read(PATHS[i], o, l).await;
                match model.get(PATHS[i]) {
                    Some(c) => {
                        let s = (o as usize).min(c.len());
                        let e = (s + l as usize).min(c.len());
                        assert_eq!(r.unwrap(), &c[s..e]);
                    }
                    None => assert!(matches!(r, Err(DriveError::NotFound { .. }))),
                }
            }
        }
        check(&d, &model).await;
        history.push((d.version(), model.clone()));
    }
    for (v, m) in history.iter().step_by(3) {
        check(&d.checkout(*v), m).await;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn drive_agrees_with_a_map(ops in prop::collection::vec(op(), 1..25)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(ops));
    }
}

#[tokio::test]
async fn large_files_split_into_512k_blocks_and_read_by_range() {
    let d = new_drive().await;
    let data: Vec<u8> = (0..1_300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    d.write_file("/big", &data, WriteOptions::default())
        .await
        .unwrap();
    let st = d.stat("/big").await.unwrap();
    assert_eq!((st.size, st.blocks), (1_300_000, 3));
    for (o, l) in [
        (0, 10),
        (524_280, 20),
        (1_048_570, 100),
        (1_299_990, 100),
        (2_000_000, 5),
    ] {
        let got = d.read("/big", o, l).await.unwrap();
        let s = (o as usize).min(data.len());
        let e = (s + l as usize).min(data.len());
        assert_eq!(got, &data[s..e], "{o}+{l}");
    }
    // A later file does not leak into a range past the end of this one.
    d.write_file("/next", b"NEXT", WriteOptions::default())
        .await
        .unwrap();
    assert_eq!(
        d.read("/big", 1_299_999, 100).await.unwrap(),
        &data[1_299_999..]
    );
}

#[tokio::test]
async fn invalid_and_missing_paths() {
    let d = new_drive().await;
    let w = WriteOptions::default;
    assert!(matches!(
        d.write_file("/a\0b", b"", w()).await,
        Err(DriveError::InvalidPath { .. })
    ));
    assert!(matches!(
        d.stat(&"x".repeat(5000)).await,
        Err(DriveError::InvalidPath { .. })
    ));
    assert!(matches!(
        d.write_file("/", b"", w()).await,
        Err(DriveError::InvalidPath { .. })
    ));
    assert!(matches!(
        d.unlink("/").await,
        Err(DriveError::InvalidPath { .. })
    ));
    assert!(matches!(
        d.mkdir("/", w()).await,
        Err(DriveError::Exists { .. })
    ));
    assert!(matches!(
        d.stat("/nope").await,
        Err(DriveError::NotFound { .. })
    ));
    assert!(matches!(
        d.read_file("/nope").await,
        Err(DriveError::NotFound { .. })
    ));
    assert!(matches!(
        d.unlink("/nope").await,
        Err(DriveError::NotFound { .. })
    ));
    assert!(matches!(
        d.rmdir("/nope").await,
        Err(DriveError::NotFound { .. })
    ));
    assert!(matches!(
        d.readlink("/nope").await,
        Err(DriveError::NotFound { .. })
    ));
    assert!(matches!(
        d.set_xattr("/nope", "k", b"v").await,
        Err(DriveError::NotFound { .. })
    ));
    assert!(matches!(
        d.readdir("/nope", false).await,
        Err(DriveError::NotFound { .. })
    ));
    assert!(matches!(
        d.unmount("/nope").await,
        Err(DriveError::NotFound { .. })
    ));
    d.write_file("/f", b"data", w()).await.unwrap();
    assert!(matches!(
        d.readdir("/f", false).await,
        Err(DriveError::NotADirectory { .. })
    ));
    assert!(matches!(
        d.rmdir("/f").await,
        Err(DriveError::NotADirectory { .. })
    ));
    assert!(matches!(
        d.unmount("/f").await,
        Err(DriveError::InvalidArgument { .. })
    ));
    assert!(matches!(
        d.symlink("/x", "/f").await,
        Err(DriveError::Exists { .. })
    ));
    assert!(matches!(
        d.readlink("/f").await,
        Err(DriveError::InvalidArgument { .. })
    ));
    d.mkdir("/dir", w()).await.unwrap();
    assert!(matches!(
        d.read_file("/dir").await,
        Err(DriveError::IsADirectory { .. })
    ));
    assert!(matches!(
        d.write_file("/dir", b"", w()).await,
        Err(DriveError::IsADirectory { .. })
    ));
    d.write_file("/dir/in", b"", w()).await.unwrap();
    assert!(matches!(
        d.rmdir("/dir").await,
        Err(DriveError::NotEmpty { .. })
    ));
    d.unlink("/dir/in").await.unwrap();
    d.rmdir("/dir").await.unwrap();
    assert!(!d.exists("/dir").await.unwrap());
    // Errors carry the path and an errno.
    let e = d.stat("/nope").await.unwrap_err();
    assert_eq!((e.errno(), e.to_string().contains("/nope")), (2, true));
}

#[tokio::test]
async fn xattrs_set_remove_list() {
    let d = new_drive().await;
    d.write_file("/f", b"x", WriteOptions::default())
        .await
        .unwrap();
    d.set_xattr("/f", "user.a", b"1").await.unwrap();
    d.set_xattr("/f", "user.b", b"2").await.unwrap();
    d.remove_xattr("/f", "user.a").await.unwrap();
    d.symlink("f", "/l").await.unwrap();
    assert_eq!(
        d.list_xattrs("/l").await.unwrap(),
        vec![("user.b".to_string(), b"2".to_vec())]
    );
    assert_eq!(d.stat("/f").await.unwrap().xattr("user.b"), Some(&b"2"[..]));
}

#[tokio::test]
async fn symlink_loops_end_with_loop() {
    let d = new_drive().await;
    d.symlink("/b", "/a").await.unwrap();
    d.symlink("a", "/b").await.unwrap();
    d.symlink("self", "/self").await.unwrap();
    for p in ["/a", "/b", "/self"] {
        assert!(
            matches!(d.stat(p).await, Err(DriveError::Loop { .. })),
            "{p}"
        );
        assert!(matches!(d.read_file(p).await, Err(DriveError::Loop { .. })));
        assert!(d.lstat(p).await.unwrap().is_symlink());
    }
    assert_eq!(d.stat("/a").await.unwrap_err().errno(), 40);
    // Relative targets resolve against the link's directory.
    d.write_file("/d/t", b"T", WriteOptions::default())
        .await
        .unwrap();
    d.symlink("t", "/d/l").await.unwrap();
    d.symlink("../d/t", "/d/l2").await.unwrap();
    assert_eq!(d.read_file("/d/l").await.unwrap(), b"T");
    assert_eq!(d.read_file("/d/l2").await.unwrap(), b"T");
}

#[tokio::test]
async fn mount_cycles_are_bounded() {
    let provider = Arc::new(MemoryProvider::new([5; 32]));
    let a = Drive::named(provider, "a", DriveOptions::default())
        .await
        .unwrap();
    let b = a.sibling("b").await.unwrap();
    a.mount("/b", &b.key(), None, WriteOptions::default())
        .await
        .unwrap();
    b.mount("/a", &a.key(), None, WriteOptions::default())
        .await
        .unwrap();
    b.write_file("/hello", b"hi", WriteOptions::default())
        .await
        .unwrap();
    assert_eq!(a.read_file("/b/hello").await.unwrap(), b"hi");
    assert_eq!(a.read_file("/b/a/b/hello").await.unwrap(), b"hi");
    let deep = "/b/a".repeat(20) + "/b/hello";
    assert!(matches!(
        a.read_file(&deep).await,
        Err(DriveError::Loop { .. })
    ));
    assert!(matches!(
        a.readdir_recursive("/", false).await,
        Err(DriveError::Loop { .. })
    ));
    assert!(matches!(a.mounts().await, Err(DriveError::Loop { .. })));
    // Without crossing mounts the listing is fine.
    assert_eq!(
        a.readdir_recursive("/", true).await.unwrap(),
        vec!["b".to_string()]
    );
    // A write through the mount lands in b; unmount removes the route.
    a.write_file("/b/w", b"W", WriteOptions::default())
        .await
        .unwrap();
    assert_eq!(b.read_file("/w").await.unwrap(), b"W");
    a.unmount("/b").await.unwrap();
    assert!(matches!(
        a.stat("/b/w").await,
        Err(DriveError::NotFound { .. })
    ));
}

#[tokio::test]
async fn corrupt_entries_are_errors_not_panics() {
    let d = new_drive().await;
    d.trie().put("bad", &[0xff, 0xff]).await.unwrap();
    d.trie()
        .put("nomode", &Stat::default().encode()[2..])
        .await
        .unwrap();
    assert!(matches!(
        d.stat("/bad").await,
        Err(DriveError::Corrupt { .. })
    ));
    assert!(matches!(
        d.stat("/nomode").await,
        Err(DriveError::Corrupt { .. })
    ));
    assert!(matches!(
        d.readdir("/", true).await,
        Err(DriveError::Corrupt { .. })
    ));
    // A Stat whose blocks do not cover its size.
    let mut st = Stat::file(0, 1);
    st.size = 100;
    st.blocks = 1;
    st.offset = 0;
    d.write_file("/tiny", b"ab", WriteOptions::default())
        .await
        .unwrap();
    d.trie().put("lies", &st.encode()).await.unwrap();
    assert!(matches!(
        d.read_file("/lies").await,
        Err(DriveError::Corrupt { .. })
    ));
}

#[tokio::test]
async fn read_only_views_refuse_writes() {
    let d = new_drive().await;
    d.write_file("/f", b"1", WriteOptions::default())
        .await
        .unwrap();
    let co = d.checkout(2);
    assert!(matches!(
        co.unlink("/f").await,
        Err(DriveError::ReadOnly { .. })
    ));
    assert!(matches!(
        co.mkdir("/x", WriteOptions::default()).await,
        Err(DriveError::ReadOnly { .. })
    ));
    assert_eq!(co.read_file("/f").await.unwrap(), b"1");
    // A drive opened by key through another provider sees the same data.
    let other = Arc::new(MemoryProvider::new([9; 32]));
    other.insert(d.metadata_feed().clone());
    other.insert(d.content_feed().clone());
    let ro = Drive::open(other.clone(), &d.key(), DriveOptions::default())
        .await
        .unwrap();
    assert_eq!(ro.read_file("/f").await.unwrap(), b"1");
}

#[tokio::test]
async fn watch_diff_and_tags() {
    let d = new_drive().await;
    let v0 = d.version();
    let d2 = d.clone();
    let waiter = tokio::spawn(async move { d2.watch(v0, std::time::Duration::from_secs(5)).await });
    d.write_file("/a", b"1", WriteOptions::default())
        .await
        .unwrap();
    assert_eq!(waiter.await.unwrap(), Some(v0 + 1));
    assert_eq!(
        d.watch(d.version(), std::time::Duration::from_millis(20))
            .await,
        None
    );
    d.write_file("/b", b"2", WriteOptions::default())
        .await
        .unwrap();
    d.unlink("/a").await.unwrap();
    let changes = d.diff(v0 + 1, d.version()).await.unwrap();
    let mut paths: Vec<(String, bool, bool)> = changes
        .iter()
        .map(|c| (c.path.clone(), c.before.is_some(), c.after.is_some()))
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        vec![("/a".into(), true, false), ("/b".into(), false, true)]
    );
    d.create_tag("one", v0 + 1).await.unwrap();
    assert_eq!(d.tag("one").await.unwrap(), v0 + 1);
    let co = d.checkout(d.tag("one").await.unwrap());
    assert_eq!(co.read_file("/a").await.unwrap(), b"1");
    d.delete_tag("one").await.unwrap();
    assert!(matches!(
        d.tag("one").await,
        Err(DriveError::NotFound { .. })
    ));
}

#[tokio::test]
async fn missing_remote_blocks_time_out() {
    let store = hyperdrive::store::Corestore::in_memory([3; 32]);
    let opts = DriveOptions {
        timeout: std::time::Duration::from_millis(50),
        ..Default::default()
    };
    // Not a curve point: a typed error.
    let r = Drive::open(Arc::new(store.clone()), &[0x42; 32], opts.clone()).await;
    assert!(
        matches!(r, Err(DriveError::Storage { .. })),
        "{:?}",
        r.err()
    );
    // An unknown key: no header block arrives.
    let unknown = hyperdrive::core::KeyPair::generate().public_bytes();
    let r = Drive::open(Arc::new(store.clone()), &unknown, opts.clone()).await;
    assert!(
        matches!(r, Err(DriveError::Timeout { .. })),
        "{:?}",
        r.err()
    );
    // A replica holding only the header and the first node: reading content times out.
    let d = Drive::named(Arc::new(store), "default", opts.clone())
        .await
        .unwrap();
    d.write_file("/f", b"data", WriteOptions::default())
        .await
        .unwrap();
    let other = Arc::new(MemoryProvider::new([4; 32]));
    other.insert(d.metadata_feed().clone());
    let empty_content =
        hyperdrive::protocol::replicate::SharedFeed::new(hyperdrive::core::Feed::in_memory(
            hyperdrive::core::KeyPair::from_public(&d.content_feed().key()).unwrap(),
        ));
    other.insert(empty_content);
    let ro = Drive::open(other, &d.key(), opts).await.unwrap();
    assert_eq!(ro.stat("/f").await.unwrap().size, 4);
    let r = ro.read_file("/f").await;
    assert!(matches!(r, Err(DriveError::Timeout { .. })), "{r:?}");
    assert_eq!(r.unwrap_err().errno(), 110);
}
