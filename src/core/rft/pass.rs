//! pass@k: the chance that at least one of k samples drawn from a question's n is correct,
//! with the unbiased estimator of Chen et al. (2021), `1 − C(n−c, k) / C(n, k)` for c correct,
//! averaged over questions. pass@1 is the mean accuracy; pass@n the share of questions solved.
use std::collections::BTreeMap;

/// pass@k of one question with `n` samples of which `c` are correct; `None` when k > n.
pub fn pass_at_k(n: usize, c: usize, k: usize) -> Option<f64> {
    if k == 0 || k > n {
        return None;
    }
    if n - c < k {
        return Some(1.0);
    }
    // C(n−c, k) / C(n, k) = Π_{i = n−c+1}^{n} (1 − k / i), a stable product.
    let miss: f64 = (n - c + 1..=n).map(|i| 1.0 - k as f64 / i as f64).product();
    Some(1.0 - miss)
}

/// How many questions had n samples with c correct: enough for pass@k at any k.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts(BTreeMap<(usize, usize), usize>);

impl Counts {
    pub fn add(&mut self, n: usize, c: usize) {
        *self.0.entry((n, c)).or_default() += 1;
    }

    /// The counts [`Counts::rows`] wrote.
    pub fn from_rows(rows: &[[usize; 3]]) -> Self {
        let mut counts = Counts::default();
        for &[n, c, questions] in rows {
            *counts.0.entry((n, c)).or_default() += questions;
        }
        counts
    }

    /// The mean pass@k over questions, `None` when some question has fewer than k samples
    /// or there is none.
    pub fn mean(&self, k: usize) -> Option<f64> {
        let questions: usize = self.0.values().sum();
        if questions == 0 {
            return None;
        }
        let mut sum = 0.0;
        for (&(n, c), &count) in &self.0 {
            sum += pass_at_k(n, c, k)? * count as f64;
        }
        Some(sum / questions as f64)
    }

    /// `[n, c, questions]` rows, by n then c.
    pub fn rows(&self) -> Vec<[usize; 3]> {
        self.0.iter().map(|(&(n, c), &q)| [n, c, q]).collect()
    }

    /// The smallest sample count of any question (the k of "pass@k" for the run).
    pub fn min_samples(&self) -> Option<usize> {
        self.0.keys().map(|&(n, _)| n).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The estimator as written in the HumanEval paper, with exact binomials.
    fn reference(n: u64, c: u64, k: u64) -> f64 {
        fn choose(n: u64, k: u64) -> f64 {
            if k > n {
                return 0.0;
            }
            (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
        }
        1.0 - choose(n - c, k) / choose(n, k)
    }

    #[test]
    fn matches_the_binomial_form() {
        for n in 1..=20 {
            for c in 0..=n {
                for k in 1..=n {
                    let got = pass_at_k(n, c, k).unwrap();
                    let want = reference(n as u64, c as u64, k as u64);
                    assert!((got - want).abs() < 1e-12, "n={n} c={c} k={k}: {got} vs {want}");
                }
            }
        }
        assert!((pass_at_k(15, 3, 1).unwrap() - 0.2).abs() < 1e-15);
        assert_eq!(pass_at_k(15, 0, 15), Some(0.0));
        assert_eq!(pass_at_k(15, 1, 15), Some(1.0));
        assert_eq!(pass_at_k(3, 1, 4), None);
    }

    #[test]
    fn means_over_questions() {
        let mut c = Counts::default();
        c.add(4, 0);
        c.add(4, 2);
        c.add(4, 4);
        assert_eq!(c.mean(1), Some(0.5));
        assert!((c.mean(2).unwrap() - (0.0 + (1.0 - 1.0 / 6.0) + 1.0) / 3.0).abs() < 1e-12);
        assert_eq!(c.mean(4), Some(2.0 / 3.0));
        assert_eq!(c.mean(5), None);
        assert_eq!(c.min_samples(), Some(4));
        assert_eq!(Counts::default().mean(1), None);
        assert_eq!(Counts::from_rows(&c.rows()), c);
    }
}
