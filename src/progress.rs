//! Download progress for `mirror` and `export`: blocks held of known, bytes received,
//! peers and rate. A bar (indicatif) on a terminal, otherwise a plain line on stderr
//! every few seconds, so logs of daemons and tests stay readable.

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyperdrive::protocol::driver::ConnectionStats;
use hyperdrive::protocol::replicate::SharedFeed;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinHandle;

/// Feeds being watched (grows as mounts are found).
pub type Watched = Arc<Mutex<Vec<Arc<SharedFeed>>>>;

/// A snapshot of what is held.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    pub held: u64,
    pub total: u64,
}

/// Blocks held and known over `feeds`.
pub fn snapshot(feeds: &[Arc<SharedFeed>]) -> Snapshot {
    let mut s = Snapshot::default();
    for f in feeds {
        let st = f.lock();
        let len = st.feed.len();
        s.total += len;
        s.held += st.feed.bitfield().count_data(0, len);
    }
    s
}

/// A running progress display; [`Progress::finish`] stops it.
pub struct Progress {
    task: Option<JoinHandle<()>>,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Starts reporting on `feeds`, reading bytes from `stats` and peers from `peers`.
    pub fn start(
        label: String,
        feeds: Watched,
        stats: Arc<ConnectionStats>,
        peers: Arc<dyn Fn() -> usize + Send + Sync>,
        quiet: bool,
    ) -> Progress {
        if quiet {
            return Progress {
                task: None,
                bar: None,
            };
        }
        let tty = std::io::stderr().is_terminal();
        let bar = tty.then(|| {
            let b = ProgressBar::new(0);
            b.set_style(
                ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} blocks {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            b.set_prefix(label.clone());
            b
        });
        let shown = bar.clone();
        let started = Instant::now();
        let task = tokio::spawn(async move {
            let every = if shown.is_some() {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(2)
            };
            let mut last_bytes = 0usize;
            let mut last_at = Instant::now();
            loop {
                tokio::time::sleep(every).await;
                let list = feeds.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let s = snapshot(&list);
                let bytes = stats.bytes_in.load(Ordering::Relaxed);
                let dt = last_at.elapsed().as_secs_f64().max(1e-3);
                let rate = (bytes.saturating_sub(last_bytes)) as f64 / dt;
                last_bytes = bytes;
                last_at = Instant::now();
                let msg = format!(
                    "{} in, {} peer(s), {}/s",
                    human(bytes as u64),
                    peers(),
                    human(rate as u64)
                );
                match &shown {
                    Some(b) => {
                        b.set_length(s.total);
                        b.set_position(s.held);
                        b.set_message(msg);
                    }
                    None => eprintln!(
                        "{label}: {}/{} blocks, {msg} ({:.0} s)",
                        s.held,
                        s.total,
                        started.elapsed().as_secs_f64()
                    ),
                }
            }
        });
        Progress {
            task: Some(task),
            bar,
        }
    }

    /// Stops the display.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `1234567` → `1.2 MB`.
pub fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(999), "999 B");
        assert_eq!(human(1234567), "1.2 MB");
    }
}
