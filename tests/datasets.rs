//! Users' own questions, graders and trainer files, through the real binary on the tiny model:
//! a GSM8K-shaped dataset in the hub cache (Parquet, configs and splits), JSON Lines with
//! nested fields, CSV; errors that name the file, row and field before any run directory;
//! the trainer files as `datasets` loads them; `regrade`.
mod common;

use std::path::{Path, PathBuf};

use common::*;

/// The tiny model's fixture with `HF_HUB_CACHE` holding a GSM8K-shaped `openai/gsm8k`
/// (6 train, 4 test questions in configs `main` and `socratic`).
fn gsm8k_fixture() -> (Fixture, PathBuf) {
    let f = Fixture::new("");
    let cache = f.path().join("hub");
    rftx::testing::write_gsm8k_hub(&cache, 6, 4).unwrap();
    // Files a real snapshot may hold beside its data: never read as rows or splits.
    let snapshot = cache.join("datasets--openai--gsm8k/snapshots/e53f048856ff4f594e959d75785d2c2d37b678ee");
    std::fs::write(snapshot.join("dataset_infos.json"), "{\"main\": {}}").unwrap();
    std::fs::write(snapshot.join("main/test_metadata.json"), "[[\"stray\", 1]]").unwrap();
    (f, cache)
}

fn run_with(f: &Fixture, env: &[(&str, &str)], sets: &[&str]) -> Ran {
    let mut args = vec!["run", f.config.to_str().unwrap(), "--quiet"];
    for s in sets {
        args.extend(["--set", s]);
    }
    rftx(&args, env, f.path())
}

fn samples(dir: &Path) -> Vec<serde_json::Value> {
    read_jsonl(&dir.join("samples.jsonl"))
}

#[test]
fn gsm8k_from_the_hub_cache() {
    let (f, cache) = gsm8k_fixture();
    let env = [("HF_HUB_CACHE", cache.to_str().unwrap())];
    let sets = [
        "data.source=\"openai/gsm8k\"",
        "data.config=\"main\"",
        "data.split=\"test\"",
        "rft.grader=\"math\"",
        "prompt.template=\"Question: {question}\\nEnd with #### and the number.\"",
        "prompt.examples=[]",
        "prompt.system=\"Solve it.\"",
    ];
    // With the default few-shot turns the prompt outgrows the tiny model's 512 positions.
    let r = run_with(&f, &env, &sets[..5]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("openai/gsm8k: question 0: its prompt is 606 tokens, plus generation.max_new_tokens = 12 is more than the 512 positions of the model"), "{}", r.stderr);
    assert!(!f.runs().exists());
    let r = run_with(&f, &env, &sets);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let dir = printed_dir(&r, f.path());
    let lines = samples(&dir);
    let rows = rftx::testing::gsm8k_rows(10);
    assert_eq!(lines.len(), 4, "data.limit = 4 of the 4 test rows");
    for (line, (question, answer)) in lines.iter().zip(&rows[6..]) {
        assert_eq!(line["question"], question.as_str());
        assert_eq!(line["answer"], answer.as_str());
        assert_eq!(
            line["user"],
            format!("Question: {question}\nEnd with #### and the number.")
        );
    }
    check_pass_at_k(&dir, 5);

    // Another split is other questions: another run directory.
    let train = run_with(&f, &env, &[&sets[..2], &["data.split=\"train\""], &sets[3..]].concat());
    assert_eq!(train.code, 0, "{}", train.stderr);
    assert_ne!(printed_dir(&train, f.path()), dir);
    assert_eq!(samples(&printed_dir(&train, f.path()))[0]["answer"], rows[0].1.as_str());
}

