//! Helpers for the integration tests: run the real binary, read run directories.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::process::Output;

pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// The last line of stdout: the run directory for `run` and `hash`.
    pub fn last_line(&self) -> &str {
        self.stdout.lines().last().unwrap_or("")
    }
}

/// The run directory a command printed, resolved against the directory it ran in.
pub fn printed_dir(r: &Ran, cwd: &Path) -> PathBuf {
    cwd.join(r.last_line())
}

pub fn rftx(args: &[&str], env: &[(&str, &str)], cwd: &Path) -> Ran {
    let mut cmd = assert_cmd::Command::cargo_bin("rftx").expect("the rftx binary is built");
    cmd.args(args).current_dir(cwd);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let Output { status, stdout, stderr } = cmd.output().expect("rftx runs");
    Ran {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// A temp dir with a tiny random model and a config for it.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub model: PathBuf,
    pub config: PathBuf,
}

impl Fixture {
    pub fn new(extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("tiny.gguf");
        rftx::testing::write_tiny_model(&model, 11).unwrap();
        let config = rftx::testing::tiny_config(dir.path(), &model, extra);
        Fixture { dir, model, config }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn runs(&self) -> PathBuf {
        self.dir.path().join("runs")
    }

    pub fn run(&self, extra_args: &[&str]) -> Ran {
        let mut args = vec!["run", self.config.to_str().unwrap(), "--quiet"];
        args.extend_from_slice(extra_args);
        rftx(&args, &[], self.path())
    }

    pub fn write_config(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

/// Holds a run directory's lock the way a live rftx process does (an exclusive `flock` on
/// `lock`, our pid inside) until the returned file is dropped.
pub fn hold_lock(dir: &Path) -> std::fs::File {
    std::fs::create_dir_all(dir).unwrap();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.join("lock"))
        .unwrap();
    f.try_lock().expect("the lock is free");
    std::fs::write(dir.join("lock"), format!("{}\n", std::process::id())).unwrap();
    f
}

pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

pub fn entries(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// A tiny-model fixture of `questions` questions of up to `max_new_tokens` tokens, checkpoints
/// every 2 questions.
pub fn sized_fixture(questions: usize, max_new_tokens: usize) -> Fixture {
    let f = Fixture::new("[checkpoint]\nevery = 2\n[prompt]\nsystem = \"Be brief.\"\nexamples = []\n");
    let text = std::fs::read_to_string(&f.config)
        .unwrap()
        .replace("limit = 4", &format!("limit = {questions}"))
        .replace("max_new_tokens = 12", &format!("max_new_tokens = {max_new_tokens}"));
    std::fs::write(&f.config, text).unwrap();
    f
}

/// Questions committed to a run (or shard) directory: the complete lines of samples.jsonl.
pub fn committed(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("samples.jsonl"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// Polls `cond` every millisecond for up to `secs` seconds.
pub fn wait_for(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !cond() {
        assert!(
            std::time::Instant::now() < end,
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Sends a signal (`KILL`, `TERM`, …) with kill(1).
pub fn signal(pid: u32, name: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success(), "kill -{name} {pid}");
}

/// The byte content of each named file in `dir`.
pub fn contents(dir: &Path, names: &[&str]) -> Vec<Vec<u8>> {
    names.iter().map(|n| std::fs::read(dir.join(n)).unwrap()).collect()
}

/// `path`'s GGUF file again with `key` set to the string `value`.
pub fn rewrite_metadata(path: &Path, key: &str, value: &str) {
    use candle_core::quantized::{gguf_file, QTensor};
    let mut f = std::fs::File::open(path).unwrap();
    let content = gguf_file::Content::read(&mut f).unwrap();
    let mut md = content.metadata.clone();
    md.insert(key.to_string(), gguf_file::Value::String(value.to_string()));
    let tensors: Vec<(String, QTensor)> = content
        .tensor_infos
        .keys()
        .map(|n| (n.clone(), content.tensor(&mut f, n, &candle_core::Device::Cpu).unwrap()))
        .collect();
    let md_refs: Vec<(&str, &gguf_file::Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut std::fs::File::create(path).unwrap(), &md_refs, &t_refs).unwrap();
}

/// Runs `scripts/<script>` with `args` under the Python of `$RFTX_TEST_PYTHON` (else `python3`),
/// offline, with a fresh `datasets` cache: whether it succeeded, and its stdout and stderr
/// together. `None` (having printed `skipped:`) where that Python has no `datasets`.
pub fn python_check(script: &str, args: &[String]) -> Option<(bool, String)> {
    let python = std::env::var("RFTX_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let has = std::process::Command::new(&python)
        .args(["-c", "import datasets"])
        .output();
    if !has.is_ok_and(|o| o.status.success()) {
        rftx::testing::skip(&format!(
            "{python} has no `datasets` (pip install datasets; .ci/run does)"
        ));
        return None;
    }
    let cache = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts").join(script))
        .args(args)
        .env("HF_DATASETS_CACHE", cache.path())
        .env("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success(), text))
}
