//! Live progress on stderr: a bar per timed phase on a terminal, one line per event otherwise
//! (CI logs stay readable).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chaosforge::engine::{Phase, Progress};
use chaosforge::units::format_duration;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Clone)]
pub(crate) struct Ui {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    tty: bool,
    bar: Option<ProgressBar>,
    planned: Option<Duration>,
}

impl Ui {
    pub(crate) fn new(tty: bool) -> Self {
        Ui {
            inner: Arc::new(Mutex::new(Inner {
                tty,
                bar: None,
                planned: None,
            })),
        }
    }

    pub(crate) fn update(&self, p: &Progress) {
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match p {
            Progress::Phase { phase, planned } => {
                if let Some(b) = s.bar.take() {
                    b.finish_and_clear();
                }
                let label = match phase {
                    Phase::Validate => "validate",
                    Phase::Baseline => "baseline",
                    Phase::Inject => "inject",
                    Phase::Observe => "observe",
                    Phase::Recover => "recover",
                };
                let len = planned
                    .map(|d| format!(" ({})", format_duration(d)))
                    .unwrap_or_default();
                if s.tty {
                    let bar = match planned {
                        Some(d) => ProgressBar::new(d.as_millis() as u64),
                        None => ProgressBar::new_spinner(),
                    };
                    let style = ProgressStyle::with_template("{prefix:>9} [{bar:30}] {msg}")
                        .map(|st| st.progress_chars("=> "))
                        .unwrap_or_else(|_| ProgressStyle::default_bar());
                    bar.set_style(style);
                    bar.set_prefix(label);
                    bar.set_message(len.trim().to_string());
                    s.bar = Some(bar);
                } else {
                    eprintln!("▶ {label}{len}");
                }
                s.planned = *planned;
            }
            Progress::Injected {
                name, target, kind, ..
            } => {
                let line = format!("  injected {name} ({kind}) on {target}");
                s.println(&line);
            }
            Progress::Reverted {
                name,
                target,
                error,
                ..
            } => {
                let line = match error {
                    None => format!("  reverted {name} on {target}"),
                    Some(e) => format!("  FAILED to revert {name} on {target}: {e}"),
                };
                s.println(&line);
            }
            Progress::Tick {
                elapsed,
                samples,
                ok,
                ..
            } => {
                if let Some(b) = &s.bar {
                    if let Some(total) = s.planned {
                        b.set_position(elapsed.min(&total).as_millis() as u64);
                    } else {
                        b.tick();
                    }
                    b.set_message(format!("{} samples, {} ok", samples, ok));
                }
            }
            _ => {}
        }
    }

    pub(crate) fn finish(&self) {
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = s.bar.take() {
            b.finish_and_clear();
        }
    }
}

impl Inner {
    fn println(&self, line: &str) {
        match &self.bar {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
    }
}
