//! The Slurm path for real: a one-node cluster (Debian's slurmctld, slurmd, munge) started by
//! `scripts/slurm-ci.sh` for this test and stopped by pid at the end. Four shards of the tiny
//! model: one warned of its time limit (SIGUSR1: it stops cleanly and requeues itself), one
//! killed with SIGKILL mid-write (it requeues itself), one requeued from outside (`scontrol
//! requeue`), one failing with bad input until the fault is removed; `shard status`
//! names the missing one, a resubmission completes it, and the merged files are byte-identical
//! to an unsharded run. Skipped, with a message, where `sbatch` is absent or we are not root;
//! `.ci/run` installs the packages so that CI always runs it.
mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use common::*;

/// A running one-node cluster, stopped when dropped.
struct Cluster {
    dir: tempfile::TempDir,
    conf: String,
    /// slurmctld's port (slurmd's is the next one).
    port: u16,
}

impl Cluster {
    /// A cluster of its own for each test (`slot`: its ports), so that the tests of this file
    /// may run at once.
    fn start(slot: u16) -> Option<Cluster> {
        let have = |c: &str| {
            Command::new("sh")
                .args(["-c", &format!("command -v {c}")])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if !(have("sbatch") && have("slurmctld") && have("slurmd") && have("munged")) {
            rftx::testing::skip(
                "Slurm is not installed (sbatch, slurmctld, slurmd, munged); .ci/run installs it with apt-get",
            );
            return None;
        }
        if !Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout == b"0\n") {
            rftx::testing::skip("the one-node Slurm cluster of scripts/slurm-ci.sh needs root");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        // Ports of our own, so that a cluster already running on this machine is left alone.
        let cluster = Cluster {
            conf: dir.path().join("slurm/etc/slurm.conf").display().to_string(),
            dir,
            port: 20000 + (std::process::id() % 10000) as u16 * 4 + 2 * slot,
        };
        let out = cluster.script("start");
        assert!(
            out.status.success(),
            "slurm-ci.sh start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(cluster)
    }

    fn script(&self, verb: &str) -> std::process::Output {
        Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/slurm-ci.sh"))
            .arg(verb)
            .env("SLURM_CI_DIR", self.dir.path().join("slurm"))
            .env("SLURM_CI_PORT", self.port.to_string())
            .output()
            .unwrap()
    }

    /// A Slurm client command; its stdout.
    fn client(&self, args: &[&str]) -> String {
        let out = Command::new(args[0])
            .args(&args[1..])
            .env("SLURM_CONF", &self.conf)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until none of `jobs` is pending or running.
    fn wait_idle(&self, jobs: &[&str], secs: u64) {
        let list = jobs.join(",");
        wait_for(secs, "the Slurm jobs to end", || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            self.client(&["squeue", "-h", "-j", &list]).trim().is_empty()
        });
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.script("stop");
    }
}

/// On a failure, prints the Slurm logs of the run and its shards' run.log (the test's temporary
/// directory is gone afterwards).
struct DumpOnFailure(PathBuf);

impl Drop for DumpOnFailure {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let mut files: Vec<PathBuf> = entries(&self.0.join("slurm"))
            .iter()
            .map(|n| self.0.join("slurm").join(n))
            .collect();
        for s in entries(&self.0.join("shards"))
            .iter()
            .filter(|s| s.starts_with("shard-"))
        {
            files.push(self.0.join("shards").join(s).join("run.log"));
        }
        files.sort();
        for f in files {
            eprintln!(
                "==> {} <==\n{}",
                f.display(),
                std::fs::read_to_string(&f).unwrap_or_default()
            );
        }
    }
}

/// The job id printed after `label` by `rftx slurm submit`.
fn job_after(stdout: &str, label: &str) -> String {
    let line = stdout
        .lines()
        .find(|l| l.contains(label))
        .unwrap_or_else(|| panic!("no `{label}` in {stdout}"));
    line.rsplit(' ').next().unwrap().to_string()
}

/// Stops (SIGSTOP) the rftx of each shard as soon as it has committed a question, so that what
/// the test does next lands mid-shard whatever the speed; returns their pids and progress.
fn pause_mid_shard(shards: &[PathBuf]) -> Vec<(u32, usize)> {
    let mut paused: Vec<Option<(u32, usize)>> = vec![None; shards.len()];
    wait_for(180, "the shards' first committed questions", || {
        for (dir, p) in shards.iter().zip(paused.iter_mut()) {
            let lock = std::fs::read_to_string(dir.join("lock")).unwrap_or_default();
            if p.is_none() && committed(dir) >= 1 {
                if let Ok(pid) = lock.trim().parse::<u32>() {
                    signal(pid, "STOP");
                    *p = Some((pid, committed(dir)));
                }
            }
        }
        paused.iter().all(Option::is_some)
    });
    let paused: Vec<(u32, usize)> = paused.into_iter().flatten().collect();
    assert!(paused.iter().all(|&(_, k)| k < 6), "paused mid-way: {paused:?}");
    paused
}

/// SIGCONT to a process paused by [`pause_mid_shard`], unless it is gone: Slurm's step daemon
/// may continue a stopped task itself (seen for a requeue and, once, for the USR1 warning), and
/// then it may have stopped at its safe point and exited already.
fn continue_if_alive(pid: u32) {
    // It may also exit between any look at /proc and the signal: a failed kill is fine then.
    let sent = Command::new("kill")
        .args(["-CONT", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(
        sent || !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "kill -CONT {pid} failed and the process is still there"
    );
}

/// The run under test: its fixture, the cluster, and the run directory the shards write.
struct ArrayRun<'a> {
    cluster: &'a Cluster,
    f: Fixture,
    run: PathBuf,
}

impl ArrayRun<'_> {
    fn shard(&self, i: usize) -> PathBuf {
        self.run.join(format!("shards/shard-{i:04}"))
    }

    /// A log the Slurm jobs wrote into the run's `slurm/`.
    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.run.join("slurm").join(name)).unwrap_or_default()
    }

    /// `rftx slurm submit` of 4 shards with shards `fault` failing as bad input; its stdout.
    fn submit(&self, fault: &str, extra: &[&str]) -> String {
        let env = [
            ("SLURM_CONF", self.cluster.conf.as_str()),
            ("RFTX_TEST_FAIL_SHARDS", fault),
        ];
        let cfg = self.f.config.to_str().unwrap();
        let mut args = vec!["slurm", "submit", cfg, "--shards", "4", "--max-requeues", "2"];
        args.extend_from_slice(extra);
        let r = rftx(&args, &env, self.f.path());
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.stdout
    }
}

