//! Tells the kernel to drop cached attributes and pages when a live drive changes.
//!
//! Why a thread of its own: a `FUSE_NOTIFY_INVAL_INODE` write returns only once the
//! kernel has dropped the inode's pages, and it waits for pages locked by reads in
//! flight; those reads are answered by tasks on the runtime and dispatched by the FUSE
//! session thread. Sent from either, an invalidation can wait for itself (a deadlock
//! seen with keep_cache on). So a tokio task only notices new versions and raises a
//! flag (never blocking), and a dedicated std thread sends the invalidations, holding
//! no lock the read path needs while it does.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hypermount_fs::ChangeFeed;

/// Pause that lets a burst of new versions (a replicated batch) coalesce into one round
/// of invalidations.
const COALESCE: Duration = Duration::from_millis(50);
/// How long stopping waits for the thread (it may be inside a kernel call).
const STOP_WAIT: Duration = Duration::from_secs(2);

/// Something the kernel holds for an inode can be dropped (the notifier's one job, a
/// trait so tests can watch what would be sent).
pub trait Invalidate: Send + 'static {
    fn inval_inode(&self, ino: u64);
}

impl Invalidate for fuser::Notifier {
    fn inval_inode(&self, ino: u64) {
        // ENOENT: the kernel already dropped it. Nothing else to do either way.
        let _ = fuser::Notifier::inval_inode(self, ino, 0, 0);
    }
}

/// The flag between the watching task and the sending thread.
#[derive(Default)]
struct Signal {
    state: Mutex<(bool, bool)>, // (a round is pending, stop)
    cond: Condvar,
}

impl Signal {
    fn raise(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).0 = true;
        self.cond.notify_one();
    }

    fn stop(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
        self.cond.notify_one();
    }

    fn stopped(&self) -> bool {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).1
    }

    /// Waits for a round; false once stopped.
    fn next_round(&self) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if st.1 {
                return false;
            }
            if st.0 {
                st.0 = false;
                return true;
            }
            st = self.cond.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// The running invalidator of one mount.
pub struct Invalidator {
    signal: Arc<Signal>,
    watcher: tokio::task::JoinHandle<()>,
    thread: Option<JoinHandle<()>>,
}

impl Invalidator {
    /// Starts following `feed`; every new version invalidates every inode the kernel
    /// holds, from the invalidator's own thread.
    pub fn start(feed: ChangeFeed, notifier: impl Invalidate) -> std::io::Result<Invalidator> {
        let signal = Arc::new(Signal::default());
        let mut versions = feed.versions.clone();
        let rt = feed.rt.clone();
        let sender = signal.clone();
        let thread = std::thread::Builder::new()
            .name("hypermount-inval".into())
            .spawn(move || {
                while sender.next_round() {
                    // The inode list is copied out under the table's lock; the kernel
                    // is called with no lock held.
                    for ino in feed.inodes() {
                        if sender.stopped() {
                            return;
                        }
                        notifier.inval_inode(ino);
                    }
                }
            })?;
        let raiser = signal.clone();
        let watcher = rt.spawn(async move {
            while versions.changed().await.is_ok() {
                tokio::time::sleep(COALESCE).await;
                versions.borrow_and_update();
                raiser.raise();
            }
        });
        Ok(Invalidator {
            signal,
            watcher,
            thread: Some(thread),
        })
    }

    /// Stops watching and sending; waits a bounded time for the thread to end.
    pub fn stop(&mut self) {
        self.watcher.abort();
        self.signal.stop();
        if let Some(t) = self.thread.take() {
            let deadline = Instant::now() + STOP_WAIT;
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                tracing::warn!("invalidation thread still busy; left to finish");
            }
        }
    }
}

impl Drop for Invalidator {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    struct Recorder(mpsc::Sender<u64>);

    impl Invalidate for Recorder {
        fn inval_inode(&self, ino: u64) {
            let _ = self.0.send(ino);
        }
    }

    #[test]
    fn new_versions_invalidate_every_held_inode_from_the_thread() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let (vtx, vrx) = tokio::sync::watch::channel(1u64);
        let feed = ChangeFeed::new(vrx, Arc::new(|| vec![1, 5, 9]), rt.handle().clone());
        let (tx, rx) = mpsc::channel();
        let mut inv = Invalidator::start(feed, Recorder(tx)).expect("start");
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "nothing before a change"
        );
        vtx.send_replace(2);
        vtx.send_replace(3);
        let mut got: Vec<u64> = (0..3)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).expect("inval"))
            .collect();
        got.sort_unstable();
        assert_eq!(got, [1, 5, 9]);
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "a burst coalesces into one round"
        );
        inv.stop();
        vtx.send_replace(4);
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "nothing after stop"
        );
    }
}
