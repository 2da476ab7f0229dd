use std::collections::BTreeMap;

use super::*;
use crate::eval::report::BackendInfo;
use crate::eval::run::RunConfig;
use crate::eval::stats::Proportion;

const NAMES: [&str; 12] = [
    "baseline",
    "reread",
    "diverse_sampling",
    "best_of_n",
    "self_consistency",
    "mixture_of_agents",
    "cot_reflection",
    "plansearch",
    "leap",
    "rto",
    "repair",
    "codet",
];

fn summary(name: &str, passes: u64, trials: u64, tokens: Option<f64>) -> StrategySummary {
    StrategySummary {
        strategy: name.parse().unwrap(),
        pass: Proportion::wilson(passes, trials),
        pass_at_k: vec![],
        verdicts: BTreeMap::new(),
        latency_p50_ms: None,
        latency_p95_ms: None,
        ttft_p50_ms: None,
        mean_prompt_tokens: None,
        mean_completion_tokens: None,
        mean_total_tokens: tokens,
        mean_calls: None,
        mean_generation_tokens_per_s: None,
        passes_per_1k_tokens: None,
        tokens_vs_baseline: None,
        wall_vs_baseline: None,
        vs_baseline: None,
    }
}

impl Rect {
    /// Whether the two boxes share any area (touching edges do not count).
    fn intersects(&self, other: &Rect) -> bool {
        self.left < other.right
            && other.left < self.right
            && self.top < other.bottom
            && other.top < self.bottom
    }

    fn within(&self, width: f64, height: f64) -> bool {
        self.left >= 0.0 && self.top >= 0.0 && self.right <= width && self.bottom <= height
    }
}

fn report(strategies: Vec<StrategySummary>) -> Report {
    Report {
        schema_version: crate::eval::report::SCHEMA_VERSION,
        mars_version: "test".into(),
        backend: BackendInfo {
            kind: "scripted".into(),
            model: "qwen2.5-coder-0.5b".into(),
            reason: "test".into(),
        },
        config: RunConfig::default(),
        tasks: vec![],
        examples: Default::default(),
        isolation: "none".into(),
        strategies,
        cells: vec![],
        recommendations: vec![],
        samples: vec![],
    }
}

/// Every text (title, axis titles, tick labels, strategy labels) lies inside the canvas, and no
/// two share any area.
fn assert_readable(layout: &Layout) {
    let boxes: Vec<(&str, Rect)> = layout
        .texts
        .iter()
        .chain(layout.labels.iter().map(|l| &l.text))
        .map(|t| (t.content.as_str(), t.bounds()))
        .collect();
    for (name, b) in &boxes {
        assert!(
            b.within(layout.width, layout.height),
            "{name:?} at {b:?} leaves the {}x{} canvas",
            layout.width,
            layout.height
        );
    }
    for (i, (a, ra)) in boxes.iter().enumerate() {
        for (b, rb) in &boxes[i + 1..] {
            assert!(!ra.intersects(rb), "{a:?} {ra:?} overlaps {b:?} {rb:?}");
        }
    }
}

/// The step between ticks is 1, 2, 2.5 or 5 times a power of ten, every tick a multiple of it.
fn assert_nice(ticks: &[f64]) {
    assert!(ticks.len() >= 2, "{ticks:?}");
    assert_eq!(ticks[0], 0.0, "{ticks:?}");
    let step = ticks[1];
    let mut power = 1.0;
    while power * 10.0 <= step {
        power *= 10.0;
    }
    assert!(
        [1.0, 2.0, 2.5, 5.0].contains(&(step / power)),
        "step {step} of {ticks:?} is not nice"
    );
    for (k, tick) in ticks.iter().enumerate() {
        assert_eq!(*tick, k as f64 * step, "{ticks:?}");
        assert_eq!(tick.fract(), 0.0, "{ticks:?}");
    }
}

#[test]
fn ticks_fall_on_round_numbers() {
    let cases: [(f64, &[f64]); 7] = [
        (569.0, &[0.0, 100.0, 200.0, 300.0, 400.0, 500.0, 600.0]),
        (285.0, &[0.0, 50.0, 100.0, 150.0, 200.0, 250.0, 300.0]),
        (1400.0, &[0.0, 250.0, 500.0, 750.0, 1000.0, 1250.0, 1500.0]),
        (600.0, &[0.0, 100.0, 200.0, 300.0, 400.0, 500.0, 600.0]),
        (3.0, &[0.0, 1.0, 2.0, 3.0]),
        (1.0, &[0.0, 1.0]),
        (0.0, &[0.0, 1.0]),
    ];
    for (max, expected) in cases {
        assert_eq!(x_ticks(max), expected, "max {max}");
    }
    for max in [
        0.4,
        7.0,
        13.0,
        99.0,
        101.0,
        999.0,
        1001.0,
        4321.0,
        65_432.0,
        1_000_001.0,
        2.5e9,
    ] {
        let ticks = x_ticks(max);
        assert_nice(&ticks);
        let last = ticks[ticks.len() - 1];
        assert!(
            last >= max && last - ticks[1] < max.max(1.0),
            "{max}: {ticks:?}"
        );
        assert!(ticks.len() <= 7, "{max}: {ticks:?}");
    }
}

#[test]
fn tick_labels_group_thousands() {
    assert_eq!(thousands(0.0), "0");
    assert_eq!(thousands(750.0), "750");
    assert_eq!(thousands(1500.0), "1,500");
    assert_eq!(thousands(125_000.0), "125,000");
    assert_eq!(thousands(1_234_567.0), "1,234,567");
}

