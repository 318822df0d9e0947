//! `inventory:`: targets defined once in files of their own and shared by many experiments.
//!
//! Each inventory file is parsed and decoded on its own, so that a problem in it is reported at
//! its own file:line:col; its targets are compiled like inline ones, then appended after them.
//! Names must be unique across the experiment's `targets` and every inventory file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::Cx;
use super::targets::Target;
use crate::source::Document;
use crate::spec::{InventoryRef, InventorySpec, TargetSpec};

/// Every target of the experiment: inline ones, then each inventory file's, in order.
pub(super) struct AllTargets {
    pub(super) specs: Vec<TargetSpec>,
    pub(super) compiled: Vec<Option<Target>>,
}

impl Cx<'_> {
    /// Compiles `inline` targets and those of `inventory` (paths relative to the experiment
    /// file), reporting problems of inventory files in those files.
    pub(super) fn all_targets(
        &mut self,
        inline: &[TargetSpec],
        inventory: Option<&InventoryRef>,
    ) -> AllTargets {
        let mut specs = inline.to_vec();
        let mut compiled = self.targets(inline);
        // Where each name was first defined: (file, path) for the duplicate message.
        let mut first: BTreeMap<String, String> = inline
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), format!("{}: targets[{i}]", self.doc.file())))
            .collect();
        let Some(inventory) = inventory else {
            return AllTargets { specs, compiled };
        };
        let base = Path::new(self.doc.file())
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let refs = inventory.paths();
        if refs.is_empty() {
            self.err("inventory", "the inventory list is empty");
        }
        for (i, r) in refs.iter().enumerate() {
            let at = match inventory {
                InventoryRef::One(_) => "inventory".to_string(),
                InventoryRef::Many(_) => format!("inventory[{i}]"),
            };
            let files = match inventory_files(&base.join(r)) {
                Ok(f) if f.is_empty() => {
                    self.err(
                        &at,
                        format!("`{r}` is a directory without .yaml, .yml or .json files"),
                    );
                    continue;
                }
                Ok(f) => f,
                Err(e) => {
                    self.err(&at, format!("cannot read inventory `{r}`: {e}"));
                    continue;
                }
            };
            for file in files {
                let shown = file.display().to_string();
                let text = match std::fs::read_to_string(&file) {
                    Ok(t) => t,
                    Err(e) => {
                        self.err(&at, format!("cannot read inventory `{shown}`: {e}"));
                        continue;
                    }
                };
                let doc = match Document::parse(&shown, &text) {
                    Ok(d) => d,
                    Err(d) => {
                        self.diags.extend(d);
                        continue;
                    }
                };
                let inv: InventorySpec = match crate::de::decode(&doc) {
                    Ok(s) => s,
                    Err(d) => {
                        self.diags.extend(d);
                        continue;
                    }
                };
                let mut sub = Cx::new(&doc);
                sub.agents = inv.agents.clone();
                let targets = sub.targets(&inv.targets);
                let mut diags = sub.diags;
                for (j, t) in inv.targets.iter().enumerate() {
                    match first.get(&t.name) {
                        Some(where_) => diags.push(doc.diag(
                            &format!("targets[{j}].name"),
                            format!(
                                "duplicate target name `{}` (first defined at {where_}); names \
                                 are unique across `targets` and every inventory file",
                                t.name
                            ),
                        )),
                        None => {
                            first.insert(t.name.clone(), format!("{shown}: targets[{j}]"));
                        }
                    }
                }
                self.diags.extend(diags);
                specs.extend(inv.targets);
                compiled.extend(targets);
            }
        }
        AllTargets { specs, compiled }
    }
}

/// The inventory files a path names: the file itself, or a directory's `.yaml`, `.yml` and
/// `.json` files in name order (not recursive).
fn inventory_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        // Surface a missing file as the read error it is.
        std::fs::metadata(path)?;
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        })
        .collect();
    files.sort();
    Ok(files)
}
