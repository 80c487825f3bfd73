//! What to train on after SFT, from every sample's verdict (the right ones and the wrong ones):
//!
//! - `dpo_pairs.jsonl`: TRL's conversational preference format, `{"prompt": [system, user],
//!   "chosen": [assistant], "rejected": [assistant]}` (DPOTrainer);
//! - `kto.jsonl`: TRL's conversational unpaired preference format, `{"prompt": [system, user],
//!   "completion": [assistant], "label": true|false}` (KTOTrainer);
//! - `rl_prompts.jsonl`: one line per question, `{"prompt": [system, user], "answer", "index",
//!   "id", "question", "pass_rate", "correct", "samples"}` (GRPOTrainer: `prompt` is the prompt,
//!   the other columns reach the reward function), filtered by `rft.keep_pass_rate`.
//!
//! **The pairing rule.** A question's samples are read in sample order, each completion trimmed
//! as in the SFT files; under `rft.dedup` a completion whose text the question already had is
//! skipped. R are the right ones, W the wrong ones. When both are non-empty, pair i is
//! (R[i], W[i mod |W|]) for i = 0, 1, …, |R| − 1: every right sample once, the wrong ones in
//! sample order, from the first again when the question has more right ones than wrong ones;
//! at most `rft.max_pairs_per_question` pairs, the first ones. `kto.jsonl` holds the same
//! completions of every question (R labelled true, W false) in sample order.
//!
//! The files are streamed to disk, one question at a time: a run's memory does not grow with
//! its number of samples.
use std::io::Write;
use std::path::Path;

use crate::base::error::Result;
use crate::core::config::RftConfig;
use crate::core::store::{self, QuestionRecord};

/// How a run's verdicts become preference and RL data: `[rft]`'s keys and the system message.
#[derive(Debug, Clone)]
pub struct Preferences {
    system: String,
    dedup: bool,
    max_pairs: Option<usize>,
    keep_pass_rate: Option<[f64; 2]>,
}

/// What [`Preferences::write_files`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    pub pairs: usize,
    /// `kto.jsonl`'s lines labelled true, and false.
    pub desirable: usize,
    pub undesirable: usize,
    /// `rl_prompts.jsonl`'s lines, of how many questions.
    pub rl_prompts: usize,
    pub questions: usize,
}

/// Where a question's verdicts come from: each sample's own `correct`, or a regrade's.
pub type Verdicts<'a> = Option<&'a [Vec<bool>]>;

impl Preferences {
    pub fn new(rft: &RftConfig, system: &str) -> Self {
        Preferences {
            system: system.to_string(),
            dedup: rft.dedup,
            max_pairs: rft.max_pairs_per_question,
            keep_pass_rate: rft.keep_pass_rate,
        }
    }

