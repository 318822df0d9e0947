//! Time-series charts as inline SVG, written by hand.
//!
//! Why not plotters' SVG backend (DEPENDENCIES.md's pick): a report's chart must be testable and
//! styleable from outside — one `<g class="series" data-series="…">` per series, classes on the
//! shaded windows and the fault marks — and plotters writes anonymous elements with inline
//! styles only; without its font features it also guesses text widths. The chart here is a few
//! hundred lines, has no dependency and no floating-point formatting that varies: every
//! coordinate is written with one decimal, so the same data gives the same bytes.
//!
//! [`TimeChart`] is generic over what is plotted: a monitor's samples against seconds since the
//! run's start ([`super::html`]), or runs over time for a history page (an `x_format` that
//! prints dates).

use super::html::Markup;

/// Width and height of every chart, in SVG user units (the page scales it to its width).
const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 40.0;

/// A chart of one or more series over a shared x axis, with shaded windows and marked instants.
#[derive(Debug, Clone)]
pub struct TimeChart {
    /// Shown above the plot and as the SVG's accessible name.
    pub title: String,
    /// Under the x axis (`seconds since the start of the run`).
    pub x_label: String,
    /// Along the y axis (`latency (ms)`).
    pub y_label: String,
    /// How a tick on the x axis is printed.
    pub x_format: fn(f64) -> String,
    /// How a tick on the y axis is printed.
    pub y_format: fn(f64) -> String,
    /// Shaded spans of x, drawn under everything else.
    pub bands: Vec<Band>,
    /// Vertical lines at instants of x.
    pub marks: Vec<Mark>,
    /// The data; each becomes one `<g class="series">`.
    pub series: Vec<Series>,
}

/// A shaded span of the x axis (a phase of the run).
#[derive(Debug, Clone)]
pub struct Band {
    /// Start.
    pub from: f64,
    /// End.
    pub to: f64,
    /// Its colour and CSS class.
    pub kind: BandKind,
    /// Written at the top of the span.
    pub label: String,
}

/// What a [`Band`] stands for; each has its own colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BandKind {
    /// The steady state before any fault.
    Baseline,
    /// Faults active.
    Fault,
    /// After the faults were reverted.
    Recovery,
}

/// A vertical line at an instant (a fault injected or reverted).
#[derive(Debug, Clone)]
pub struct Mark {
    /// Where.
    pub at: f64,
    /// Its colour, dash and CSS class.
    pub kind: MarkKind,
    /// Shown as the line's tooltip.
    pub label: String,
}

/// What a [`Mark`] stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkKind {
    /// A fault took effect.
    Inject,
    /// A fault was reverted.
    Revert,
}

/// One series: a line through its points, a dot per good point and a cross per bad one.
#[derive(Debug, Clone)]
pub struct Series {
    /// Its name (`data-series`), as the legend shows it.
    pub name: String,
    /// The points, in x order.
    pub points: Vec<Point>,
}

/// One data point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Position on the x axis.
    pub x: f64,
    /// Position on the y axis.
    pub y: f64,
    /// Drawn as a dot if true, as a red cross if false (a failed sample, a refuted run).
    pub ok: bool,
}

// === impl TimeChart ===

