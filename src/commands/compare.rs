//! Runs side by side: the parameters that differ, the metrics with their ratio to the first run
//! (the reference) and whether the samples are byte-identical to the reference's. Rendered by
//! an [`Exporter`]: an aligned text table, Markdown, JSON or CSV.
use std::collections::BTreeMap;

use serde_json::json;

use crate::base::error::Result;
use crate::base::util::{csv_field, human_bytes};
use crate::commands::catalog::{display_value, RunInfo};
use crate::core::report::Metrics;

/// Version of the JSON output's shape.
pub const COMPARE_FORMAT: &str = "rftx-compare-v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    TokensPerSecond,
    Seconds,
    Count,
    Fraction,
}

/// A metric of `metrics.json` that comparisons show.
pub struct Metric {
    /// Its key in `metrics.json` (and in JSON / CSV output).
    pub key: &'static str,
    pub label: &'static str,
    pub unit: Unit,
    get: fn(&Metrics) -> f64,
}

impl Metric {
    pub fn of(&self, m: &Metrics) -> f64 {
        (self.get)(m)
    }

    pub fn format(&self, v: f64) -> String {
        match self.unit {
            Unit::Bytes => human_bytes(v as u64),
            Unit::TokensPerSecond => format!("{v:.1}"),
            Unit::Seconds => format!("{v:.1} s"),
            Unit::Count => format!("{v}"),
            Unit::Fraction => format!("{:.1} %", 100.0 * v),
        }
    }
}

/// The metrics compared, in display order.
#[rustfmt::skip]
pub const METRICS: &[Metric] = &[
    metric("peak_bytes", "peak heap", Unit::Bytes, |m| m.peak_bytes as f64),
    metric("rss_peak_bytes", "peak RSS", Unit::Bytes, |m| m.rss_peak_bytes as f64),
    metric("gpu_peak_bytes", "peak GPU", Unit::Bytes, |m| m.gpu_peak_bytes.unwrap_or(0) as f64),
    metric("tokens_per_s", "tokens/s", Unit::TokensPerSecond, |m| m.tokens_per_s),
    metric("wall_s", "wall time", Unit::Seconds, |m| m.wall_s),
    metric("generation_s", "generation time", Unit::Seconds, |m| m.generation_s),
    metric("samples", "samples", Unit::Count, |m| m.samples as f64),
    metric("new_tokens", "new tokens", Unit::Count, |m| m.new_tokens as f64),
    metric("acceptance_rate", "acceptance", Unit::Fraction, |m| m.acceptance_rate),
    metric("pass_at_1", "pass@1", Unit::Fraction, |m| m.pass_at_1),
    metric("pass_at_k", "pass@k (k = samples)", Unit::Fraction, |m| m.pass_at_k),
    metric("dataset_records", "accepted unique records", Unit::Count, |m| m.dataset_records as f64),
];

const fn metric(key: &'static str, label: &'static str, unit: Unit, get: fn(&Metrics) -> f64) -> Metric {
    Metric { key, label, unit, get }
}

/// One run in a comparison.
pub struct Compared {
    pub run: RunInfo,
    pub params: BTreeMap<String, toml::Value>,
    /// sha256 of samples.jsonl (none before the first committed question).
    pub samples_sha256: Option<String>,
}

/// Runs side by side; the first is the reference.
pub struct Comparison {
    pub runs: Vec<Compared>,
    /// Parameter keys whose values are not the same in every run, sorted.
    pub differing: Vec<String>,
}