    /// A question's completions (trimmed) with their verdicts, in sample order, a repeated
    /// text skipped under `rft.dedup`. `correct` overrides the samples' own verdicts (a regrade).
    pub fn distinct<'q>(&self, q: &'q QuestionRecord, correct: Option<&[bool]>) -> Vec<(&'q str, bool)> {
        let mut seen = std::collections::HashSet::new();
        q.samples
            .iter()
            .enumerate()
            .map(|(i, s)| (s.text.trim(), verdict(q, i, correct)))
            .filter(|(text, _)| !self.dedup || seen.insert(*text))
            .collect()
    }

    /// A question's distinct right and wrong completions, in sample order.
    pub fn split<'q>(&self, q: &'q QuestionRecord, correct: Option<&[bool]>) -> (Vec<&'q str>, Vec<&'q str>) {
        let (right, wrong): (Vec<_>, Vec<_>) = self.distinct(q, correct).into_iter().partition(|(_, c)| *c);
        (
            right.into_iter().map(|(t, _)| t).collect(),
            wrong.into_iter().map(|(t, _)| t).collect(),
        )
    }

    /// A question's (chosen, rejected) pairs by the pairing rule (see the module's doc).
    pub fn pairs<'q>(&self, q: &'q QuestionRecord, correct: Option<&[bool]>) -> Vec<(&'q str, &'q str)> {
        let (right, wrong) = self.split(q, correct);
        if wrong.is_empty() {
            return Vec::new();
        }
        let cap = self.max_pairs.unwrap_or(usize::MAX);
        right
            .iter()
            .enumerate()
            .take(cap)
            .map(|(i, r)| (*r, wrong[i % wrong.len()]))
            .collect()
    }

    /// Whether `rft.keep_pass_rate` keeps a question with `correct` of `samples` right.
    pub fn keeps(&self, correct: usize, samples: usize) -> bool {
        keeps(self.keep_pass_rate, correct, samples)
    }

    fn prompt(&self, q: &QuestionRecord) -> serde_json::Value {
        let user = q.user.as_deref().unwrap_or(&q.question);
        serde_json::json!([turn("system", &self.system), turn("user", user)])
    }

    /// The question's `dpo_pairs.jsonl` lines; returns how many.
    pub fn dpo_lines(&self, q: &QuestionRecord, correct: Option<&[bool]>, out: &mut Vec<u8>) -> usize {
        let pairs = self.pairs(q, correct);
        let prompt = self.prompt(q);
        for (chosen, rejected) in &pairs {
            line(
                out,
                &serde_json::json!({
                    "prompt": prompt,
                    "chosen": [turn("assistant", chosen)],
                    "rejected": [turn("assistant", rejected)],
                }),
            );
        }
        pairs.len()
    }

    /// The question's `kto.jsonl` lines; returns how many are labelled true, and false.
    pub fn kto_lines(&self, q: &QuestionRecord, correct: Option<&[bool]>, out: &mut Vec<u8>) -> (usize, usize) {
        let prompt = self.prompt(q);
        let mut labels = (0, 0);
        for (text, label) in self.distinct(q, correct) {
            line(
                out,
                &serde_json::json!({
                    "prompt": prompt,
                    "completion": [turn("assistant", text)],
                    "label": label,
                }),
            );
            if label {
                labels.0 += 1;
            } else {
                labels.1 += 1;
            }
        }
        labels
    }

    /// The question's `rl_prompts.jsonl` line, if `rft.keep_pass_rate` keeps it.
    pub fn rl_line(&self, q: &QuestionRecord, correct: Option<&[bool]>, out: &mut Vec<u8>) -> bool {
        let n = q.samples.len();
        let c = (0..n).filter(|&i| verdict(q, i, correct)).count();
        if !self.keeps(c, n) {
            return false;
        }
        let mut v = serde_json::json!({ "prompt": self.prompt(q), "answer": q.answer.text(), "index": q.index });
        if let Some(id) = &q.id {
            v["id"] = id.clone().into();
        }
        v["question"] = q.question.clone().into();
        v["pass_rate"] = pass_rate(c, n).into();
        v["correct"] = c.into();
        v["samples"] = n.into();
        line(out, &v);
        true
    }

    /// Writes `dpo_pairs.jsonl`, `kto.jsonl` and `rl_prompts.jsonl` into `dir`, each atomically,
    /// from the questions of `samples` (a `samples.jsonl`) in order, with `verdicts` (a
    /// regrade's, one list per line) in place of the samples' own where given. Each file is
    /// streamed: one question in memory at a time.
    pub fn write_files(&self, dir: &Path, samples: &Path, verdicts: Verdicts) -> Result<Written> {
        let mut w = Written::default();
        self.stream(dir, store::DPO_PAIRS_FILE, samples, verdicts, &mut |q, c, out| {
            w.pairs += self.dpo_lines(q, c, out);
        })?;
        self.stream(dir, store::KTO_FILE, samples, verdicts, &mut |q, c, out| {
            let (d, u) = self.kto_lines(q, c, out);
            (w.desirable, w.undesirable) = (w.desirable + d, w.undesirable + u);
        })?;
        self.stream(dir, store::RL_PROMPTS_FILE, samples, verdicts, &mut |q, c, out| {
            w.questions += 1;
            w.rl_prompts += usize::from(self.rl_line(q, c, out));
        })?;
        Ok(w)
    }

    /// One file of [`Preferences::write_files`]: `render` gives each question's lines.
    fn stream(
        &self,
        dir: &Path,
        name: &str,
        samples: &Path,
        verdicts: Verdicts,
        render: &mut dyn FnMut(&QuestionRecord, Option<&[bool]>, &mut Vec<u8>),
    ) -> Result<()> {
        let mut failed = None;
        let mut buf = Vec::new();
        let path = dir.join(name);
        crate::base::util::write_atomic_with(&path, |file| {
            let mut line_no = 0;
            let read = store::jsonl::for_each::<QuestionRecord>(samples, "rerun the run to repair it", |q| {
                buf.clear();
                render(&q, verdicts.and_then(|v| v.get(line_no)).map(Vec::as_slice), &mut buf);
                line_no += 1;
                file.write_all(&buf).map_err(|e| e.to_string())
            });
            read.map_err(|e| {
                let message = e.to_string();
                failed = Some(e);
                std::io::Error::other(message)
            })
        })
        .map_err(|e| failed.unwrap_or(e))
    }
}

