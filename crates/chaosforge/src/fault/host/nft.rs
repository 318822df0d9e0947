//! nftables, one table per fault.
//!
//! Every host fault that filters packets owns a table of family `inet` named `chaosforge_…`,
//! holding all of its chains and rules. Applying it is one `nft -f -` transaction (all or
//! nothing), and undoing it is one `delete table`, whatever the fault did: nothing outside the
//! table is ever touched, and a table left by a crash is found by its prefix.

use super::exec::{ExecError, Executor};

/// The prefix of every table chaosforge creates.
pub const TABLE_PREFIX: &str = "chaosforge_";

/// A valid table name from anything unique per fault (a run id and a fault id, say): the
/// prefix, then `unique` lowercased with every character other than `a-z`, `0-9` and `_`
/// replaced by `_`, so that the name is an nft identifier that needs no quoting.
pub fn table_name(unique: &str) -> String {
    let tail: String = unique
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{TABLE_PREFIX}{tail}")
}

/// `true` for a name [`table_name`] could have made: the prefix, then at least one of `a-z`,
/// `0-9`, `_`. Anything else is refused by [`delete_table`], so that a damaged journal can never
/// delete someone else's table, and by the rulesets, so that a name can never inject rules.
pub fn is_chaosforge_table(name: &str) -> bool {
    name.strip_prefix(TABLE_PREFIX).is_some_and(|tail| {
        !tail.is_empty()
            && tail
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    })
}

/// Loads `ruleset` with `nft -f -` in `netns`: one transaction, applied whole or not at all.
pub async fn apply_table(
    exec: &dyn Executor,
    netns: Option<&str>,
    ruleset: &str,
) -> Result<(), ExecError> {
    exec.run(netns, "nft", &["-f", "-"], Some(ruleset)).await?;
    Ok(())
}

/// Deletes table `inet TABLE` in `netns`. Idempotent: `Ok(false)` when the table (or the whole
/// namespace, and with it every rule in it) does not exist. Refuses names that are not
/// chaosforge's ([`is_chaosforge_table`]).
pub async fn delete_table(
    exec: &dyn Executor,
    netns: Option<&str>,
    table: &str,
) -> Result<bool, ExecError> {
    check_table(table)?;
    match exec
        .run(netns, "nft", &["delete", "table", "inet", table], None)
        .await
    {
        Ok(_) => Ok(true),
        // nft: "Could not process rule: No such file or directory";
        // ip: "Cannot open network namespace "NS": No such file or directory".
        // Both run with LC_ALL=C.
        Err(ExecError::Failed { stderr, .. }) if stderr.contains("No such file or directory") => {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Deletes table `TABLE` of each of `families` in `netns`; idempotent like [`delete_table`].
/// Returns how many existed.
pub async fn delete_tables(
    exec: &dyn Executor,
    netns: Option<&str>,
    table: &str,
    families: &[&str],
) -> Result<usize, ExecError> {
    check_table(table)?;
    let mut n = 0;
    for family in families {
        if !matches!(*family, "inet" | "ip" | "ip6") {
            return Err(ExecError::Refused {
                value: family.to_string(),
                reason: "not an nft family chaosforge uses".into(),
            });
        }
        match exec
            .run(netns, "nft", &["delete", "table", family, table], None)
            .await
        {
            Ok(_) => n += 1,
            Err(ExecError::Failed { stderr, .. })
                if stderr.contains("No such file or directory") => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The names of the chaosforge tables (any family) in `netns`, sorted: what a residue check
/// expects to be empty.
pub async fn chaosforge_tables(
    exec: &dyn Executor,
    netns: Option<&str>,
) -> Result<Vec<String>, ExecError> {
    let out = exec.run(netns, "nft", &["list", "tables"], None).await?;
    // Lines read `table FAMILY NAME`.
    let mut names: Vec<String> = out
        .stdout
        .lines()
        .filter_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            ["table", _, name] if name.starts_with(TABLE_PREFIX) => Some(name.to_string()),
            _ => None,
        })
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

fn check_table(table: &str) -> Result<(), ExecError> {
    if is_chaosforge_table(table) {
        Ok(())
    } else {
        Err(ExecError::Refused {
            value: table.to_string(),
            reason: format!(
                "not a chaosforge nft table (`{TABLE_PREFIX}` followed by a-z, 0-9 or _)"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::host::exec::{Answer, RecordingExecutor};

    const ENOENT: &str = "Error: Could not process rule: No such file or directory\n\
                          delete table inet chaosforge_x\n                  ^^^^^^^^^^^^^\n";

    #[test]
    fn names_are_identifiers_with_the_prefix() {
        assert_eq!(table_name("01J-Run/3"), "chaosforge_01j_run_3");
        assert!(is_chaosforge_table(&table_name("a b")));
        assert!(!is_chaosforge_table("chaosforge_"));
        assert!(!is_chaosforge_table("filter"));
        assert!(!is_chaosforge_table("chaosforge_x; flush ruleset"));
    }

    #[tokio::test]
    async fn apply_is_one_nft_transaction_from_stdin() {
        let exec = RecordingExecutor::new();
        apply_table(&exec, Some("ns"), "table inet chaosforge_x {}\n")
            .await
            .unwrap();
        let calls = exec.calls();
        assert_eq!(exec.lines(), ["[ns] nft -f -"]);
        assert_eq!(
            calls[0].stdin.as_deref(),
            Some("table inet chaosforge_x {}\n")
        );
    }

    #[tokio::test]
    async fn delete_is_idempotent_and_refuses_other_tables() {
        let exec = RecordingExecutor::new();
        assert!(delete_table(&exec, None, "chaosforge_x").await.unwrap());
        assert_eq!(exec.lines(), ["nft delete table inet chaosforge_x"]);

        let exec = RecordingExecutor::new().on("nft delete", Answer::Fail(1, ENOENT.into()));
        assert!(
            !delete_table(&exec, Some("ns"), "chaosforge_x")
                .await
                .unwrap()
        );

        let gone = "Cannot open network namespace \"ns\": No such file or directory\n";
        let exec = RecordingExecutor::new().on("nft delete", Answer::Fail(255, gone.into()));
        assert!(
            !delete_table(&exec, Some("ns"), "chaosforge_x")
                .await
                .unwrap()
        );

        let exec = RecordingExecutor::new().on(
            "nft delete",
            Answer::Fail(1, "Error: Operation not permitted".into()),
        );
        let err = delete_table(&exec, None, "chaosforge_x").await.unwrap_err();
        assert!(matches!(err, ExecError::Failed { .. }), "{err:?}");

        let exec = RecordingExecutor::new();
        let err = delete_table(&exec, None, "filter").await.unwrap_err();
        assert!(matches!(err, ExecError::Refused { .. }), "{err:?}");
        assert!(
            exec.calls().is_empty(),
            "nothing may run for a foreign table"
        );
    }

    #[tokio::test]
    async fn tables_lists_only_ours() {
        let listing = "table ip filter\ntable inet chaosforge_b\ntable inet chaosforge_a\n\
                       table ip6 nat\n";
        let exec = RecordingExecutor::new().on("nft list tables", Answer::Ok(listing.into()));
        assert_eq!(
            chaosforge_tables(&exec, Some("ns")).await.unwrap(),
            ["chaosforge_a", "chaosforge_b"]
        );
        assert_eq!(exec.lines(), ["[ns] nft list tables"]);
    }
}