#[test]
fn a_slurm_array_with_a_kill_a_requeue_and_a_failure_merges_to_the_unsharded_bytes() {
    let Some(cluster) = Cluster::start(0) else {
        return;
    };
    let started = Instant::now();
    let f = sized_fixture(24, 48);
    let reference = f.run(&["--runs-dir", "reference"]);
    assert_eq!(reference.code, 0, "{}", reference.stderr);
    let reference = printed_dir(&reference, f.path());
    let run: PathBuf = f.runs().join(reference.file_name().unwrap());
    let a = ArrayRun {
        cluster: &cluster,
        f,
        run,
    };
    // Declared after `a`, so dropped before the fixture's directory is removed.
    let _dump = DumpOnFailure(a.run.clone());
    let first = a.submit("2", &[]);
    assert!(first.contains("submitted shards 0-3 as job"), "{first}");
    let stopped_at = stop_three_shards(&a, &first);
    check_the_first_array(&a, stopped_at);
    resubmit_the_failed_shard_and_merge(&a);
    for name in ["samples.jsonl", "dataset.json"] {
        let (x, y) = (a.run.join(name), reference.join(name));
        let same = Command::new("cmp").arg(&x).arg(&y).status().unwrap().success();
        assert!(same, "{name}: merged and unsharded differ");
    }
    eprintln!(
        "slurm test: {:.1} s after the cluster started",
        started.elapsed().as_secs_f64()
    );
}