impl TimeChart {
    /// The chart as an `<svg>` element; every text from the caller is escaped.
    pub fn render(&self) -> Markup {
        let (x0, x1) = self.x_range();
        let y1 = self.y_max();
        let plot_w = WIDTH - LEFT - RIGHT;
        let plot_h = HEIGHT - TOP - BOTTOM;
        let sx = |x: f64| LEFT + (x - x0) / (x1 - x0) * plot_w;
        let sy = |y: f64| TOP + plot_h - (y / y1) * plot_h;

        let mut m = Markup::new();
        m.raw("<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" viewBox=\"0 0 ")
            .num(WIDTH)
            .raw(" ")
            .num(HEIGHT)
            .raw("\" role=\"img\" aria-label=\"")
            .text(&self.title)
            .raw("\" font-family=\"system-ui, sans-serif\" font-size=\"12\">");
        m.raw("<title>").text(&self.title).raw("</title>");
        m.raw("<rect x=\"0\" y=\"0\" width=\"")
            .num(WIDTH)
            .raw("\" height=\"")
            .num(HEIGHT)
            .raw("\" fill=\"#ffffff\"/>");

        for b in &self.bands {
            let (a, z) = (sx(b.from.max(x0)), sx(b.to.min(x1)));
            if z <= a {
                continue;
            }
            let (class, fill) = match b.kind {
                BandKind::Baseline => ("band baseline", "#e8f1fb"),
                BandKind::Fault => ("band fault", "#fde8e4"),
                BandKind::Recovery => ("band recovery", "#e6f5ea"),
            };
            m.raw("<g class=\"").raw(class).raw("\"><rect x=\"").num(a);
            m.raw("\" y=\"").num(TOP).raw("\" width=\"").num(z - a);
            m.raw("\" height=\"")
                .num(plot_h)
                .raw("\" fill=\"")
                .raw(fill);
            m.raw("\"/><text x=\"")
                .num(a + 4.0)
                .raw("\" y=\"")
                .num(TOP + 14.0);
            m.raw("\" fill=\"#555\">").text(&b.label).raw("</text></g>");
        }

        // Grid and y ticks.
        for t in ticks(0.0, y1) {
            let y = sy(t);
            m.raw("<line class=\"grid\" x1=\"")
                .num(LEFT)
                .raw("\" x2=\"");
            m.num(WIDTH - RIGHT)
                .raw("\" y1=\"")
                .num(y)
                .raw("\" y2=\"")
                .num(y);
            m.raw("\" stroke=\"#d0d4da\" stroke-width=\"0.5\"/>");
            m.raw("<text x=\"")
                .num(LEFT - 6.0)
                .raw("\" y=\"")
                .num(y + 4.0);
            m.raw("\" text-anchor=\"end\" fill=\"#333\">")
                .text(&(self.y_format)(t))
                .raw("</text>");
        }
        for t in ticks(x0, x1) {
            let x = sx(t);
            m.raw("<line x1=\"")
                .num(x)
                .raw("\" x2=\"")
                .num(x)
                .raw("\" y1=\"");
            m.num(TOP + plot_h).raw("\" y2=\"").num(TOP + plot_h + 4.0);
            m.raw("\" stroke=\"#333\"/><text x=\"")
                .num(x)
                .raw("\" y=\"");
            m.num(TOP + plot_h + 17.0)
                .raw("\" text-anchor=\"middle\" fill=\"#333\">");
            m.text(&(self.x_format)(t)).raw("</text>");
        }
        // Axes.
        m.raw("<path class=\"axis\" d=\"M")
            .num(LEFT)
            .raw(" ")
            .num(TOP);
        m.raw(" V").num(TOP + plot_h).raw(" H").num(WIDTH - RIGHT);
        m.raw("\" fill=\"none\" stroke=\"#333\"/>");
        m.raw("<text x=\"")
            .num(LEFT + plot_w / 2.0)
            .raw("\" y=\"")
            .num(HEIGHT - 6.0);
        m.raw("\" text-anchor=\"middle\" fill=\"#333\">")
            .text(&self.x_label)
            .raw("</text>");
        m.raw("<text transform=\"translate(14 ")
            .num(TOP + plot_h / 2.0)
            .raw(") rotate(-90)\" text-anchor=\"middle\" fill=\"#333\">")
            .text(&self.y_label)
            .raw("</text>");

        for mk in &self.marks {
            if mk.at < x0 || mk.at > x1 {
                continue;
            }
            let (class, colour, dash) = match mk.kind {
                MarkKind::Inject => ("mark inject", "#c0392b", "6 3"),
                MarkKind::Revert => ("mark revert", "#1e8449", "2 3"),
            };
            let x = sx(mk.at);
            m.raw("<g class=\"")
                .raw(class)
                .raw("\"><title>")
                .text(&mk.label);
            m.raw("</title><line x1=\"").num(x).raw("\" x2=\"").num(x);
            m.raw("\" y1=\"").num(TOP).raw("\" y2=\"").num(TOP + plot_h);
            m.raw("\" stroke=\"")
                .raw(colour)
                .raw("\" stroke-width=\"1.5\" stroke-dasharray=\"");
            m.raw(dash).raw("\"/></g>");
        }

        for s in &self.series {
            m.raw("<g class=\"series\" data-series=\"")
                .text(&s.name)
                .raw("\">");
            if s.points.len() > 1 {
                m.raw("<polyline fill=\"none\" stroke=\"#2c5aa0\" stroke-width=\"1.2\" points=\"");
                for (i, p) in s.points.iter().enumerate() {
                    if i > 0 {
                        m.raw(" ");
                    }
                    m.num(sx(p.x)).raw(",").num(sy(p.y.min(y1)));
                }
                m.raw("\"/>");
            }
            // Good points as one path of tiny squares, bad ones as crosses: a path each keeps a
            // 600-sample chart a few kilobytes.
            m.raw("<path class=\"ok\" fill=\"#2c5aa0\" d=\"");
            for p in s.points.iter().filter(|p| p.ok) {
                m.raw("M")
                    .num(sx(p.x) - 1.5)
                    .raw(" ")
                    .num(sy(p.y.min(y1)) - 1.5);
                m.raw("h3v3h-3z");
            }
            m.raw("\"/><path class=\"failed\" stroke=\"#d62728\" stroke-width=\"2\" d=\"");
            for p in s.points.iter().filter(|p| !p.ok) {
                let (x, y) = (sx(p.x), sy(p.y.min(y1)));
                m.raw("M").num(x - 4.0).raw(" ").num(y - 4.0).raw("l8 8");
                m.raw("M").num(x - 4.0).raw(" ").num(y + 4.0).raw("l8 -8");
            }
            m.raw("\"/></g>");
        }

        self.legend(&mut m);
        m.raw("</svg>");
        m
    }

