//! Small helpers shared by several modules: paths, digests, time stamps, durable writes.
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::base::error::{Error, IoContext, Result};

/// `path` made absolute against the working directory (without touching the file system).
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).ctx(|| format!("{}: cannot open", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).ctx(|| format!("{}: cannot read", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Writes a whole file atomically: a temporary file in the same directory, fsync, rename,
/// then fsync of the directory. Readers see the old content or the new, never a mix. On failure
/// the temporary file is removed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    replace_with(path, true, |f| f.write_all(bytes))
}

/// Like [`write_atomic`] without the fsyncs: atomic for readers, durable only once something
/// else syncs (for a manifest's progress between checkpoints).
pub fn write_replace(path: &Path, bytes: &[u8]) -> Result<()> {
    replace_with(path, false, |f| f.write_all(bytes))
}

/// Like [`write_atomic`], the content written by `fill` into the temporary file (to stream a
/// file too large to hold in memory).
pub fn write_atomic_with(path: &Path, fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>) -> Result<()> {
    replace_with(path, true, fill)
}

/// The create-new variant of [`write_atomic`]: writes `bytes` to `path` only if nothing is there,
/// atomically and durably, so that of several processes (on several hosts sharing the directory)
/// creating the same file exactly one wins. Returns whether this call wrote it.
pub fn write_new_atomic(path: &Path, bytes: &[u8]) -> Result<bool> {
    let (dir, tmp) = temporary(path, true, |f| f.write_all(bytes))?;
    match tmp.persist_noclobber(path) {
        Ok(_) => {
            sync_dir(dir);
            Ok(true)
        }
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(Error::io(format!("{}: cannot write", path.display()), e.error)),
    }
}

/// Whether `name` is one of the temporary files the writes above go through (`.NAME.tmp-…`).
pub fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && name.contains(TEMP_INFIX)
}

const TEMP_INFIX: &str = ".tmp-";

fn replace_with(path: &Path, sync: bool, fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>) -> Result<()> {
    let (dir, tmp) = temporary(path, sync, fill)?;
    tmp.persist(path)
        .map_err(|e| Error::io(format!("{}: cannot write", path.display()), e.error))?;
    if sync {
        sync_dir(dir);
    }
    Ok(())
}

/// A temporary file beside `path`, filled (and synced): `.NAME.tmp-` and a random suffix, so
/// that no two processes, on this host or another sharing the directory, pick the same one. It
/// is removed when dropped unless persisted. Readable like a file made by `File::create`.
fn temporary(
    path: &Path,
    sync: bool,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<(&Path, tempfile::NamedTempFile)> {
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let what = || format!("{}: cannot write", path.display());
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}{TEMP_INFIX}"))
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)
        .ctx(what)?;
    fill(tmp.as_file_mut()).ctx(what)?;
    if sync {
        tmp.as_file().sync_all().ctx(what)?;
    }
    Ok((dir, tmp))
}

/// fsync a directory so that a rename or a new file in it survives power loss (best effort).
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// A JSON list with one compact record per line: readable by any JSON parser, diffable by line.
pub fn json_list(records: impl ExactSizeIterator<Item = serde_json::Value>) -> String {
    let n = records.len();
    let mut s = String::from("[\n");
    for (i, r) in records.enumerate() {
        s.push_str("  ");
        s.push_str(&r.to_string());
        s.push_str(if i + 1 < n { ",\n" } else { "\n" });
    }
    s.push_str("]\n");
    s
}

/// A CSV field (RFC 4180): quoted only when it holds a comma, a quote or a line break.
pub fn csv_field(s: &str) -> String {
    match s.contains([',', '"', '\n', '\r']) {
        true => format!("\"{}\"", s.replace('"', "\"\"")),
        false => s.to_string(),
    }
}

/// Columns separated by two spaces; the first `left` columns left-aligned, the rest right.
pub fn align_columns(rows: &[Vec<String>], left: usize) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|j| {
            rows.iter()
                .filter_map(|r| r.get(j))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(j, (c, &w))| {
                if j < left {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect();
        out += cells.join("  ").trim_end();
        out.push('\n');
    }
    out
}

/// This machine's host name (`/proc/sys/kernel/hostname`, else `$HOSTNAME`).
pub fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

/// Current UTC time as RFC 3339, to the second (`2026-11-27T11:07:21Z`).
pub fn now_rfc3339() -> String {
    rfc3339(std::time::SystemTime::now())
}

pub fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Flattens nested TOML tables into `a.b.c` keys.
pub fn flatten(prefix: &str, table: &toml::Table, out: &mut std::collections::BTreeMap<String, toml::Value>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => flatten(&key, t, out),
            other => {
                out.insert(key, other.clone());
            }
        }
    }
}

/// Bytes in a human unit (`97.9 MiB`).
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// With `1`, a test that cannot run on this machine (no root, no Slurm, no pip, no AVX2) fails
/// instead of printing `skipped:`. `.ci/run` sets it where the machine has all of them, so that a
/// green CI there means every test ran. (Here, in the leaves, so that every layer's tests can
/// skip; `testing` re-exports it.)
#[cfg(any(test, feature = "testing"))]
pub const REQUIRE_ALL_ENV: &str = "RFTX_REQUIRE_ALL";

/// A test that cannot run here: `skipped: why` on stderr, or a failure under
/// [`REQUIRE_ALL_ENV`]`=1`.
#[cfg(any(test, feature = "testing"))]
pub fn skip(why: &str) {
    if std::env::var(REQUIRE_ALL_ENV).is_ok_and(|v| v == "1") {
        panic!("{why} ({REQUIRE_ALL_ENV}=1: no test may be skipped on this machine)");
    }
    eprintln!("skipped: {why}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        let at = |s: u64| rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_795_777_641), "2026-11-27T11:07:21Z");
    }

    #[test]
    fn atomic_write_replaces() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_failed_atomic_write_leaves_no_temporary_file() {
        let d = tempfile::tempdir().unwrap();
        // The target is a directory: the rename fails after the temporary file was written.
        let target = d.path().join("taken");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("x"), b"keep").unwrap();
        let e = write_atomic(&target, b"new").unwrap_err();
        assert!(e.to_string().contains("cannot write"), "{e}");
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["taken"], "no temporary file stays");
    }

    #[test]
    fn a_create_new_write_has_one_winner_and_leaves_no_temporary_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("plan.json");
        let wins: usize = std::thread::scope(|s| {
            let writers: Vec<_> = (0..8u8)
                .map(|i| {
                    let p = &p;
                    s.spawn(move || write_new_atomic(p, &[b'0' + i]).unwrap())
                })
                .collect();
            writers.into_iter().map(|w| w.join().unwrap() as usize).sum()
        });
        assert_eq!(wins, 1);
        let content = std::fs::read(&p).unwrap();
        assert!(!write_new_atomic(&p, b"late").unwrap());
        assert_eq!(std::fs::read(&p).unwrap(), content, "the first write stays");
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            1,
            "no temporary file stays"
        );
        // As readable as a file made by File::create (the umask applies, not tempfile's 0600).
        use std::os::unix::fs::PermissionsExt;
        let reference = d.path().join("reference");
        std::fs::write(&reference, b"").unwrap();
        let mode = |q: &Path| std::fs::metadata(q).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&p), mode(&reference));
        assert!(is_temporary(".dataset.json.tmp-4194302") && !is_temporary("dataset.json"));
    }

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
    }
}
