//! The commands that read run directories: `ls`, `show`, `grade`, `regrade` and `verify`.
use rftx::base::error::Error;
use rftx::commands::catalog::{self, RunInfo};
use rftx::run;

use super::*;

pub(super) fn ls(a: LsArgs) -> Result<(), Error> {
    let (runs, problems) = catalog::list(&a.dir.runs_dir)?;
    for p in &problems {
        eprintln!("warning: {p}");
    }
    match a.format {
        OutputFormat::Json => {
            let rows: Vec<serde_json::Value> = runs.iter().map(catalog::summary_json).collect();
            println!("{}", serde_json::to_string_pretty(&rows).expect("json"));
        }
        OutputFormat::Text if runs.is_empty() => eprintln!("no runs in {}", a.dir.runs_dir.display()),
        OutputFormat::Text => print!("{}", catalog::render_list(&runs)),
    }
    Ok(())
}

pub(super) fn show(a: ShowArgs) -> Result<(), Error> {
    let run = RunInfo::load(&one_run(&a.run, &[], &a.dir.runs_dir)?)?;
    match a.format {
        OutputFormat::Json => {
            let v = serde_json::json!({
                "dir": run.dir.display().to_string(),
                "manifest": run.manifest,
                "metrics": run.metrics,
                "pass_rate_histogram": run.pass_rate_histogram(),
                "config": run.config,
            });
            println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        }
        OutputFormat::Text => {
            print!("{}", catalog::render_show(&run));
            // Best effort: a run whose config this version cannot read still shows the rest.
            let config = rftx::core::config::read_run_config(&run.dir.join(rftx::core::store::CONFIG_FILE));
            if let Some(rules) = config
                .ok()
                .and_then(|c| rftx::commands::grade::answer_rules(&run.dir, &c).ok().flatten())
            {
                let found: Vec<String> = rules.iter().map(|(r, n)| format!("{r} {n}")).collect();
                println!("answers found by (math grader): {}", found.join(", "));
            }
        }
    }
    for k in a.pass_at {
        let m = run
            .metrics
            .as_ref()
            .ok_or_else(|| Error::input(&run.dir, "no metrics.json yet: run it first"))?;
        match m.pass_at(k) {
            Some(p) => println!("{:<10} {:.2} %", format!("pass@{k}"), 100.0 * p),
            None => println!("{:<10} — (a question has fewer than {k} samples)", format!("pass@{k}")),
        }
    }
    Ok(())
}

pub(super) fn grade(a: GradeArgs) -> Result<(), Error> {
    let c = match &a.config {
        Some(f) => rftx::core::config::load(f, &a.set)?.config,
        None => rftx::core::config::overlay(rftx::core::config::Config::default(), &a.set)?,
    };
    let mut out = std::io::stdout().lock();
    let (lines, correct) = rftx::commands::grade::grade_lines(&c.rft, &a.input, &mut out)?;
    let rft = serde_json::to_value(&c.rft).expect("rft serialises");
    eprintln!("{correct} of {lines} correct (rft = {rft})");
    Ok(())
}

pub(super) fn regrade(a: RegradeArgs) -> Result<(), Error> {
    let dir = one_run(&a.run, &[], &a.dir.runs_dir)?;
    let r = rftx::commands::grade::regrade(&dir, &a.set)?;
    let (b, n) = (&r.before, &r.after);
    println!("regraded {} questions into {}", n.questions, r.dir.display());
    println!("accepted   {} → {} of {} samples", b.accepted, n.accepted, n.samples);
    println!("pass@1     {:.1} % → {:.1} %", 100.0 * b.pass_at_1, 100.0 * n.pass_at_1);
    let k = format!("pass@{}", n.k);
    println!("{k:<10} {:.1} % → {:.1} %", 100.0 * b.pass_at_k, 100.0 * n.pass_at_k);
    println!("dataset    {} records", n.dataset_records);
    let w = &r.preferences;
    println!("dpo pairs  {}", w.pairs);
    println!("kto        {} desirable, {} undesirable", w.desirable, w.undesirable);
    println!("rl prompts {} of {} questions", w.rl_prompts, w.questions);
    Ok(())
}

pub(super) fn verify(a: VerifyArgs) -> Result<(), Error> {
    let dir = one_run(&a.run, &[], &a.dir.runs_dir)?;
    let seed = a.seed.unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        t.as_nanos() as u64 ^ u64::from(std::process::id())
    });
    let opts = run::verify::Options {
        samples: a.samples,
        seed,
        model: a.model,
    };
    let mut progress = Progress::new(a.quiet);
    let v = run::verify::verify(&dir, &opts, &mut |s| progress.log(s))?;
    let n = v.checks.len();
    println!(
        "{n} of {} (question, sample) pairs of {} (seed {seed}), each generated alone on `{}`",
        v.pairs,
        dir.display(),
        v.device
    );
    println!("{} of {n} identical", v.identical());
    match v.first_difference() {
        None => Ok(()),
        Some(c) => Err(Error::Run(format!(
            "question {}, sample {} is not what {} stored: {}; the run was made on {}; this machine computes on `{}`",
            c.question,
            c.sample,
            dir.join(rftx::core::store::SAMPLES_FILE).display(),
            c.difference(),
            v.made_on.join("; "),
            v.device
        ))),
    }
}
