//! Draws a [`LiveState`]: the phase and its clock, the active faults, a block per monitor (its
//! latency sparkline, ok/failed counts and each expectation's running verdict), the message
//! line. A pure function of the state and the view's clock.

use std::time::Duration;

use chaosforge::engine::Phase;
use chaosforge::hypothesis::Verdict;
use chaosforge::units::format_duration_short;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Sparkline, SparklineBar};

use super::state::{LiveState, MonitorView};

/// Draws `s` at `now` (the view's clock) over the whole frame.
pub(crate) fn render(frame: &mut Frame<'_>, s: &LiveState, now: Duration) {
    let fault_rows = s.faults.len().max(1) as u16 + 2;
    let message_rows = s.messages.len() as u16;
    let [head, faults, monitors, messages] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(fault_rows),
        Constraint::Min(4),
        Constraint::Length(message_rows),
    ])
    .areas(frame.area());
    frame.render_widget(header(s, now), head);
    frame.render_widget(fault_list(s, now), faults);
    if !s.monitors.is_empty() {
        let areas = Layout::vertical(
            s.monitors
                .iter()
                .map(|_| Constraint::Ratio(1, s.monitors.len() as u32)),
        )
        .split(monitors);
        for (m, area) in s.monitors.iter().zip(areas.iter()) {
            monitor(frame, s, m, *area);
        }
    }
    let lines: Vec<Line<'_>> = s
        .messages
        .iter()
        .map(|m| Line::styled(format!("warning: {m}"), Style::new().fg(Color::Yellow)))
        .collect();
    frame.render_widget(Paragraph::new(lines), messages);
}

/// The phase, its elapsed and remaining time, and the keys.
fn header<'a>(s: &'a LiveState, now: Duration) -> Paragraph<'a> {
    let phase = match s.phase {
        None => Line::from("starting…"),
        Some((p, since, planned)) => {
            let elapsed = now.saturating_sub(since);
            let times = match planned {
                Some(total) => format!(
                    "{} / {}  ({} left)",
                    clock(elapsed),
                    clock(total),
                    clock(total.saturating_sub(elapsed))
                ),
                None => clock(elapsed),
            };
            Line::from(vec![
                Span::styled(
                    format!("phase {}", phase_name(p)),
                    Style::new().add_modifier(Modifier::BOLD),
                ),
                Span::raw(format!("  {times}  (run {})", clock(now))),
            ])
        }
    };
    let keys = if s.halting {
        Line::styled(
            "halting: reverting every fault…",
            Style::new().fg(Color::Yellow),
        )
    } else {
        Line::from("q / Ctrl-C: halt (revert every fault, exit 3)")
    };
    let title = match &s.run_id {
        Some(id) => format!(" chaosforge: {}  run {} ", s.experiment, short(id)),
        None => format!(" chaosforge: {} ", s.experiment),
    };
    Paragraph::new(vec![phase, keys]).block(Block::new().borders(Borders::TOP).title(title))
}

/// One line per active fault: name, kind, target, for how long.
fn fault_list<'a>(s: &'a LiveState, now: Duration) -> Paragraph<'a> {
    let lines: Vec<Line<'_>> = if s.faults.is_empty() {
        vec![Line::from("none active")]
    } else {
        s.faults
            .iter()
            .map(|f| {
                let since = clock(now.saturating_sub(f.since));
                match &f.revert_error {
                    None => Line::from(format!(
                        "{}  {}  on {}  for {since}",
                        f.name, f.kind, f.target
                    )),
                    Some(e) => Line::styled(
                        format!(
                            "{}  {}  on {}  REVERT FAILED: {e} (run `chaosforge recover`)",
                            f.name, f.kind, f.target
                        ),
                        Style::new().fg(Color::Red),
                    ),
                }
            })
            .collect()
    };
    Paragraph::new(lines).block(Block::bordered().title(" active faults "))
}

