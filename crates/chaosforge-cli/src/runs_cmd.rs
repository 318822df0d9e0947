//! `chaosforge runs` (the runs under the state directory, newest last) and finding a run by a
//! prefix of its id for `chaosforge report`.
//!
//! Run ids are UUIDv7, whose first eight characters only change about every 65 seconds, so a
//! short id is the shortest prefix of at least eight characters that no other run shares.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use anyhow::Context;
use chaosforge::journal::{self, Event};

/// The fewest characters a short id has.
const SHORT_ID: usize = 8;

/// What `runs` says about one run.
struct RunLine {
    id: String,
    started: String,
    experiment: String,
    outcome: String,
}

/// Prints one line per run: short id, start time (UTC), experiment, outcome.
pub(crate) fn list(state_dir: &Path) -> anyhow::Result<u8> {
    let runs = journal::runs(state_dir)?;
    if runs.is_empty() {
        println!("no runs under {}", state_dir.display());
        return Ok(0);
    }
    let ids: Vec<&str> = runs.iter().map(|r| r.id.0.as_str()).collect();
    let lines: Vec<RunLine> = runs
        .iter()
        .map(|r| summarize(&r.id.0, &r.dir.join("journal.jsonl")))
        .collect();
    let width = ids
        .iter()
        .map(|id| short_id(id, &ids).len())
        .max()
        .unwrap_or(SHORT_ID);
    let exp_width = lines
        .iter()
        .map(|l| l.experiment.len())
        .max()
        .unwrap_or(0)
        .max("EXPERIMENT".len());
    println!(
        "{:width$}  {:20}  {:exp_width$}  OUTCOME",
        "ID", "STARTED (UTC)", "EXPERIMENT"
    );
    for l in &lines {
        println!(
            "{:width$}  {:20}  {:exp_width$}  {}",
            short_id(&l.id, &ids),
            l.started,
            l.experiment,
            l.outcome
        );
    }
    Ok(0)
}

/// The journal of the run whose id starts with `prefix` under `state_dir`; an ambiguous prefix
/// is an error that lists the candidates.
pub(crate) fn journal_by_prefix(state_dir: &Path, prefix: &str) -> anyhow::Result<PathBuf> {
    let runs = journal::runs(state_dir)?;
    if let Some(r) = runs.iter().find(|r| r.id.0 == prefix) {
        return Ok(r.dir.join("journal.jsonl"));
    }
    let found: Vec<_> = if prefix.is_empty() {
        Vec::new()
    } else {
        runs.iter().filter(|r| r.id.0.starts_with(prefix)).collect()
    };
    match found.as_slice() {
        [one] => Ok(one.dir.join("journal.jsonl")),
        [] => anyhow::bail!(
            "no journal file `{prefix}` and no run whose id starts with it in {} (see `chaosforge runs`)",
            state_dir.display()
        ),
        many => {
            let list: Vec<String> = many
                .iter()
                .map(|r| {
                    let l = summarize(&r.id.0, &r.dir.join("journal.jsonl"));
                    format!("  {} {} {} {}", l.id, l.started, l.experiment, l.outcome)
                })
                .collect();
            anyhow::bail!(
                "`{prefix}` is the start of {} run ids; give more of it:\n{}",
                many.len(),
                list.join("\n")
            )
        }
    }
}

/// The shortest prefix of `id`, at least [`SHORT_ID`] characters, that no other id shares.
fn short_id<'a>(id: &'a str, all: &[&str]) -> &'a str {
    let mut len = SHORT_ID.min(id.len());
    while len < id.len()
        && all
            .iter()
            .any(|other| *other != id && other.starts_with(&id[..len]))
    {
        len += 1;
    }
    // Ids are ASCII (UUIDs), but a directory someone made by hand may not be.
    id.get(..len).unwrap_or(id)
}

/// Reads the first line (the start) and the last line (the end, if the run finished) only: a
/// journal holds every sample, and a listing should not read them all.
fn summarize(id: &str, journal: &Path) -> RunLine {
    let mut line = RunLine {
        id: id.to_string(),
        started: "?".into(),
        experiment: "?".into(),
        outcome: "unreadable journal".into(),
    };
    let Ok(file) = std::fs::File::open(journal) else {
        return line;
    };
    let mut first = None;
    let mut last = None;
    for l in BufReader::new(file).lines().map_while(Result::ok) {
        if l.trim().is_empty() {
            continue;
        }
        if first.is_none() {
            first = Some(l.clone());
        }
        last = Some(l);
    }
    if let Some(Ok(Event::RunStarted {
        started_at, plan, ..
    })) = first.as_deref().map(serde_json::from_str::<Event>)
    {
        line.started = format!("{started_at:.0}");
        line.experiment = plan.name;
        // A journal without `run_finished` is a run still going or one that died; `recover`
        // tells them apart.
        line.outcome = "unfinished".into();
    }
    if let Some(Ok(Event::RunFinished { outcome, .. })) =
        last.as_deref().map(serde_json::from_str::<Event>)
    {
        line.outcome = crate::outcome_word(&outcome).to_string();
    }
    line
}

/// `report`'s argument: a journal file, a run id, or a unique prefix of one.
pub(crate) fn journal_path(
    run: &str,
    state_dir: anyhow::Result<PathBuf>,
) -> anyhow::Result<PathBuf> {
    let p = PathBuf::from(run);
    if p.is_file() {
        return Ok(p);
    }
    journal_by_prefix(&state_dir.context("finding the run")?, run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids_grow_until_unique() {
        let all = [
            "0190a1b2-c3d4-7000-8000-000000000001",
            "0190a1b2-c3d4-7000-8000-000000000002",
            "0190ffff-0000-7000-8000-000000000003",
        ];
        assert_eq!(short_id(all[2], &all), "0190ffff");
        assert_eq!(short_id(all[0], &all), all[0]);
        assert_eq!(short_id("abc", &["abc"]), "abc");
    }
}
