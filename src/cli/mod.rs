//! Command-line interface: argument parsing, dispatch and printing; progress bars in
//! [`progress`]. It knows nothing of tensors; everything else is in the library.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use rftx::base::error::Error;
use rftx::commands::catalog::{self, RunInfo};
use rftx::commands::compare::{Comparison, CsvExporter, Exporter, JsonExporter, MarkdownExporter, TableExporter};
use rftx::run::{self, Observer, Outcome};

mod progress;
mod runs;
mod shard;
use progress::Progress;

const EXIT_CODES: &str = "\
Exit codes:
  0  success (also: the run was already complete)
  1  the run failed while generating; its durable work is kept, and re-running resumes it.
     `rftx verify`: a sample generated again is not what the run stored
  2  bad input: command line, config file, model file, question file or runs directory, a
     default model this machine cannot fetch (no python3 or pip) or not the pinned file;
     nothing was run and no run directory was created
  75 a condition that may clear by itself: the run is locked by another process, the GPU
     cannot be opened now, or pip could not download the default model; nothing was run:
     retry later
  130, 143, 138  stopped by SIGINT (Ctrl-C), SIGTERM or SIGUSR1 (128 + the signal) at a safe
     point: the run is marked interrupted, its committed work kept; the same command resumes it.
     A second signal ends rftx at once with the same code";

#[derive(Parser)]
#[command(
    name = "rftx",
    version,
    about = "Reproducible, memory-aware sample generation for rejection-sampling fine-tuning",
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate samples for every question, grade them and store the run in its hashed directory
    /// (resumes an interrupted run; reports a complete one).
    Run(RunArgs),
    /// Print the resolved config and, as the last line, the run directory it maps to.
    Hash(ConfigArgs),
    /// Predict the memory peak of the configured run, broken down, against a device; the largest
    /// chunk size and token budget that fit. `--check` measures the prediction on the real model.
    Plan(PlanArgs),
    /// Measure throughput and memory of a config (e.g. configs/w15.toml) at several chunk sizes,
    /// side by side in one process.
    Bench(BenchArgs),
    /// Run a config at every point of a sweep (--over KEY=V1,V2,… and/or the config's [sweep]
    /// table), each point an ordinary run in its own directory; then compare the points.
    Sweep(SweepArgs),
    /// Compare runs side by side: the parameters that differ, then metrics with ratios to the
    /// first run, and whether the samples are identical.
    Compare(CompareArgs),
    /// List the runs in the runs directory.
    Ls(LsArgs),
    /// Print one run's status, inputs, metrics and config.
    Show(ShowArgs),
    /// Write the built-in unit-conversion question set as JSON ([[question, answer], …]).
    Data(DataArgs),
    /// Grade {"completion": …, "answer": …} lines with a grader (--set rft.grader=math, …):
    /// each line is printed back with `extracted`, `parsed` and `correct`.
    Grade(GradeArgs),
    /// Rebuild a run's datasets and pass@k under other rft.* settings, without generating:
    /// written to RUN/regrade/rft-<hash>/; samples.jsonl is untouched.
    Regrade(RegradeArgs),
    /// Generate (question, sample) pairs drawn at random from a run again, each alone, and compare
    /// them byte for byte with what the run stored: exit 0 when all are identical, 1 naming the
    /// first that differs.
    Verify(VerifyArgs),
    /// A run split into shards: generate one (`shard run`), or see which are done (`shard status`).
    #[command(subcommand)]
    Shard(shard::ShardCommand),
    /// Check a sharded run's shards and write the run's files, byte-identical to an unsharded run.
    Merge(shard::MergeArgs),
    /// Run a config's shards as a Slurm job array (`slurm submit`).
    #[command(subcommand)]
    Slurm(shard::SlurmCommand),
}

#[derive(Args)]
struct SweepArgs {
    #[command(flatten)]
    run: RunArgs,
    /// A key and its values: --over generation.chunk_size=1,3,5,15 (repeatable; the points are
    /// the cartesian product). Replaces the [sweep] table's list for the same key.
    #[arg(long, value_name = "KEY=V1,V2,…")]
    over: Vec<String>,
    /// Format of the comparison printed at the end.
    #[arg(long, value_enum, default_value_t = CompareFormat::Table)]
    format: CompareFormat,
    /// Also write an SVG chart of peak memory and tokens/s per point to this file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
}

