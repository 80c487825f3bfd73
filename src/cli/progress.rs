//! Progress bars on stderr (indicatif), fed by the run's [`Observer`] callbacks.
use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rftx::run::Observer;

/// Progress on stderr: one bar of questions with samples, tokens/s and acceptance. Hidden when
/// stderr is not a terminal or with --quiet.
pub(crate) struct Progress {
    quiet: bool,
    /// Holds the sweep bar above the run bar during a sweep.
    multi: MultiProgress,
    sweep_bar: Option<ProgressBar>,
    bar: Option<ProgressBar>,
    started: Instant,
    tokens: u64,
    last_draw: Instant,
    samples_per_question: usize,
    accepted: usize,
    samples: usize,
}

impl Progress {
    pub(crate) fn new(quiet: bool) -> Self {
        Progress {
            quiet,
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            sweep_bar: None,
            bar: None,
            started: Instant::now(),
            tokens: 0,
            last_draw: Instant::now(),
            samples_per_question: 0,
            accepted: 0,
            samples: 0,
        }
    }

    fn refresh(&mut self) {
        if let Some(bar) = &self.bar {
            let secs = self.started.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!(
                "{} samples · {:.1} tok/s · accepted {}",
                self.samples,
                self.tokens as f64 / secs,
                self.accepted
            ));
        }
        self.last_draw = Instant::now();
    }
}

impl Observer for Progress {
    fn log(&mut self, line: &str) {
        if self.quiet {
            return;
        }
        match self.bar.is_some() || self.sweep_bar.is_some() {
            true => {
                let _ = self.multi.println(line);
            }
            false => eprintln!("{line}"),
        }
    }

    fn begin(&mut self, total: usize, done: usize, samples_per_question: usize) {
        self.samples_per_question = samples_per_question;
        self.started = Instant::now();
        if self.quiet || !std::io::stderr().is_terminal() {
            return;
        }
        let bar = self.multi.add(ProgressBar::new(total as u64));
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} questions · {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_position(done as u64);
        self.bar = Some(bar);
        self.refresh();
    }

    fn tokens(&mut self, n: usize) {
        self.tokens += n as u64;
        if self.last_draw.elapsed().as_millis() >= 200 {
            self.refresh();
        }
    }

    fn question_done(&mut self, done: usize, accepted: usize, samples: usize) {
        self.accepted = accepted;
        self.samples = samples;
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
        }
        self.refresh();
    }

    fn end(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
    }

    fn sweep_point(&mut self, k: usize, n: usize, label: &str, dir: &std::path::Path) {
        if self.quiet {
            return;
        }
        if k == n {
            if let Some(bar) = self.sweep_bar.take() {
                bar.finish_and_clear();
            }
            return;
        }
        if !std::io::stderr().is_terminal() {
            eprintln!("sweep point {}/{n}: {label} → {}", k + 1, dir.display());
            return;
        }
        let bar = self.sweep_bar.get_or_insert_with(|| {
            let bar = self.multi.add(ProgressBar::new(n as u64));
            bar.set_style(
                ProgressStyle::with_template(
                    "sweep [{elapsed_precise}] {bar:30.green/white} {pos}/{len} points done · {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            // Its clock ticks between points, not only when a point starts.
            bar.enable_steady_tick(std::time::Duration::from_secs(1));
            bar
        });
        bar.set_position(k as u64);
        bar.set_message(format!("running point {}: {label}", k + 1));
        let _ = self
            .multi
            .println(format!("sweep point {}/{n}: {label} → {}", k + 1, dir.display()));
    }
}