/// `metrics.json`'s pass@1 and pass@k against the samples' own verdicts, and `pass_at_k.csv`.
fn check_pass_at_k(dir: &Path, k: usize) {
    let lines = samples(dir);
    let correct: Vec<usize> = lines
        .iter()
        .map(|l| {
            l["samples"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["correct"] == true)
                .count()
        })
        .collect();
    let m = read_json(&dir.join("metrics.json"));
    let pass1 = correct.iter().map(|&c| c as f64 / k as f64).sum::<f64>() / lines.len() as f64;
    let passk = correct.iter().filter(|&&c| c > 0).count() as f64 / lines.len() as f64;
    assert!((m["pass_at_1"].as_f64().unwrap() - pass1).abs() < 1e-12, "{m}");
    assert!((m["pass_at_k"].as_f64().unwrap() - passk).abs() < 1e-12, "{m}");
    assert_eq!(m["k"], k);
    let csv = std::fs::read_to_string(dir.join("pass_at_k.csv")).unwrap();
    assert_eq!(
        csv.lines().next().unwrap(),
        format!("index,id,samples,correct,pass_at_1,pass_at_{k}")
    );
    assert_eq!(csv.lines().count(), lines.len() + 1);
}

#[test]
fn hub_configs_and_splits_are_named_when_wrong() {
    let (f, cache) = gsm8k_fixture();
    let env = [("HF_HUB_CACHE", cache.to_str().unwrap())];
    let data = f.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("q.jsonl"), "{\"question\": \"q\", \"answer\": 1}\n").unwrap();
    let outside = format!("data.source=\"openai/gsm8k@{}\"", data.display());
    for (sets, needle) in [
        (
            vec!["data.source=\"openai/gsm8k\""],
            "it has several configs: main, socratic; set data.config to one",
        ),
        (
            vec![
                "data.source=\"openai/gsm8k\"",
                "data.config=\"main\"",
                "data.split=\"dev\"",
            ],
            "no split \"dev\"; its splits are test, train; set data.split to one",
        ),
        (
            vec!["data.source=\"openai/gsm8k\"", "data.config=\"all\""],
            "no config \"all\"; it has main, socratic",
        ),
        (
            vec!["data.source=\"openai/gsm8k@v2\""],
            "is not in the local Hugging Face cache",
        ),
        // A revision is a ref name or a commit: never a way out of the cache.
        (vec![outside.as_str()], "a revision is a branch or tag name"),
        (
            vec!["data.source=\"openai/gsm8k@../../../data\""],
            "a revision is a branch or tag name",
        ),
    ] {
        let r = run_with(&f, &env, &sets);
        assert_eq!(r.code, 2, "{sets:?}: {}", r.stderr);
        assert!(r.stderr.contains(needle), "{sets:?}: {}", r.stderr);
        assert!(
            !f.runs().exists(),
            "{sets:?}: no run directory before the input is read"
        );
    }
}

#[test]
fn bad_rows_are_named_before_any_run_directory() {
    let f = Fixture::new("");
    let cases: [(&str, &[u8], &[&str], &str); 8] = [
        (
            "q.jsonl",
            b"{\"question\": \"a\", \"answer\": \"1\"}\n{\"question\": \"b\"}\n",
            &[],
            "q.jsonl: line 2: no field `answer` (its fields: question); set data.answer_field",
        ),
        ("empty.jsonl", b"\n", &[], "empty.jsonl: the question file has no rows"),
        (
            "bad.csv",
            b"question,answer\nq1,1\nq2,2,extra\n",
            &[],
            "bad.csv: line 3:",
        ),
        (
            "broken.parquet",
            b"PAR1 not parquet PAR1",
            &[],
            "broken.parquet: not a readable Parquet file",
        ),
        (
            "text.jsonl",
            b"{\"question\": \"Capital of France?\", \"answer\": \"Paris\"}\n",
            &[],
            "question 0: the answer \"Paris\" has no number (rft.grader = \"numeric\"",
        ),
        (
            "t.jsonl",
            b"{\"question\": \"q\", \"answer\": 1}\n",
            &["prompt.template=\"{topic}: {question}\""],
            "prompt.template: `{topic}`: no such field in the row (its fields: question, answer)",
        ),
        (
            "s.jsonl",
            b"{\"question\": \"q\", \"answer\": 1}\n",
            &["data.split=\"test\""],
            "data.split = \"test\": only a hub dataset",
        ),
        (
            "n.jsonl",
            b"{\"q\": {\"text\": 5}, \"answer\": 1}\n",
            &["data.question_field=\"q.text\""],
            "line 1: field `q.text` = 5: the question must be a non-empty string",
        ),
    ];
    for (name, content, sets, needle) in cases {
        std::fs::write(f.path().join(name), content).unwrap();
        let source = format!("data.source={name:?}");
        let r = run_with(&f, &[], &[&[source.as_str()], sets].concat());
        assert_eq!(r.code, 2, "{name}: {}", r.stderr);
        assert!(
            r.stderr.contains(needle),
            "{name}: expected {needle:?} in\n{}",
            r.stderr
        );
        assert!(!f.runs().exists(), "{name}: no run directory before the input is read");
    }
}