/// Of the array submitted (its stdout `first`): shard 0 is warned of its time limit, shard 1
/// killed, shard 3 requeued from outside, each at its first commit; waits for the array and the
/// merge. Returns the questions each of shards 0, 1 and 3 had committed when stopped.
fn stop_three_shards(a: &ArrayRun, first: &str) -> [usize; 3] {
    let (array, merge) = (
        job_after(first, "submitted shards"),
        job_after(first, "submitted the merge"),
    );
    // Shard 3 will start once a slot is free; it is paused at its first commit wherever the
    // test is then.
    let shard3 = a.shard(3);
    let pause3 = std::thread::spawn(move || pause_mid_shard(&[shard3]));
    // Shard 0 is warned of its time limit (SIGUSR1 to the batch shell, as --signal=B:USR1@120
    // makes Slurm do): it stops cleanly and requeues itself. Shard 1 dies by kill -9 mid-write: it
    // requeues itself. Both resume where they stopped.
    let [(pid0, k0), (pid1, k1)] = pause_mid_shard(&[a.shard(0), a.shard(1)])[..] else {
        unreachable!()
    };
    // Slurm's warning goes to the batch shell (B:), rftx's parent: the same signal, sent here
    // without `scancel --signal`, which retries for as long as another task is stopped.
    let stat = std::fs::read_to_string(format!("/proc/{pid0}/stat")).unwrap();
    let shell = stat.rsplit(')').next().unwrap().split_whitespace().nth(1).unwrap();
    signal(shell.parse().unwrap(), "USR1");
    wait_for(60, "the USR1 trap", || a.log("shard-0.log").contains("SIGUSR1"));
    continue_if_alive(pid0);
    signal(pid1, "KILL");
    // Shard 3 is requeued from outside (as a preemption would): Slurm stops and restarts it.
    let [(pid3, k3)] = pause3.join().unwrap()[..] else {
        unreachable!()
    };
    a.cluster.client(&["scontrol", "requeue", &format!("{array}_3")]);
    wait_for(60, "Slurm's SIGTERM", || a.log("shard-3.log").contains("SIGTERM"));
    // Slurm continues a stopped step itself when it requeues it, so the process may already have
    // handled its SIGTERM and exited.
    continue_if_alive(pid3);
    a.cluster.wait_idle(&[&array, &merge], 300);
    [k0, k1, k3]
}

/// After the first array: each stopped shard requeued itself (or was requeued) and resumed
/// where it stopped; the bad-input shard was not requeued; the merge said what is missing.
fn check_the_first_array(a: &ArrayRun, [k0, k1, k3]: [usize; 3]) {
    let expect = |log: &str, wanted: &str| {
        let text = a.log(log);
        assert!(text.contains(wanted), "{log}: {wanted:?} in {text}");
    };
    expect("shard-0.log", "time limit near: requeueing");
    expect("shard-1.log", "exit 137: requeueing");
    expect("shard-2.log", "bad input (exit 2): not requeued");
    expect("merge.log", "shards not done: 2 (missing 0/6) (--array=2)");
    let st = rftx(&["shard", "status", a.run.to_str().unwrap()], &[], a.f.path());
    assert!(st.stdout.contains("missing: --array=2"), "{}", st.stdout);
    for (i, k) in [(0, k0), (1, k1), (3, k3)] {
        let m = read_json(&a.shard(i).join("manifest.json"));
        let sessions = m["sessions"].as_array().unwrap();
        assert_eq!(sessions.len(), 2, "shard {i} ran twice: {m}");
        let resumed = sessions[1]["resumed_at_question"].as_u64().unwrap() as usize;
        // Shard 1 was killed while paused; shards 0 and 3 stop at a safe point after their
        // signal, and Slurm may continue them first: they may commit more before they stop.
        let stopped_where_paused = if i == 1 { resumed == k } else { resumed >= k };
        assert!(
            stopped_where_paused,
            "shard {i} resumed at {resumed}, paused at {k}: {m}"
        );
        if i != 1 {
            // (Shard 1 died by kill -9: no line says where.) It resumed after all it committed.
            assert_eq!(resumed, committed_by_first_session(&a.shard(i)), "shard {i}");
        }
    }
}

