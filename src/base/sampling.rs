//! Per-sample random streams and the token sampler.
//!
//! Every sample owns an RNG stream derived only from (seed, question index, sample index), and
//! consumes exactly one draw per generated token. A sample's tokens therefore depend on nothing
//! else: not on the chunk it was generated in, nor on the other sequences of its batch.

/// xoshiro256** seeded through SplitMix64: small, fast and the same on every platform.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    pub fn from_seed(seed: u64) -> Self {
        let mut st = seed;
        let s = [
            splitmix64(&mut st),
            splitmix64(&mut st),
            splitmix64(&mut st),
            splitmix64(&mut st),
        ];
        Rng { s }
    }

    /// The stream of one sample: independent of every other (seed, question, sample) triple.
    pub fn for_sample(seed: u64, question: u64, sample: u64) -> Self {
        let mut st = seed;
        let a = splitmix64(&mut st);
        let mut st = a ^ question.wrapping_mul(0xD1B5_4A32_D192_ED03);
        let b = splitmix64(&mut st);
        Rng::from_seed(b ^ sample.wrapping_mul(0x8CB9_2BA7_2F3D_8DD7))
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1), 53 bits.
    /// A standard normal draw (Box–Muller, one draw of each of two uniforms), for random weights.
    pub fn next_gaussian(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64();
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Temperature and nucleus (top-p) sampling over one row of logits.
#[derive(Debug, Clone, Copy)]
pub struct Sampler {
    pub temperature: f64,
    pub top_p: f64,
}

impl Sampler {
    /// Picks a token. Uses exactly one draw of `rng`, also for greedy decoding, so that a
    /// stream's position always equals the number of tokens generated.
    pub fn sample(&self, logits: &[f32], rng: &mut Rng, scratch: &mut Vec<(f32, u32)>) -> u32 {
        self.draw(logits, rng, scratch).0
    }

    /// Picks a token as [`Sampler::sample`] does (the same token, the same draw) and gives its
    /// natural log-probability under the distribution it was drawn from: the temperature
    /// softmax, truncated to the nucleus and renormalised when `top_p < 1`. In the sampler's
    /// own arithmetic: `(l − max)·(1/T)` in f32 (the exponent of the token's weight) minus the
    /// natural log of the f64 sum of the f32 weights it was drawn among, summed in the order the
    /// sampler sums them (vocabulary order; the nucleus in descending weight) — so the value
    /// depends on the row of logits alone. Greedy decoding (temperature 0) draws from the
    /// degenerate distribution on the argmax: 0.
    pub fn draw(&self, logits: &[f32], rng: &mut Rng, scratch: &mut Vec<(f32, u32)>) -> (u32, f32) {
        let u = rng.next_f64();
        if self.temperature == 0.0 {
            return (argmax(logits), 0.0);
        }
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let inv_t = (1.0 / self.temperature) as f32;
        let exponent = |id: u32| (logits[id as usize] - max) * inv_t;
        let with_logprob = |id: u32, mass: f64| (id, (exponent(id) as f64 - mass.ln()) as f32);
        scratch.clear();
        scratch.extend(
            logits
                .iter()
                .enumerate()
                .map(|(i, &l)| (((l - max) * inv_t).exp(), i as u32)),
        );
        let total: f64 = scratch.iter().map(|&(w, _)| w as f64).sum();
        if self.top_p >= 1.0 {
            return with_logprob(pick(scratch, total, u), total);
        }
        // The nucleus: the fewest most-probable tokens whose mass reaches top_p. Select the k
        // largest first and sort only those; grow k in the rare case they are not enough.
        let target = self.top_p * total;
        let n = scratch.len();
        let by_weight = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        let mut k = 64.min(n);
        loop {
            if k < n {
                scratch.select_nth_unstable_by(k, by_weight);
            }
            scratch[..k].sort_unstable_by(by_weight);
            let mut acc = 0.0f64;
            let mut cut = None;
            for (i, &(w, _)) in scratch[..k].iter().enumerate() {
                acc += w as f64;
                if acc >= target {
                    cut = Some(i + 1);
                    break;
                }
            }
            if let Some(cut) = cut {
                return with_logprob(pick(&scratch[..cut], acc, u), acc);
            }
            if k == n {
                return with_logprob(pick(&scratch[..n], acc, u), acc);
            }
            k = (k * 4).min(n);
        }
    }
}

fn pick(weights: &[(f32, u32)], total: f64, u: f64) -> u32 {
    let mut x = u * total;
    for &(w, id) in weights {
        x -= w as f64;
        if x < 0.0 {
            return id;
        }
    }
    weights.iter().rev().find(|(w, _)| *w > 0.0).map_or(0, |&(_, id)| id)
}

/// Index of the largest logit (the first one on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(Rng::for_sample(1, 2, 3), |r, _: u64| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(Rng::for_sample(1, 2, 3), |r, _: u64| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        let firsts: std::collections::HashSet<u64> = (0..50)
            .flat_map(|q| (0..20).map(move |s| Rng::for_sample(7, q, s).next_u64()))
            .collect();
        assert_eq!(firsts.len(), 1000);
        assert_ne!(Rng::for_sample(1, 2, 3).next_u64(), Rng::for_sample(1, 3, 2).next_u64());
    }

    #[test]
    fn uniform_in_unit_interval() {
        let mut r = Rng::from_seed(42);
        let xs: Vec<f64> = (0..10_000).map(|_| r.next_f64()).collect();
        assert!(xs.iter().all(|&x| (0.0..1.0).contains(&x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
    }

    #[test]
    fn greedy_is_argmax() {
        let s = Sampler {
            temperature: 0.0,
            top_p: 1.0,
        };
        let mut r = Rng::from_seed(0);
        assert_eq!(s.sample(&[0.1, 3.0, -1.0, 2.9], &mut r, &mut Vec::new()), 1);
    }

    #[test]
    fn top_p_excludes_the_tail() {
        // Token 0 holds ~88% of the mass; with top_p = 0.5 only it can be drawn.
        let logits = [4.0f32, 2.0, 0.0, -1.0];
        let s = Sampler {
            temperature: 1.0,
            top_p: 0.5,
        };
        let mut r = Rng::from_seed(3);
        let mut scratch = Vec::new();
        assert!((0..500).all(|_| s.sample(&logits, &mut r, &mut scratch) == 0));
        // With top_p = 1 the others appear.
        let s = Sampler {
            temperature: 1.0,
            top_p: 1.0,
        };
        let drawn: std::collections::HashSet<u32> = (0..500).map(|_| s.sample(&logits, &mut r, &mut scratch)).collect();
        assert!(drawn.len() >= 3, "{drawn:?}");
    }

    /// The nucleus by a full sort of the whole vocabulary: what the partial selection in
    /// [`Sampler::sample`] must reproduce exactly.
    fn full_sort_reference(logits: &[f32], temperature: f64, top_p: f64, u: f64) -> u32 {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let inv_t = (1.0 / temperature) as f32;
        let mut w: Vec<(f32, u32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (((l - max) * inv_t).exp(), i as u32))
            .collect();
        let total: f64 = w.iter().map(|&(x, _)| x as f64).sum();
        w.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut acc = 0.0f64;
        let cut = w
            .iter()
            .position(|&(x, _)| {
                acc += x as f64;
                acc >= top_p * total
            })
            .map_or(w.len(), |i| i + 1);
        pick(&w[..cut], acc, u)
    }

    #[test]
    fn top_p_large_vocab_matches_full_sort() {
        // Flat distributions over 1000 tokens (the nucleus needs more than the first k = 64,
        // so the selection grows) and peaked ones (it does not), with ties.
        let flat: Vec<f32> = (0..1000).map(|i| (i % 7) as f32 * 0.01).collect();
        let peaked: Vec<f32> = (0..1000).map(|i| ((i * 37) % 101) as f32 * 0.15).collect();
        let mut scratch = Vec::new();
        let mut grew = 0;
        for (logits, top_p) in [(&flat, 0.9), (&flat, 0.3), (&peaked, 0.9), (&peaked, 0.5)] {
            let s = Sampler {
                temperature: 0.8,
                top_p,
            };
            for seed in 0..300 {
                let got = s.sample(logits, &mut Rng::from_seed(seed), &mut scratch);
                let u = Rng::from_seed(seed).next_f64();
                assert_eq!(
                    got,
                    full_sort_reference(logits, 0.8, top_p, u),
                    "top_p {top_p}, seed {seed}"
                );
            }
            let drawn: std::collections::HashSet<u32> = (0..300)
                .map(|seed| s.sample(logits, &mut Rng::from_seed(seed), &mut scratch))
                .collect();
            grew += usize::from(drawn.len() > 64);
        }
        assert!(grew >= 1, "some case must need more than the first 64 tokens");
    }

    /// At temperature 1 without a nucleus, a token's log-probability is log_softmax of the
    /// logits at it (computed here in f64); greedy tokens have 0; in a nucleus, the mass is
    /// renormalised over it; `draw` picks what `sample` picks.
    #[test]
    fn logprobs_are_the_sampling_distribution() {
        let logits = [1.5f32, -0.25, 3.0, 0.0, 2.75, -4.0];
        let max = 3.0f64;
        let lse = max + logits.iter().map(|&l| (l as f64 - max).exp()).sum::<f64>().ln();
        let mut scratch = Vec::new();
        let full = Sampler {
            temperature: 1.0,
            top_p: 1.0,
        };
        let mut seen = std::collections::HashSet::new();
        for seed in 0..200 {
            let (id, lp) = full.draw(&logits, &mut Rng::from_seed(seed), &mut scratch);
            assert_eq!(id, full.sample(&logits, &mut Rng::from_seed(seed), &mut scratch));
            let expected = logits[id as usize] as f64 - lse;
            assert!((lp as f64 - expected).abs() < 1e-6, "token {id}: {lp} vs {expected}");
            seen.insert(id);
        }
        assert!(seen.len() >= 4, "{seen:?}");
        let greedy = Sampler {
            temperature: 0.0,
            top_p: 1.0,
        };
        assert_eq!(greedy.draw(&logits, &mut Rng::from_seed(1), &mut scratch), (2, 0.0));
        // top_p = 0.6 keeps tokens 2 and 4 (e^0 + e^-0.25 of 2.09 ≈ 0.85): renormalised over them.
        let nucleus = Sampler {
            temperature: 1.0,
            top_p: 0.6,
        };
        let kept = 1.0f64 + (-0.25f64).exp();
        for seed in 0..100 {
            let (id, lp) = nucleus.draw(&logits, &mut Rng::from_seed(seed), &mut scratch);
            assert!(id == 2 || id == 4, "{id}");
            let expected = (logits[id as usize] as f64 - max) - kept.ln();
            assert!((lp as f64 - expected).abs() < 1e-6, "token {id}: {lp} vs {expected}");
        }
        // Temperature 0.5 doubles the exponents.
        let hot = Sampler {
            temperature: 0.5,
            top_p: 1.0,
        };
        let lse2 = logits.iter().map(|&l| (2.0 * (l as f64 - max)).exp()).sum::<f64>().ln();
        let (id, lp) = hot.draw(&logits, &mut Rng::from_seed(5), &mut scratch);
        assert!((lp as f64 - (2.0 * (logits[id as usize] as f64 - max) - lse2)).abs() < 1e-6);
    }

    #[test]
    fn frequencies_follow_temperature() {
        let logits = [1.0f32, 0.0];
        let mut r = Rng::from_seed(11);
        let mut scratch = Vec::new();
        let s = Sampler {
            temperature: 1.0,
            top_p: 1.0,
        };
        let n = 20_000;
        let zeros = (0..n).filter(|_| s.sample(&logits, &mut r, &mut scratch) == 0).count();
        let expected = 1.0 / (1.0 + (-1.0f64).exp());
        assert!(((zeros as f64 / n as f64) - expected).abs() < 0.015);
    }
}