/// Where to look for runs named by a hash prefix or directory name.
#[derive(Args)]
struct RunsDirArg {
    /// Where run directories live.
    #[arg(long, value_name = "DIR", env = "RFTX_RUNS_DIR", default_value = "runs")]
    runs_dir: PathBuf,
}

#[derive(Args)]
struct CompareArgs {
    /// Runs to compare, the first being the reference: run directories, sweep directories (all
    /// their runs), config files (the run they hash to) or hash prefixes / directory names.
    #[arg(required = true, value_name = "RUN")]
    runs: Vec<String>,
    /// Override a key of the config files given as RUN (as for `rftx run`), to find the run
    /// that the same `--set` made: --set data.limit=3.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    #[command(flatten)]
    dir: RunsDirArg,
    /// Output format.
    #[arg(long, value_enum, default_value_t = CompareFormat::Table)]
    format: CompareFormat,
    /// Also write an SVG chart of peak memory and tokens/s per run to this file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum CompareFormat {
    Table,
    Markdown,
    Json,
    Csv,
}

impl CompareFormat {
    fn exporter(self) -> Box<dyn Exporter> {
        match self {
            CompareFormat::Table => Box::new(TableExporter),
            CompareFormat::Markdown => Box::new(MarkdownExporter),
            CompareFormat::Json => Box::new(JsonExporter),
            CompareFormat::Csv => Box::new(CsvExporter),
        }
    }
}

#[derive(Args)]
struct LsArgs {
    #[command(flatten)]
    dir: RunsDirArg,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    format: OutputFormat,
}

#[derive(Args)]
struct ShowArgs {
    /// The run: a run directory, a config file, a hash prefix or a directory name.
    run: String,
    #[command(flatten)]
    dir: RunsDirArg,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    format: OutputFormat,
    /// Also print pass@k at these k (--pass-at 1,5,10), from metrics.json.
    #[arg(long, value_name = "K,…", value_delimiter = ',')]
    pass_at: Vec<usize>,
}

#[derive(Args)]
struct GradeArgs {
    /// JSON Lines: {"completion": "…", "answer": …} per line (other fields are kept).
    input: PathBuf,
    /// Take [rft] from this experiment file (else the defaults).
    #[arg(long, value_name = "FILE.toml")]
    config: Option<PathBuf>,
    /// Override a key: --set rft.grader=math --set rft.extract=boxed (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(Args)]
struct RegradeArgs {
    /// The run: a run directory, a config file, a hash prefix or a directory name.
    run: String,
    #[command(flatten)]
    dir: RunsDirArg,
    /// An rft.* key to change: --set rft.grader=math (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(Args)]
struct VerifyArgs {
    /// The run: a run directory (a merged one, or one copied from another machine), a config
    /// file, a hash prefix or a directory name.
    run: String,
    #[command(flatten)]
    dir: RunsDirArg,
    /// How many (question, sample) pairs to generate again (all, where the run has fewer).
    #[arg(long, value_name = "N", default_value_t = 8)]
    samples: usize,
    /// Seed of the random draw (default: from the clock; printed, to draw the same pairs again).
    #[arg(long, value_name = "S")]
    seed: Option<u64>,
    /// The run's model file, where it is not at the path config.toml names (a run copied from
    /// another machine); checked against the manifest's sha256.
    #[arg(long, value_name = "PATH")]
    model: Option<PathBuf>,
    /// No line per pair on stderr.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args)]
struct BenchArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Chunk sizes to measure (`auto`: as a run would pick).
    #[arg(long, value_name = "SIZES", value_delimiter = ',', default_value = "1,3,5,15")]
    chunks: Vec<rftx::core::config::Count>,
    /// Questions per batch to measure, each with every chunk size (`auto`: as a run would pick).
    #[arg(
        long = "prompts-per-batch",
        value_name = "COUNTS",
        value_delimiter = ',',
        default_value = "1"
    )]
    prompts_per_batch: Vec<rftx::core::config::Count>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    format: OutputFormat,
    /// Also write the JSON report to this file.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Only write the chat-formatted prompts of the config's questions (a JSON list of strings,
    /// for running the same workload through another engine) and exit.
    #[arg(long, value_name = "FILE")]
    write_prompts: Option<PathBuf>,
    /// Only check rftx's CUDA kernels on the config's device against their CPU reference (the
    /// config's model file, f32), print the differences and exit: 1 if any is out of bounds.
    /// On the CPU the reference is checked against itself.
    #[arg(long)]
    kernels: bool,
    /// Also measure every setting with model.batch_invariant = false (cuBLAS choosing each
    /// GEMM's kernel by shape; GPU, gpu_kernels = "fused") and report what invariance costs.
    #[arg(long)]
    invariance: bool,
}

