//! The activity chart of a destination, drawn on the server as SVG: delivered, failed and
//! dropped records per minute over the last hour (or three).
//!
//! "Failed" counts failed delivery attempts (to be retried) and records dead-lettered (given
//! up on): both are what an operator looks for when a destination goes wrong. The SVG has a
//! title and a description for screen readers, and the page shows the same numbers in a
//! table.

use std::fmt::Write as _;

use tracecast_engine::HistorySnapshot;

/// Plot area of the SVG's view box.
const W: f64 = 720.0;
const H: f64 = 200.0;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 30.0;

/// One series: its name, colour and dash pattern (so that the lines differ without colour).
pub struct Series {
    pub name: &'static str,
    pub color: &'static str,
    pub dash: &'static str,
    pub class: &'static str,
}

pub const SERIES: [Series; 3] = [
    Series {
        name: "Delivered",
        color: "#1d5fbf",
        dash: "",
        class: "delivered",
    },
    Series {
        name: "Failed",
        color: "#b3261e",
        dash: "6 4",
        class: "failed",
    },
    Series {
        name: "Dropped",
        color: "#7a5200",
        dash: "2 3",
        class: "dropped",
    },
];

/// A minute of the chart, for the data table.
pub struct Row {
    pub label: String,
    pub values: [u64; 3],
}

pub struct Chart {
    /// The `<svg>` element (markup made here from numbers and fixed text only).
    pub svg: String,
    /// Totals over the range, per series.
    pub totals: [u64; 3],
    /// Minutes with activity, newest first.
    pub rows: Vec<Row>,
}

/// The chart of the `minutes` minutes up to `now_minute` (Unix minutes).
pub fn render(h: &HistorySnapshot, now_minute: i64, minutes: usize) -> Chart {
    let minutes = minutes.max(2);
    let first = now_minute - minutes as i64 + 1;
    let mut data = vec![[0u64; 3]; minutes];
    for m in &h.minutes {
        if m.minute < first || m.minute > now_minute {
            continue;
        }
        let i = (m.minute - first) as usize;
        data[i][0] += m.delivered;
        data[i][1] += m.failed_attempts + m.dead_lettered;
        data[i][2] += m.dropped;
    }
    let mut totals = [0u64; 3];
    for d in &data {
        for s in 0..3 {
            totals[s] += d[s];
        }
    }
    let peak = data
        .iter()
        .flat_map(|d| d.iter())
        .copied()
        .max()
        .unwrap_or(0);
    let top = nice_ceiling(peak);
    let x = |i: usize| LEFT + (W - LEFT - RIGHT) * i as f64 / (minutes - 1) as f64;
    let y = |v: u64| TOP + (H - TOP - BOTTOM) * (1.0 - v as f64 / top as f64);

    let mut svg = String::new();
    let desc = format!(
        "Over the last {}: {} delivered, {} failed, {} dropped. Highest minute: {}.",
        span_name(minutes),
        totals[0],
        totals[1],
        totals[2],
        peak
    );
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-labelledby="chart-title chart-desc"><title id="chart-title">Records per minute</title><desc id="chart-desc">{desc}</desc>"#
    );
    // Grid and y labels: 0, half, top.
    for v in [0, top / 2, top] {
        let yy = y(v);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#d0d7de" stroke-width="1"/><text x="{}" y="{:.1}" text-anchor="end" font-size="12" fill="#57606a">{v}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            yy + 4.0
        );
    }
    // X labels: every quarter of the range.
    for q in 0..=4 {
        let i = (minutes - 1) * q / 4;
        let ago = minutes - 1 - i;
        let label = if ago == 0 {
            "now".to_string()
        } else {
            format!("−{ago} min")
        };
        let anchor = match q {
            0 => "start",
            4 => "end",
            _ => "middle",
        };
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{}" text-anchor="{anchor}" font-size="12" fill="#57606a">{label}</text>"##,
            x(i),
            H - 8.0
        );
    }
    for (s, series) in SERIES.iter().enumerate() {
        let mut points = String::new();
        for (i, d) in data.iter().enumerate() {
            let _ = write!(points, "{:.1},{:.1} ", x(i), y(d[s]));
        }
        let dash = if series.dash.is_empty() {
            String::new()
        } else {
            format!(r#" stroke-dasharray="{}""#, series.dash)
        };
        let _ = write!(
            svg,
            r#"<polyline class="series-{}" fill="none" stroke="{}" stroke-width="2" stroke-linejoin="round"{dash} points="{}"/>"#,
            series.class,
            series.color,
            points.trim_end()
        );
    }
    svg.push_str("</svg>");

    let rows = data
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, d)| d.iter().any(|v| *v > 0))
        .map(|(i, d)| Row {
            label: super::view::utc_ms((first + i as i64) * 60_000),
            values: *d,
        })
        .collect();
    Chart { svg, totals, rows }
}

fn span_name(minutes: usize) -> String {
    if minutes.is_multiple_of(60) {
        let h = minutes / 60;
        if h == 1 {
            "hour".into()
        } else {
            format!("{h} hours")
        }
    } else {
        format!("{minutes} minutes")
    }
}

/// The smallest of 2, 4, 10 × 10^k at least `v`, and at least 4: round, even numbers for
/// the axis (its middle line is half of it).
fn nice_ceiling(v: u64) -> u64 {
    if v <= 4 {
        return 4;
    }
    let mut base = 1u64;
    loop {
        for m in [2, 4, 10] {
            if let Some(c) = base.checked_mul(m)
                && c >= v
            {
                return c;
            }
        }
        match base.checked_mul(10) {
            Some(b) => base = b,
            None => return u64::MAX,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracecast_engine::history::Minute;

    #[test]
    fn minutes_land_on_the_chart_and_in_the_table() {
        let h = HistorySnapshot {
            minutes: vec![
                Minute {
                    minute: 100,
                    delivered: 7,
                    failed_attempts: 1,
                    dead_lettered: 2,
                    dropped: 0,
                },
                // Outside the range: left out.
                Minute {
                    minute: 10,
                    delivered: 99,
                    ..Minute::default()
                },
            ],
            errors: vec![],
        };
        let c = render(&h, 119, 60);
        assert_eq!(c.totals, [7, 3, 0]);
        assert_eq!(c.rows.len(), 1);
        assert_eq!(c.rows[0].values, [7, 3, 0]);
        assert!(c.svg.starts_with("<svg"));
        assert!(c.svg.contains("7 delivered, 3 failed, 0 dropped"));
        assert_eq!(c.svg.matches("<polyline").count(), 3);
        // The peak (7) fits under the axis top (10).
        assert!(c.svg.contains(">10</text>"));
    }

    #[test]
    fn axis_tops_are_round() {
        assert_eq!(nice_ceiling(0), 4);
        assert_eq!(nice_ceiling(5), 10);
        assert_eq!(nice_ceiling(11), 20);
        assert_eq!(nice_ceiling(21), 40);
        assert_eq!(nice_ceiling(120), 200);
        assert_eq!(nice_ceiling(501), 1000);
        assert_eq!(nice_ceiling(u64::MAX), u64::MAX);
    }
}
