//! `rftx shard run|status`, `rftx merge` and `rftx slurm submit`: a run split over many
//! processes or machines, and put back together.
use std::path::PathBuf;

use clap::{Args, Subcommand};
use rftx::base::error::Error;
use rftx::commands::slurm;
use rftx::run::shard::{self, Overview};
use rftx::run::{self, Outcome};

use super::{one_run, prepare, OutputFormat, Progress, RunArgs, RunsDirArg};

#[derive(Subcommand)]
pub(super) enum ShardCommand {
    /// Generate one shard of a run: a balanced contiguous range of its questions, into
    /// runs/<name>-<hash12>/shards/ (kill -9 and resume as for `rftx run`; done.json written last).
    Run(ShardRunArgs),
    /// List a sharded run's done, partial and missing shards; print the missing ones as a Slurm
    /// --array expression.
    Status(ShardStatusArgs),
}

#[derive(Args)]
pub(super) struct ShardRunArgs {
    #[command(flatten)]
    run: RunArgs,
    /// This shard, 0 to K-1 (default: $SLURM_ARRAY_TASK_ID).
    #[arg(long, value_name = "I", env = "SLURM_ARRAY_TASK_ID")]
    shard: usize,
    /// The number of shards K. Fixed by the first shard that starts (shards/plan.json); never
    /// taken from $SLURM_ARRAY_TASK_COUNT, which is 1 when one task is resubmitted.
    #[arg(long, value_name = "K")]
    of: usize,
}

#[derive(Args)]
pub(super) struct ShardStatusArgs {
    /// The run: its directory, its config file, a hash prefix or a directory name.
    run: String,
    /// Override a key of a config file given as RUN (as for `rftx run`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    #[command(flatten)]
    dir: RunsDirArg,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    format: OutputFormat,
}

#[derive(Args)]
pub(super) struct MergeArgs {
    /// The run: its directory, its config file, a hash prefix or a directory name.
    run: String,
    /// Override a key of a config file given as RUN (as for `rftx run`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    #[command(flatten)]
    dir: RunsDirArg,
    /// Merge shards computed on different devices (their numerics differ).
    #[arg(long)]
    force: bool,
}

#[derive(Subcommand)]
pub(super) enum SlurmCommand {
    /// Submit a run as a Slurm job array of shards (only those not done yet) and a merge job that
    /// runs after them, whatever their outcome.
    Submit(SubmitArgs),
}

#[derive(Args)]
pub(super) struct SubmitArgs {
    #[command(flatten)]
    config: super::ConfigArgs,
    /// The number of shards K (fixed the first time; later submissions must give the same).
    #[arg(long, value_name = "K")]
    shards: usize,
    /// At most P shards at once (--array=…%P).
    #[arg(long, value_name = "P")]
    max_parallel: Option<usize>,
    /// GPUs per shard (--gres=gpu:G).
    #[arg(long, value_name = "G")]
    gpus_per_shard: Option<usize>,
    #[arg(long)]
    partition: Option<String>,
    /// Time limit per shard, as sbatch takes it (e.g. 4:00:00). Near it, a shard stops cleanly
    /// and requeues itself.
    #[arg(long)]
    time: Option<String>,
    /// Another sbatch option, passed as it is (repeatable): --sbatch-arg=--account=abc.
    #[arg(long = "sbatch-arg", value_name = "ARG", allow_hyphen_values = true)]
    sbatch_arg: Vec<String>,
    /// How many times a shard task requeues itself (crash, kill, node failure, time limit).
    #[arg(long, value_name = "N", default_value_t = 3)]
    max_requeues: u32,
    /// Write the scripts and print the sbatch commands without submitting.
    #[arg(long)]
    dry_run: bool,
}

pub(super) fn shard(command: ShardCommand) -> Result<(), Error> {
    match command {
        ShardCommand::Run(a) => shard_run(a),
        ShardCommand::Status(a) => status(a),
    }
}

fn shard_run(a: ShardRunArgs) -> Result<(), Error> {
    let p = prepare(&a.run.config)?;
    let mut progress = Progress::new(a.run.quiet);
    let result = run::run_shard(
        &p,
        a.shard,
        a.of,
        &a.run.config.config,
        &a.run.config.set,
        a.run.force,
        &mut progress,
    )?;
    let summary = rftx::core::report::summary(&result.metrics);
    match result.outcome {
        Outcome::AlreadyComplete => println!("already complete: {}", summary.replace('\n', "\n  ")),
        Outcome::Completed { .. } => println!("{summary}"),
    }
    println!("{}", result.dir.display());
    Ok(())
}

fn status(a: ShardStatusArgs) -> Result<(), Error> {
    let dir = one_run(&a.run, &a.set, &a.dir.runs_dir)?;
    let o = Overview::read(&dir)?;
    match a.format {
        OutputFormat::Text => print!("{}", o.render()),
        OutputFormat::Json => {
            let shards: Vec<serde_json::Value> = o
                .shards
                .iter()
                .map(|s| {
                    serde_json::json!({"shard": s.index, "first": s.range.start, "end": s.range.end,
                        "state": s.state.name(), "questions_done": s.questions_done(), "note": s.note})
                })
                .collect();
            let v = serde_json::json!({"dir": dir.display().to_string(), "plan": o.plan, "shards": shards,
                "missing_array": shard::array_expr(&o.todo())});
            println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        }
    }
    Ok(())
}

pub(super) fn merge(a: MergeArgs) -> Result<(), Error> {
    let dir = one_run(&a.run, &a.set, &a.dir.runs_dir)?;
    let merged = shard::merge(&dir, a.force)?;
    println!("merged {} shards", merged.shards);
    println!("{}", rftx::core::report::summary(&merged.metrics));
    println!("{}", merged.dir.display());
    Ok(())
}

pub(super) fn slurm(command: SlurmCommand) -> Result<(), Error> {
    let SlurmCommand::Submit(a) = command;
    let p = prepare(&a.config)?;
    let options = slurm::SubmitOptions {
        shards: a.shards,
        max_parallel: a.max_parallel,
        gpus_per_shard: a.gpus_per_shard,
        partition: a.partition,
        time: a.time,
        sbatch_args: a.sbatch_arg,
        max_requeues: a.max_requeues,
        dry_run: a.dry_run,
    };
    let s = slurm::submit(&p, &a.config.config, &a.config.set, &a.config.runs_dir, &options)?;
    if s.complete {
        println!("already complete: nothing to submit");
    }
    for script in &s.scripts {
        println!("wrote {}", script.display());
    }
    println!(
        "the shards run this rftx, compiled for {}: every node needs these instruction sets",
        rftx::engine::device::built_for()
    );
    if !s.running.is_empty() {
        println!(
            "running or queued (not resubmitted): shards {}",
            shard::array_expr(&s.running)
        );
    }
    let shown: Vec<String> = s.commands.iter().map(|c| slurm::command_line(c)).collect();
    match (a.dry_run, &s.array_job, &s.merge_job) {
        (true, _, _) => shown.iter().for_each(|c| println!("would run: {c}")),
        (false, array, merge) => {
            if let Some(j) = array {
                println!("submitted shards {} as job {j}", s.array);
            }
            if let Some(j) = merge {
                println!("submitted the merge as job {j}");
            }
        }
    }
    println!("{}", PathBuf::from(&s.run_dir).display());
    Ok(())
}
