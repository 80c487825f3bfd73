//! Graders without generating: `rftx grade` checks a grader on the user's own cases, `rftx
//! regrade` rebuilds a run's datasets under other `[rft]` settings from its `samples.jsonl`
//! (left untouched) into `regrade/rft-<hash>/` inside the run directory.
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use crate::base::error::{Error, Result};
use crate::base::record::Answer;
use crate::core::config::{self, Config, RftConfig};
use crate::core::report::{self, Metrics, Tally};
use crate::core::rft::preference::Written;
use crate::core::rft::{Dataset, Grader, Item, Preferences};
use crate::core::store::{self, jsonl, QuestionRecord};

/// Folder of a run directory that regrades are written under.
pub const REGRADE_DIR: &str = "regrade";

/// Cases graded together: one batch of requests for the `command` grader's verifier.
const BLOCK: usize = 64;

/// One line of `rftx grade`'s input.
struct Case {
    line: usize,
    fields: serde_json::Map<String, serde_json::Value>,
    completion: String,
    answer: Answer,
    /// What the `command` grader's verifier is told of it: `index` (among the cases), `id`,
    /// `question` (null where the line has none) and `line`, as a run tells of its questions.
    row: serde_json::Value,
}

/// Grades every `{"completion": …, "answer": …}` line of `input` and writes the line back with
/// `extracted`, `parsed` and `correct` added (and the verifier's `reason`, where it gave one).
/// Every line is read and its answer checked before any is graded. Returns (lines, correct).
pub fn grade_lines(rft: &RftConfig, input: &Path, out: &mut dyn Write) -> Result<(usize, usize)> {
    let grader = Grader::new(rft).map_err(|e| Error::input(input, e))?;
    let cases = read_cases(input, &grader)?;
    grader.start().map_err(Error::Usage)?;
    let mut correct = 0;
    for block in cases.chunks(BLOCK) {
        let items: Vec<Item> = block
            .iter()
            .map(|c| Item {
                completion: &c.completion,
                answer: &c.answer,
                row: &c.row,
            })
            .collect();
        let verdicts = grader.grade_all(&items).map_err(|e| {
            let lines = (block[0].line, block[block.len() - 1].line);
            Error::Run(format!("{}: lines {}–{}: {e}", input.display(), lines.0, lines.1))
        })?;
        for (case, v) in block.iter().zip(verdicts) {
            correct += usize::from(v.correct);
            let mut fields = case.fields.clone();
            fields.insert("extracted".into(), v.extracted.into());
            fields.insert(
                "parsed".into(),
                serde_json::to_value(&v.parsed).expect("answers serialise"),
            );
            fields.insert("correct".into(), v.correct.into());
            // The math grader says which rule found the answer (`boxed`, `answer tag`, …).
            if let Some(rule) = v.rule {
                fields.insert("rule".into(), rule.into());
            }
            if let Some(r) = v.reason {
                fields.insert("reason".into(), r.into());
            }
            writeln!(out, "{}", serde_json::Value::Object(fields))
                .map_err(|e| Error::io("standard output".to_string(), e))?;
        }
    }
    Ok((cases.len(), correct))
}

/// The cases of `input` (blank lines skipped), each answer checked against `grader`: exit 2
/// naming the line.
fn read_cases(input: &Path, grader: &Grader) -> Result<Vec<Case>> {
    let file = std::fs::File::open(input).map_err(|e| Error::io(format!("{}: cannot read", input.display()), e))?;
    let mut cases = Vec::new();
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
        let fields: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&line).map_err(|e| bad(&format!("not a JSON object ({e})")))?;
        let completion = fields
            .get("completion")
            .and_then(|c| c.as_str())
            .ok_or_else(|| bad("no string `completion`"))?
            .to_string();
        let answer = fields
            .get("answer")
            .and_then(Answer::from_json)
            .ok_or_else(|| bad("no string or number `answer`"))?;
        grader.check_reference(&answer).map_err(|e| bad(&e))?;
        let row = serde_json::json!({
            "index": cases.len(),
            "id": fields.get("id"),
            "question": fields.get("question"),
            "line": i + 1,
        });
        cases.push(Case {
            line: i + 1,
            fields,
            completion,
            answer,
            row,
        });
    }
    Ok(cases)
}