    fn legend(&self, m: &mut Markup) {
        m.raw("<text x=\"")
            .num(LEFT)
            .raw("\" y=\"20\" font-weight=\"600\" fill=\"#222\">");
        m.text(&self.title).raw("</text>");
        // Right-aligned entries, each a swatch and a word, laid out from the right edge.
        let mut x = WIDTH - RIGHT;
        let entries: [(&'static str, &'static str); 7] = [
            (
                "<path d=\"M0 -4l8 8M0 4l8 -8\" stroke=\"#d62728\" stroke-width=\"2\"/>",
                "failed",
            ),
            (
                "<rect x=\"2\" y=\"-2\" width=\"4\" height=\"4\" fill=\"#2c5aa0\"/>",
                "sample",
            ),
            (
                "<line x1=\"4\" x2=\"4\" y1=\"-7\" y2=\"7\" stroke=\"#1e8449\" stroke-width=\"1.5\" stroke-dasharray=\"2 3\"/>",
                "revert",
            ),
            (
                "<line x1=\"4\" x2=\"4\" y1=\"-7\" y2=\"7\" stroke=\"#c0392b\" stroke-width=\"1.5\" stroke-dasharray=\"6 3\"/>",
                "inject",
            ),
            (
                "<rect y=\"-6\" width=\"10\" height=\"12\" fill=\"#e6f5ea\" stroke=\"#aaa\" stroke-width=\"0.5\"/>",
                "recovery",
            ),
            (
                "<rect y=\"-6\" width=\"10\" height=\"12\" fill=\"#fde8e4\" stroke=\"#aaa\" stroke-width=\"0.5\"/>",
                "fault",
            ),
            (
                "<rect y=\"-6\" width=\"10\" height=\"12\" fill=\"#e8f1fb\" stroke=\"#aaa\" stroke-width=\"0.5\"/>",
                "baseline",
            ),
        ];
        // Only what the chart draws: a history chart has no windows and no fault marks.
        let band = |k: BandKind| self.bands.iter().any(|b| b.kind == k);
        let mark = |k: MarkKind| self.marks.iter().any(|x| x.kind == k);
        let shown = |word: &str| match word {
            "revert" => mark(MarkKind::Revert),
            "inject" => mark(MarkKind::Inject),
            "recovery" => band(BandKind::Recovery),
            "fault" => band(BandKind::Fault),
            "baseline" => band(BandKind::Baseline),
            _ => true,
        };
        m.raw("<g class=\"legend\">");
        for (swatch, word) in entries.into_iter().filter(|(_, w)| shown(w)) {
            // About 6.5 units a character at 12px; exactness does not matter for a gap.
            x -= word.len() as f64 * 7.0 + 26.0;
            m.raw("<g transform=\"translate(")
                .num(x)
                .raw(" 16)\">")
                .raw(swatch);
            m.raw("<text x=\"13\" y=\"4\" fill=\"#333\">")
                .raw(word)
                .raw("</text></g>");
        }
        m.raw("</g>");
    }

