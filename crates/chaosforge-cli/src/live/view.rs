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
