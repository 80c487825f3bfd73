//! The int8 kernel's speed on a 0.5B decoder's matrices (Qwen2.5-0.5B: hidden 896, MLP 4864,
//! vocabulary 151 936), per instruction set, at a decoding batch's row counts: int8
//! multiply-adds per second of the fastest of repeated passes.
//!
//! `cargo run --release --example q8_speed [ROWS...]` (default 15 30 75).
use std::time::Instant;

use rftx::engine::cpu::q8::{Isa, Q8Linear};

fn main() {
    let rows: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let rows = if rows.is_empty() { vec![15, 30, 75] } else { rows };
    // (name, outputs, inputs): q/k/v stacked, o, gate/up stacked, down, the output layer.
    let shapes = [
        ("qkv", 1152, 896),
        ("o", 896, 896),
        ("gate_up", 9728, 896),
        ("down", 896, 4864),
        ("lm_head", 151_936, 896),
    ];
    println!("{:<10}{:>6}{:>14}{:>14}", "matrix", "rows", "kernel", "GMAC/s");
    for (name, n, k) in shapes {
        let lin = Q8Linear::random(n, k, 7);
        for &m in &rows {
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 255) as f32 / 127.0 - 1.0).collect();
            let mut out = vec![0f32; m * n];
            for isa in Isa::available() {
                let mut best = f64::MAX;
                let start = Instant::now();
                for pass in 0.. {
                    let t = Instant::now();
                    lin.matmul_with(isa, &x, m, &mut out);
                    best = best.min(t.elapsed().as_secs_f64());
                    if pass >= 5 && start.elapsed().as_secs_f64() > 0.5 {
                        break;
                    }
                }
                let rate = (n * k * m) as f64 / best / 1e9;
                println!("{name:<10}{m:>6}{:>14}{rate:>14.1}", isa.name());
            }
        }
    }
}
