//! The `lock` file: one process writes a run directory at a time.
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::LOCK_FILE;
use crate::base::error::{Error, IoContext, Result};

/// Exclusive ownership of a run directory: an advisory lock (`flock`) on the `lock` file, which
/// also holds the owner's pid for messages. The kernel releases the lock when its process dies,
/// however it dies, so a lock left behind is recognised as stale without guessing from pids,
/// and taking it over is the same atomic `flock` as taking a fresh one.
pub struct Lock {
    path: PathBuf,
    /// Holds the lock while open.
    _file: File,
}

impl Lock {
    /// Returns the lock, and the pid written by a previous holder that died without releasing
    /// it (`Some(0)` when its pid was unreadable). A lock held by another process for longer
    /// than [`PROBE_WAIT`] is [`Error::Locked`] (exit 75: retry later); a shorter hold, such as
    /// `rftx shard status` probing it ([`lock_held`]), is waited out.
    pub fn acquire(dir: &Path) -> Result<(Lock, Option<u32>)> {
        let path = dir.join(LOCK_FILE);
        let deadline = Instant::now() + PROBE_WAIT;
        // A holder that releases the lock removes the file first: whoever opened the old file
        // just before then locks an orphan, notices, and tries again.
        let mut orphans = 0;
        while orphans < 5 {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .ctx(|| format!("{}: cannot create the lock file", path.display()))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(PROBE_POLL);
                    continue;
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    let holder = read_pid(&mut file)
                        .map(|pid| format!(" (pid {pid})"))
                        .unwrap_or_default();
                    return Err(Error::Locked(format!(
                        "{}: another rftx process{holder} is writing this run; wait for it to finish or stop it",
                        dir.display()
                    )));
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(Error::io(format!("{}: cannot lock", path.display()), e))
                }
            }
            if !same_file(&file, &path) {
                orphans += 1;
                continue;
            }
            let mut previous = String::new();
            let _ = file.read_to_string(&mut previous);
            let stale = (!previous.is_empty()).then(|| previous.trim().parse::<u32>().unwrap_or(0));
            let what = || format!("{}: cannot write", path.display());
            file.set_len(0).ctx(what)?;
            file.seek(SeekFrom::Start(0)).ctx(what)?;
            file.write_all(format!("{}\n", std::process::id()).as_bytes())
                .ctx(what)?;
            file.sync_all().ok();
            return Ok((Lock { path, _file: file }, stale));
        }
        Err(Error::Locked(format!("{}: could not take the lock", dir.display())))
    }
}

/// How long [`Lock::acquire`] waits out a lock held by someone else: a status probe holds it
/// for microseconds; a run holds it for as long as it runs.
pub const PROBE_WAIT: Duration = Duration::from_secs(1);
const PROBE_POLL: Duration = Duration::from_millis(10);

impl Drop for Lock {
    fn drop(&mut self) {
        // Removed while still locked (the file is closed, and unlocked, right after).
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether a live process holds the run directory's lock (on this host: `flock` is released
/// when its process dies, however it dies).
pub fn lock_held(dir: &Path) -> bool {
    let Ok(f) = OpenOptions::new().read(true).open(dir.join(LOCK_FILE)) else {
        return false;
    };
    match f.try_lock_shared() {
        Ok(()) => false,
        Err(std::fs::TryLockError::WouldBlock) => true,
        Err(std::fs::TryLockError::Error(_)) => false,
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut s = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

/// Whether `path` still names the file `file` has open.
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_is_exclusive_and_stale_locks_are_taken_over() {
        let d = tempfile::tempdir().unwrap();
        let lock_file = d.path().join(LOCK_FILE);
        let (lock, stale) = Lock::acquire(d.path()).unwrap();
        assert_eq!(stale, None);
        assert_eq!(
            std::fs::read_to_string(&lock_file).unwrap(),
            format!("{}\n", std::process::id())
        );
        // A second acquisition fails while the first is held (flock conflicts between open
        // files, also within one process) and names the holder.
        let e = Lock::acquire(d.path()).err().unwrap();
        assert!(e.to_string().contains(&format!("pid {}", std::process::id())), "{e}");
        assert_eq!(e.exit_code(), crate::base::error::EXIT_RETRY);
        drop(lock);
        assert!(!lock_file.exists(), "released locks are removed");
        // A lock file that nobody holds is stale, whatever pid it names: taken over, and the
        // previous holder's pid reported.
        std::fs::write(&lock_file, "4194303\n").unwrap();
        let (again, stale) = Lock::acquire(d.path()).unwrap();
        assert_eq!(stale, Some(4194303));
        drop(again);
        std::fs::write(&lock_file, "garbage").unwrap();
        assert_eq!(Lock::acquire(d.path()).unwrap().1, Some(0));
    }

    #[test]
    fn concurrent_takeovers_of_a_stale_lock_leave_one_owner() {
        let d = tempfile::tempdir().unwrap();
        for round in 0..20 {
            std::fs::write(d.path().join(LOCK_FILE), "4194303\n").unwrap();
            let barrier = std::sync::Barrier::new(4);
            let owners = std::sync::atomic::AtomicUsize::new(0);
            let peak = std::sync::atomic::AtomicUsize::new(0);
            std::thread::scope(|s| {
                for _ in 0..4 {
                    s.spawn(|| {
                        barrier.wait();
                        if let Ok((lock, _)) = Lock::acquire(d.path()) {
                            let now = owners.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                            peak.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(2));
                            owners.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                            drop(lock);
                        }
                    });
                }
            });
            assert_eq!(peak.load(std::sync::atomic::Ordering::SeqCst), 1, "round {round}");
        }
    }

    #[test]
    fn a_status_probe_holding_the_lock_is_waited_out() {
        let d = tempfile::tempdir().unwrap();
        let (lock, _) = Lock::acquire(d.path()).unwrap();
        drop(lock);
        // A probe (a shared lock, as `lock_held` takes) held for 100 ms, from another open file.
        let probe = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(d.path().join(LOCK_FILE))
            .unwrap();
        probe.try_lock_shared().unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(probe);
        });
        let started = Instant::now();
        let (lock, stale) = Lock::acquire(d.path()).unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(50),
            "it waited for the probe"
        );
        assert_eq!(stale, None);
        release.join().unwrap();
        drop(lock);
        assert!(!lock_held(d.path()));
    }
}
