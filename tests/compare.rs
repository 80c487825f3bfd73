//! `rftx compare`, `ls` and `show` on fixed run directories (snapshot tests of every output
//! format), and run references: directories, hash prefixes, names, configs and sweeps.
//!
//! Snapshots are insta's, in tests/snapshots/; `INSTA_UPDATE=always cargo test --release --test
//! compare` (or `cargo insta review`) rewrites them: review the diff.
mod common;

use std::path::{Path, PathBuf};

use common::*;
use rftx::core::report::Metrics;
use rftx::core::store::{Inputs, Manifest, ModelInput, Progress, QuestionsInput, Status};

struct FakeRun {
    name: &'static str,
    hash_char: char,
    chunk_size: usize,
    status: Status,
    done: usize,
    metrics: Option<(u64, u64, f64, f64, usize, usize)>,
    samples: &'static str,
}

fn write_run(runs: &Path, r: &FakeRun) -> PathBuf {
    let hash: String = std::iter::repeat_n(r.hash_char, 64).collect();
    let dir = runs.join(format!("{}-{}", r.name, &hash[..12]));
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = Manifest {
        layout_version: 1,
        name: r.name.into(),
        hash: hash.clone(),
        status: r.status,
        rftx_version: "0.1.0".into(),
        created_at: format!("2026-11-27T10:00:0{}Z", r.chunk_size % 10),
        started_at: "2026-11-27T10:00:00Z".into(),
        finished_at: (r.status == Status::Complete).then(|| "2026-11-27T10:05:00Z".into()),
        inputs: Inputs {
            model: ModelInput {
                path: "models/SmolLM2-135M-Instruct.Q4_1.gguf".into(),
                sha256: "b".repeat(64),
                weights: "q8_0".into(),
                init: None,
                arch: None,
            },
            questions: QuestionsInput {
                source: "builtin".into(),
                sha256: "c".repeat(64),
                count: 3,
            },
            gpu: None,
        },
        progress: Progress {
            questions_done: r.done,
            questions_total: 3,
        },
        sessions: vec![],
        wall_s: 12.5,
        error: None,
        interrupted_by: None,
        shard: None,
        merged_shards: None,
    };
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_string_pretty(&manifest).unwrap(),
    )
    .unwrap();
    let config = format!(
        "name = \"{}\"\nseed = 0\n\n[model]\nweights = \"q8_0\"\n\n[generation]\noversample = 15\nchunk_size = {}\ntemperature = 0.7\ntop_p = 1.0\nmax_new_tokens = 80\n",
        r.name, r.chunk_size
    );
    std::fs::write(dir.join("config.toml"), config).unwrap();
    std::fs::write(dir.join("samples.jsonl"), r.samples).unwrap();
    if let Some((heap, rss, tps, wall, samples, records)) = r.metrics {
        let m = Metrics {
            questions: r.done,
            questions_total: 3,
            samples,
            new_tokens: samples * 40,
            wall_s: wall,
            generation_s: wall - 1.5,
            prefill_s: 0.5,
            decode_s: wall - 2.0,
            tokens_per_s: tps,
            accepted: records + 1,
            acceptance_rate: (records + 1) as f64 / samples as f64,
            dataset_records: records,
            questions_with_accepted: 1,
            pass_at_1: (records + 1) as f64 / samples as f64,
            pass_at_k: 1.0 / r.done.max(1) as f64,
            k: 15,
            correct_counts: Vec::new(),
            parsed: samples,
            finished_eos: samples,
            chunks: 3,
            occupancy: 1.0,
            mean_batch_rows: 3.0,
            peak_bytes: heap,
            rss_peak_bytes: rss,
            gpu_peak_bytes: None,
            stop_after_correct: None,
            shards: Vec::new(),
        };
        std::fs::write(dir.join("metrics.json"), serde_json::to_string_pretty(&m).unwrap()).unwrap();
    }
    dir
}

const MIB: u64 = 1024 * 1024;

/// The fixture's runs directory, and the locks that keep its running runs running (a `running`
/// run whose lock nobody holds is shown as interrupted).
struct Runs {
    tmp: tempfile::TempDir,
    _locks: Vec<std::fs::File>,
}

impl Runs {
    fn path(&self) -> &Path {
        self.tmp.path()
    }
}