/// Whether `rft.keep_pass_rate = [lo, hi]` keeps a question with `correct` of `samples` right:
/// lo ≤ pass rate ≤ hi (always, unset).
pub fn keeps(keep_pass_rate: Option<[f64; 2]>, correct: usize, samples: usize) -> bool {
    let Some([lo, hi]) = keep_pass_rate else {
        return true;
    };
    let rate = pass_rate(correct, samples);
    lo <= rate && rate <= hi
}

/// A question's pass rate: its right samples over its samples (0 without samples).
pub fn pass_rate(correct: usize, samples: usize) -> f64 {
    if samples == 0 {
        0.0
    } else {
        correct as f64 / samples as f64
    }
}

fn turn(role: &str, content: &str) -> serde_json::Value {
    serde_json::json!({ "role": role, "content": content })
}

fn line(out: &mut Vec<u8>, v: &serde_json::Value) {
    serde_json::to_writer(&mut *out, v).expect("JSON values serialise");
    out.push(b'\n');
}

/// Sample `i`'s verdict: `correct[i]` where a regrade gives one, else the sample's own.
fn verdict(q: &QuestionRecord, i: usize, correct: Option<&[bool]>) -> bool {
    match correct {
        Some(c) => c.get(i).copied().unwrap_or(false),
        None => q.samples[i].correct,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::record::Answer;

    /// Question `index` with samples of the given texts and verdicts, in sample order.
    fn question(index: usize, samples: &[(&str, bool)]) -> QuestionRecord {
        QuestionRecord {
            id: (index == 1).then(|| "b".to_string()),
            user: (index == 2).then(|| "Question: q2".to_string()),
            answer: Answer::Number(7.0),
            ..super::super::tests::question(index, samples)
        }
    }

    fn prefs(rft: RftConfig) -> Preferences {
        Preferences::new(&rft, "Be brief.")
    }

    fn lines(bytes: &[u8]) -> Vec<serde_json::Value> {
        std::str::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn every_right_sample_is_paired_with_the_wrong_ones_in_turn() {
        // Right: r1, r2, r3 (r2 repeated, with spaces); wrong: w1, w2 (w1 repeated).
        let q = question(
            0,
            &[
                ("w1", false),
                ("r1", true),
                ("r2 ", true),
                ("w1", false),
                (" r2", true),
                ("w2", false),
                ("r3", true),
            ],
        );
        let p = prefs(RftConfig::default());
        assert_eq!(p.split(&q, None), (vec!["r1", "r2", "r3"], vec!["w1", "w2"]));
        assert_eq!(p.pairs(&q, None), [("r1", "w1"), ("r2", "w2"), ("r3", "w1")]);
        // Fewer right than wrong: one pair per right sample.
        let few = question(0, &[("w1", false), ("w2", false), ("r1", true), ("w3", false)]);
        assert_eq!(p.pairs(&few, None), [("r1", "w1")]);
        // Capped: the first pairs.
        let capped = prefs(RftConfig {
            max_pairs_per_question: Some(2),
            ..RftConfig::default()
        });
        assert_eq!(capped.pairs(&q, None), [("r1", "w1"), ("r2", "w2")]);
        // Without dedup every sample counts, repeats included.
        let all = prefs(RftConfig {
            dedup: false,
            ..RftConfig::default()
        });
        assert_eq!(
            all.pairs(&q, None),
            [("r1", "w1"), ("r2", "w1"), ("r2", "w2"), ("r3", "w1")]
        );
        // All right, all wrong, no samples: no pairs.
        for q in [
            question(0, &[("a", true), ("b", true)]),
            question(0, &[("a", false)]),
            question(0, &[]),
        ] {
            assert!(p.pairs(&q, None).is_empty());
        }
        // A regrade's verdicts replace the samples' own.
        let regraded = [true, false, false, false, false, true, false];
        assert_eq!(p.pairs(&q, Some(&regraded)), [("w1", "r1"), ("w2", "r2")]);
    }

    #[test]
    fn the_files_have_trl_shapes() {
        let p = prefs(RftConfig::default());
        let q = question(2, &[("wrong", false), ("right", true), ("right", true)]);
        let mut dpo = Vec::new();
        assert_eq!(p.dpo_lines(&q, None, &mut dpo), 1);
        let prompt = serde_json::json!([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Question: q2"}
        ]);
        assert_eq!(
            lines(&dpo),
            [serde_json::json!({
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": "right"}],
                "rejected": [{"role": "assistant", "content": "wrong"}],
            })]
        );
        let mut kto = Vec::new();
        assert_eq!(p.kto_lines(&q, None, &mut kto), (1, 1));
        let kto = lines(&kto);
        assert_eq!(
            kto.iter()
                .map(|l| (
                    l["completion"][0]["content"].as_str().unwrap(),
                    l["label"].as_bool().unwrap()
                ))
                .collect::<Vec<_>>(),
            [("wrong", false), ("right", true)]
        );
        assert_eq!(kto[0]["prompt"], prompt);
        let mut rl = Vec::new();
        assert!(p.rl_line(&question(1, &[("a", true), ("b", false), ("c", false)]), None, &mut rl));
        assert_eq!(
            std::str::from_utf8(&rl).unwrap(),
            "{\"prompt\":[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"q1\"}],\"answer\":\"7\",\"index\":1,\"id\":\"b\",\"question\":\"q1\",\"pass_rate\":0.3333333333333333,\"correct\":1,\"samples\":3}\n"
        );
    }

    #[test]
    fn keep_pass_rate_keeps_both_bounds_and_nothing_outside() {
        let p = prefs(RftConfig {
            keep_pass_rate: Some([0.2, 0.6]),
            ..RftConfig::default()
        });
        let kept: Vec<usize> = (0..=5).filter(|&c| p.keeps(c, 5)).collect();
        assert_eq!(kept, [1, 2, 3], "1/5 = 0.2 and 3/5 = 0.6 are in, 4/5 out");
        assert!(!p.keeps(2, 15) && p.keeps(3, 15) && p.keeps(9, 15) && !p.keeps(10, 15));
        let sometimes = Some([0.01, 0.99]);
        assert_eq!((0..=15).filter(|&c| keeps(sometimes, c, 15)).count(), 14);
        assert!((0..=15).all(|c| keeps(None, c, 15)));
        let mut rl = Vec::new();
        assert!(!p.rl_line(&question(0, &[("a", true)]), None, &mut rl));
        assert!(rl.is_empty());
    }

    #[test]
    fn write_files_streams_the_samples_of_a_run() {
        let d = tempfile::tempdir().unwrap();
        let samples = d.path().join("samples.jsonl");
        let records = [
            question(0, &[("w", false), ("r", true)]),
            question(1, &[("a", true), ("b", true)]),
            question(2, &[("x", false)]),
        ];
        let text: String = records
            .iter()
            .map(|q| serde_json::to_string(q).unwrap() + "\n")
            .collect();
        std::fs::write(&samples, text).unwrap();
        let p = prefs(RftConfig {
            keep_pass_rate: Some([0.1, 0.9]),
            ..RftConfig::default()
        });
        let w = p.write_files(d.path(), &samples, None).unwrap();
        assert_eq!(
            w,
            Written {
                pairs: 1,
                desirable: 3,
                undesirable: 2,
                rl_prompts: 1,
                questions: 3
            }
        );
        let read = |name: &str| lines(&std::fs::read(d.path().join(name)).unwrap());
        assert_eq!(read(store::DPO_PAIRS_FILE)[0]["chosen"][0]["content"], "r");
        assert_eq!(read(store::KTO_FILE).len(), 5);
        assert_eq!(read(store::RL_PROMPTS_FILE)[0]["index"], 0);
        // A regrade's verdicts, one list per line.
        let regraded = vec![vec![false, false], vec![true, false], vec![true]];
        let w = p.write_files(d.path(), &samples, Some(&regraded)).unwrap();
        assert_eq!((w.pairs, w.desirable, w.rl_prompts), (1, 2, 1));
        assert_eq!(read(store::DPO_PAIRS_FILE)[0]["rejected"][0]["content"], "b");
        assert_eq!(read(store::RL_PROMPTS_FILE)[0]["index"], 1);
        // An unreadable line is an error naming it; nothing is left half-written.
        std::fs::write(&samples, "{\"index\": 0}\n").unwrap();
        let e = p.write_files(d.path(), &samples, None).unwrap_err().to_string();
        assert!(e.contains("samples.jsonl line 1"), "{e}");
        assert_eq!(read(store::DPO_PAIRS_FILE).len(), 1, "the previous file stays");
    }
}
