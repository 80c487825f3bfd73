//! `rftx sweep` end to end on the tiny random-weight model.
mod common;

use common::*;

fn sweep(f: &Fixture, config: &str, extra: &[&str]) -> Ran {
    let mut args = vec!["sweep", config, "--quiet"];
    args.extend_from_slice(extra);
    rftx(&args, &[], f.path())
}

#[test]
fn a_sweep_runs_every_point_records_it_and_compares_them() {
    let f = Fixture::new("");
    let config = f.config.to_str().unwrap();
    let r = sweep(
        &f,
        config,
        &["--over", "generation.chunk_size=1,2,5", "--format", "json"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let sweep_dir = printed_dir(&r, f.path());
    assert!(
        sweep_dir.starts_with(f.runs().join("sweeps")),
        "{}",
        sweep_dir.display()
    );

    // The comparison printed before the last line.
    let json = &r.stdout[..r.stdout.len() - r.last_line().len() - 1];
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(v["differing_params"], serde_json::json!(["generation.chunk_size"]));
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    let chunk_sizes: Vec<u64> = runs
        .iter()
        .map(|r| r["params"]["generation.chunk_size"].as_u64().unwrap())
        .collect();
    assert_eq!(chunk_sizes, [1, 2, 5]);
    for run in runs {
        assert_eq!(run["status"], "complete");
        assert_eq!(run["samples_identical"], true, "chunk-size invariance");
        assert_eq!(run["metrics"]["samples"], 4 * 5);
    }

    // The record lists the member runs, which are ordinary run directories.
    let record = read_json(&sweep_dir.join("sweep.json"));
    assert_eq!(record["format"], "rftx-sweep-v1");
    assert_eq!(record["axes"][0]["key"], "generation.chunk_size");
    let points = record["points"].as_array().unwrap();
    assert_eq!(points.len(), 3);
    for (p, run) in points.iter().zip(runs) {
        assert_eq!(p["status"], "complete");
        assert_eq!(p["run"], run["id"]);
        let dir = f.runs().join(p["run"].as_str().unwrap());
        assert_eq!(read_json(&dir.join("manifest.json"))["hash"], p["hash"]);
        // The member's config is the point's, without the sweep.
        let cfg = std::fs::read_to_string(dir.join("config.toml")).unwrap();
        assert!(cfg.contains(&format!("chunk_size = {}", p["values"]["generation.chunk_size"])));
        assert!(!cfg.contains("[sweep"));
    }
    // Each point is the run that `rftx run --set` makes.
    let single = f.run(&["--set", "generation.chunk_size=2"]);
    assert_eq!(single.code, 0, "{}", single.stderr);
    assert!(single.stdout.starts_with("already complete"), "{}", single.stdout);
    assert_eq!(
        single.last_line(),
        format!("runs/{}", points[1]["run"].as_str().unwrap())
    );

    // Again: nothing is redone, same record.
    let again = sweep(&f, config, &["--over", "generation.chunk_size=1,2,5"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(printed_dir(&again, f.path()), sweep_dir);
    assert!(again.stdout.contains("samples identical"), "{}", again.stdout);

    // `rftx compare` of the sweep directory shows the same runs.
    let cmp = rftx(
        &["compare", sweep_dir.to_str().unwrap(), "--format", "csv"],
        &[],
        f.path(),
    );
    assert_eq!(cmp.code, 0, "{}", cmp.stderr);
    assert_eq!(cmp.stdout.lines().count(), 1 + 3);
}

#[test]
fn a_sweep_table_in_the_config_is_the_same_sweep_as_over() {
    let f = Fixture::new("");
    let text = std::fs::read_to_string(&f.config).unwrap() + "\n[sweep]\ngeneration.chunk_size = [1, 3]\n";
    let with_table = f.write_config("swept.toml", &text);
    let from_table = sweep(&f, with_table.to_str().unwrap(), &[]);
    assert_eq!(from_table.code, 0, "{}", from_table.stderr);
    let from_over = sweep(&f, f.config.to_str().unwrap(), &["--over", "generation.chunk_size=1,3"]);
    assert_eq!(from_over.code, 0, "{}", from_over.stderr);
    assert_eq!(from_table.last_line(), from_over.last_line());
    // --over replaces the table's list for its key; two axes make a product.
    let r = sweep(
        &f,
        with_table.to_str().unwrap(),
        &[
            "--over",
            "generation.chunk_size=2",
            "--over",
            "generation.max_new_tokens=6,8",
            "--format",
            "csv",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 1 + 2 + 1, "{}", r.stdout);
    // `rftx run` of the config with a [sweep] table is one ordinary run; the table is not hashed.
    let plain = rftx(&["hash", f.config.to_str().unwrap()], &[], f.path());
    let swept = rftx(&["hash", with_table.to_str().unwrap()], &[], f.path());
    assert_eq!(plain.last_line(), swept.last_line());
}

#[test]
fn bad_sweeps_are_input_errors_before_anything_runs() {
    let f = Fixture::new("");
    let config = f.config.to_str().unwrap();
    for (args, says) in [
        (vec![], "nothing to sweep"),
        (vec!["--over", "generation.chunk_size"], "expected KEY=V1,V2"),
        (
            vec!["--over", "generation.chunk_size=1,0"],
            "sweep point generation.chunk_size=0",
        ),
        (vec!["--over", "generation.chunk_sise=1,2"], "did you mean `chunk_size`"),
        (
            vec![
                "--over",
                "generation.chunk_size=1,2",
                "--set",
                "generation.chunk_size=3",
            ],
            "both swept and set",
        ),
        (vec!["--over", "checkpoint.every=1,2"], "are the same run"),
    ] {
        let mut all = args.clone();
        all.push("--quiet");
        let mut cmd = vec!["sweep", config];
        cmd.extend(all);
        let r = rftx(&cmd, &[], f.path());
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(says), "{args:?}: {}", r.stderr);
        assert!(
            entries(&f.runs()).is_empty(),
            "{args:?} created {:?}",
            entries(&f.runs())
        );
    }
}

#[test]
fn a_failing_point_does_not_stop_the_sweep() {
    let f = Fixture::new("");
    let config = f.config.to_str().unwrap();
    // Another live process holds the chunk_size = 2 run.
    let hash = rftx(&["hash", config, "--set", "generation.chunk_size=2"], &[], f.path());
    let locked = printed_dir(&hash, f.path());
    let held = hold_lock(&locked);

    let r = sweep(&f, config, &["--over", "generation.chunk_size=1,2,3"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("1 of 3 sweep points failed"), "{}", r.stderr);
    assert!(r.stderr.contains("generation.chunk_size=2"), "{}", r.stderr);
    let record = read_json(&printed_dir(&r, f.path()).join("sweep.json"));
    let statuses: Vec<&str> = record["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["complete", "failed", "complete"]);
    // The two finished points are compared.
    assert!(r.stdout.contains("#2"), "{}", r.stdout);
    assert!(!r.stdout.contains("#3"), "{}", r.stdout);

    // Released: the same command finishes the sweep.
    drop(held);
    let r = sweep(&f, config, &["--over", "generation.chunk_size=1,2,3"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let record = read_json(&printed_dir(&r, f.path()).join("sweep.json"));
    assert!(record["points"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["status"] == "complete"));
}