/// Three runs of one sweep over chunk_size (1, 3, 15); the last has different samples and is
/// still running.
fn fixture() -> Runs {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let same = "{\"index\":0,\"samples\":[]}\n";
    write_run(
        &runs,
        &FakeRun {
            name: "t4",
            hash_char: 'a',
            chunk_size: 1,
            status: Status::Complete,
            done: 3,
            metrics: Some((173 * MIB, 185 * MIB, 62.8, 30.0, 45, 2)),
            samples: same,
        },
    );
    write_run(
        &runs,
        &FakeRun {
            name: "t4",
            hash_char: 'd',
            chunk_size: 3,
            status: Status::Complete,
            done: 3,
            metrics: Some((207 * MIB, 221 * MIB, 107.9, 18.0, 45, 2)),
            samples: same,
        },
    );
    write_run(
        &runs,
        &FakeRun {
            name: "t4",
            hash_char: 'e',
            chunk_size: 15,
            status: Status::Running,
            done: 2,
            metrics: Some((343 * MIB, 356 * MIB, 160.3, 9.0, 30, 0)),
            samples: "{\"index\":0,\"samples\":[1]}\n{\"index\":1,\"samples\":[1]}\n",
        },
    );
    write_run(
        &runs,
        &FakeRun {
            name: "fresh",
            hash_char: 'f',
            chunk_size: 3,
            status: Status::Running,
            done: 0,
            metrics: None,
            samples: "",
        },
    );
    let _locks = ["t4-eeeeeeeeeeee", "fresh-ffffffffffff"]
        .iter()
        .map(|d| hold_lock(&runs.join(d)))
        .collect();
    Runs { tmp, _locks }
}

/// Compares with `tests/snapshots/compare__<name>.snap` (insta: `cargo insta review`, or
/// `INSTA_UPDATE=always`, rewrites them; review the diff).
fn snapshot(name: &str, actual: &str) {
    insta::assert_snapshot!(name, actual);
}

fn ok(r: &Ran) -> &str {
    assert_eq!(r.code, 0, "{}", r.stderr);
    &r.stdout
}

#[test]
fn compare_outputs_match_their_snapshots() {
    let tmp = fixture();
    for (format, file) in [
        ("table", "compare.txt"),
        ("markdown", "compare.md"),
        ("json", "compare.json"),
        ("csv", "compare.csv"),
    ] {
        let r = rftx(
            &["compare", "aaaa", "dddd", "eeee", "--format", format],
            &[],
            tmp.path(),
        );
        snapshot(file, ok(&r));
    }
}

#[test]
fn compare_shows_only_differing_params_and_true_ratios() {
    let tmp = fixture();
    let r = rftx(
        &["compare", "aaaa", "dddd", "eeee", "--format", "json"],
        &[],
        tmp.path(),
    );
    let v: serde_json::Value = serde_json::from_str(ok(&r)).unwrap();
    assert_eq!(v["differing_params"], serde_json::json!(["generation.chunk_size"]));
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs[1]["params"]["generation.chunk_size"], 3);
    let ratio = runs[1]["ratios"]["peak_bytes"].as_f64().unwrap();
    assert!((ratio - 207.0 / 173.0).abs() < 1e-12, "{ratio}");
    let tps = runs[2]["ratios"]["tokens_per_s"].as_f64().unwrap();
    assert!((tps - 160.3 / 62.8).abs() < 1e-12, "{tps}");
    assert_eq!(runs[0]["ratios"]["wall_s"], 1.0);
    assert_eq!(runs[1]["samples_identical"], true);
    assert_eq!(runs[2]["samples_identical"], false);
    assert_eq!(runs[2]["status"], "running");

    // CSV: one row per run, parsable numbers.
    let r = rftx(&["compare", "aaaa", "dddd", "--format", "csv"], &[], tmp.path());
    let lines: Vec<&str> = ok(&r).lines().collect();
    assert_eq!(lines.len(), 3);
    let header: Vec<&str> = lines[0].split(',').collect();
    let row: Vec<&str> = lines[2].split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    assert_eq!(row[col("generation.chunk_size")], "3");
    assert_eq!(row[col("peak_bytes")].parse::<u64>().unwrap(), 207 * MIB);
    assert_eq!(row[col("samples_identical")], "true");
}