#[derive(Args)]
struct PlanArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Device: t4, l4, a10g, a100-40g, a100-80g, h100, cpu (this machine's available memory) or a
    /// size such as 16GiB. Default: plan.device, else cpu.
    #[arg(long, value_name = "NAME|BYTES")]
    device: Option<String>,
    /// Architecture preset for a model that is not on disk: smollm2-135m, smollm2-360m, smollm2-1.7b.
    #[arg(long, value_name = "NAME")]
    arch: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    format: OutputFormat,
    /// Also generate the first question at these chunk sizes on the real model and print the
    /// predicted and measured heap peaks side by side (e.g. --check 1,3,5,15).
    #[arg(long, value_name = "SIZES", value_delimiter = ',')]
    check: Option<Vec<usize>>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum OutputFormat {
    Text,
    Json,
}

#[derive(Args, Clone)]
struct ConfigArgs {
    /// The experiment file (TOML).
    config: PathBuf,
    /// Override a key: --set generation.chunk_size=5 (value parsed as TOML; repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Where run directories live.
    #[arg(long, value_name = "DIR", env = "RFTX_RUNS_DIR", default_value = "runs")]
    runs_dir: PathBuf,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// No progress bars or log lines on stderr.
    #[arg(long, short)]
    quiet: bool,
    /// Redo a run even if its directory is complete.
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
struct DataArgs {
    /// Output file; `-` for standard output.
    #[arg(long, short, default_value = "-")]
    out: PathBuf,
    /// Number of questions.
    #[arg(long, default_value_t = rftx::core::data::BUILTIN_COUNT)]
    count: usize,
}

pub fn main() -> ExitCode {
    if let Err(e) = rftx::engine::device::check_cpu() {
        eprintln!("error: {e}");
        return ExitCode::from(e.exit_code() as u8);
    }
    let cli = Cli::parse();
    if let Err(e) = rftx::base::interrupt::install() {
        eprintln!(
            "warning: cannot install signal handlers ({e}): Ctrl-C will stop rftx without marking the run interrupted"
        );
    }
    let result = match cli.command {
        Command::Run(a) => run(a),
        Command::Hash(a) => hash(a),
        Command::Plan(a) => plan(a),
        Command::Bench(a) => bench(a),
        Command::Sweep(a) => sweep(a),
        Command::Compare(a) => compare(a),
        Command::Ls(a) => runs::ls(a),
        Command::Show(a) => runs::show(a),
        Command::Data(a) => data(a),
        Command::Grade(a) => runs::grade(a),
        Command::Regrade(a) => runs::regrade(a),
        Command::Verify(a) => runs::verify(a),
        Command::Shard(c) => shard::shard(c),
        Command::Merge(a) => shard::merge(a),
        Command::Slurm(c) => shard::slurm(c),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ Error::Interrupted { .. }) => {
            eprintln!("{e}");
            ExitCode::from(e.exit_code() as u8)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

fn prepare(a: &ConfigArgs) -> Result<run::Prepared, Error> {
    let resolved = rftx::core::config::load(&a.config, &a.set)?;
    run::prepare(resolved, &a.runs_dir)
}

fn hash(a: ConfigArgs) -> Result<(), Error> {
    let p = prepare(&a)?;
    print!("{}", p.resolved.to_toml());
    println!("# model: {} (sha256 {})", p.model_path.display(), p.model_sha256);
    println!(
        "# questions: {}, {} questions (sha256 {})",
        p.questions.source,
        p.questions.questions.len(),
        p.questions.sha256
    );
    println!("# hash: {}", p.hash);
    println!("{}", p.dir.display());
    Ok(())
}

fn run(a: RunArgs) -> Result<(), Error> {
    let p = prepare(&a.config)?;
    let mut progress = Progress::new(a.quiet);
    if !p.resolved.config.sweep.is_empty() {
        progress.log(&format!(
            "note: `rftx run` makes one run and ignores the [sweep] table; `rftx sweep {}` runs its points",
            a.config.config.display()
        ));
    }
    if rftx::run::shard::Plan::path(&p.dir).is_file() && !a.force {
        progress.log(&format!(
            "note: this run is sharded (`rftx shard status {}`); `rftx run` generates it whole, unsharded, and `rftx merge` writes the same bytes from the shards",
            p.dir.display()
        ));
    }
    let result = run::run(&p, a.force, &mut progress)?;
    if result.outcome == Outcome::AlreadyComplete {
        println!(
            "already complete: {}",
            rftx::core::report::summary(&result.metrics).replace('\n', "\n  ")
        );
    } else {
        println!("{}", rftx::core::report::summary(&result.metrics));
    }
    println!("{}", result.dir.display());
    Ok(())
}

fn plan(a: PlanArgs) -> Result<(), Error> {
    let p = prepare(&a.config)?;
    let mut progress = Progress::new(true);
    // With --check the model is loaded once and serves the plan too.
    let session = match &a.check {
        Some(sizes) if sizes.contains(&0) => {
            return Err(Error::input(&a.config.config, "--check: chunk sizes must be ≥ 1"))
        }
        Some(_) => Some(run::Session::open(&p, &mut |s| progress.log(s))?),
        None => None,
    };
    let planned = run::plan_config(&p, a.arch.as_deref(), a.device.as_deref(), session.as_ref())?;
    let checked = match (&a.check, &session) {
        (Some(sizes), Some(session)) => Some(run::check_plan(&p, session, sizes, &mut progress)?),
        _ => None,
    };
    match a.format {
        OutputFormat::Json => {
            let mut v = serde_json::to_value(&planned).expect("plans serialise");
            if let Some(rows) = &checked {
                v["check"] = serde_json::to_value(rows).expect("rows serialise");
            }
            println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        }
        OutputFormat::Text => {
            print!("{}", rftx::core::plan::render(&planned.plan));
            if let Some(e) = &planned.throughput {
                print!("{}", run::render_expected(e));
            }
            if planned.prompt_tokens_estimated {
                println!("(prompt length estimated from its characters: no tokenizer on disk)");
            }
            if let Some(rows) = &checked {
                println!(
                    "\ncheck on the real model, first question ({} prompt tokens):",
                    rows.first().map_or(0, |r| r.prompt_tokens)
                );
                println!(
                    "{:>10} {:>14} {:>14} {:>8}",
                    "chunk_size", "predicted", "measured", "error"
                );
                for r in rows {
                    println!(
                        "{:>10} {:>14} {:>14} {:>+7.1}%",
                        r.chunk_size,
                        rftx::base::util::human_bytes(r.predicted_peak_bytes),
                        rftx::base::util::human_bytes(r.measured_peak_bytes),
                        100.0 * r.relative_error
                    );
                }
            }
        }
    }
    Ok(())
}

fn bench(a: BenchArgs) -> Result<(), Error> {
    let p = prepare(&a.config)?;
    if let Some(file) = &a.write_prompts {
        let prompts = run::rendered_prompts(&p, &mut |s| eprintln!("{s}"))?;
        let json = serde_json::to_string_pretty(&prompts).expect("strings serialise") + "\n";
        return rftx::base::util::write_atomic(file, json.as_bytes());
    }
    let settings: Vec<rftx::commands::bench::Setting> = a
        .prompts_per_batch
        .iter()
        .flat_map(|&prompts_per_batch| {
            a.chunks.iter().map(move |&chunk_size| rftx::commands::bench::Setting {
                chunk_size,
                prompts_per_batch,
            })
        })
        .collect();
    if a.kernels {
        return check_kernels(&p, a.format);
    }
    let mut report = rftx::commands::bench::run(&p, &settings, &mut Progress::new(true))?;
    if a.invariance {
        let mut free = a.config.clone();
        free.set.push("model.batch_invariant=false".into());
        let free = rftx::commands::bench::run(&prepare(&free)?, &settings, &mut Progress::new(true))?;
        report.invariance = Some(rftx::commands::bench::Invariance::new(&report, &free));
    }
    let json = serde_json::to_string_pretty(&report).expect("reports serialise") + "\n";
    if let Some(out) = &a.out {
        rftx::base::util::write_atomic(out, json.as_bytes())?;
    }
    match a.format {
        OutputFormat::Json => print!("{json}"),
        OutputFormat::Text => print!("{}", rftx::commands::bench::render(&report)),
    }
    Ok(())
}

fn check_kernels(p: &run::Prepared, format: OutputFormat) -> Result<(), Error> {
    let checks = run::check_kernels(p, &mut |s| eprintln!("{s}"))?;
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&checks).expect("checks serialise")),
        OutputFormat::Text => print!("{}", rftx::commands::bench::render_kernels(&checks)),
    }
    match checks.iter().filter(|c| !c.ok).count() {
        0 => Ok(()),
        n => Err(Error::Run(format!(
            "{n} kernel checks out of bounds: the fused kernels disagree with their reference on this device; run with model.gpu_kernels = \"candle\""
        ))),
    }
}

fn sweep(a: SweepArgs) -> Result<(), Error> {
    let c = &a.run.config;
    let sweep = rftx::commands::sweep::prepare(&c.config, &c.set, &a.over, &c.runs_dir)?;
    let mut progress = Progress::new(a.run.quiet);
    let result = rftx::commands::sweep::run(&sweep, a.run.force, &mut progress)?;
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for (point, r) in sweep.points.iter().zip(&result.runs) {
        match r {
            Ok(r) => done.push(RunInfo::load(&r.dir)?),
            Err(e) => failed.push(format!("{}: {e}", rftx::commands::sweep::point_label(&point.values))),
        }
    }
    if !done.is_empty() {
        show_comparison(&Comparison::new(done)?, a.format, a.plot.as_deref())?;
    }
    println!("{}", sweep.dir.display());
    match failed.len() {
        0 => Ok(()),
        n => Err(Error::Run(format!(
            "{n} of {} sweep points failed (their durable work is kept; run the same command again to resume them):\n  {}",
            sweep.points.len(),
            failed.join("\n  ")
        ))),
    }
}

fn compare(a: CompareArgs) -> Result<(), Error> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for r in &a.runs {
        for d in catalog::resolve(r, &a.set, &a.dir.runs_dir)? {
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
    }
    let runs = dirs.iter().map(|d| RunInfo::load(d)).collect::<Result<Vec<_>, _>>()?;
    show_comparison(&Comparison::new(runs)?, a.format, a.plot.as_deref())
}

/// Prints a comparison in `format` and, if asked, writes its SVG chart.
fn show_comparison(c: &Comparison, format: CompareFormat, plot: Option<&std::path::Path>) -> Result<(), Error> {
    if let Some(file) = plot {
        let svg = rftx::commands::plot::svg(c).map_err(Error::Run)?;
        rftx::base::util::write_atomic(file, svg.as_bytes())
            .map_err(|e| Error::input(file, format!("cannot write the plot: {e}")))?;
        eprintln!("wrote {}", file.display());
    }
    print!("{}", format.exporter().export(c));
    Ok(())
}

/// The one run directory a reference names (see `catalog::resolve`).
fn one_run(reference: &str, sets: &[String], runs_dir: &std::path::Path) -> Result<PathBuf, Error> {
    let mut dirs = catalog::resolve(reference, sets, runs_dir)?;
    if dirs.len() != 1 {
        return Err(Error::input(
            reference,
            format!(
                "names {} runs (a sweep?); `rftx compare {reference}` shows them side by side",
                dirs.len()
            ),
        ));
    }
    Ok(dirs.remove(0))
}

fn data(a: DataArgs) -> Result<(), Error> {
    if a.count == 0 {
        return Err(Error::input(&a.out, "--count must be ≥ 1"));
    }
    let json = rftx::core::data::to_json(&rftx::core::data::builtin(a.count));
    if a.out.as_os_str() == "-" {
        print!("{json}");
        Ok(())
    } else {
        rftx::base::util::write_atomic(&a.out, json.as_bytes())
            .map_err(|e| Error::input(&a.out, format!("cannot write the question file: {e}")))
            .map(|()| eprintln!("wrote {} questions to {}", a.count, a.out.display()))
    }
}
