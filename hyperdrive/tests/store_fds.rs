//! Open-file bounds of the corestore: 2,000 cores written and read back through a store
//! limited to 64 open cores never hold more than that many cores' files at once, and
//! every core closed on the way reopens intact (and writable) from disk.
//!
//! Alone in its own test binary so no other test's files disturb the fd count.

use hyperdrive::store::Corestore;

const CORES: usize = 2_000;
const LIMIT: usize = 64;
/// Files one open core may hold (key, secret_key, data, tree, signatures, bitfield).
const FILES_PER_CORE: usize = 6;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd is readable")
        .count()
}

fn block(i: usize) -> Vec<u8> {
    format!("block of core {i}").into_bytes()
}

#[test]
fn two_thousand_cores_with_a_limit_of_64() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Corestore::open(tmp.path()).unwrap().with_max_open(LIMIT);
    let baseline = open_fds();
    let bound = baseline + LIMIT * FILES_PER_CORE + 8;
    let mut peak = 0;
    let mut keys = Vec::with_capacity(CORES);

    for i in 0..CORES {
        let feed = store.get_by_name(format!("core-{i}")).unwrap();
        assert_eq!(feed.append(&block(i)).unwrap(), 1);
        keys.push(feed.key());
        drop(feed);
        assert!(store.open_count() <= LIMIT);
        peak = peak.max(open_fds());
        assert!(
            peak <= bound,
            "{peak} fds open after core {i} (bound {bound})"
        );
    }

    // Read back, alternating by name and by key: every core reopens from disk.
    for (i, key) in keys.iter().enumerate() {
        let feed = if i % 2 == 0 {
            store.get_by_name(format!("core-{i}")).unwrap()
        } else {
            store.get_by_key(key).unwrap()
        };
        assert_eq!(&feed.key(), key);
        let mut st = feed.lock();
        assert!(
            st.feed.writable(),
            "core {i} writable again via its name file"
        );
        assert_eq!(st.feed.len(), 1);
        assert_eq!(st.feed.get(0).unwrap(), block(i));
        drop(st);
        drop(feed);
        peak = peak.max(open_fds());
        assert!(
            peak <= bound,
            "{peak} fds open reading core {i} (bound {bound})"
        );
    }
    assert!(store.open_count() <= LIMIT);

    // The same run without closing would have needed thousands of descriptors; make
    // sure the bound was meaningful (cores do hold files while open).
    let held: Vec<_> = (0..LIMIT)
        .map(|i| store.get_by_name(format!("core-{i}")).unwrap())
        .collect();
    assert!(
        open_fds() >= baseline + LIMIT * 4,
        "open cores hold their files"
    );
    drop(held);
    assert_eq!(store.close_idle(), LIMIT);
    assert!(open_fds() <= baseline + 2);
}
