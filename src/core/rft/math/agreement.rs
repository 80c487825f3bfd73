//! The math grader against math_verify 0.9.0's own verdicts on cases nobody here wrote:
//! `tests/data/math_verify_cases.jsonl` (built by `scripts/math_verify_cases.py` from PyPI
//! packages: GSM8K's and AIME 2025's real answers in the formats models write them, MATH-500's
//! reference solutions, real completions of SmolLM2-135M and Qwen2.5-Coder-0.5B; each labelled by
//! `verify(parse(gold), parse(pred))`). `RFTX_MATH_CASES=FILE` measures another file of the
//! same shape (a held-out suite) and prints every case that differs.
//! `tests/data/math_verify_stress.jsonl` (`scripts/math_verify_stress.py`): MATH-500's 500
//! answers against model-style outputs holding the same answer, a rewriting of it, another
//! question's answer or a perturbed one, labelled the same way.
use super::{grade, read, same};

/// Where rftx deliberately differs from math_verify: (a piece of the prediction, a piece of the
/// gold, why). Each must still differ, so the list cannot go stale.
const DELIBERATE: &[(&str, &str, &str)] = &[
    (
        "<answer>",
        "",
        "a completion's last <answer>…</answer> is its answer (math_verify finds no answer in `<answer>72</answer>`)",
    ),
    (
        "",
        "#### ",
        "a GSM8K reference's answer is its `####` line (math_verify reads the last number or `$…$` of the solution, e.g. `$4.00 + $` of row 258)",
    ),
];

struct Tally {
    cases: usize,
    agree: usize,
    /// rftx accepts, math_verify rejects.
    accepted_wrongly: Vec<String>,
    /// rftx rejects, math_verify accepts.
    rejected_wrongly: Vec<String>,
}

fn measure(path: &str, raw: bool) -> Tally {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut t = Tally {
        cases: 0,
        agree: 0,
        accepted_wrongly: vec![],
        rejected_wrongly: vec![],
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let case: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        let (gold, pred) = (case["gold"].as_str().unwrap(), case["pred"].as_str().unwrap());
        let expected = case["math_verify"].as_bool().unwrap();
        let deliberate = DELIBERATE
            .iter()
            .any(|(p, g, _)| (!p.is_empty() && pred.contains(p)) || (!g.is_empty() && gold.contains(g)));
        let got = if raw {
            same(&read(gold), &read(pred))
        } else {
            grade(pred, gold).correct
        };
        t.cases += 1;
        if got == expected || (deliberate && !raw) {
            t.agree += 1;
            continue;
        }
        let short = |s: &str| {
            s.chars()
                .rev()
                .take(160)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<String>()
        };
        let what = format!(
            "gold {:?}\n    pred …{:?}\n    ({})",
            short(gold),
            short(pred),
            case["source"]
        );
        if got {
            t.accepted_wrongly.push(what);
        } else {
            t.rejected_wrongly.push(what);
        }
    }
    t
}

fn report(name: &str, t: &Tally) -> f64 {
    let share = t.agree as f64 / t.cases.max(1) as f64;
    eprintln!(
        "{name}: {} of {} agree ({:.1} %); accepted where math_verify rejects: {}; rejected where it accepts: {}",
        t.agree,
        t.cases,
        100.0 * share,
        t.accepted_wrongly.len(),
        t.rejected_wrongly.len()
    );
    for w in t.accepted_wrongly.iter().chain(&t.rejected_wrongly).take(60) {
        eprintln!("  {w}");
    }
    share
}

#[test]
fn agrees_with_math_verify_on_real_cases() {
    let files = match std::env::var("RFTX_MATH_CASES") {
        Ok(path) => vec![path],
        Err(_) => ["math_verify_cases.jsonl", "math_verify_stress.jsonl"]
            .iter()
            .map(|f| format!("{}/tests/data/{f}", env!("CARGO_MANIFEST_DIR")))
            .collect(),
    };
    for path in files {
        report(&format!("{path}: math_verify's own rules (raw)"), &measure(&path, true));
        let t = measure(&path, false);
        let share = report(&format!("{path}: rftx's math grader"), &t);
        assert!(t.cases >= 100, "{path}: {} cases", t.cases);
        assert!(share >= 0.97, "{path}: agreement {:.1} % < 97 %", 100.0 * share);
        assert!(
            t.accepted_wrongly.is_empty(),
            "{path}: wrong answers accepted: {:#?}",
            t.accepted_wrongly
        );
    }
}

#[test]
fn each_deliberate_difference_still_differs() {
    let tag = grade("so <answer>72</answer>", "72");
    assert!(tag.correct && !same(&read("72"), &read("so <answer>72</answer>")));
    let gsm = "She paid 4 + 2 = 6 dollars.\n#### 6\n(checked in 2024)";
    assert!(grade("The answer is 6.", gsm).correct && !same(&read(gsm), &read("The answer is 6.")));
}
