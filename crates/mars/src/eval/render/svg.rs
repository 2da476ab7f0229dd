//! The SVG plot of a [`Report`]: pass rate with its 95% interval against mean tokens per
//! sample, one point per strategy, with the strategy names in a column beside the plot, a line
//! apart.

use std::fmt::Write as _;

use crate::eval::report::{Report, StrategySummary};

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

// The plot's geometry, in pixels. Text widths are estimated from the character count at 7.5 px a
// character for font size 12: more than a sans-serif font's average, so a box built from the
// estimate holds the text as a viewer draws it.
const FONT: f64 = 12.0;
const CHAR_WIDTH: f64 = 7.5;
/// The distance between two labels in the column: a text box (15 px at font size 12) and a gap.
const LINE: f64 = 17.0;
const LEFT: f64 = 70.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
const PLOT_WIDTH: f64 = 500.0;
const MIN_PLOT_HEIGHT: f64 = 310.0;
const MARGIN: f64 = 10.0;
/// The tokens axis has at most this many intervals.
const MAX_X_INTERVALS: u32 = 6;
/// Twelve distinguishable colours, in strategy order; a thirteenth strategy reuses the first, and
/// its leader line still joins its label to its point.
const COLOURS: [&str; 12] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#637939",
];
/// The colour of a label whose strategy has no point (no token counts).
const UNPLOTTED: &str = "#666666";

/// An axis-aligned box in the canvas's coordinates (y grows downwards).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rect {
    left: f64,
    top: f64,
    right: f64,
    bottom: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Anchor {
    Start,
    Middle,
    End,
}

/// One `<text>`: its anchor point on the baseline, and whether it is turned to read upwards.
#[derive(Debug, Clone, PartialEq)]
struct Text {
    x: f64,
    y: f64,
    size: f64,
    anchor: Anchor,
    upwards: bool,
    fill: &'static str,
    content: String,
}

impl Text {
    fn new(x: f64, y: f64, anchor: Anchor, content: String) -> Self {
        Text {
            x,
            y,
            size: FONT,
            anchor,
            upwards: false,
            fill: "black",
            content,
        }
    }

    fn width(&self) -> f64 {
        text_width(&self.content, self.size)
    }

    /// The box the text may cover: from a full font size above the baseline to a quarter below
    /// it (descenders), as wide as the estimate.
    fn bounds(&self) -> Rect {
        let width = self.width();
        let start = match self.anchor {
            Anchor::Start => 0.0,
            Anchor::Middle => -width / 2.0,
            Anchor::End => -width,
        };
        if self.upwards {
            // rotate(-90) about the anchor: along the text is up the page, its top faces left.
            Rect {
                left: self.x - self.size,
                top: self.y - start - width,
                right: self.x + self.size / 4.0,
                bottom: self.y - start,
            }
        } else {
            Rect {
                left: self.x + start,
                top: self.y - self.size,
                right: self.x + start + width,
                bottom: self.y + self.size / 4.0,
            }
        }
    }