/// `data.limit` applies while reading: a bad row after the limit fails nothing, and the run
/// hash is the one the first rows always gave.
#[test]
fn rows_after_the_limit_are_not_read() {
    let f = Fixture::new("");
    let good = "{\"question\": \"1+1?\", \"answer\": 2}\n{\"question\": \"2+2?\", \"answer\": 4}\n";
    std::fs::write(f.path().join("good.jsonl"), good).unwrap();
    std::fs::write(
        f.path().join("bad.jsonl"),
        format!("{good}{{\"question\": \"x\"}}\nnot json\n"),
    )
    .unwrap();
    let hash = |name: &str, limit: &str| {
        let source = format!("data.source={name:?}");
        let args = ["hash", f.config.to_str().unwrap(), "--set", &source, "--set", limit];
        rftx(&args, &[], f.path())
    };
    let bad = hash("bad.jsonl", "data.limit=2");
    assert_eq!(bad.code, 0, "{}", bad.stderr);
    assert_eq!(bad.last_line(), hash("good.jsonl", "data.limit=2").last_line());
    let all = hash("bad.jsonl", "data.limit=3");
    assert_eq!(all.code, 2, "{}", all.stderr);
    assert!(
        all.stderr.contains("bad.jsonl: line 3: no field `answer`"),
        "{}",
        all.stderr
    );
}

/// Four questions with ids and nested fields; the reference `(?s).*` takes every completion.
fn own_jsonl(f: &Fixture) -> PathBuf {
    let lines: String = (1..=4)
        .map(|i| format!("{}\n", serde_json::json!({"id": format!("q-{i}"), "item": {"text": format!("Question {i}?")}, "gold": "(?s).*"})))
        .collect();
    let p = f.path().join("own.jsonl");
    std::fs::write(&p, lines).unwrap();
    p
}

const OWN: [&str; 6] = [
    "data.source=\"own.jsonl\"",
    "data.question_field=\"item.text\"",
    "data.answer_field=\"gold\"",
    "data.id_field=\"id\"",
    "rft.grader=\"regex\"",
    "rft.extract=\"whole\"",
];

#[test]
fn own_jsonl_gives_trainer_files_and_regrades() {
    let f = Fixture::new("");
    own_jsonl(&f);
    let r = run_with(&f, &[], &[&OWN[..], &["rft.max_per_question=2"]].concat());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let dir = printed_dir(&r, f.path());
    let lines = samples(&dir);
    assert_eq!(
        lines.iter().map(|l| l["id"].as_str().unwrap()).collect::<Vec<_>>(),
        ["q-1", "q-2", "q-3", "q-4"]
    );
    assert!(lines
        .iter()
        .all(|l| l["samples"].as_array().unwrap().iter().all(|s| s["correct"] == true)));
    // Two kept per question (five correct, capped), duplicates of a question's text dropped.
    let messages = read_jsonl(&dir.join("sft_messages.jsonl"));
    assert_eq!(messages.len(), 8);
    for (i, m) in messages.iter().enumerate() {
        let turns = m["messages"].as_array().unwrap();
        assert_eq!(
            turns[0],
            serde_json::json!({"role": "system", "content": rftx::core::config::DEFAULT_SYSTEM})
        );
        assert_eq!(
            turns[1],
            serde_json::json!({"role": "user", "content": format!("Question {}?", i / 2 + 1)})
        );
        assert_eq!(turns[2]["role"], "assistant");
    }
    check_parquet(&dir, &messages);
    check_with_python(&dir, 8);
    check_pass_at_k(&dir, 5);
    regrade(&f, &dir);
}

