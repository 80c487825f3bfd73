//! `rftx verify RUN`: (question, sample) pairs drawn at random from a run are generated again,
//! each on its own, and compared byte for byte with what the run stored — the check a reader of
//! a published dataset runs. Needs the run directory (its `config.toml`, `manifest.json` and
//! `samples.jsonl`: the questions' turns come from there, so the question file need not exist
//! here) and the model file, checked against the manifest's digest.
//!
//! A sample's tokens depend only on (seed, question, sample), so sample s is regenerated as the
//! last of a question with s + 1 samples: samples 0 … s − 1 in one chunk, then s alone in a chunk
//! of its own, one question in the batch. Its line — text, tokens, finish, and the verdict of
//! the run's grader — is serialised as the run writes it and compared with the bytes of the
//! stored sample.
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::prepare::{assemble, resolve_model};
use super::{generation_params, grade_completions, Session};
use crate::base::error::{Error, Result};
use crate::base::sampling::Rng;
use crate::core::config::{self, Resolved};
use crate::core::data::{Question, QuestionSet};
use crate::core::store::{self, jsonl, Manifest, QuestionRecord};

/// What `rftx verify` checks.
#[derive(Debug, Clone)]
pub struct Options {
    /// How many (question, sample) pairs to regenerate (all of them, where the run has fewer).
    pub samples: usize,
    /// Seed of the draw.
    pub seed: u64,
    /// The model file, where it is not where `config.toml` says (a run copied from elsewhere).
    pub model: Option<PathBuf>,
}

/// One regenerated (question, sample) pair.
#[derive(Debug, Clone)]
pub struct Check {
    pub question: usize,
    pub sample: usize,
    /// The stored sample's JSON, as written in `samples.jsonl`, and the regenerated one's.
    pub stored: String,
    pub regenerated: String,
    pub seconds: f64,
}

impl Check {
    pub fn identical(&self) -> bool {
        self.stored == self.regenerated
    }

    /// Where the two first differ, with a few bytes of each around it.
    pub fn difference(&self) -> String {
        let (a, b) = (self.stored.as_bytes(), self.regenerated.as_bytes());
        let at = a.iter().zip(b).take_while(|(x, y)| x == y).count();
        let around = |s: &str| {
            let from = s.floor_char_boundary(at.saturating_sub(20));
            let to = s.ceil_char_boundary((at + 40).min(s.len()));
            format!("…{}…", &s[from..to])
        };
        format!(
            "they differ from byte {at} of the sample's JSON: stored {}, regenerated {}",
            around(&self.stored),
            around(&self.regenerated)
        )
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone)]
pub struct Verification {
    pub checks: Vec<Check>,
    /// (question, sample) pairs the run holds.
    pub pairs: usize,
    /// What this process computes on (`engine::device::numerics`).
    pub device: String,
    /// What the run was made on and by, from its manifest: one line per distinct device, host
    /// and build of its sessions.
    pub made_on: Vec<String>,
}

impl Verification {
    pub fn identical(&self) -> usize {
        self.checks.iter().filter(|c| c.identical()).count()
    }

    pub fn first_difference(&self) -> Option<&Check> {
        self.checks.iter().find(|c| !c.identical())
    }
}

/// Regenerates `opts.samples` (question, sample) pairs of the run in `dir`, drawn with
/// `opts.seed`, each alone, and compares them with the stored ones; `say` gets a line per pair.
/// Input problems (not a run, not its model, a config that no longer gives the run's hash)
/// are exit 2; a pair that differs is no error here (see [`Verification::first_difference`]).
pub fn verify(dir: &Path, opts: &Options, say: &mut dyn FnMut(&str)) -> Result<Verification> {
    if opts.samples == 0 {
        return Err(Error::Usage("--samples 0: must be ≥ 1".into()));
    }
    let manifest = store::read_manifest(dir)?
        .ok_or_else(|| Error::input(dir, "not a run directory (no manifest.json); `rftx ls` lists the runs"))?;
    let (questions, counts) = read_questions(dir)?;
    let p = prepared(dir, &manifest, questions, opts.model.as_deref())?;
    let picks = draw(&counts, opts.samples, opts.seed);
    let lines = stored_lines(dir, &picks)?;
    let session = Session::open(&p, say)?;
    p.grader.start().map_err(|e| Error::input(&p.resolved.file, e))?;
    let mut checks = Vec::with_capacity(picks.len());
    for (&(question, sample), line) in picks.iter().zip(&lines) {
        let check = regenerate(&p, &session, question, sample, line)?;
        let verdict = if check.identical() { "identical" } else { "DIFFERS" };
        say(&format!(
            "question {question}, sample {sample}: {verdict} ({:.2} s)",
            check.seconds
        ));
        checks.push(check);
    }
    Ok(Verification {
        checks,
        pairs: counts.iter().sum(),
        device: crate::engine::device::numerics(p.device, session.gpu_info.as_ref()),
        made_on: made_on(&manifest),
    })
}

