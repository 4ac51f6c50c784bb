//! `--plot`: the fan-out results as an SVG chart, p99 latency and deliveries a second against
//! connections, one line per server and rate.

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

use super::fanout::FanoutRow;
use super::targets::Target;

/// One line: a server at one rate.
struct Series {
    label: String,
    style: ShapeStyle,
    points: Vec<(f64, f64, f64)>,
}

fn color(target: Target) -> RGBColor {
    match target {
        Target::Ours => RGBColor(0x1f, 0x77, 0xb4),
        Target::Limit => RGBColor(0x2c, 0xa0, 0x2c),
        Target::Naive => RGBColor(0xd6, 0x27, 0x28),
        Target::Ws => RGBColor(0x94, 0x67, 0xbd),
    }
}

/// Groups the rows into lines: (connections, p99 in ms, deliveries/s) per server and rate. A
/// server's lines share its color; the higher the rate, the thicker and darker the line.
fn series(rows: &[FanoutRow]) -> Vec<Series> {
    let mut rates: Vec<u32> = rows.iter().map(|r| r.load.rate).collect();
    rates.sort_unstable();
    rates.dedup();
    let weight = |rate: u32| rates.iter().position(|r| *r == rate).unwrap_or(0) as f64;
    let top = (rates.len().max(2) - 1) as f64;
    let mut series: Vec<(Target, u32, Series)> = Vec::new();
    for row in rows {
        let point = (
            row.load.connections as f64,
            (row.latency.p99.as_secs_f64() * 1000.0).max(0.01),
            row.throughput.max(1.0),
        );
        match series.iter_mut().find(|(t, r, _)| *t == row.target && *r == row.load.rate) {
            Some((_, _, line)) => line.points.push(point),
            None => series.push((
                row.target,
                row.load.rate,
                Series {
                    label: format!("{} at {}/s", row.target.name(), row.load.rate),
                    style: color(row.target)
                        .mix(0.45 + 0.55 * weight(row.load.rate) / top)
                        .stroke_width(1 + (2.0 * weight(row.load.rate) / top) as u32),
                    points: vec![point],
                },
            )),
        }
    }
    series
        .into_iter()
        .map(|(_, _, mut line)| {
            line.points.sort_by(|a, b| a.0.total_cmp(&b.0));
            line
        })
        .collect()
}

/// Draws `rows` to an SVG file at `path`.
pub fn draw(rows: &[FanoutRow], title: &str, path: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(!rows.is_empty(), "nothing to plot");
    let lines = series(rows);
    let max_of = |pick: fn(&(f64, f64, f64)) -> f64| {
        lines.iter().flat_map(|l| l.points.iter().map(pick)).fold(f64::MIN, f64::max)
    };
    let min_of = |pick: fn(&(f64, f64, f64)) -> f64| {
        lines.iter().flat_map(|l| l.points.iter().map(pick)).fold(f64::MAX, f64::min)
    };
    let x_range = (min_of(|p| p.0) / 2.0)..(max_of(|p| p.0) * 2.0);

    let root = SVGBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE).context("drawing")?;
    let root = root.titled(title, ("sans-serif", 20)).context("drawing the title")?;
    let (left, right) = root.split_horizontally(600);

    let mut latency = ChartBuilder::on(&left)
        .caption("p99 latency (ms, log scale)", ("sans-serif", 16))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(
            x_range.clone().log_scale(),
            ((min_of(|p| p.1) / 2.0)..(max_of(|p| p.1) * 2.0)).log_scale(),
        )
        .context("the latency chart")?;
    latency
        .configure_mesh()
        .light_line_style(WHITE)
        .x_labels(4)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y}"))
        .x_desc("connections")
        .y_desc("p99 (ms)")
        .draw()
        .context("the latency axes")?;

    let mut throughput = ChartBuilder::on(&right)
        .caption("deliveries per second (log scale)", ("sans-serif", 16))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(
            x_range.log_scale(),
            ((min_of(|p| p.2) / 2.0)..(max_of(|p| p.2) * 2.0)).log_scale(),
        )
        .context("the throughput chart")?;
    throughput
        .configure_mesh()
        .light_line_style(WHITE)
        .x_labels(4)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .x_desc("connections")
        .y_desc("deliveries/s")
        .draw()
        .context("the throughput axes")?;

    for line in &lines {
        let style = line.style;
        let dots = |points: Vec<(f64, f64)>| {
            points.into_iter().map(move |p| Circle::new(p, 4, style.filled()))
        };
        let latency_points: Vec<_> = line.points.iter().map(|p| (p.0, p.1)).collect();
        latency
            .draw_series(LineSeries::new(latency_points.clone(), style))
            .context("a latency line")?
            .label(&line.label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
        latency.draw_series(dots(latency_points)).context("latency points")?;
        let throughput_points: Vec<_> = line.points.iter().map(|p| (p.0, p.2)).collect();
        throughput
            .draw_series(LineSeries::new(throughput_points.clone(), style))
            .context("a throughput line")?;
        throughput.draw_series(dots(throughput_points)).context("throughput points")?;
    }
    latency
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .context("the legend")?;
    root.present().context("writing the chart")?;
    Ok(())
}
