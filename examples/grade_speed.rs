//! The math grader's time on hostile completions of 1 MiB (issue: ≤ 100 ms each):
//! `cargo run --release --example grade_speed`. Prints one line per kind of text.
use rftx::core::rft::math::grade;
fn main() {
    let mb = 1 << 20;
    let cases: Vec<(&str, String)> = vec![
        ("nested (", "(".repeat(mb)),
        ("boxed + (", format!("\\boxed{{{}", "(".repeat(mb - 8))),
        ("sum", vec!["1"; mb / 2].join("+")),
        ("minus", format!("{}5", "-".repeat(mb))),
        ("prose", "word ".repeat(mb / 5)),
        ("dollars", "$".repeat(mb)),
        ("digits", "1 ".repeat(mb / 2)),
        ("latex", "$\\frac{1}{2}$ and ".repeat(mb / 18)),
        ("answer words", "answer: answer ".repeat(mb / 15)),
        ("final answer", "final answer is ".repeat(mb / 16)),
    ];
    for (name, text) in &cases {
        let t = std::time::Instant::now();
        let o = grade(text, "5");
        println!(
            "{name:14} {:>8} bytes {:>8.1} ms correct={}",
            text.len(),
            t.elapsed().as_secs_f64() * 1e3,
            o.correct
        );
    }
}