/// A monitor's block: counts in the title, the latency sparkline, the expectations.
fn monitor(frame: &mut Frame<'_>, s: &LiveState, m: &MonitorView, area: Rect) {
    let phase = s.phase.map(|(p, ..)| p);
    let title = format!(" {}  ok {}  failed {} ", m.name, m.ok, m.failed);
    let block = Block::bordered().title(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [spark, expect] =
        Layout::vertical([Constraint::Length(2.min(inner.height)), Constraint::Min(0)])
            .areas(inner);
    // The newest samples that fit, one column each; a failed sample is a red `×` (its latency
    // is a timeout or a refusal, not the service's).
    let width = usize::from(spark.width);
    let skip = m.recent.len().saturating_sub(width);
    let bars: Vec<SparklineBar> = m
        .recent
        .iter()
        .skip(skip)
        .map(|(_, x)| {
            if x.ok {
                SparklineBar::from(Some(x.latency.as_micros() as u64))
            } else {
                SparklineBar::from(None)
            }
        })
        .collect();
    frame.render_widget(
        Sparkline::default()
            .data(bars)
            .style(Style::new().fg(Color::Cyan))
            .absent_value_symbol("×")
            .absent_value_style(Style::new().fg(Color::Red)),
        spark,
    );
    let window = format_duration_short(m.window(s.window));
    let lines: Vec<Line<'_>> = m
        .expect
        .iter()
        .zip(m.verdicts(phase, s.window))
        .map(|(e, v)| {
            let (word, style) = match v {
                Verdict::Holds { .. } => ("holds", Style::new().fg(Color::Green)),
                Verdict::Violated { .. } => (
                    "VIOLATED",
                    Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
                ),
                Verdict::NoData => ("no data", Style::new().fg(Color::DarkGray)),
            };
            let observed = match v {
                Verdict::Holds { observed } | Verdict::Violated { observed } => {
                    format!(" (observed {})", e.metric.format_value(observed))
                }
                Verdict::NoData => String::new(),
            };
            Line::from(vec![
                Span::styled(format!("{word:<8}"), style),
                Span::raw(format!(" {}{observed}  over the last {window}", e.text)),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), expect);
}

/// A clock reading to a tenth of a second: `12.3s`, `2m05.0s`.
fn clock(d: Duration) -> String {
    let tenths = d.as_millis() / 100;
    let (m, s, t) = (tenths / 600, tenths / 10 % 60, tenths % 10);
    if m > 0 {
        format!("{m}m{s:02}.{t}s")
    } else {
        format!("{s}.{t}s")
    }
}

fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Validate => "validate",
        Phase::Baseline => "baseline",
        Phase::Inject => "inject",
        Phase::Observe => "observe",
        Phase::Recover => "recover",
    }
}

/// The start of a run id, as `chaosforge runs` shows it.
fn short(id: &str) -> &str {
    id.get(..13).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chaosforge::engine::{Phase, Progress};
    use chaosforge::journal::{FaultId, RunId};
    use chaosforge::probe::Sample;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::super::state::LiveState;

    fn state() -> LiveState {
        let text = r#"apiVersion: chaosforge/v1
name: shop
targets: [{ name: pay, proxy: { listen: "127.0.0.1:0", upstream: "127.0.0.1:9" } }]
hypothesis:
  monitors: [{ name: api, tcp: { address: "127.0.0.1:9", interval: 100ms }, expect: ["availability >= 90%", "latency.p99 < 300ms"] }]
faults: [{ name: slow, latency: { delay: 200ms }, target: { select: { name: pay } } }]
phases: { baseline: 1s, inject: 30s, recover_within: 5s }
"#;
        let doc = chaosforge::source::Document::parse("t.yaml", text).unwrap();
        let spec = chaosforge::de::decode(&doc).unwrap();
        LiveState::new(&chaosforge::plan::compile(&doc, &spec, Some(1)).unwrap())
    }

    fn sample(at_ms: u64, ok: bool, latency_ms: u64) -> Progress {
        let s = Sample {
            at: Duration::from_millis(at_ms),
            latency: Duration::from_millis(latency_ms),
            ok,
            status: None,
            error: None,
            value: None,
            resource: None,
        };
        Progress::Sample {
            monitor: "api".into(),
            phase: Phase::Observe,
            ok,
            latency: s.latency,
            sample: s,
        }
    }

    fn screen(s: &LiveState, now: Duration) -> String {
        let mut t = Terminal::new(TestBackend::new(90, 20)).unwrap();
        t.draw(|f| super::render(f, s, now)).unwrap();
        let buf = t.backend().buffer().clone();
        (0..buf.area.height)
            .map(|y| {
                (0..buf.area.width)
                    .map(|x| buf[(x, y)].symbol().to_string())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_view_shows_phase_clock_faults_counts_sparkline_and_verdicts() {
        let mut s = state();
        let ms = Duration::from_millis;
        s.update(
            &Progress::Started {
                run_id: RunId("01a24f9e-5ee6-7000-8000-000000000000".into()),
                experiment: "shop".into(),
            },
            ms(0),
        );
        s.update(
            &Progress::Phase {
                phase: Phase::Observe,
                planned: Some(Duration::from_secs(30)),
            },
            ms(2_000),
        );
        s.update(
            &Progress::Injected {
                id: FaultId(0),
                name: "slow".into(),
                target: "pay".into(),
                kind: "latency".into(),
            },
            ms(2_000),
        );
        // Ten samples in the window: 8 fast, then 2 failures → 80% availability.
        for i in 0..8 {
            s.update(&sample(2_000 + i * 100, true, 5 + i), ms(2_000 + i * 100));
        }
        s.update(&sample(2_800, false, 50), ms(2_850));
        s.update(&sample(2_900, false, 50), ms(2_950));
        let text = screen(&s, ms(14_500));
        assert!(text.contains("run 01a24f9e-5ee6"), "{text}");
        assert!(
            text.contains("phase observe  12.5s / 30.0s  (17.5s left)"),
            "{text}"
        );
        assert!(text.contains("slow  latency  on pay  for 12.5s"), "{text}");
        assert!(text.contains("api  ok 8  failed 2"), "{text}");
        assert!(
            text.contains("VIOLATED availability >= 90% (observed 80.0%)"),
            "{text}"
        );
        assert!(
            text.contains("holds    latency.p99 < 300ms (observed 12ms)"),
            "{text}"
        );
        // The two failures are the last two columns of the sparkline.
        assert!(text.contains("××"), "{text}");

        s.update(
            &Progress::Reverted {
                id: FaultId(0),
                name: "slow".into(),
                target: "pay".into(),
                error: None,
            },
            ms(15_000),
        );
        let text = screen(&s, ms(15_000));
        assert!(text.contains("none active"), "{text}");
    }
}
