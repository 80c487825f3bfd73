//! `rftx shard run`: one shard of a run, generated into its own directory with the durability of
//! a whole run (the same question loop, recovery and lock), marked done last.
use std::path::Path;

use super::{execute, Observer, Outcome, Prepared, RunResult, Target};
use crate::error::{Error, Result};
use crate::shard::{shard_dir, Done, Plan};
use crate::store::{self, Status};

/// Environment variable naming shards (`2` or `1,3`) that fail at once with an input error: a
/// test fault for the "fails until fixed" path of a scheduler.
pub const FAIL_SHARDS_ENV: &str = "RFTX_TEST_FAIL_SHARDS";

/// Generates (or resumes) shard `index` of `of` of the prepared run. The first shard to start
/// fixes the shard count in the run's `shards/plan.json`; `config_file` and `sets` are recorded
/// there for the messages that say how to run what is missing.
pub fn run_shard(
    p: &Prepared,
    index: usize,
    of: usize,
    config_file: &Path,
    sets: &[String],
    force: bool,
    observer: &mut dyn Observer,
) -> Result<RunResult> {
    let n = p.questions.questions.len();
    check_arguments(index, of, n)?;
    injected_failure(index)?;
    if let Some(m) = store::read_manifest(&p.dir)? {
        if m.status == Status::Complete && !force {
            observer.log(&format!(
                "{}: the whole run is already complete; nothing to do for shard {index}",
                p.dir.display()
            ));
            return Ok(RunResult {
                dir: p.dir.clone(),
                outcome: Outcome::AlreadyComplete,
                metrics: crate::report::read_metrics(&p.dir)?,
            });
        }
    }
    let plan = Plan::establish(
        &p.dir,
        Plan::new(&p.resolved.config.name, &p.hash, n, of, config_file, sets),
    )?;
    let shard = plan.shard_of(index);
    let target = Target {
        dir: shard_dir(&p.dir, index),
        range: shard.first..shard.end,
        shard: Some(shard),
    };
    let result = execute(p, &target, force, observer)?;
    if Done::read(&target.dir)?.is_none() {
        Done::write(&target.dir, shard, &p.hash)?;
    }
    Ok(result)
}

fn check_arguments(index: usize, of: usize, questions: usize) -> Result<()> {
    let bad = |m: String| Err(Error::Usage(m));
    if of == 0 {
        return bad("--of 0: the number of shards must be ≥ 1".into());
    }
    if index >= of {
        return bad(format!(
            "--shard {index}: shards are numbered 0 to {} for --of {of} (with Slurm: --array=0-{})",
            of - 1,
            of - 1
        ));
    }
    if of > questions {
        return bad(format!(
            "--of {of}: more shards than the run has questions ({questions}); use at most {questions}"
        ));
    }
    Ok(())
}

fn injected_failure(index: usize) -> Result<()> {
    let Ok(list) = std::env::var(FAIL_SHARDS_ENV) else {
        return Ok(());
    };
    if list.split(',').any(|s| s.trim().parse() == Ok(index)) {
        return Err(Error::Usage(format!(
            "{FAIL_SHARDS_ENV}={list}: shard {index} fails on purpose (a test fault); unset {FAIL_SHARDS_ENV} to run it"
        )));
    }
    Ok(())
}