/// `dataset.parquet` read back with the parquet crate: the same samples as the JSON Lines.
fn check_parquet(dir: &Path, messages: &[serde_json::Value]) {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(std::fs::File::open(dir.join("dataset.parquet")).unwrap()).unwrap();
    let rows: Vec<serde_json::Value> = reader
        .get_row_iter(None)
        .unwrap()
        .map(|r| r.unwrap().to_json_value())
        .collect();
    assert_eq!(rows.len(), messages.len());
    for (row, m) in rows.iter().zip(messages) {
        assert_eq!(row["completion"], m["messages"][2]["content"]);
        assert_eq!(row["user"], m["messages"][1]["content"]);
        assert_eq!(row["answer"], "(?s).*");
    }
    assert_eq!(rows[0]["id"], "q-1");
    assert_eq!(rows[7]["index"], 3);
}

/// The trainer files loaded by Hugging Face `datasets`, as TRL's SFTTrainer loads them
/// (`scripts/check_trainer_files.py`), with the Python `$RFTX_TEST_PYTHON` (else `python3`).
fn check_with_python(dir: &Path, records: usize) {
    let args = [dir.display().to_string(), records.to_string()];
    let Some((ok, text)) = common::python_check("check_trainer_files.py", &args) else {
        return;
    };
    assert!(ok && text.contains(&format!("ok: {records} records")), "{text}");
}

fn regrade(f: &Fixture, dir: &Path) {
    let before = std::fs::read(dir.join("samples.jsonl")).unwrap();
    let run = dir.to_str().unwrap();
    let r = rftx(&["regrade", run, "--set", "rft.max_per_question=1"], &[], f.path());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out = r.stdout.lines().next().unwrap().rsplit(' ').next().unwrap().to_string();
    assert!(out.contains("/regrade/rft-"), "{}", r.stdout);
    assert_eq!(
        read_jsonl(&Path::new(&out).join("sft_messages.jsonl")).len(),
        4,
        "one per question"
    );
    let v = read_jsonl(&Path::new(&out).join("verdicts.jsonl"));
    assert_eq!(v[2]["id"], "q-3");
    // Exact text against `(?s).*`: nothing is right any more.
    let r = rftx(&["regrade", run, "--set", "rft.grader=\"exact\""], &[], f.path());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("accepted   20 → 0 of 20 samples"), "{}", r.stdout);
    assert!(r.stdout.contains("pass@1     100.0 % → 0.0 %"), "{}", r.stdout);
    assert_eq!(
        std::fs::read(dir.join("samples.jsonl")).unwrap(),
        before,
        "samples.jsonl untouched"
    );
    let r = rftx(&["regrade", run, "--set", "generation.temperature=0.1"], &[], f.path());
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("a regrade changes only rft.* keys"), "{}", r.stderr);
}

#[test]
fn csv_questions_with_text_answers() {
    let f = Fixture::new("");
    std::fs::write(
        f.path().join("q.csv"),
        "question,answer,topic\n\"Convert 3 km, to m.\",3000,length\nHow many grams in 2 kg?,2000,mass\n",
    )
    .unwrap();
    let r = run_with(
        &f,
        &[],
        &["data.source=\"q.csv\"", "prompt.template=\"[{topic}] {question}\""],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines = samples(&printed_dir(&r, f.path()));
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["question"], "Convert 3 km, to m.");
    assert_eq!(
        lines[0]["answer"], "3000",
        "CSV values are text; the numeric grader reads the number"
    );
    assert_eq!(lines[1]["user"], "[mass] How many grams in 2 kg?");
}