/// For a run graded by the math grader: how many samples each rule found the answer by
/// (`boxed`, `answer tag`, `final answer … is`, …; `none` where no answer was found), from the
/// committed samples graded again. `None` for the other graders.
pub fn answer_rules(run: &Path, config: &Config) -> Result<Option<BTreeMap<String, usize>>> {
    if config.rft.grader != config::Grader::Math {
        return Ok(None);
    }
    let grader = Grader::new(&config.rft).map_err(|e| Error::input(run, e))?;
    let mut rules = BTreeMap::new();
    jsonl::for_each::<QuestionRecord>(&run.join(store::SAMPLES_FILE), "rerun the run to repair it", |q| {
        for s in &q.samples {
            let rule = grader.grade(&s.text, &q.answer).rule.unwrap_or("none");
            *rules.entry(rule.to_string()).or_insert(0) += 1;
        }
        Ok(())
    })?;
    Ok(Some(rules))
}

/// What a regrade wrote.
pub struct Regraded {
    pub dir: PathBuf,
    pub before: Metrics,
    pub after: Metrics,
    /// The preference and RL files' counts.
    pub preferences: Written,
}

/// Regrades the committed questions of `run` with its config and `sets` (only `rft.*` keys).
pub fn regrade(run: &Path, sets: &[String]) -> Result<Regraded> {
    if let Some(s) = sets.iter().find(|s| !s.trim_start().starts_with("rft.")) {
        return Err(Error::input(run, format!("--set {s}: a regrade changes only rft.* keys (the samples stay as generated); other keys need a new run")));
    }
    let original = config::read_run_config(&run.join(store::CONFIG_FILE))?;
    let config: Config = config::overlay(original.clone(), sets)?;
    let grader = Grader::new(&config.rft)
        .map_err(|e| Error::input(run, e))?
        .for_data(&config.data);
    grader.start().map_err(Error::Usage)?;
    let (mut before, mut after) = (Tally::default(), Tally::default());
    let mut dataset = Dataset::new(&config.rft, &config.prompt.system);
    let (mut verdicts, mut correct, mut failed) = (Vec::new(), Vec::new(), None);
    let read =
        jsonl::for_each::<QuestionRecord>(&run.join(store::SAMPLES_FILE), "rerun the run to repair it", |mut q| {
            before.add_question(&q);
            match regrade_question(&grader, &mut q, run) {
                Ok(v) => verdicts.push(v),
                Err(e) => {
                    failed = Some(e);
                    return Err("stopped".into());
                }
            }
            after.add_question(&q);
            dataset.add_question(&q, None);
            correct.push(q.samples.iter().map(|s| s.correct).collect::<Vec<bool>>());
            Ok(())
        });
    if let Some(e) = failed {
        return Err(e);
    }
    read?;
    let rft = config.rft.hash_value(config.data.is_builtin());
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
    let preferences = Preferences::new(&config.rft, &config.prompt.system).write_files(
        &dir,
        &run.join(store::SAMPLES_FILE),
        Some(&correct),
    )?;
    let total = before.questions();
    let after_metrics = after.metrics(total, 0.0, dataset.len());
    write(store::METRICS_FILE, report::metrics_json(&after_metrics).as_bytes())?;
    Ok(Regraded {
        dir,
        before: before.metrics(total, 0.0, 0),
        after: after_metrics,
        preferences,
    })
}

/// One committed question graded again (its samples' `parsed` and `correct` replaced); its line
/// of `verdicts.jsonl`.
fn regrade_question(grader: &Grader, q: &mut QuestionRecord, run: &Path) -> Result<serde_json::Value> {
    grader
        .check_reference(&q.answer)
        .map_err(|e| Error::input(run, format!("question {}: {e}; choose another rft.grader", q.index)))?;
    let row = crate::core::rft::command::row(q.index, q.id.as_deref(), &q.question);
    let items: Vec<Item> = q
        .samples
        .iter()
        .map(|s| Item {
            completion: &s.text,
            answer: &q.answer,
            row: &row,
        })
        .collect();
    let graded = grader
        .grade_all(&items)
        .map_err(|e| Error::Run(format!("{}: question {}: {e}", run.display(), q.index)))?;
    for (s, v) in q.samples.iter_mut().zip(graded) {
        (s.parsed, s.correct) = (v.parsed, v.correct);
    }
    Ok(serde_json::json!({
        "index": q.index,
        "id": q.id,
        "parsed": q.samples.iter().map(|s| &s.parsed).collect::<Vec<_>>(),
        "correct": q.samples.iter().map(|s| s.correct).collect::<Vec<_>>(),
    }))
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