#[test]
fn spread_keeps_order_gap_and_bounds() {
    // Apart already: untouched.
    assert_eq!(spread(&[10.0, 50.0], 17.0, 0.0, 100.0), [10.0, 50.0]);
    // Three at one place: centred on it, a gap apart.
    assert_eq!(spread(&[50.0; 3], 10.0, 0.0, 100.0), [40.0, 50.0, 60.0]);
    // Pushed into the bounds at either end.
    assert_eq!(spread(&[0.0; 3], 10.0, 0.0, 100.0), [0.0, 10.0, 20.0]);
    assert_eq!(spread(&[100.0; 3], 10.0, 0.0, 100.0), [80.0, 90.0, 100.0]);
    // A group that grows into the one above merges with it.
    assert_eq!(
        spread(&[20.0, 35.0, 40.0, 40.0], 10.0, 0.0, 100.0),
        [18.75, 28.75, 38.75, 48.75]
    );
    // Exactly full.
    assert_eq!(
        spread(&[5.0, 5.0, 95.0, 95.0, 95.0], 25.0, 0.0, 100.0),
        [0.0, 25.0, 50.0, 75.0, 100.0]
    );
}

#[test]
fn twelve_strategies_at_one_point_get_twelve_separate_labels() {
    let strategies = NAMES
        .iter()
        .map(|n| summary(n, 5, 10, Some(569.0)))
        .collect();
    let layout = layout(&report(strategies));
    assert_readable(&layout);
    assert_eq!(
        layout.x_ticks,
        [0.0, 100.0, 200.0, 300.0, 400.0, 500.0, 600.0]
    );
    assert_eq!(layout.labels.len(), 12);
    assert_eq!(layout.markers.len(), 12);
    // Every label is joined to the one point, and its colour is its own.
    let point = (layout.markers[0].x, layout.markers[0].y);
    let mut colours: Vec<&str> = layout.labels.iter().map(|l| l.text.fill).collect();
    for label in &layout.labels {
        let [x1, y1, x2, _] = label.leader.unwrap();
        assert_eq!((x1, y1), point);
        assert!(x2 < label.text.x);
    }
    colours.sort_unstable();
    colours.dedup();
    assert_eq!(colours.len(), 12);
}

#[test]
fn points_packed_into_corners_keep_their_labels_apart_and_in_order() {
    // Twelve points crowded at the top right and twelve at the bottom left.
    let mut strategies = Vec::new();
    for (i, name) in NAMES.iter().enumerate() {
        let i = i as u64;
        strategies.push(summary(name, 100 - i % 2, 100, Some(1_000.0 + i as f64)));
        let pipeline = format!("reread&{}", NAMES[(i as usize + 1) % NAMES.len()]);
        strategies.push(summary(&pipeline, i % 2, 100, Some(i as f64 * 0.5)));
    }
    let layout = layout(&report(strategies));
    assert_readable(&layout);
    assert_eq!(layout.labels.len(), 24);
    assert!(layout.height > 400.0, "{}", layout.height);
    assert_nice(&layout.x_ticks);
    // The labels keep the vertical order of their points.
    let leaders: Vec<[f64; 4]> = layout.labels.iter().map(|l| l.leader.unwrap()).collect();
    for pair in leaders.windows(2) {
        assert!(pair[0][1] <= pair[1][1], "{pair:?}");
        assert!(pair[0][3] < pair[1][3], "{pair:?}");
    }
}

#[test]
fn one_strategy_is_labelled_level_with_its_point() {
    let layout = layout(&report(vec![summary("baseline", 7, 10, Some(285.0))]));
    assert_readable(&layout);
    assert_eq!(
        layout.x_ticks,
        [0.0, 50.0, 100.0, 150.0, 200.0, 250.0, 300.0]
    );
    let [_, y1, _, y2] = layout.labels[0].leader.unwrap();
    assert_eq!(y1, y2);
    assert_eq!((layout.width, layout.height), (680.0, 400.0));
}

#[test]
fn a_strategy_without_tokens_is_listed_but_not_plotted() {
    let mixed = layout(&report(vec![
        summary("baseline", 0, 10, Some(120.0)),
        summary("reread", 3, 10, None),
    ]));
    assert_readable(&mixed);
    assert_eq!(mixed.markers.len(), 1);
    let unplotted = &mixed.labels[1].text;
    assert_eq!(unplotted.content, "reread (no token counts)");
    assert_eq!(mixed.labels[1].leader, None);
    assert_eq!(mixed.x_ticks[mixed.x_ticks.len() - 1], 120.0);

    let none = layout(&report(vec![summary("baseline", 0, 0, None)]));
    assert_readable(&none);
    assert_eq!(none.x_ticks, [0.0, 1.0]);
    assert!(none.markers.is_empty());
}

#[test]
fn the_svg_draws_the_layout_with_names_escaped() {
    let mut report = report(vec![
        summary("reread&best_of_n_verifier", 9, 10, Some(2_400.0)),
        summary("baseline", 5, 10, Some(800.0)),
    ]);
    report.backend.model = "a<b>&c".into();
    let svg = svg(&report);
    let layout = layout(&report);
    assert_readable(&layout);
    assert!(
        svg.contains(">reread&amp;best_of_n_verifier</text>"),
        "{svg}"
    );
    assert!(svg.contains("(a&lt;b&gt;&amp;c)</text>"), "{svg}");
    assert!(!svg.contains("<b>"));
    // Every label stands where the layout put it; ticks print with thousands grouped.
    for label in &layout.labels {
        let t = &label.text;
        let at = format!(r#"<text x="{:.1}" y="{:.1}""#, t.x, t.y);
        assert!(svg.contains(&at), "{at} missing from {svg}");
    }
    assert!(svg.contains(">2,500</text>"), "{svg}");
    assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>\n"));
    assert_eq!(svg, super::svg(&report));
}
