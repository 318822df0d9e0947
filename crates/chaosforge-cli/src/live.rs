//! `chaosforge run --live`: a terminal view of the run (ratatui, on stdout's terminal) fed by
//! the engine's [`Progress`]; `q` or Ctrl-C halts the run as SIGINT does (every fault reverted,
//! exit 3).
//!
//! The terminal is restored on every path: at the end of the run, when the view is dropped (an
//! error), on a panic (ratatui's hook), and before the forced exit of a second signal
//! ([`restore_if_active`]). In raw mode the terminal sends no SIGINT for Ctrl-C; it arrives as a
//! key, and is read as `q`.
//!
//! - `state`: what is shown, kept from the events (pure).
//! - `view`: drawing a state (pure; tested with ratatui's `TestBackend`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chaosforge::engine::Progress;
use chaosforge::plan::Plan;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use tokio::time::Instant;

mod state;
mod view;

use state::LiveState;

/// Whether the terminal is in the view's raw, alternate-screen mode right now.
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// A running view. [`Live::finish`] (or dropping it) closes it and restores the terminal.
/// Shared by the engine's progress callback and the run, hence `&self` everywhere.
pub(crate) struct Live {
    state: Arc<Mutex<LiveState>>,
    started: Instant,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Warnings shown while the view was up, printed again once it is gone.
    warnings: Arc<Mutex<Vec<String>>>,
}

/// How often the screen is redrawn (and keys looked for) when nothing happens.
const FRAME: Duration = Duration::from_millis(100);

// === impl Live ===

impl Live {
    /// Takes over the terminal and draws `plan`'s run until [`Live::finish`]. `halt` is called
    /// once when the user presses `q` or Ctrl-C.
    pub(crate) fn start(plan: &Plan, halt: impl Fn() + Send + 'static) -> std::io::Result<Live> {
        let mut terminal = ratatui::try_init()?;
        ACTIVE.store(true, Ordering::SeqCst);
        let state = Arc::new(Mutex::new(LiveState::new(plan)));
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::Builder::new()
                .name("live-view".into())
                .spawn(move || {
                    let mut halted = false;
                    while !stop.load(Ordering::SeqCst) {
                        let now = started.elapsed();
                        {
                            let s = state.lock().unwrap_or_else(|e| e.into_inner());
                            // A draw error (a closed terminal) ends nothing: the run goes on,
                            // and SIGHUP halts it.
                            let _ = terminal.draw(|f| view::render(f, &s, now));
                        }
                        let Ok(true) = event::poll(FRAME) else {
                            continue;
                        };
                        let Ok(Event::Key(k)) = event::read() else {
                            continue;
                        };
                        let quit = k.kind != KeyEventKind::Release
                            && (matches!(k.code, KeyCode::Char('q') | KeyCode::Char('Q'))
                                || (k.code == KeyCode::Char('c')
                                    && k.modifiers.contains(KeyModifiers::CONTROL)));
                        if quit && !halted {
                            halted = true;
                            state.lock().unwrap_or_else(|e| e.into_inner()).halting = true;
                            halt();
                        }
                    }
                    restore_if_active();
                })?
        };
        Ok(Live {
            state,
            started,
            stop,
            thread: Mutex::new(Some(thread)),
            warnings: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// Applies one engine event (on the engine's task: only a short lock).
    pub(crate) fn update(&self, p: &Progress) {
        let now = self.started.elapsed();
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .update(p, now);
    }

    /// A warning callback for the webhooks: shown on the message line, printed after.
    pub(crate) fn warner(&self) -> chaosforge::notify::WarnFn {
        let (state, warnings) = (self.state.clone(), self.warnings.clone());
        Arc::new(move |w: String| {
            state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .warn(w.clone());
            warnings.lock().unwrap_or_else(|e| e.into_inner()).push(w);
        })
    }

    /// Closes the view, restores the terminal, and prints the warnings it showed.
    pub(crate) fn finish(&self) {
        self.close();
        for w in self
            .warnings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            eprintln!("warning: {w}");
        }
    }

    fn close(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
        restore_if_active();
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.close();
    }
}

/// `--live` for one run: the view on stdout's terminal, and the halt flag the run must watch —
/// `shutdown` (signals) or `q`, whichever comes first. Without a terminal (or when it cannot be
/// taken over), no view, a note on stderr, and `shutdown` as it was: the run shows its usual
/// progress lines.
pub(crate) fn open(
    plan: &Plan,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> (Option<Arc<Live>>, tokio::sync::watch::Receiver<bool>) {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        eprintln!("note: --live needs a terminal on stdout; showing progress lines instead");
        return (None, shutdown);
    }
    let (tx, rx) = tokio::sync::watch::channel(*shutdown.borrow());
    let tx = Arc::new(tx);
    let forward = tx.clone();
    let mut signals = shutdown.clone();
    tokio::spawn(async move {
        while signals.changed().await.is_ok() {
            if *signals.borrow_and_update() {
                let _ = forward.send(true);
                return;
            }
        }
    });
    let halt = move || {
        // The run's journal and report say what halted it, as they name a signal.
        chaosforge::engine::note_halt_signal("q in the live view");
        let _ = tx.send(true);
    };
    match Live::start(plan, halt) {
        Ok(l) => (Some(Arc::new(l)), rx),
        Err(e) => {
            // It may have failed half-way (raw mode on, no alternate screen).
            ratatui::restore();
            eprintln!(
                "note: --live cannot use this terminal ({e}); showing progress lines instead"
            );
            (None, shutdown)
        }
    }
}

/// Leaves raw mode and the alternate screen if the view holds the terminal: for the forced
/// exit of a second signal, which skips every destructor.
pub(crate) fn restore_if_active() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        ratatui::restore();
        // The view hid it; `restore` leaves that to the terminal's drop, which is skipped here.
        let _ = ratatui::crossterm::execute!(std::io::stdout(), ratatui::crossterm::cursor::Show);
    }
}
