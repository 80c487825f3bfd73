//! What a coarser int8 format would buy the VNNI kernel, measured on this CPU: four output
//! columns of R rows over a row of 896 (a 0.5B model's hidden size), every operand in L1, in
//! rftx's exact Q8_0 form (a scale per 32 weights: each block's lane sums converted and
//! multiplied in, three vector instructions per 32 multiply-adds) against a scale per 128 weights
//! (four `vpdpbusd` summed in int32, then one conversion and one FMA). Prints int8
//! multiply-adds per second, one thread, best of five passes, twice.
//!
//! `cargo run --release --example int8_scale_width` (x86_64 with AVX-512 VNNI and VL).
//! On the Zen 4 EPYC of 2026-12-06: per-32 90–93 GMAC/s (R = 4), per-128 137–141 (R = 3–4).
#[cfg(target_arch = "x86_64")]
#[allow(clippy::needless_range_loop)] // rows and columns index registers and accumulators alike
mod bench {
    use std::arch::x86_64::*;
    use std::time::Instant;
    const K: usize = 896;
    const NB: usize = K / 32;

    /// Safety (both kernels): AVX2, FMA, AVX-512 VNNI and VL; `w`, `x` hold 4 · K bytes, `off`
    /// K i32, `sc` 16 · K/32 scales, `out` 16 slots.
    #[target_feature(enable = "avx2,fma,avx512vnni,avx512vl")]
    unsafe fn per32<const R: usize>(w: &[u8], x: &[i8], off: &[i32], sc: &[f32], out: &mut [f32]) {
        let mut acc = [[_mm256_setzero_ps(); 4]; R];
        for b in 0..NB {
            let xv: [__m256i; R] =
                std::array::from_fn(|r| _mm256_loadu_si256(x.as_ptr().add((b * R + r) * 32) as *const __m256i));
            let ov: [__m256i; R] =
                std::array::from_fn(|r| _mm256_loadu_si256(off.as_ptr().add((b * R + r) * 8) as *const __m256i));
            for c in 0..4 {
                let wv = _mm256_loadu_si256(w.as_ptr().add(c * K + b * 32) as *const __m256i);
                for r in 0..R {
                    let p = _mm256_dpbusd_epi32(ov[r], wv, xv[r]);
                    let s = _mm256_set1_ps(*sc.get_unchecked((r * 4 + c) * NB + b));
                    acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), s, acc[r][c]);
                }
            }
        }
        for r in 0..R {
            for c in 0..4 {
                let mut l = [0f32; 8];
                _mm256_storeu_ps(l.as_mut_ptr(), acc[r][c]);
                out[r * 4 + c] = l.iter().sum();
            }
        }
    }

    #[target_feature(enable = "avx2,fma,avx512vnni,avx512vl")]
    unsafe fn per128<const R: usize>(w: &[u8], x: &[i8], off: &[i32], sc: &[f32], out: &mut [f32]) {
        let mut acc = [[_mm256_setzero_ps(); 4]; R];
        for g in 0..NB / 4 {
            let mut p: [[__m256i; 4]; R] =
                std::array::from_fn(|r| [_mm256_loadu_si256(off.as_ptr().add((g * R + r) * 8) as *const __m256i); 4]);
            for j in 0..4 {
                let b = g * 4 + j;
                let xv: [__m256i; R] =
                    std::array::from_fn(|r| _mm256_loadu_si256(x.as_ptr().add((b * R + r) * 32) as *const __m256i));
                for c in 0..4 {
                    let wv = _mm256_loadu_si256(w.as_ptr().add(c * K + b * 32) as *const __m256i);
                    for r in 0..R {
                        p[r][c] = _mm256_dpbusd_epi32(p[r][c], wv, xv[r]);
                    }
                }
            }
            for r in 0..R {
                for c in 0..4 {
                    let s = _mm256_set1_ps(*sc.get_unchecked((r * 4 + c) * NB + g));
                    acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p[r][c]), s, acc[r][c]);
                }
            }
        }
        for r in 0..R {
            for c in 0..4 {
                let mut l = [0f32; 8];
                _mm256_storeu_ps(l.as_mut_ptr(), acc[r][c]);
                out[r * 4 + c] = l.iter().sum();
            }
        }
    }

    fn time(name: &str, rows: usize, f: &mut dyn FnMut()) {
        let reps = 2_000_000 / rows;
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            for _ in 0..reps {
                f();
            }
            best = best.min(t.elapsed().as_secs_f64());
        }
        let macs = (reps * 4 * rows * K) as f64;
        println!("{name:<12} {:>7.1} GMAC/s", macs / best / 1e9);
    }

    fn run() {
        let w: Vec<u8> = (0..4 * K).map(|i| (i * 31 % 251) as u8).collect();
        let x: Vec<i8> = (0..4 * K).map(|i| (i * 17 % 200) as i8).collect();
        let off: Vec<i32> = (0..4 * K / 4).map(|i| i as i32).collect();
        let sc: Vec<f32> = (0..16 * NB).map(|i| i as f32 * 1e-6).collect();
        let mut out = vec![0f32; 16];
        // SAFETY: `main` checked the instructions; the buffers have the sizes the kernels read.
        for _ in 0..2 {
            time("per32 R=2", 2, &mut || unsafe {
                per32::<2>(&w, &x, &off, &sc, &mut out)
            });
            time("per32 R=4", 4, &mut || unsafe {
                per32::<4>(&w, &x, &off, &sc, &mut out)
            });
            time("per128 R=2", 2, &mut || unsafe {
                per128::<2>(&w, &x, &off, &sc, &mut out)
            });
            time("per128 R=3", 3, &mut || unsafe {
                per128::<3>(&w, &x, &off, &sc, &mut out)
            });
            time("per128 R=4", 4, &mut || unsafe {
                per128::<4>(&w, &x, &off, &sc, &mut out)
            });
        }
        std::hint::black_box(&out);
    }
    pub fn main() {
        if !(is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl")) {
            eprintln!("this measurement needs AVX-512 VNNI and VL");
            return;
        }
        run();
    }
}

fn main() {
    #[cfg(target_arch = "x86_64")]
    bench::main();
}
