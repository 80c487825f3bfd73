//! `rftx slurm submit`: a thin wrapper over `sbatch`. It writes a job-array script and a merge
//! script into the run directory (`slurm/`, kept for provenance), submits the array for the
//! shards that are not done yet, and the merge with an `afterany` dependency so that it runs,
//! and says what is missing, even when a shard failed. Nothing here talks to Slurm but
//! `sbatch`; the shards themselves are plain `rftx shard run` processes.
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::base::error::{Error, Result};
use crate::run::shard::{array_expr, Overview, Plan};
use crate::run::Prepared;

pub const SLURM_DIR: &str = "slurm";
pub const SHARD_SCRIPT: &str = "shard.sbatch";
pub const MERGE_SCRIPT: &str = "merge.sbatch";
/// Seconds before the time limit at which Slurm sends SIGUSR1 (`--signal=B:USR1@…`): rftx stops
/// at its next safe point and the task requeues itself.
pub const WARN_SECONDS: u32 = 120;

/// What `rftx slurm submit` was asked for.
#[derive(Debug, Clone, Default)]
pub struct SubmitOptions {
    pub shards: usize,
    pub max_parallel: Option<usize>,
    pub gpus_per_shard: Option<usize>,
    pub partition: Option<String>,
    pub time: Option<String>,
    /// Passed to both `sbatch` calls as they are.
    pub sbatch_args: Vec<String>,
    /// How many times a task requeues itself after a transient failure or a near time limit.
    pub max_requeues: u32,
    pub dry_run: bool,
}

/// What was (or, with `--dry-run`, would be) submitted.
#[derive(Debug, Clone)]
pub struct Submission {
    pub run_dir: PathBuf,
    pub scripts: Vec<PathBuf>,
    /// The `sbatch` command lines, in order.
    pub commands: Vec<Vec<String>>,
    /// The shards submitted, as an `--array` expression (empty: none).
    pub array: String,
    pub array_job: Option<String>,
    pub merge_job: Option<String>,
    /// Shards a live process is working on, or that Slurm has queued (not resubmitted).
    pub running: Vec<usize>,
    /// The run is complete already: nothing was submitted.
    pub complete: bool,
}

/// Where the shard processes find rftx, the config and the runs; the logs' folder and the
/// working directory as their `#SBATCH` lines carry them, checked before anything is written.
struct Paths {
    rftx: PathBuf,
    config: PathBuf,
    runs: PathBuf,
    /// The run's `slurm/` as the folder of an `--output` pattern (`%` doubled).
    logs: String,
    /// The working directory, as `--chdir` takes it (no patterns there).
    cwd: String,
}

impl Paths {
    fn new(p: &Prepared, config_file: &Path, runs_dir: &Path) -> Result<Paths> {
        let cwd = std::env::current_dir().map_err(|e| Error::io("cannot read the working directory", e))?;
        let logs = crate::base::util::absolute(&p.dir).join(SLURM_DIR);
        Ok(Paths {
            rftx: std::env::current_exe().map_err(|e| Error::io("cannot find the rftx executable", e))?,
            config: crate::base::util::absolute(config_file),
            runs: crate::base::util::absolute(runs_dir),
            logs: output_dir(&logs)?,
            cwd: directive_text(
                &cwd,
                "the working directory",
                "run rftx slurm submit from another directory",
            )?,
        })
    }
}

/// A path as text that an `#SBATCH` line can carry: UTF-8 without control characters (sbatch
/// reads its directives line by line).
fn directive_text(path: &Path, what: &str, fix: &str) -> Result<String> {
    match path.to_str() {
        Some(s) if !s.chars().any(char::is_control) => Ok(s.to_string()),
        _ => Err(Error::Usage(format!(
            "{what} {path:?} cannot be written in an #SBATCH line (it holds a newline, another control character or bytes that are not UTF-8): {fix}"
        ))),
    }
}

