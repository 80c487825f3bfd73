//! Time and memory of a batch's decoding steps, one step at a time.
use std::time::Instant;

use crate::base::memory::{Peaks, Window};
use crate::engine::device::GpuMemory;

/// One step's measure: its time (prefills excluded) and the peaks while it ran.
pub(super) struct Step {
    pub ms: f64,
    pub peaks: Peaks,
    pub gpu_peak: Option<u64>,
}

/// Measures the steps of a batch: heap and RSS peaks per window, GPU peaks, time.
pub(super) struct Meter<'g> {
    gpu: Option<&'g GpuMemory>,
    window: Window,
    since: Instant,
    /// Prefill time within the current step, reported apart.
    excluded_ms: f64,
}

impl<'g> Meter<'g> {
    pub(super) fn start(gpu: Option<&'g GpuMemory>) -> Self {
        if let Some(g) = gpu {
            g.reset_peak();
        }
        Meter {
            gpu,
            window: Window::open(),
            since: Instant::now(),
            excluded_ms: 0.0,
        }
    }

    pub(super) fn exclude(&mut self, ms: f64) {
        self.excluded_ms += ms;
    }

    /// Closes the current step and opens the next.
    pub(super) fn tick(&mut self) -> Step {
        let window = std::mem::replace(&mut self.window, Window::open());
        let peaks = window.close();
        let gpu_peak = self.gpu.map(|g| {
            let peak = g.peak();
            g.reset_peak();
            peak
        });
        let ms = (self.since.elapsed().as_secs_f64() * 1e3 - self.excluded_ms).max(0.0);
        self.since = Instant::now();
        self.excluded_ms = 0.0;
        Step { ms, peaks, gpu_peak }
    }
}