    fn write(&self, out: &mut String) {
        let anchor = match self.anchor {
            Anchor::Start => "start",
            Anchor::Middle => "middle",
            Anchor::End => "end",
        };
        let (x, y) = (self.x, self.y);
        let turn = if self.upwards {
            format!(r#" transform="rotate(-90 {x:.1} {y:.1})""#)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            r#"<text x="{x:.1}" y="{y:.1}" font-size="{}" text-anchor="{anchor}" fill="{}"{turn}>{}</text>"#,
            self.size,
            self.fill,
            xml_escape(&self.content)
        );
    }
}

fn text_width(text: &str, size: f64) -> f64 {
    text.chars().count() as f64 * CHAR_WIDTH * size / FONT
}

/// Ticks from 0 in steps of 1, 2, 2.5 or 5 times a power of ten (2.5 only from 25 up, so every
/// tick is a whole number), at most `max_intervals` steps, ending on the first tick at or above
/// `max`. A `max` that is not positive gives the axis 0 to 1.
fn nice_ticks(max: f64, max_intervals: u32) -> Vec<f64> {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let raw = max / f64::from(max_intervals.max(1));
    let mut power = 1.0;
    while power * 10.0 <= raw {
        power *= 10.0;
    }
    let multiples: &[f64] = if power >= 10.0 {
        &[1.0, 2.0, 2.5, 5.0]
    } else {
        &[1.0, 2.0, 5.0]
    };
    let step = multiples
        .iter()
        .map(|m| m * power)
        .find(|&step| step >= raw)
        .unwrap_or(10.0 * power);
    let mut ticks = vec![0.0];
    let mut k = 0_u32;
    while ticks.last().is_some_and(|&tick| tick < max) {
        k += 1;
        ticks.push(f64::from(k) * step);
    }
    ticks
}

/// The tokens axis's ticks: the most intervals (up to [`MAX_X_INTERVALS`]) whose labels, centred
/// on their ticks, leave a gap between neighbours.
fn x_ticks(max: f64) -> Vec<f64> {
    let fits = |ticks: &Vec<f64>| {
        let widest = ticks
            .iter()
            .map(|&t| text_width(&thousands(t), FONT))
            .fold(0.0, f64::max);
        let intervals = ticks.len().saturating_sub(1).max(1) as f64;
        PLOT_WIDTH / intervals >= widest + MARGIN
    };
    (1..=MAX_X_INTERVALS)
        .rev()
        .map(|n| nice_ticks(max, n))
        .find(fits)
        .unwrap_or_else(|| nice_ticks(max, 1))
}

/// A whole number with commas between thousands: `1,500`.
fn thousands(value: f64) -> String {
    let digits = format!("{value:.0}");
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && c.is_ascii_digit() && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Centres for labels whose ideal centres are `ideal` (ascending), each at least `gap` from the
/// next and all within `[low, high]`, which must hold them: `(n - 1) * gap <= high - low`.
/// Labels that would come closer than `gap` form a group centred on the mean of their ideals
/// (moved inside the bounds if it sticks out), and a group that then reaches the one above it
/// merges with it, so the result keeps the order and never breaks the gap.
fn spread(ideal: &[f64], gap: f64, low: f64, high: f64) -> Vec<f64> {
    struct Group {
        count: usize,
        sum: f64,
        start: f64,
    }
    let group = |count: usize, sum: f64| {
        let span = (count - 1) as f64 * gap;
        let start = (sum / count as f64 - span / 2.0).min(high - span).max(low);
        Group { count, sum, start }
    };
    let mut groups: Vec<Group> = Vec::new();
    for &centre in ideal {
        let mut current = group(1, centre);
        while let Some(above) = groups.pop() {
            if above.start + above.count as f64 * gap <= current.start {
                groups.push(above);
                break;
            }
            current = group(above.count + current.count, above.sum + current.sum);
        }
        groups.push(current);
    }
    groups
        .iter()
        .flat_map(|g| (0..g.count).map(move |k| g.start + k as f64 * gap))
        .collect()
}

/// A strategy's point: its pass rate at its mean tokens, with its interval as a bar.
#[derive(Debug, Clone, PartialEq)]
struct Marker {
    colour: &'static str,
    x: f64,
    y: f64,
    low: f64,
    high: f64,
}

/// A strategy's name in the label column, with the leader line from its point, if it has one.
#[derive(Debug, Clone, PartialEq)]
struct Label {
    text: Text,
    leader: Option<[f64; 4]>,
}

/// Everything the SVG draws, placed.
#[derive(Debug, Clone, PartialEq)]
struct Layout {
    width: f64,
    height: f64,
    plot: Rect,
    /// Tokens at each tick of the x axis, ascending from 0.
    x_ticks: Vec<f64>,
    /// Title, axis titles and tick labels.
    texts: Vec<Text>,
    markers: Vec<Marker>,
    /// Sorted by their point's height on the page.
    labels: Vec<Label>,
}

/// A strategy's mean tokens, if it can be plotted.
fn plotted_tokens(s: &StrategySummary) -> Option<f64> {
    s.mean_total_tokens.filter(|t| t.is_finite() && *t >= 0.0)
}

fn layout(report: &Report) -> Layout {
    let strategies = &report.strategies;
    // The label column spans the plot's height, so the plot grows to give every label a line.
    let plot_height = MIN_PLOT_HEIGHT.max(strategies.len() as f64 * LINE);
    let plot = Rect {
        left: LEFT,
        top: TOP,
        right: LEFT + PLOT_WIDTH,
        bottom: TOP + plot_height,
    };
    let height = plot.bottom + BOTTOM;
    let max_tokens = strategies
        .iter()
        .filter_map(plotted_tokens)
        .fold(0.0, f64::max);
    let x_ticks = x_ticks(max_tokens);
    let axis_max = x_ticks.last().copied().unwrap_or(1.0);
    let x = |tokens: f64| plot.left + tokens / axis_max * PLOT_WIDTH;
    let y = |rate: f64| {
        let rate = if rate.is_nan() {
            0.0
        } else {
            rate.clamp(0.0, 1.0)
        };
        plot.top + (1.0 - rate) * plot_height
    };

    let mut texts = Vec::new();
    for i in 0..=4 {
        let rate = f64::from(i) / 4.0;
        let label = format!("{:.0}%", rate * 100.0);
        texts.push(Text::new(LEFT - 6.0, y(rate) + 4.0, Anchor::End, label));
    }
    let mut widest_tick: f64 = 0.0;
    for &tokens in &x_ticks {
        let tick = Text::new(
            x(tokens),
            plot.bottom + 16.0,
            Anchor::Middle,
            thousands(tokens),
        );
        widest_tick = widest_tick.max(tick.width());
        texts.push(tick);
    }
    texts.push(Text::new(
        plot.left + PLOT_WIDTH / 2.0,
        height - 12.0,
        Anchor::Middle,
        "mean tokens per sample (prompt + completion)".to_owned(),
    ));
    texts.push(Text {
        upwards: true,
        ..Text::new(
            16.0,
            plot.top + plot_height / 2.0,
            Anchor::Middle,
            "pass rate (95% Wilson interval)".to_owned(),
        )
    });

    // Labels go in a column right of the plot (clear of the last tick's label), in the order of
    // their points from top to bottom; strategies without a point come last.
    let column = plot.right + (widest_tick / 2.0 + MARGIN).max(40.0);
    let mut order: Vec<(usize, f64, f64)> = strategies
        .iter()
        .enumerate()
        .map(|(i, s)| match plotted_tokens(s) {
            Some(tokens) => (i, y(s.pass.rate), tokens),
            None => (i, plot.bottom, f64::INFINITY),
        })
        .collect();
    order.sort_by(|a, b| {
        a.1.total_cmp(&b.1)
            .then(a.2.total_cmp(&b.2))
            .then(a.0.cmp(&b.0))
    });
    let ideal: Vec<f64> = order.iter().map(|&(_, centre, _)| centre).collect();
    let centres = spread(&ideal, LINE, plot.top, plot.bottom);
    let colour = |i: usize| COLOURS[i % COLOURS.len()];
    let labels: Vec<Label> = order
        .iter()
        .zip(centres)
        .map(|(&(i, _, _), centre)| {
            let s = &strategies[i];
            let name = s.strategy.as_str();
            let (content, fill, leader) = match plotted_tokens(s) {
                Some(tokens) => (
                    name.to_owned(),
                    colour(i),
                    Some([x(tokens), y(s.pass.rate), column - 4.0, centre]),
                ),
                None => (format!("{name} (no token counts)"), UNPLOTTED, None),
            };
            Label {
                text: Text {
                    fill,
                    ..Text::new(column, centre + 4.0, Anchor::Start, content)
                },
                leader,
            }
        })
        .collect();
    let markers = strategies
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            plotted_tokens(s).map(|tokens| Marker {
                colour: colour(i),
                x: x(tokens),
                y: y(s.pass.rate),
                low: y(s.pass.low),
                high: y(s.pass.high),
            })
        })
        .collect();

