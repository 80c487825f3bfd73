//! Graders without generating: `rftx grade` checks a grader on the user's own cases, `rftx
//! regrade` rebuilds a run's datasets under other `[rft]` settings from its `samples.jsonl`
//! (left untouched) into `regrade/rft-<hash>/` inside the run directory.
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use crate::base::error::{Error, Result};
use crate::base::record::Answer;
use crate::core::config::{self, Config, RftConfig};
use crate::core::report::{self, Metrics, Tally};
use crate::core::rft::{Dataset, Grader};
use crate::core::store::{self, jsonl, QuestionRecord};

/// Folder of a run directory that regrades are written under.
pub const REGRADE_DIR: &str = "regrade";

/// Grades every `{"completion": …, "answer": …}` line of `input` and writes the line back with
/// `extracted`, `parsed` and `correct` added. Returns (lines, correct).
pub fn grade_lines(rft: &RftConfig, input: &Path, out: &mut dyn Write) -> Result<(usize, usize)> {
    let grader = Grader::new(rft).map_err(|e| Error::input(input, e))?;
    let file = std::fs::File::open(input).map_err(|e| Error::io(format!("{}: cannot read", input.display()), e))?;
    let (mut lines, mut correct) = (0, 0);
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| Error::io(format!("{}: cannot read", input.display()), e))?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why: &str| {
            Error::input(
                input,
                format!(
                    "line {}: {why}; expected {{\"completion\": \"…\", \"answer\": …}}",
                    i + 1
                ),
            )
        };
        let mut case: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&line).map_err(|e| bad(&format!("not a JSON object ({e})")))?;
        let completion = case
            .get("completion")
            .and_then(|c| c.as_str())
            .ok_or_else(|| bad("no string `completion`"))?;
        let answer = case
            .get("answer")
            .and_then(Answer::from_json)
            .ok_or_else(|| bad("no string or number `answer`"))?;
        grader.check_reference(&answer).map_err(|e| bad(&e))?;
        let v = grader.grade(completion, &answer);
        correct += usize::from(v.correct);
        lines += 1;
        case.insert("extracted".into(), v.extracted.into());
        case.insert(
            "parsed".into(),
            serde_json::to_value(&v.parsed).expect("answers serialise"),
        );
        case.insert("correct".into(), v.correct.into());
        writeln!(out, "{}", serde_json::Value::Object(case))
            .map_err(|e| Error::io("standard output".to_string(), e))?;
    }
    Ok((lines, correct))
}

/// What a regrade wrote.
pub struct Regraded {
    pub dir: PathBuf,
    pub before: Metrics,
    pub after: Metrics,
}

/// Regrades the committed questions of `run` with its config and `sets` (only `rft.*` keys).
pub fn regrade(run: &Path, sets: &[String]) -> Result<Regraded> {
    if let Some(s) = sets.iter().find(|s| !s.trim_start().starts_with("rft.")) {
        return Err(Error::input(run, format!("--set {s}: a regrade changes only rft.* keys (the samples stay as generated); other keys need a new run")));
    }
    let original = config::read_run_config(&run.join(store::CONFIG_FILE))?;
    let config: Config = config::overlay(original.clone(), sets)?;
    let grader = Grader::new(&config.rft).map_err(|e| Error::input(run, e))?;
    let (mut before, mut after) = (Tally::default(), Tally::default());
    let mut dataset = Dataset::new(&config.rft, &config.prompt.system);
    let (mut verdicts, mut unreadable) = (Vec::new(), None);
    let read =
        jsonl::for_each::<QuestionRecord>(&run.join(store::SAMPLES_FILE), "rerun the run to repair it", |mut q| {
            before.add_question(&q);
            if let Err(e) = grader.check_reference(&q.answer) {
                unreadable = Some(format!("question {}: {e}", q.index));
                return Err("stopped".into());
            }
            for s in &mut q.samples {
                let v = grader.grade(&s.text, &q.answer);
                (s.parsed, s.correct) = (v.parsed, v.correct);
            }
            verdicts.push(serde_json::json!({
                "index": q.index,
                "id": q.id,
                "parsed": q.samples.iter().map(|s| &s.parsed).collect::<Vec<_>>(),
                "correct": q.samples.iter().map(|s| s.correct).collect::<Vec<_>>(),
            }));
            after.add_question(&q);
            dataset.add_question(&q, None);
            Ok(())
        });
    if let Some(e) = unreadable {
        return Err(Error::input(run, format!("{e}; choose another rft.grader")));
    }
    read?;
    let rft = serde_json::to_value(&config.rft).expect("rft serialises");
    let hash = crate::base::util::sha256_hex(config::canonical_json(&rft).as_bytes());
    let dir = run.join(REGRADE_DIR).join(format!("rft-{}", &hash[..12]));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("{}: cannot create", dir.display()), e))?;
    let write = |name: &str, bytes: &[u8]| crate::base::util::write_atomic(&dir.join(name), bytes);
    let mut rft_toml = toml::Table::new();
    rft_toml.insert(
        "rft".into(),
        toml::Value::try_from(&config.rft).expect("rft serialises to TOML"),
    );
    write("rft.toml", toml::to_string(&rft_toml).expect("TOML").as_bytes())?;
    let lines: String = verdicts.iter().map(|v| format!("{v}\n")).collect();
    write("verdicts.jsonl", lines.as_bytes())?;
    for (name, bytes) in report::finished_files(&dataset, &after)? {
        write(name, &bytes)?;
    }
    let total = before.questions();
    let after_metrics = after.metrics(total, 0.0, dataset.len());
    write(store::METRICS_FILE, report::metrics_json(&after_metrics).as_bytes())?;
    Ok(Regraded {
        dir,
        before: before.metrics(total, 0.0, 0),
        after: after_metrics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grade_lines_adds_the_verdict() {
        let d = tempfile::tempdir().unwrap();
        let input = d.path().join("cases.jsonl");
        std::fs::write(
            &input,
            "{\"completion\": \"so \\\\boxed{\\\\frac{3}{4}}\", \"answer\": \"0.75\", \"id\": 7}\n\n{\"completion\": \"\\\\boxed{1}\", \"answer\": 2}\n",
        )
        .unwrap();
        let rft = RftConfig {
            grader: crate::core::config::Grader::Math,
            extract: crate::core::config::Extract::Boxed,
            ..RftConfig::default()
        };
        let mut out = Vec::new();
        assert_eq!(grade_lines(&rft, &input, &mut out).unwrap(), (2, 1));
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["id"], 7);
        assert_eq!(lines[0]["extracted"], "\\frac{3}{4}");
        assert_eq!(lines[0]["correct"], true);
        assert_eq!(lines[1]["correct"], false);
        std::fs::write(&input, "{\"answer\": 2}\n").unwrap();
        let e = grade_lines(&rft, &input, &mut Vec::new()).unwrap_err().to_string();
        assert!(
            e.contains("line 1: no string `completion`") && e.contains("cases.jsonl"),
            "{e}"
        );
    }
}