/// The questions a shard's first session had committed when it stopped, from its log.
fn committed_by_first_session(shard: &std::path::Path) -> usize {
    let log = std::fs::read_to_string(shard.join("run.log")).unwrap();
    log.lines()
        .find_map(|l| l.split(" after ").nth(1)?.split(" of ").next()?.parse().ok())
        .unwrap_or(0)
}

/// The fault is fixed: a resubmission runs only shard 2, then the merge. Held in the queue, it
/// makes a third submission submit nothing.
fn resubmit_the_failed_shard_and_merge(a: &ArrayRun) {
    let second = a.submit("", &["--sbatch-arg=--hold"]);
    assert!(second.contains("submitted shards 2 as job"), "{second}");
    let (array, merge) = (
        job_after(&second, "submitted shards"),
        job_after(&second, "submitted the merge"),
    );
    let third = a.submit("", &[]);
    assert!(
        third.contains("running or queued (not resubmitted): shards 2"),
        "{third}"
    );
    assert!(!third.contains("as job"), "nothing submitted: {third}");
    a.cluster.client(&["scontrol", "release", &format!("{array},{merge}")]);
    a.cluster.wait_idle(&[&array, &merge], 300);
    assert!(a.log("merge.log").contains("merged 4 shards"), "{}", a.log("merge.log"));
    let submitted = std::fs::read_to_string(a.run.join("slurm/submissions.jsonl")).unwrap();
    assert_eq!(submitted.lines().count(), 2);
}

/// A runs directory and a working directory with a space, `#` and `%`, through a real sbatch:
/// its `#SBATCH` lines read them back as they are, every task's log lands in the run's `slurm/`
/// under its own name, and the merge completes the run.
#[test]
fn paths_with_spaces_hashes_and_percents_reach_the_right_logs() {
    let Some(cluster) = Cluster::start(1) else {
        return;
    };
    let f = sized_fixture(4, 8);
    let cwd = f.path().join("work dir #2 %x");
    std::fs::create_dir(&cwd).unwrap();
    let cfg = f.config.to_str().unwrap();
    let args = [
        "slurm",
        "submit",
        cfg,
        "--shards",
        "2",
        "--runs-dir",
        "runs with space#x%y",
    ];
    let r = rftx(&args, &[("SLURM_CONF", cluster.conf.as_str())], &cwd);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let run = printed_dir(&r, &cwd);
    let _dump = DumpOnFailure(run.clone());
    let (array, merge) = (
        job_after(&r.stdout, "submitted shards"),
        job_after(&r.stdout, "submitted the merge"),
    );
    cluster.wait_idle(&[&array, &merge], 300);
    let logs = run.join("slurm");
    let mut names = entries(&logs);
    names.retain(|n| n.ends_with(".log"));
    names.sort();
    assert_eq!(names, ["merge.log", "shard-0.log", "shard-1.log"], "{}", logs.display());
    for i in 0..2 {
        let log = std::fs::read_to_string(logs.join(format!("shard-{i}.log"))).unwrap();
        assert!(
            log.contains(&format!("rftx shard {i} of 2")) && log.contains(": done"),
            "{log}"
        );
    }
    let merged = std::fs::read_to_string(logs.join("merge.log")).unwrap();
    assert!(merged.contains("merged 2 shards"), "{merged}");
    assert_eq!(read_json(&run.join("manifest.json"))["status"], "complete");
}