/// The run's config with its model, and the questions of its `samples.jsonl`, prepared as the
/// run was: it must give the manifest's hash.
fn prepared(
    dir: &Path,
    manifest: &Manifest,
    questions: Vec<Question>,
    model: Option<&Path>,
) -> Result<super::Prepared> {
    let file = dir.join(store::CONFIG_FILE);
    let config = config::read_run_config(&file)?;
    let want = &manifest.inputs.model.sha256;
    let model_path = match model {
        Some(m) if !m.exists() => return Err(Error::input(m, "--model: no such file")),
        Some(m) => Some(crate::base::util::absolute(m)),
        None => config.model.path.clone(),
    };
    if let Some(p) = model_path.as_ref().filter(|p| p.is_absolute() && !p.exists()) {
        return Err(Error::input(
            p,
            format!(
                "the model of config.toml: no such file here; pass the run's model with --model PATH (sha256 {want})"
            ),
        ));
    }
    let resolved = Resolved {
        config,
        file: file.clone(),
        model_path,
        data_path: None,
    };
    let model = resolve_model(&resolved)?;
    if &model.sha256 != want {
        return Err(Error::input(
            &model.path,
            format!(
                "not the model this run was made with (its sha256 is {}, the manifest's {want}); pass the run's model with --model",
                model.sha256
            ),
        ));
    }
    let inputs = &manifest.inputs.questions;
    let set = QuestionSet {
        questions,
        sha256: inputs.sha256.clone(),
        source: inputs.source.clone(),
    };
    let digest = (inputs.sha256.clone(), inputs.count);
    let p = assemble(resolved, model, set, digest, dir.parent().unwrap_or(dir))?;
    if p.hash != manifest.hash {
        return Err(Error::input(
            &file,
            format!(
                "with its model this config gives run hash {}, not the manifest's {}: config.toml was changed since the run was made; nothing to verify against",
                &p.hash[..12],
                &manifest.hash[..12.min(manifest.hash.len())]
            ),
        ));
    }
    Ok(super::Prepared {
        dir: dir.to_path_buf(),
        ..p
    })
}

/// The committed questions of `samples.jsonl` (their turns and references, for the prompts and
/// the grader) and each one's number of samples. A shard's directory, whose questions do not
/// start at 0, is refused: its merged run is verified instead.
fn read_questions(dir: &Path) -> Result<(Vec<Question>, Vec<usize>)> {
    let (mut questions, mut counts) = (Vec::new(), Vec::new());
    let path = dir.join(store::SAMPLES_FILE);
    jsonl::for_each::<QuestionRecord>(&path, "is it a run's samples.jsonl?", |q| {
        if q.index != questions.len() {
            return Err(format!(
                "holds question {} where question {} belongs (a shard? verify the merged run: `rftx merge`)",
                q.index,
                questions.len()
            ));
        }
        counts.push(q.samples.len());
        questions.push(Question {
            question: q.question,
            answer: q.answer,
            id: q.id,
            user: q.user,
            row: None,
        });
        Ok(())
    })
    // Bad input, not a failure of this command: exit 2.
    .map_err(|e| Error::Usage(e.to_string()))?;
    if counts.iter().sum::<usize>() == 0 {
        return Err(Error::input(&path, "no samples committed yet: nothing to verify"));
    }
    Ok((questions, counts))
}

/// `n` distinct (question, sample) pairs drawn uniformly with `seed` from questions with
/// `counts[q]` samples (all of them when there are no more than `n`), in question and sample
/// order.
pub fn draw(counts: &[usize], n: usize, seed: u64) -> Vec<(usize, usize)> {
    let total: usize = counts.iter().sum();
    let mut chosen = std::collections::BTreeSet::new();
    if n >= total {
        chosen.extend(0..total);
    } else {
        // Floyd's algorithm: n draws, each new.
        let mut rng = Rng::from_seed(seed);
        for j in total - n..total {
            let t = (rng.next_u64() % (j as u64 + 1)) as usize;
            if !chosen.insert(t) {
                chosen.insert(j);
            }
        }
    }
    let mut starts = Vec::with_capacity(counts.len());
    let mut at = 0;
    for &c in counts {
        starts.push(at);
        at += c;
    }
    chosen
        .into_iter()
        .map(|flat| {
            let q = starts.partition_point(|&s| s <= flat) - 1;
            // Questions without samples share their start with the next: take the last.
            (q, flat - starts[q])
        })
        .collect()
}

