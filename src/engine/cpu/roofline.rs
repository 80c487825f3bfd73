//! This machine's two physical limits for decoding, measured in a fraction of a second: how fast
//! the cores read memory (every decoding step reads all the weights once, whatever the rows),
//! and how many int8 multiply-adds per second the Q8_0 kernel does (each row costs one per
//! weight). `rftx plan` turns them into the tokens/s a batch can reach at most, and `rftx bench`
//! prints them beside its measurements.
use std::time::Instant;

use serde::Serialize;

use super::q8::Q8Linear;

/// Measured limits of this machine, on candle's thread pool (all its threads).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Machine {
    /// Bytes per second read from memory (a buffer much larger than the caches, summed).
    pub read_bytes_per_s: f64,
    /// int8 multiply-adds per second of the Q8_0 kernel on a decoder-sized matrix, 32 rows.
    pub int8_macs_per_s: f64,
    pub threads: usize,
    /// The instructions the int8 kernel ran on (`avx2`, `avx-vnni`, `avx512-vnni`, `avx512-pairs`).
    pub int8_kernel: &'static str,
}

/// Measures both limits: the best of repeated passes, about 0.4 s in all. `None` where the
/// int8 kernel does not run (no AVX2).
pub fn measure() -> Option<Machine> {
    if !Q8Linear::supported() {
        return None;
    }
    Some(Machine {
        read_bytes_per_s: read_rate(),
        int8_macs_per_s: int8_rate(),
        threads: candle_core::utils::get_num_threads(),
        int8_kernel: super::q8::isa().name(),
    })
}

/// Sums a 256 MiB buffer across the pool; bytes per second of the fastest of 3 passes.
fn read_rate() -> f64 {
    let words: Vec<u64> = (0..(256usize << 20) / 8).map(|i| i as u64).collect();
    let parts = candle_core::utils::get_num_threads().max(1) * 8;
    let per = words.len().div_ceil(parts);
    let mut best = f64::MAX;
    for _ in 0..3 {
        let total = std::sync::atomic::AtomicU64::new(0);
        let t = Instant::now();
        candle_core::utils::barrier_pool().execute_chunked(parts, |range| {
            let mut s = 0u64;
            for p in range {
                for chunk in words[(p * per).min(words.len())..((p + 1) * per).min(words.len())].chunks(8) {
                    s = s.wrapping_add(chunk.iter().fold(0u64, |a, &w| a ^ w));
                }
            }
            total.fetch_add(s, std::sync::atomic::Ordering::Relaxed);
        });
        std::hint::black_box(total.into_inner());
        best = best.min(t.elapsed().as_secs_f64());
    }
    (words.len() * 8) as f64 / best
}

/// A 1536 × 576 Q8_0 matrix (SmolLM2-135M's MLP) times 32 rows (their activations fit in L1,
/// as a decoding batch's do); multiply-adds per second of the fastest pass in 0.2 s.
fn int8_rate() -> f64 {
    let (n, k, m) = (1536, 576, 32);
    let lin = Q8Linear::random(n, k, 7);
    let x: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 255) as f32 / 127.0 - 1.0).collect();
    let mut out = vec![0f32; m * n];
    let mut best = f64::MAX;
    let start = Instant::now();
    // At least 20 passes and 0.2 s: the first ones run while the cores speed up.
    for pass in 0.. {
        let t = Instant::now();
        lin.matmul(&x, m, &mut out);
        best = best.min(t.elapsed().as_secs_f64());
        if pass >= 20 && start.elapsed().as_secs_f64() > 0.2 {
            break;
        }
    }
    std::hint::black_box(&out);
    (n * k * m) as f64 / best
}

/// The most tokens per second a batch of `rows` can reach on `machine`: each step reads
/// `weight_bytes` once and does `macs_per_token` multiply-adds per row, whichever takes longer.
pub fn ceiling(machine: &Machine, weight_bytes: u64, macs_per_token: u64, rows: usize) -> f64 {
    let read = weight_bytes as f64 / machine.read_bytes_per_s;
    let compute = rows as f64 * macs_per_token as f64 / machine.int8_macs_per_s;
    rows as f64 / read.max(compute)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_is_bandwidth_bound_then_compute_bound() {
        let m = Machine {
            read_bytes_per_s: 10e9,
            int8_macs_per_s: 100e9,
            threads: 2,
            int8_kernel: "avx2",
        };
        // 100 MB of weights per step: 10 ms; 1 G multiply-adds per token: 10 ms per row.
        assert!((ceiling(&m, 100_000_000, 1_000_000_000, 1) - 100.0).abs() < 1e-9);
        assert!((ceiling(&m, 100_000_000, 10_000_000, 1) - 100.0).abs() < 1e-9);
        assert!((ceiling(&m, 100_000_000, 10_000_000, 10) - 1000.0).abs() < 1e-6);
        // Past the ridge (100 rows here), more rows add nothing.
        assert!((ceiling(&m, 100_000_000, 10_000_000, 400) - 10_000.0).abs() < 1e-6);
    }

    #[test]
    fn measured_limits_are_plausible() {
        let Some(m) = measure() else { return };
        assert!(m.read_bytes_per_s > 1e8 && m.read_bytes_per_s < 1e13, "{m:?}");
        assert!(m.int8_macs_per_s > 1e8 && m.int8_macs_per_s < 1e14, "{m:?}");
    }
}
