//! One run identity wherever it is computed: the run directory is a function of the config and
//! its inputs, never of the machine that reads it; a run is continued only on the kind of device
//! its committed questions were computed on.
mod common;

use common::*;

/// `rftx hash`'s run directory of the fixture's config with `sets`.
fn hashed(f: &Fixture, sets: &[&str]) -> String {
    let mut args = vec!["hash", f.config.to_str().unwrap()];
    for s in sets {
        args.extend(["--set", s]);
    }
    let r = rftx(&args, &[], f.path());
    assert_eq!(r.code, 0, "{sets:?}: {}", r.stderr);
    r.last_line().to_string()
}

#[test]
fn a_gpu_config_hashes_and_submits_without_a_gpu_and_only_generating_needs_one() {
    let f = Fixture::new("");
    let cpu = hashed(&f, &["device=\"cpu\""]);
    // (The fixture pins q8_0, a CPU format; `auto` is what a config that runs anywhere says.)
    let gpu = ["device=\"cuda\"", "model.weights=\"auto\""];
    let cuda = hashed(&f, &gpu);
    assert_ne!(cpu, cuda, "CPU and GPU samples differ: two runs");
    // Which GPU, and how many of them, is the session's business, not the run's name.
    assert_eq!(hashed(&f, &["device=\"cuda:1\"", "model.weights=\"auto\""]), cuda);
    // `auto` is decided by the build, never by probing: the CPU in a build without CUDA.
    assert_eq!(
        hashed(&f, &["device=\"auto\""]),
        *if cfg!(feature = "cuda") { &cuda } else { &cpu }
    );
    // The GPU's weights follow from the config: `auto` is f16 on a GPU, whatever the host.
    assert_eq!(hashed(&f, &["device=\"cuda\"", "model.weights=\"f16\""]), cuda);

    // A login node without a GPU writes the scripts of the run the GPU nodes will compute.
    let cfg = f.config.to_str().unwrap();
    let args = [
        "slurm",
        "submit",
        cfg,
        "--shards",
        "2",
        "--dry-run",
        "--set",
        gpu[0],
        "--set",
        gpu[1],
    ];
    let r = rftx(&args, &[], f.path());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.last_line(), cuda);

    if !cfg!(feature = "cuda") {
        let r = f.run(&["--set", gpu[0], "--set", gpu[1]]);
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(r.stderr.contains("built without CUDA"), "{}", r.stderr);
        assert!(
            !f.path().join(&cuda).join("manifest.json").exists(),
            "nothing was created"
        );
    }
}

#[test]
fn a_run_is_continued_only_on_the_device_its_questions_were_computed_on() {
    let f = Fixture::new("");
    let r = f.run(&[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let dir = printed_dir(&r, f.path());
    // As if its first session had run elsewhere and stopped after two questions.
    let samples = std::fs::read_to_string(dir.join("samples.jsonl")).unwrap();
    let first_two: String = samples.lines().take(2).map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.join("samples.jsonl"), &first_two).unwrap();
    let mut m = read_json(&dir.join("manifest.json"));
    let here = m["sessions"][0]["device"].as_str().unwrap().to_string();
    m["status"] = "interrupted".into();
    m["sessions"][0]["device"] = "cuda NVIDIA T4 (cc 7.5)".into();
    std::fs::write(dir.join("manifest.json"), m.to_string()).unwrap();

    let log = std::fs::read_to_string(dir.join("run.log")).unwrap();
    let r = f.run(&[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    for wanted in [
        "2 committed questions were computed on `cuda NVIDIA T4 (cc 7.5)`",
        &here,
        "--force",
    ] {
        assert!(r.stderr.contains(wanted), "{wanted}: {}", r.stderr);
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("samples.jsonl")).unwrap(),
        first_two,
        "nothing touched"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("run.log")).unwrap(),
        log,
        "not even the log"
    );

    // Started over here, it is the same run as before.
    let r = f.run(&["--force"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(dir.join("samples.jsonl")).unwrap(), samples);
}