impl Comparison {
    pub fn new(runs: Vec<RunInfo>) -> Result<Comparison> {
        let runs = runs
            .into_iter()
            .map(|run| {
                Ok(Compared {
                    params: run.params(),
                    samples_sha256: run.samples_sha256()?,
                    run,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut keys: Vec<&String> = runs.iter().flat_map(|r| r.params.keys()).collect();
        keys.sort();
        keys.dedup();
        let differing = keys
            .into_iter()
            .filter(|k| runs.iter().any(|r| r.params.get(*k) != runs[0].params.get(*k)))
            .cloned()
            .collect();
        Ok(Comparison { runs, differing })
    }

    /// The metrics shown: all of [`METRICS`] but the GPU peak when no run has one.
    pub fn metrics(&self) -> Vec<&'static Metric> {
        let gpu = self
            .runs
            .iter()
            .any(|r| r.run.metrics.as_ref().is_some_and(|m| m.gpu_peak_bytes.is_some()));
        METRICS.iter().filter(|m| gpu || m.key != "gpu_peak_bytes").collect()
    }

    pub fn value(&self, i: usize, m: &Metric) -> Option<f64> {
        self.runs[i].run.metrics.as_ref().map(|x| m.of(x))
    }

    /// The metric of run `i` divided by the reference's; none where either is missing or the
    /// reference is zero.
    pub fn ratio(&self, i: usize, m: &Metric) -> Option<f64> {
        match (self.value(i, m), self.value(0, m)) {
            (Some(v), Some(r)) if r != 0.0 => Some(v / r),
            _ => None,
        }
    }

    /// Whether run `i`'s samples.jsonl is byte-identical to the reference's.
    pub fn identical(&self, i: usize) -> Option<bool> {
        match (&self.runs[i].samples_sha256, &self.runs[0].samples_sha256) {
            (Some(a), Some(b)) => Some(a == b),
            _ => None,
        }
    }

    /// A short name for run `i`: its name when the runs' names differ (before / after), else
    /// its values of the differing config keys (last key segment), such as `chunk_size=3`;
    /// `#i` when nothing differs.
    pub fn short_label(&self, i: usize) -> String {
        if self.differing.iter().any(|k| k == "name") {
            return self.runs[i].run.manifest.name.clone();
        }
        let parts: Vec<String> = self
            .differing
            .iter()
            .filter(|k| !k.starts_with("inputs."))
            .map(|k| {
                let v = self.runs[i]
                    .params
                    .get(k)
                    .map(display_value)
                    .unwrap_or_else(|| "unset".into());
                format!("{}={}", k.rsplit('.').next().unwrap_or(k), v)
            })
            .collect();
        match parts.is_empty() {
            true => format!("#{}", i + 1),
            false => parts.join(" "),
        }
    }
}

/// Renders a comparison in one output format.
pub trait Exporter {
    fn export(&self, c: &Comparison) -> String;
}

/// Aligned plain text: a legend of the runs, then one row per parameter and metric and one
/// column per run.
pub struct TableExporter;
/// A GitHub-flavoured Markdown table, one column per run.
pub struct MarkdownExporter;
/// One JSON object: differing parameters, and per run its parameters, metrics and ratios.
pub struct JsonExporter;
/// One CSV row per run, raw numbers (bytes, seconds, fractions), for pandas or a spreadsheet.
pub struct CsvExporter;

/// Longest parameter value shown in a table cell; JSON and CSV give them whole.
const MAX_CELL: usize = 40;

fn truncate(s: &str) -> String {
    match s.chars().count() > MAX_CELL {
        true => s.chars().take(MAX_CELL - 1).collect::<String>() + "…",
        false => s.to_string(),
    }
}

/// The rows shared by the text and Markdown tables: (label, one cell per run).
fn grid(c: &Comparison) -> Vec<(String, Vec<String>)> {
    let n = c.runs.len();
    let mut rows = vec![(
        "status".to_string(),
        c.runs.iter().map(|r| r.run.status_line()).collect(),
    )];
    for k in &c.differing {
        let cells = c
            .runs
            .iter()
            .map(|r| {
                r.params
                    .get(k)
                    .map(|v| truncate(&display_value(v)))
                    .unwrap_or_else(|| "—".into())
            })
            .collect();
        rows.push((k.clone(), cells));
    }
    for m in c.metrics() {
        let cells = (0..n)
            .map(|i| match (c.value(i, m), c.ratio(i, m)) {
                (None, _) => "—".to_string(),
                (Some(v), _) if i == 0 => m.format(v),
                (Some(v), Some(r)) => format!("{} ({r:.2}×)", m.format(v)),
                (Some(v), None) => m.format(v),
            })
            .collect();
        rows.push((m.label.to_string(), cells));
    }
    let identical = (0..n)
        .map(|i| match (i, c.identical(i)) {
            (0, Some(_)) => "reference".to_string(),
            (_, Some(true)) => "yes".to_string(),
            (_, Some(false)) => "no".to_string(),
            (_, None) => "—".to_string(),
        })
        .collect();
    rows.push(("samples identical".to_string(), identical));
    rows
}

impl Exporter for TableExporter {
    fn export(&self, c: &Comparison) -> String {
        let mut out = String::new();
        for (i, r) in c.runs.iter().enumerate() {
            let reference = if i == 0 { "  (reference)" } else { "" };
            out += &format!("#{:<3} {}{reference}\n", i + 1, r.run.dir.display());
        }
        out.push('\n');
        let mut rows = vec![std::iter::once(String::new())
            .chain((1..=c.runs.len()).map(|i| format!("#{i}")))
            .collect::<Vec<_>>()];
        rows.extend(
            grid(c)
                .into_iter()
                .map(|(label, cells)| std::iter::once(label).chain(cells).collect()),
        );
        out + &crate::base::util::align_columns(&rows, 1)
    }
}

impl Exporter for MarkdownExporter {
    fn export(&self, c: &Comparison) -> String {
        let escape = |s: &str| s.replace('|', "\\|");
        let mut out = String::from("| |");
        for (i, r) in c.runs.iter().enumerate() {
            let reference = if i == 0 { " (reference)" } else { "" };
            out += &format!(" `{}`{reference} |", r.run.id());
        }
        out += "\n|:---|";
        out += &"---:|".repeat(c.runs.len());
        out.push('\n');
        for (label, cells) in grid(c) {
            out += &format!("| {} |", escape(&label));
            for cell in cells {
                out += &format!(" {} |", escape(&cell));
            }
            out.push('\n');
        }
        out
    }
}

impl Exporter for JsonExporter {
    fn export(&self, c: &Comparison) -> String {
        let runs: Vec<serde_json::Value> = c
            .runs
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let params: serde_json::Map<String, serde_json::Value> = c
                    .differing
                    .iter()
                    .map(|k| (k.clone(), r.params.get(k).map_or(serde_json::Value::Null, |v| json!(v))))
                    .collect();
                let ratios: serde_json::Map<String, serde_json::Value> = c
                    .metrics()
                    .into_iter()
                    .map(|m| (m.key.to_string(), json!(c.ratio(i, m))))
                    .collect();
                let m = &r.run.manifest;
                json!({
                    "id": r.run.id(),
                    "dir": r.run.dir.display().to_string(),
                    "name": m.name,
                    "hash": m.hash,
                    "status": m.status,
                    "questions_done": m.progress.questions_done,
                    "questions_total": m.progress.questions_total,
                    "params": params,
                    "metrics": r.run.metrics,
                    "ratios": ratios,
                    "samples_sha256": r.samples_sha256,
                    "samples_identical": c.identical(i),
                })
            })
            .collect();
        let doc = json!({
            "format": COMPARE_FORMAT,
            "reference": c.runs.first().map(|r| r.run.id()),
            "differing_params": c.differing,
            "runs": runs,
        });
        serde_json::to_string_pretty(&doc).expect("comparisons serialise") + "\n"
    }
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
impl Exporter for CsvExporter {
    fn export(&self, c: &Comparison) -> String {
        let mut header: Vec<String> = ["id", "dir", "hash", "status", "questions_done", "questions_total"]
            .map(String::from)
            .to_vec();
        header.extend(c.differing.iter().cloned());
        header.extend(c.metrics().iter().map(|m| m.key.to_string()));
        header.extend(c.metrics().iter().map(|m| format!("{}_ratio", m.key)));
        header.extend(["samples_sha256", "samples_identical"].map(String::from));
        let mut out = header.iter().map(|h| csv_field(h)).collect::<Vec<_>>().join(",") + "\n";
        let opt = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
        for (i, r) in c.runs.iter().enumerate() {
            let m = &r.run.manifest;
            let mut row = vec![
                r.run.id(),
                r.run.dir.display().to_string(),
                m.hash.clone(),
                m.status.as_str().to_string(),
                m.progress.questions_done.to_string(),
                m.progress.questions_total.to_string(),
            ];
            row.extend(
                c.differing
                    .iter()
                    .map(|k| r.params.get(k).map(display_value).unwrap_or_default()),
            );
            row.extend(c.metrics().iter().map(|m| opt(c.value(i, m))));
            row.extend(c.metrics().iter().map(|m| opt(c.ratio(i, m))));
            row.push(r.samples_sha256.clone().unwrap_or_default());
            row.push(c.identical(i).map(|b| b.to_string()).unwrap_or_default());
            out += &(row.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(",") + "\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        use crate::base::util::csv_field;
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn long_values_are_cut_in_tables() {
        let long = "x".repeat(100);
        let t = truncate(&long);
        assert_eq!(t.chars().count(), MAX_CELL);
        assert!(t.ends_with('…'));
        assert_eq!(truncate("short"), "short");
    }

    #[test]
    fn every_metric_key_is_a_field_of_metrics_json() {
        // A GPU run's metrics: they have every key (a CPU run's lack `gpu_peak_bytes`).
        let mut tally = crate::core::report::Tally::default();
        tally.add_chunk(&crate::core::store::ChunkRecord {
            gpu_peak_bytes: Some(1),
            ..crate::core::store::ChunkRecord::example(0)
        });
        let m = serde_json::to_value(tally.metrics(1, 0.0, 0)).unwrap();
        for metric in METRICS {
            assert!(m.get(metric.key).is_some(), "{}", metric.key);
        }
    }
}