#[test]
fn runs_are_named_by_directory_prefix_name_or_sweep() {
    let tmp = fixture();
    let by_dir = rftx(
        &["compare", "runs/t4-aaaaaaaaaaaa", "t4-dddddddddddd", "--format", "csv"],
        &[],
        tmp.path(),
    );
    let by_prefix = rftx(&["compare", "aaaa", "dddd", "--format", "csv"], &[], tmp.path());
    assert_eq!(ok(&by_dir).lines().count(), 3);
    // Same runs, same rows (the dir column differs only in how it was named).
    let ids = |s: &str| {
        s.lines()
            .skip(1)
            .map(|l| l.split(',').next().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(ok(&by_dir)), ids(ok(&by_prefix)));

    // A sweep record names its members.
    let sweep_dir = tmp.path().join("runs/sweeps/t4-999999999999");
    std::fs::create_dir_all(&sweep_dir).unwrap();
    let record = serde_json::json!({
        "format": "rftx-sweep-v1", "name": "t4", "hash": "9".repeat(64), "config": "t4.toml", "sets": [],
        "axes": [{"key": "generation.chunk_size", "values": [1, 3]}],
        "created_at": "x", "updated_at": "x",
        "points": [
            {"values": {"generation.chunk_size": 1}, "run": "t4-aaaaaaaaaaaa", "hash": "a".repeat(64), "status": "complete"},
            {"values": {"generation.chunk_size": 3}, "run": "t4-dddddddddddd", "hash": "d".repeat(64), "status": "complete"}
        ]
    });
    std::fs::write(sweep_dir.join("sweep.json"), record.to_string()).unwrap();
    let by_sweep = rftx(&["compare", "9999", "--format", "csv"], &[], tmp.path());
    assert_eq!(ids(ok(&by_sweep)), ids(ok(&by_prefix)));

    for (reference, says) in [
        ("0000", "no run or sweep matches `0000`"),
        ("t4", "no run or sweep matches `t4`"),
        ("runs", "neither a run directory"),
    ] {
        let r = rftx(&["compare", reference], &[], tmp.path());
        assert_eq!(r.code, 2, "{reference}: {}", r.stderr);
        assert!(r.stderr.contains(says), "{reference}: {}", r.stderr);
    }
    // Two runs whose hashes start alike.
    write_run(
        &tmp.path().join("runs"),
        &FakeRun {
            name: "other",
            hash_char: 'a',
            chunk_size: 5,
            status: Status::Complete,
            done: 3,
            metrics: None,
            samples: "",
        },
    );
    let r = rftx(&["compare", "aaaa"], &[], tmp.path());
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("ambiguous"), "{}", r.stderr);
}

#[test]
fn ls_and_show_match_their_snapshots() {
    let tmp = fixture();
    snapshot("ls.txt", ok(&rftx(&["ls"], &[], tmp.path())));
    let r = rftx(&["ls", "--format", "json"], &[], tmp.path());
    let rows: Vec<serde_json::Value> = serde_json::from_str(ok(&r)).unwrap();
    assert_eq!(rows.len(), 4, "sweeps/ and non-run directories are not runs");
    assert_eq!(rows[0]["params"]["generation.chunk_size"], 1, "oldest first");
    snapshot("show.txt", ok(&rftx(&["show", "dddd"], &[], tmp.path())));
    let empty = tempfile::tempdir().unwrap();
    let r = rftx(&["ls"], &[], empty.path());
    assert_eq!((r.code, r.stdout.as_str()), (0, ""));
    assert!(r.stderr.contains("no runs in runs"), "{}", r.stderr);
}

#[test]
fn plot_writes_an_svg_with_a_bar_per_run_and_metric() {
    let tmp = fixture();
    let svg = tmp.path().join("cmp.svg");
    let r = rftx(
        &["compare", "aaaa", "dddd", "eeee", "--plot", svg.to_str().unwrap()],
        &[],
        tmp.path(),
    );
    ok(&r);
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"));
    for label in [
        "chunk_size=1",
        "chunk_size=3",
        "chunk_size=15",
        "Peak memory",
        "tokens/s",
        "peak RSS",
    ] {
        assert!(text.contains(label), "{label} missing from the plot");
    }
    // Bar heights follow the values: the heap bars of chunk 1 and 15 are in ratio 173:343.
    let heights: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("<rect") && l.contains("fill=\"#1F77B4\""))
        .map(|l| {
            let h = l.split("height=\"").nth(1).unwrap();
            h[..h.find('"').unwrap()].parse().unwrap()
        })
        .collect();
    assert_eq!(
        heights.len(),
        3 + 1,
        "three heap bars and the legend swatch: {heights:?}"
    );
    let ratio = heights[2] / heights[0];
    assert!((ratio - 343.0 / 173.0).abs() < 0.05, "{heights:?}");
}
