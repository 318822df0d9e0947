//! `chaosforge run --live` through a real pseudo-terminal (tmux): the view shows the run, `q`
//! halts it (exit 3) and the fault is reverted; without a terminal the progress lines stay.

use std::process::Command;
use std::time::Duration;

use crate::support::{Dir, EchoServer, Victim, chaosforge, pause_experiment, wait_for};

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn q_in_the_live_view_halts_the_run_and_reverts_the_fault() {
    let (victim, up, dir) = (Victim::start(), EchoServer::start(), Dir::new());
    let exp = dir.write("live.yaml", &pause_experiment(&victim, &up));
    let session = format!("cflive{}", std::process::id());
    let exit = dir.path().join("exit");
    let bin = assert_cmd::cargo::cargo_bin!("chaosforge");
    let cmd = format!(
        "{} run --live {} --state-dir {}; echo $? > {}",
        bin.display(),
        exp.display(),
        dir.state().display(),
        exit.display()
    );
    let _ = Command::new("tmux")
        .args([
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            &session,
            "-x",
            "100",
            "-y",
            "30",
            &cmd,
        ])
        .status()
        .unwrap();
    struct Kill(String);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = Command::new("tmux")
                .args(["kill-session", "-t", &self.0])
                .status();
        }
    }
    let _kill = Kill(session.clone());
    // The view shows the fault held; the victim is stopped meanwhile.
    assert!(
        wait_for(Duration::from_secs(20), || {
            tmux(&["capture-pane", "-p", "-t", &session]).contains("freeze  pause  on victim")
        }),
        "{}",
        tmux(&["capture-pane", "-p", "-t", &session])
    );
    let screen = tmux(&["capture-pane", "-p", "-t", &session]);
    assert!(screen.contains("phase observe"), "{screen}");
    assert!(screen.contains("availability >= 90%"), "{screen}");
    assert_eq!(victim.state(), 'T');
    tmux(&["send-keys", "-t", &session, "q"]);
    assert!(wait_for(Duration::from_secs(20), || exit.exists()
        && std::fs::read_to_string(&exit).is_ok_and(|s| !s.is_empty())));
    assert_eq!(std::fs::read_to_string(&exit).unwrap().trim(), "3");
    assert_ne!(victim.state(), 'T', "the pause was not reverted");
    let journal = std::fs::read_to_string(&dir.journals()[0]).unwrap();
    assert!(journal.contains("q in the live view"), "{journal}");
}

#[test]
fn without_a_terminal_live_falls_back_to_progress_lines() {
    let (victim, up, dir) = (Victim::start(), EchoServer::start(), Dir::new());
    let exp = dir.write(
        "live.yaml",
        &pause_experiment(&victim, &up).replace("inject: 60s", "inject: 300ms"),
    );
    let out = chaosforge()
        .args(["run", "--live"])
        .arg(&exp)
        .arg("--state-dir")
        .arg(dir.state())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("--live needs a terminal"), "{stderr}");
    assert!(
        stderr.contains("injected freeze (pause) on victim"),
        "{stderr}"
    );
}
