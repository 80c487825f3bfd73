//! Shards of a run: a run's questions split into `K` balanced contiguous ranges, each generated
//! into its own directory under the run's (`runs/<name>-<hash12>/shards/shard-0003/`), then
//! merged into exactly the bytes an unsharded run writes.
//!
//! - `shards/plan.json` fixes the shard count the first time a shard starts (created with an
//!   create-new write, so concurrent first starts agree); a different count later is an input error.
//! - A shard directory is an ordinary run directory holding the questions `first..end` (same
//!   durability: appends, recovery, lock), plus `done.json`, written last, with the digests of
//!   its files. Only `done.json` says a shard is done: a scheduler's "COMPLETED" is not trusted.
//! - [`merge`] checks every shard (done, digests, line counts, ranges tiling the questions, one
//!   kind of device) and writes the run's own files from theirs.
//! - `rftx shard run` ([`run_shard`]) is the run's own question loop over the shard's range, into
//!   the shard's directory.
//!
//! Modules: [`plan`] (`plan.json`, `done.json`, ranges), [`status`] (each shard's state),
//! [`merge`].
mod merge;
mod plan;
mod status;

use std::path::Path;

use super::{already_complete, execute, Observer, Prepared, RunResult, Target};
use crate::base::error::{Error, Result};
pub use merge::{merge, Merged};
pub use plan::{balanced, shard_dir, Done, Plan, DONE_FILE, PLAN_FILE, SHARDS_DIR};
pub use status::{array_expr, Overview, ShardStatus, State};

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
    if !force {
        let why = format!("the whole run is already complete; nothing to do for shard {index}");
        if let Some(done) = already_complete(&p.dir, observer, &why)? {
            return Ok(done);
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