    /// The x range over bands, marks and points; never empty.
    fn x_range(&self) -> (f64, f64) {
        let xs = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.x))
            .chain(self.bands.iter().flat_map(|b| [b.from, b.to]))
            .chain(self.marks.iter().map(|m| m.at))
            .filter(|x| x.is_finite());
        let (lo, hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(x), hi.max(x))
        });
        if !lo.is_finite() {
            return (0.0, 1.0);
        }
        let lo = lo.min(0.0);
        if hi > lo { (lo, hi) } else { (lo, lo + 1.0) }
    }

    /// The top of the y axis: a little above the highest point, rounded to a tick.
    fn y_max(&self) -> f64 {
        let hi = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.y))
            .filter(|y| y.is_finite())
            .fold(0.0_f64, f64::max);
        if hi <= 0.0 {
            return 1.0;
        }
        let step = nice_step(hi * 1.1 / 5.0);
        (hi * 1.1 / step).ceil() * step
    }
}

/// About five round ticks (1, 2 or 5 times a power of ten) from `lo` to `hi`.
pub fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    if !lo.is_finite() || !hi.is_finite() || hi <= lo {
        return Vec::new();
    }
    let step = nice_step((hi - lo) / 5.0);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

fn nice_step(raw: f64) -> f64 {
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// A number with at most three decimals and no trailing zeros: `2`, `2.5`, `0.125`.
pub fn short_number(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(series: Vec<Series>) -> TimeChart {
        TimeChart {
            title: "t <b>".into(),
            x_label: "s".into(),
            y_label: "ms".into(),
            x_format: |x| format!("{}s", short_number(x)),
            y_format: short_number,
            bands: vec![Band {
                from: 0.0,
                to: 1.0,
                kind: BandKind::Fault,
                label: "fault".into(),
            }],
            marks: vec![Mark {
                at: 0.5,
                kind: MarkKind::Inject,
                label: "x".into(),
            }],
            series,
        }
    }

    #[test]
    fn one_group_per_series_and_text_is_escaped() {
        let p = |x, ok| Point { x, y: x * 2.0, ok };
        let svg = chart(vec![
            Series {
                name: "a\"><script>".into(),
                points: vec![p(0.0, true), p(1.0, false)],
            },
            Series {
                name: "b".into(),
                points: vec![p(0.5, true)],
            },
        ])
        .render()
        .into_string();
        assert_eq!(svg.matches("<g class=\"series\"").count(), 2);
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("data-series=\"a&quot;&gt;&lt;script&gt;\""));
        assert!(svg.contains("t &lt;b&gt;"));
        // One cross for the failed point, one in the legend.
        assert_eq!(svg.matches("l8 8").count(), 2);
    }

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 10.0), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(ticks(0.0, 0.3).len(), 4);
        assert!(ticks(1.0, 1.0).is_empty());
        assert_eq!(short_number(2.500), "2.5");
        assert_eq!(short_number(3.0), "3");
    }

    #[test]
    fn an_empty_chart_still_renders() {
        let svg = chart(Vec::new()).render().into_string();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    }
}