    let title = Text {
        size: 14.0,
        ..Text::new(
            0.0,
            22.0,
            Anchor::Middle,
            format!(
                "Pass rate vs mean tokens per sample ({})",
                report.backend.model
            ),
        )
    };
    // The canvas ends a margin right of the rightmost text (a label or the last tick's), and is
    // wide enough to centre the title.
    let rightmost = texts
        .iter()
        .chain(labels.iter().map(|l| &l.text))
        .map(|t| t.bounds().right)
        .fold(plot.right, f64::max);
    let width = (rightmost + MARGIN)
        .max(title.width() + 2.0 * MARGIN)
        .ceil();
    texts.push(Text {
        x: width / 2.0,
        ..title
    });
    Layout {
        width,
        height: height.ceil(),
        plot,
        x_ticks,
        texts,
        markers,
        labels,
    }
}

/// An SVG plot: pass rate (with its 95% interval as a bar) against mean tokens per sample, one
/// point per strategy. Each strategy's name stands in a column right of the plot, in the order
/// of the points from top to bottom, at least a line apart, joined to its point by a thin line
/// in its colour; the canvas grows to give every name its line. The tokens axis has round ticks
/// (1, 2, 2.5 or 5 times a power of ten). A strategy without token counts has no point; its
/// name is listed in grey.
pub fn svg(report: &Report) -> String {
    let layout = layout(report);
    let Layout {
        width,
        height,
        plot,
        ..
    } = layout;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    for i in 0..=4 {
        let y = plot.top + f64::from(i) / 4.0 * (plot.bottom - plot.top);
        let _ = writeln!(
            out,
            r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/>"##,
            plot.left, plot.right
        );
    }
    let axis_max = layout.x_ticks.last().copied().unwrap_or(1.0);
    for &tokens in &layout.x_ticks {
        let x = plot.left + tokens / axis_max * (plot.right - plot.left);
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/><line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="black"/>"##,
            plot.top,
            plot.bottom,
            plot.bottom,
            plot.bottom + 4.0
        );
    }
    let _ = writeln!(
        out,
        r#"<line x1="{0:.1}" y1="{1:.1}" x2="{2:.1}" y2="{1:.1}" stroke="black"/><line x1="{0:.1}" y1="{3:.1}" x2="{0:.1}" y2="{1:.1}" stroke="black"/>"#,
        plot.left, plot.bottom, plot.right, plot.top
    );
    for text in &layout.texts {
        text.write(&mut out);
    }
    for m in &layout.markers {
        let _ = writeln!(
            out,
            r#"<line x1="{0:.1}" y1="{1:.1}" x2="{0:.1}" y2="{2:.1}" stroke="{3}" stroke-width="2" stroke-opacity="0.6"/>"#,
            m.x, m.low, m.high, m.colour
        );
    }
    for label in &layout.labels {
        if let Some([x1, y1, x2, y2]) = label.leader {
            let _ = writeln!(
                out,
                r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="{}" stroke-width="0.8" stroke-dasharray="3 2"/>"#,
                label.text.fill
            );
        }
    }
    for m in &layout.markers {
        let _ = writeln!(
            out,
            r#"<circle cx="{:.1}" cy="{:.1}" r="4.5" fill="{}" stroke="white" stroke-width="1"/>"#,
            m.x, m.y, m.colour
        );
    }
    for label in &layout.labels {
        label.text.write(&mut out);
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
#[path = "svg_tests.rs"]
mod tests;
