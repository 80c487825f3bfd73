//! The durable record of a run in progress: the appenders of `samples.jsonl` and
//! `chunks.jsonl`, the manifest, and the running tallies that `metrics.json` and `dataset.json`
//! are written from. Committing a question and checkpointing are its two operations.
use std::time::Instant;

use crate::base::error::Result;
use crate::core::config::Config;
use crate::core::report::{self, Metrics, Tally};
use crate::core::rft::{Dataset, Preferences};
use crate::core::store::{self, Appender, ChunkRecord, Manifest, QuestionRecord, Recovered, RunDir, Status};

pub(crate) struct Journal<'a> {
    dir: &'a RunDir,
    pub(crate) manifest: Manifest,
    samples: Appender,
    chunks: Appender,
    tally: Tally,
    dataset: Dataset,
    /// How the complete run's preference and RL files are made from its samples.
    preferences: Preferences,
    total: usize,
    /// Wall time of earlier sessions, and when this one started.
    earlier_wall_s: f64,
    started: Instant,
}

impl<'a> Journal<'a> {
    /// Continues from what the directory held (`recovered`) and opens a session in `manifest`;
    /// recovered questions are checkpointed at once. `config` gives the dataset's `[rft]` and
    /// system message.
    pub(crate) fn open(
        dir: &'a RunDir,
        mut manifest: Manifest,
        recovered: &Recovered,
        started: Instant,
        config: &Config,
        device: String,
        batching: store::Batching,
    ) -> Result<Self> {
        let mut tally = Tally::of(&config.generation);
        let mut dataset = Dataset::new(&config.rft, &config.prompt.system);
        for q in &recovered.questions {
            tally.add_question(q);
            dataset.add_question(q, None);
        }
        recovered.chunks.iter().for_each(|ch| tally.add_chunk(ch));
        manifest.begin_session(recovered.questions.len(), device);
        if let Some(s) = manifest.sessions.last_mut() {
            s.batching = Some(batching);
        }
        let mut journal = Journal {
            dir,
            earlier_wall_s: manifest.wall_s,
            total: manifest.progress.questions_total,
            manifest,
            samples: dir.appender(store::SAMPLES_FILE)?,
            chunks: dir.appender(store::CHUNKS_FILE)?,
            tally,
            dataset,
            preferences: Preferences::new(&config.rft, &config.prompt.system),
            started,
        };
        // What an earlier session committed after its last checkpoint is made durable now: else
        // a session resumed just past a checkpoint's boundary would hold up to twice
        // `checkpoint.every` questions that a power loss could take.
        if recovered.questions.is_empty() {
            dir.write_manifest(&journal.manifest)?;
        } else {
            journal.checkpoint(Status::Running)?;
        }
        Ok(journal)
    }

    pub(crate) fn tally(&self) -> &Tally {
        &self.tally
    }

    /// Appends a question's chunk lines, then its samples line, which commits it.
    pub(crate) fn commit(&mut self, record: &QuestionRecord, chunks: &[ChunkRecord]) -> Result<()> {
        for chunk in chunks {
            self.tally.add_chunk(chunk);
            self.chunks.append(chunk)?;
        }
        self.samples.append(record)?;
        self.tally.add_question(record);
        self.dataset.add_question(record, None);
        // The manifest's progress follows every commit; it is made durable at checkpoints.
        self.manifest.progress.questions_done = self.tally.questions();
        self.dir.update_manifest(&self.manifest)
    }

    /// Makes everything committed durable (fsync), rewrites `dataset.json` and `metrics.json`,
    /// and the manifest with `status`; a complete run also gets the trainer files and
    /// `pass_at_k.csv` ([`report::finished_files`]), and the preference and RL files streamed from
    /// `samples.jsonl` ([`Preferences::write_files`]), written once rather than at every checkpoint.
    pub(crate) fn checkpoint(&mut self, status: Status) -> Result<Metrics> {
        self.chunks.sync()?;
        self.samples.sync()?;
        let wall_s = self.earlier_wall_s + self.started.elapsed().as_secs_f64();
        let metrics = self.tally.metrics(self.total, wall_s, self.dataset.len());
        if status == Status::Complete {
            for (name, bytes) in report::finished_files(&self.dataset, &self.tally)? {
                self.dir.write(name, &bytes)?;
            }
            self.preferences
                .write_files(&self.dir.path, &self.dir.file(store::SAMPLES_FILE), None)?;
        } else {
            self.dir.write(store::DATASET_FILE, self.dataset.to_json().as_bytes())?;
        }
        self.dir
            .write(store::METRICS_FILE, report::metrics_json(&metrics).as_bytes())?;
        self.manifest.update(status, self.tally.questions(), wall_s);
        self.dir.write_manifest(&self.manifest)?;
        Ok(metrics)
    }
}
