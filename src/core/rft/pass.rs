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

    /// Questions by pass rate (right samples over samples). Where every question has the same
    /// n ≤ 20 samples, one bin per count of right ones (`0/5` … `5/5`); else `0`, ten bins of
    /// width 0.1 (`(0, 0.1]` … `(0.8, 0.9]`, `(0.9, 1)`) and `1`.
    pub fn histogram(&self) -> Vec<Bin> {
        let ns: std::collections::BTreeSet<usize> = self.0.keys().map(|&(n, _)| n).collect();
        if let (1, Some(&n)) = (ns.len(), ns.first()) {
            if n <= 20 {
                return (0..=n)
                    .map(|c| Bin {
                        bin: format!("{c}/{n}"),
                        questions: self.0.get(&(n, c)).copied().unwrap_or(0),
                    })
                    .collect();
            }
        }
        let mut bins: Vec<Bin> = std::iter::once("0".to_string())
            .chain((1..=10).map(|k| match k {
                10 => "(0.9, 1)".to_string(),
                k => format!("({}, {}]", tenth(k - 1), tenth(k)),
            }))
            .chain(std::iter::once("1".to_string()))
            .map(|bin| Bin { bin, questions: 0 })
            .collect();
        for (&(n, c), &q) in &self.0 {
            // c/n in ((k − 1)/10, k/10] is bin k: k = ⌈10c/n⌉, in whole numbers.
            let k = match c {
                0 => 0,
                c if c >= n => 11,
                c => (10 * c).div_ceil(n),
            };
            bins[k].questions += q;
        }
        bins
    }

    /// Questions whose `c` of `n` samples right `keep(c, n)` accepts.
    pub fn count_where(&self, keep: impl Fn(usize, usize) -> bool) -> usize {
        self.0.iter().filter(|(&(n, c), _)| keep(c, n)).map(|(_, &q)| q).sum()
    }
}

/// One bar of [`Counts::histogram`]: the questions whose pass rate lies in it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Bin {
    pub bin: String,
    pub questions: usize,
}

/// `k` tenths as text: 0, 0.1, …, 0.9, 1.
fn tenth(k: usize) -> String {
    match k {
        0 => "0".into(),
        10 => "1".into(),
        k => format!("0.{k}"),
    }
}

/// The histogram as text, one bar per bin (`#`, the largest 30 wide).
pub fn render_histogram(bins: &[Bin]) -> String {
    let width = bins.iter().map(|b| b.bin.chars().count()).max().unwrap_or(0).max(9);
    let most = bins.iter().map(|b| b.questions).max().unwrap_or(0).max(1);
    let mut out = format!("{:<width$}  questions\n", "pass rate");
    for b in bins {
        let bar = "#".repeat((b.questions * 30).div_ceil(most));
        out += format!("{:<width$}  {:>9}  {bar}", b.bin, b.questions).trim_end();
        out.push('\n');
    }
    out
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

    #[test]
    fn histogram_bins_by_right_samples_or_by_tenths() {
        let mut c = Counts::default();
        c.add(5, 0);
        c.add(5, 1);
        c.add(5, 1);
        c.add(5, 5);
        let bins = c.histogram();
        let got: Vec<(&str, usize)> = bins.iter().map(|b| (b.bin.as_str(), b.questions)).collect();
        assert_eq!(
            got,
            [("0/5", 1), ("1/5", 2), ("2/5", 0), ("3/5", 0), ("4/5", 0), ("5/5", 1)]
        );
        assert_eq!(
            render_histogram(&bins),
            "pass rate  questions\n0/5                1  ###############\n1/5                2  ##############################\n2/5                0\n3/5                0\n4/5                0\n5/5                1  ###############\n"
        );
        assert_eq!(c.count_where(|c, n| c > 0 && c < n), 2);

        // Sample counts that differ (or more than 20): tenths, the bounds where they belong.
        let mut c = Counts::default();
        for (n, r) in [
            (10, 0),
            (10, 1),
            (20, 2),
            (10, 2),
            (30, 4),
            (10, 9),
            (12, 11),
            (10, 10),
            (25, 25),
        ] {
            c.add(n, r);
        }
        let got: Vec<(String, usize)> = c.histogram().into_iter().map(|b| (b.bin, b.questions)).collect();
        let want = [
            ("0", 1),
            ("(0, 0.1]", 2),   // 1/10, 2/20: 0.1 exactly
            ("(0.1, 0.2]", 2), // 2/10; 4/30 = 0.133
            ("(0.2, 0.3]", 0),
            ("(0.3, 0.4]", 0),
            ("(0.4, 0.5]", 0),
            ("(0.5, 0.6]", 0),
            ("(0.6, 0.7]", 0),
            ("(0.7, 0.8]", 0),
            ("(0.8, 0.9]", 1), // 9/10
            ("(0.9, 1)", 1),   // 11/12
            ("1", 2),
        ];
        assert_eq!(got, want.map(|(b, q)| (b.to_string(), q)));
    }
}