/// The stored lines of the picked questions, one per pick.
fn stored_lines(dir: &Path, picks: &[(usize, usize)]) -> Result<Vec<String>> {
    let path = dir.join(store::SAMPLES_FILE);
    let cannot = |e| Error::io(format!("{}: cannot read", path.display()), e);
    let file = std::fs::File::open(&path).map_err(cannot)?;
    let wanted: std::collections::BTreeSet<usize> = picks.iter().map(|p| p.0).collect();
    let mut lines = std::collections::BTreeMap::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        if wanted.contains(&i) {
            lines.insert(i, line.map_err(cannot)?);
        }
    }
    picks
        .iter()
        .map(|p| {
            lines
                .get(&p.0)
                .cloned()
                .ok_or_else(|| Error::input(&path, format!("question {} is gone from it", p.0)))
        })
        .collect()
}

/// Sample `sample` of question `question` generated alone and graded, against `line`, the
/// question's stored line.
fn regenerate(p: &super::Prepared, session: &Session, question: usize, sample: usize, line: &str) -> Result<Check> {
    let path = p.dir.join(store::SAMPLES_FILE);
    let bad = |why: &str| Error::input(&path, format!("question {question}: {why}"));
    let record: QuestionRecord = serde_json::from_str(line).map_err(|e| bad(&e.to_string()))?;
    let elements = jsonl::raw_array_elements(line, "samples").ok_or_else(|| bad("no samples list"))?;
    let position = record.samples.iter().position(|s| s.sample == sample);
    let stored = position
        .and_then(|i| elements.get(i))
        .ok_or_else(|| bad(&format!("no sample {sample}")))?;
    let started = Instant::now();
    let prompts = session.prompts_in(p, question..question + 1)?;
    let mut params = generation_params(&p.resolved.config, sample.max(1));
    params.oversample = sample + 1;
    let (completions, _) = session.generate(question, &prompts[question], params, &mut |_| {})?;
    let last = completions.into_iter().filter(|c| c.sample == sample).collect();
    let regenerated = grade_completions(p, session, question, last, "")?;
    let sample_record = regenerated.samples.first().ok_or_else(|| bad("not regenerated"))?;
    Ok(Check {
        question,
        sample,
        stored: stored.to_string(),
        regenerated: serde_json::to_string(sample_record).expect("records serialise"),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// What the run's sessions computed on, where and with which build, repeats removed.
fn made_on(m: &Manifest) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for s in &m.sessions {
        let line = format!(
            "`{}` on {}, rftx {} built for {}",
            s.device.as_deref().unwrap_or("an unrecorded device"),
            s.host.as_deref().unwrap_or("an unrecorded host"),
            m.rftx_version,
            s.built_for.as_deref().unwrap_or("an unrecorded target")
        );
        if !lines.contains(&line) {
            lines.push(line);
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_distinct_pairs_in_order_the_same_for_a_seed() {
        let counts = [5, 0, 3, 5];
        let a = draw(&counts, 6, 7);
        assert_eq!(a.len(), 6);
        assert!(a.windows(2).all(|w| w[0] < w[1]), "distinct, in order: {a:?}");
        assert!(a.iter().all(|&(q, s)| s < counts[q]), "{a:?}");
        assert_eq!(a, draw(&counts, 6, 7));
        assert_ne!(a, draw(&counts, 6, 8));
        // As many as there are, or more: every pair.
        let all: Vec<(usize, usize)> = [(0, 5), (2, 3), (3, 5)]
            .iter()
            .flat_map(|&(q, n)| (0..n).map(move |s| (q, s)))
            .collect();
        assert_eq!(draw(&counts, 13, 1), all);
        assert_eq!(draw(&counts, 100, 1), all);
        // Every pair is drawn some time: the draw is not stuck on some.
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..200 {
            seen.extend(draw(&counts, 2, seed));
        }
        assert_eq!(seen.len(), 13);
    }
}