/// The logs' folder as an `--output` pattern's: `%` doubled (a single one starts a pattern,
/// `%%` is a literal `%`). A backslash is refused: in an output path Slurm then drops every
/// pattern and the backslashes with it, so `shard-%a.log` would not be the task's log.
fn output_dir(dir: &Path) -> Result<String> {
    let fix = "use a runs directory (--runs-dir, RFTX_RUNS_DIR) without one";
    let s = directive_text(dir, "the run directory", fix)?;
    if s.contains('\\') {
        return Err(Error::Usage(format!(
            "the run directory {s:?} holds a backslash, which makes Slurm ignore the patterns of its log names (slurm/shard-%a.log): {fix}"
        )));
    }
    Ok(s.replace('%', "%%"))
}

/// `--key="value"`, one argument of an `#SBATCH` line as sbatch reads it: quotes keep the
/// whitespace; `\`, `"` and `#` are escaped with a backslash (an unescaped `#` may end the line
/// as a comment).
fn directive(key: &str, value: &str) -> String {
    let mut out = format!("--{key}=\"");
    for c in value.chars() {
        if matches!(c, '\\' | '"' | '#') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A command line as a shell reads it back (`--dry-run` prints them): each word quoted.
pub fn command_line(words: &[String]) -> String {
    words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ")
}

/// Plans the run in `K` shards (or checks the plan in force), writes the scripts and submits
/// what is not done: the array of missing shards, then the merge.
pub fn submit(
    p: &Prepared,
    config_file: &Path,
    sets: &[String],
    runs_dir: &Path,
    o: &SubmitOptions,
) -> Result<Submission> {
    let n = p.questions.questions.len();
    if o.shards == 0 || o.shards > n {
        return Err(Error::Usage(format!(
            "--shards {}: must be between 1 and the run's {n} questions",
            o.shards
        )));
    }
    // Paths an #SBATCH line cannot carry are refused before anything is written.
    let paths = Paths::new(p, config_file, runs_dir)?;
    let mut s = Submission {
        run_dir: p.dir.clone(),
        scripts: Vec::new(),
        commands: Vec::new(),
        array: String::new(),
        array_job: None,
        merge_job: None,
        running: Vec::new(),
        complete: false,
    };
    if crate::core::store::is_complete(&p.dir)? {
        s.complete = true;
        return Ok(s);
    }
    let plan = Plan::establish(
        &p.dir,
        Plan::new(&p.resolved.config.name, &p.hash, n, o.shards, config_file, sets),
    )?;
    let overview = Overview::read(&p.dir)?;
    // Shards a live process holds, or that an earlier submission still has queued: not again.
    let queued = queued_tasks(&job_name(p));
    s.running = overview.running();
    s.running.extend(&queued);
    s.running.sort();
    s.running.dedup();
    let todo: Vec<usize> = overview.todo().into_iter().filter(|i| !queued.contains(i)).collect();
    s.array = array_expr(&todo);
    let (shard_script, merge_script) = write_scripts(p, &plan, &paths, sets, o)?;
    s.scripts = vec![shard_script.clone(), merge_script.clone()];
    if !s.array.is_empty() {
        let mut array = format!("--array={}", s.array);
        if let Some(par) = o.max_parallel {
            array.push_str(&format!("%{par}"));
        }
        s.commands.push(sbatch(o, &[array], &shard_script));
    }
    if s.array.is_empty() && !s.running.is_empty() {
        // Shards of an earlier submission are running or queued; its merge job follows them.
        return Ok(s);
    }
    s.commands.push(sbatch(o, &[], &merge_script));
    if !o.dry_run {
        submit_jobs(&mut s)?;
    }
    Ok(s)
}

/// The job name of a run's shard tasks: `rftx-<name>-<hash8>`.
fn job_name(p: &Prepared) -> String {
    format!("rftx-{}-{}", p.resolved.config.name, &p.hash[..8])
}

/// Array indices of the run's tasks that Slurm has pending or running (`squeue`); none where
/// `squeue` is not available (a dry run away from the cluster).
fn queued_tasks(job_name: &str) -> Vec<usize> {
    let Ok(out) = Command::new("squeue")
        .args(["-h", "-r", "-o", "%K", "--name", job_name])
        .output()
    else {
        return Vec::new();
    };
    let mut tasks: Vec<usize> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    tasks.sort();
    tasks.dedup();
    tasks
}

/// Writes `slurm/shard.sbatch` and `slurm/merge.sbatch` into the run directory.
fn write_scripts(
    p: &Prepared,
    plan: &Plan,
    paths: &Paths,
    sets: &[String],
    o: &SubmitOptions,
) -> Result<(PathBuf, PathBuf)> {
    let dir = p.dir.join(SLURM_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("{}: cannot create", dir.display()), e))?;
    let (shard_script, merge_script) = (dir.join(SHARD_SCRIPT), dir.join(MERGE_SCRIPT));
    let run_dir = crate::base::util::absolute(&p.dir);
    let shard_text = shard_script_text(p, plan, paths, sets, o);
    crate::base::util::write_atomic(&shard_script, shard_text.as_bytes())?;
    crate::base::util::write_atomic(&merge_script, merge_script_text(p, paths, &run_dir).as_bytes())?;
    Ok((shard_script, merge_script))
}

/// Runs the submission's `sbatch` lines: the array (if any), then the merge depending on it;
/// records them in `slurm/submissions.jsonl`.
fn submit_jobs(s: &mut Submission) -> Result<()> {
    if !s.array.is_empty() {
        let job = run_sbatch(&s.commands[0])?;
        let merge = s.commands.last_mut().expect("merge command");
        merge.insert(2, format!("--dependency=afterany:{job}"));
        s.array_job = Some(job);
    }
    s.merge_job = Some(run_sbatch(s.commands.last().expect("merge command"))?);
    record(&s.run_dir.join(SLURM_DIR), s)
}

/// `sbatch --parsable [extra] [options] SCRIPT`.
fn sbatch(o: &SubmitOptions, extra: &[String], script: &Path) -> Vec<String> {
    let mut c = vec!["sbatch".to_string(), "--parsable".to_string()];
    c.extend(extra.iter().cloned());
    if let Some(part) = &o.partition {
        c.push(format!("--partition={part}"));
    }
    if let Some(t) = &o.time {
        c.push(format!("--time={t}"));
    }
    c.extend(o.sbatch_args.iter().cloned());
    c.push(script.display().to_string());
    c
}

/// Runs an `sbatch --parsable` command line; returns the job id it printed.
fn run_sbatch(command: &[String]) -> Result<String> {
    let out = Command::new(&command[0]).args(&command[1..]).output().map_err(|e| {
        Error::Usage(format!(
            "cannot run `{}` ({e}): run this on a machine with Slurm's client commands (a login node), or add --dry-run to only write the scripts",
            command[0]
        ))
    })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let job = stdout.trim().split(';').next().unwrap_or("").to_string();
    if !out.status.success() || job.is_empty() || !job.chars().all(|c| c.is_ascii_digit()) {
        return Err(Error::Run(format!(
            "`{}` failed ({}): {}",
            command.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(job)
}

/// Appends the submission to `slurm/submissions.jsonl`.
fn record(dir: &Path, s: &Submission) -> Result<()> {
    let line = serde_json::json!({
        "submitted_at": crate::base::util::now_rfc3339(),
        "array": s.array,
        "array_job": s.array_job,
        "merge_job": s.merge_job,
        "commands": s.commands,
    });
    crate::core::store::Appender::open(&dir.join("submissions.jsonl"))?.append(&line)
}

/// A word quoted for a POSIX shell (`shlex`; plain words stay as they are). Arguments and paths
/// cannot hold a NUL byte, the one thing `shlex` refuses to quote.
fn quote(s: &str) -> String {
    match shlex::try_quote(s) {
        Ok(q) => q.into_owned(),
        Err(_) => quote(&s.replace('\0', "")),
    }
}

fn shard_script_text(p: &Prepared, plan: &Plan, x: &Paths, sets: &[String], o: &SubmitOptions) -> String {
    let mut head = vec![
        format!("--job-name={}", job_name(p)),
        directive("output", &format!("{}/shard-%a.log", x.logs)),
        "--open-mode=append".into(),
        "--requeue".into(),
        format!("--signal=B:USR1@{WARN_SECONDS}"),
        directive("chdir", &x.cwd),
    ];
    if let Some(g) = o.gpus_per_shard.filter(|&g| g > 0) {
        head.push(format!("--gres=gpu:{g}"));
    }
    let sets: String = sets.iter().map(|s| format!(" --set {}", quote(s))).collect();
    let command = format!(
        "\"$rftx\" shard run {} --shard \"$SLURM_ARRAY_TASK_ID\" --of {} --runs-dir {} --quiet{sets}",
        quote(&x.config.display().to_string()),
        plan.shards,
        quote(&x.runs.display().to_string())
    );
    SHARD_TEMPLATE
        .replace("@HEADER@", &header(&head))
        .replace("@RUN@", &format!("{}-{}", p.resolved.config.name, &p.hash[..12]))
        .replace("@DATE@", &crate::base::util::now_rfc3339())
        .replace("@RFTX@", &quote(&x.rftx.display().to_string()))
        .replace("@MAX_REQUEUES@", &o.max_requeues.to_string())
        .replace("@SHARDS@", &plan.shards.to_string())
        .replace("@COMMAND@", &command)
}

fn merge_script_text(p: &Prepared, x: &Paths, run_dir: &Path) -> String {
    let head = vec![
        format!("--job-name=rftx-merge-{}", p.resolved.config.name),
        directive("output", &format!("{}/merge.log", x.logs)),
        "--open-mode=append".into(),
        directive("chdir", &x.cwd),
    ];
    format!(
        "#!/bin/bash\n# Merge of run {}-{}: written by `rftx slurm submit` on {}.\n{}\n{} merge {}\n",
        p.resolved.config.name,
        &p.hash[..12],
        crate::base::util::now_rfc3339(),
        header(&head),
        quote(&x.rftx.display().to_string()),
        quote(&run_dir.display().to_string())
    )
}

fn header(options: &[String]) -> String {
    options
        .iter()
        .map(|o| format!("#SBATCH {o}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The array task: runs one shard and decides what its exit means. rftx stops cleanly on
/// SIGUSR1 (time limit near: the task requeues itself) and SIGTERM (Slurm cancels, preempts or
/// requeues: Slurm decides what follows); exit 2 is bad input (never requeued); anything else
/// (a crash, kill -9, an I/O error) is requeued while attempts remain.
const SHARD_TEMPLATE: &str = r#"#!/bin/bash
# Shards of run @RUN@: written by `rftx slurm submit` on @DATE@ (kept for provenance).
@HEADER@
set -u
rftx=@RFTX@
max_requeues=@MAX_REQUEUES@
task="${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"
attempt=$(( ${SLURM_RESTART_COUNT:-0} + 1 ))
say() { echo "[$(date -u +%FT%TZ)] rftx shard ${SLURM_ARRAY_TASK_ID} of @SHARDS@ (job $task, attempt $attempt): $*"; }
say "starting on $(hostname)"
warned=0
# Slurm sends SIGUSR1 to this shell only (B:): pass it on. SIGTERM (scancel, preemption, requeue,
# time limit) reaches rftx directly; this shell only keeps waiting for it to stop cleanly.
trap 'warned=1; kill -USR1 "$child" 2>/dev/null; say "SIGUSR1: time limit near, rftx stops at a safe point"' USR1
trap 'say "SIGTERM: waiting for rftx to stop at a safe point"' TERM
@COMMAND@ &
child=$!
while kill -0 "$child" 2>/dev/null; do wait "$child"; done
wait "$child"; rc=$?
case "$rc" in
  0) say "done"; exit 0 ;;
  2) say "bad input (exit 2): not requeued; fix it, then run rftx slurm submit again"; exit 2 ;;
esac
if [ "$warned" = 0 ] && { [ "$rc" = 130 ] || [ "$rc" = 143 ]; }; then
  say "stopped by a signal (exit $rc): cancelled, preempted or requeued by Slurm"; exit "$rc"
fi
reason="exit $rc"; [ "$warned" = 1 ] && reason="time limit near"
[ "$rc" = 75 ] && reason="retryable (exit 75: run locked, GPU unavailable or download failed)"
if [ "$attempt" -le "$max_requeues" ]; then
  say "$reason: requeueing ($attempt of $max_requeues requeues used)"
  scontrol requeue "$task" && exit "$rc"
  say "scontrol requeue failed"
fi
say "$reason: giving up; rftx shard status says what is left"
exit "$rc"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting() {
        assert_eq!(quote("runs/a-1.toml"), "runs/a-1.toml");
        for word in [
            "generation.temperature=0.7",
            "a b",
            "it's",
            "x=\"a\"",
            "$HOME `x` \\ ;|&",
            "",
            "prompt.system=\"Be brief.\"",
        ] {
            let q = quote(word);
            if word != "generation.temperature=0.7" {
                assert_ne!(q, word, "{word:?} must be quoted");
            }
            assert_eq!(shlex::split(&q), Some(vec![word.to_string()]), "{q}");
        }
    }

    /// The arguments of an `#SBATCH` line as sbatch reads them (`_get_argument` of Slurm 22.05's
    /// src/sbatch/opt.c): whitespace separates them unless quoted, a backslash escapes the next
    /// character, quotes are dropped, an unquoted `#` ends the line.
    fn sbatch_args(line: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut chars = line.strip_prefix("#SBATCH").unwrap().chars().peekable();
        loop {
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            let (mut arg, mut quote, mut escaped) = (String::new(), None, false);
            while let Some(&c) = chars.peek() {
                if (quote.is_none() && c.is_whitespace()) || c == '\n' {
                    break;
                }
                chars.next();
                match c {
                    _ if escaped => escaped = false,
                    '\\' => {
                        escaped = true;
                        continue;
                    }
                    _ if quote == Some(c) => {
                        quote = None;
                        continue;
                    }
                    _ if quote.is_some() => {}
                    '"' | '\'' => {
                        quote = Some(c);
                        continue;
                    }
                    '#' => return out,
                    _ => {}
                }
                arg.push(c);
            }
            assert!(quote.is_none(), "sbatch: unmatched quote in {line}");
            if arg.is_empty() {
                return out;
            }
            out.push(arg);
        }
    }

    /// Slurm's file name patterns, those rftx's log names use: `%%` and `%a`.
    fn expand(pattern: &str, task: usize) -> String {
        pattern
            .replace("%%", "\0")
            .replace("%a", &task.to_string())
            .replace('\0', "%")
    }

    #[test]
    fn sbatch_reads_every_path_back_as_it_is() {
        for dir in [
            "/runs",
            "/a b/runs with space#x",
            "/r%a/50% #1",
            "/q\"u'o/t#e",
            "/tab\there",
        ] {
            let dir = Path::new(dir);
            let Ok(logs) = output_dir(dir) else {
                assert!(dir.to_str().unwrap().contains('\t'), "{dir:?}");
                continue;
            };
            let line = format!("#SBATCH {}", directive("output", &format!("{logs}/shard-%a.log")));
            let args = sbatch_args(&line);
            assert_eq!(args.len(), 1, "{line}: {args:?}");
            let pattern = args[0].strip_prefix("--output=").unwrap();
            assert_eq!(expand(pattern, 3), format!("{}/shard-3.log", dir.display()), "{line}");
            let line = format!("#SBATCH {}", directive("chdir", dir.to_str().unwrap()));
            assert_eq!(sbatch_args(&line), [format!("--chdir={}", dir.display())], "{line}");
        }
    }

    #[test]
    fn paths_that_sbatch_cannot_carry_are_refused() {
        let e = output_dir(Path::new("/runs\\x")).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.to_string().contains("holds a backslash") && e.to_string().contains("--runs-dir"),
            "{e}"
        );
        let e = output_dir(Path::new("/runs\nx")).unwrap_err();
        assert!(e.to_string().contains("#SBATCH line") && e.exit_code() == 2, "{e}");
        let e = directive_text(Path::new("/w\rx"), "the working directory", "fix").unwrap_err();
        assert!(e.to_string().contains("the working directory"), "{e}");
    }
}
