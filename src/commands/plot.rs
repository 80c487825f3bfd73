//! `rftx compare --plot`: an SVG with two bar charts, peak memory (heap and RSS) and tokens/s,
//! one group of bars per run, labelled by the parameters that differ.
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::commands::compare::{Comparison, METRICS};

const MIB: f64 = 1024.0 * 1024.0;
const HEAP: RGBColor = RGBColor(31, 119, 180);
const RSS: RGBColor = RGBColor(255, 127, 14);
const SPEED: RGBColor = RGBColor(44, 160, 44);

fn metric(c: &Comparison, key: &str) -> Vec<f64> {
    let m = METRICS.iter().find(|m| m.key == key).expect("a known metric");
    (0..c.runs.len()).map(|i| c.value(i, m).unwrap_or(0.0)).collect()
}

/// The SVG document for a comparison.
pub fn svg(c: &Comparison) -> Result<String, String> {
    let n = c.runs.len();
    let labels: Vec<String> = (0..n).map(|i| c.short_label(i)).collect();
    // GPU runs: their device memory in place of the host heap.
    let gpu = c.metrics().iter().any(|m| m.key == "gpu_peak_bytes");
    let first = if gpu { "gpu_peak_bytes" } else { "peak_bytes" };
    let heap: Vec<f64> = metric(c, first).iter().map(|b| b / MIB).collect();
    let rss: Vec<f64> = metric(c, "rss_peak_bytes").iter().map(|b| b / MIB).collect();
    let speed = metric(c, "tokens_per_s");
    let width = (480 + 110 * n as u32).clamp(900, 2400);
    let mut out = String::new();
    let label = if gpu { "peak GPU" } else { "peak heap" };
    draw(&mut out, width, &labels, (&heap, label), &rss, &speed).map_err(|e| format!("cannot draw the plot: {e}"))?;
    Ok(out)
}

type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;
type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

fn draw(
    out: &mut String,
    width: u32,
    labels: &[String],
    (heap, heap_label): (&[f64], &'static str),
    rss: &[f64],
    speed: &[f64],
) -> DrawResult<SVGBackend<'static>> {
    let lines = labels.iter().map(|l| l.split(' ').count()).max().unwrap_or(1) as u32;
    let root = SVGBackend::with_string(out, (width, 440 + 16 * lines)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(width / 2);
    let n = labels.len() as f64;
    let top = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max).max(1e-9) * 1.15;

    let mut mem = ChartBuilder::on(&left)
        .caption("Peak memory per run (MiB)", ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(24 + 16 * lines)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.5f64..n - 0.5, 0f64..top(rss).max(top(heap)))?;
    mesh(&mut mem, "MiB")?;
    bars(&mut mem, heap, -0.36, 0.34, HEAP, Some(heap_label))?;
    bars(&mut mem, rss, 0.02, 0.34, RSS, Some("peak RSS"))?;
    mem.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    x_labels(&root, &mem, labels)?;

    let mut tps = ChartBuilder::on(&right)
        .caption("Throughput per run (tokens/s)", ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(24 + 16 * lines)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.5f64..n - 0.5, 0f64..top(speed))?;
    mesh(&mut tps, "tokens/s")?;
    bars(&mut tps, speed, -0.3, 0.6, SPEED, None)?;
    x_labels(&root, &tps, labels)?;
    root.present()
}

fn mesh<DB: DrawingBackend>(chart: &mut Chart<DB>, y: &str) -> DrawResult<DB> {
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .light_line_style(WHITE)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .y_desc(y)
        .draw()
}

/// One bar per run at `i + offset`, `width` wide, with its value written above it.
fn bars<DB: DrawingBackend>(
    chart: &mut Chart<DB>,
    values: &[f64],
    offset: f64,
    width: f64,
    color: RGBColor,
    legend: Option<&str>,
) -> DrawResult<DB> {
    let rects = values.iter().enumerate().map(|(i, &v)| {
        let x0 = i as f64 + offset;
        Rectangle::new([(x0, 0.0), (x0 + width, v)], color.filled())
    });
    let anno = chart.draw_series(rects)?;
    if let Some(name) = legend {
        anno.label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    let style = ("sans-serif", 12)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Bottom));
    chart.draw_series(values.iter().enumerate().map(|(i, &v)| {
        let text = if v >= 100.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.1}")
        };
        Text::new(text, (i as f64 + offset + width / 2.0, v), style.clone())
    }))?;
    Ok(())
}

/// The run labels under the x axis, centred on each run's bars.
fn x_labels<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, chart: &Chart<DB>, labels: &[String]) -> DrawResult<DB> {
    let style = ("sans-serif", 14)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Top));
    for (i, label) in labels.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(i as f64, 0.0));
        // One line per `key=value`, so that several differing keys stay readable.
        for (j, line) in label.split(' ').enumerate() {
            root.draw(&Text::new(line.to_string(), (x, y + 8 + 16 * j as i32), style.clone()))?;
        }
    }
    Ok(())
}
