//! The stress family: `cpu` and `memory` workers in a cgroup, and `disk-fill` with a ballast
//! file.

use super::FaultKind;
use crate::plan::Cx;
use crate::spec;
use crate::units;

// === impl Cx ===

impl Cx<'_> {
    pub(super) fn cpu(&mut self, p: &str, c: &spec::CpuSpec) -> FaultKind {
        let workers = match c.workers {
            None => 1,
            Some(n) if (1..=1024).contains(&n) => n as u32,
            Some(n) => {
                self.err(
                    &format!("{p}.workers"),
                    format!("`{n}` workers: give 1 to 1024"),
                );
                1
            }
        };
        let percent = self.percent(&format!("{p}.percent"), c.percent.as_deref());
        FaultKind::Cpu { workers, percent }
    }

    pub(super) fn memory(&mut self, p: &str, m: &spec::MemorySpec) -> FaultKind {
        let bytes = units::parse_bytes(&m.size).unwrap_or_else(|e| {
            self.unit_err(&format!("{p}.size"), e);
            1
        });
        if bytes == 0 {
            self.err(&format!("{p}.size"), "must be more than 0 bytes");
        }
        FaultKind::Memory { bytes }
    }

    pub(super) fn disk_fill(&mut self, p: &str, d: &spec::DiskFillSpec) -> FaultKind {
        let dir = std::path::Path::new(&d.path);
        if !dir.is_absolute() {
            self.err(
                &format!("{p}.path"),
                format!("`{}` must be an absolute path", d.path),
            );
        } else if dir.components().count() <= 1 {
            self.err(
                &format!("{p}.path"),
                "refusing to fill the root filesystem `/`",
            );
        }
        let percent = self.percent(&format!("{p}.percent"), d.percent.as_deref());
        let margin = match &d.margin {
            None => 0,
            Some(m) => units::parse_bytes(m).unwrap_or_else(|e| {
                self.unit_err(&format!("{p}.margin"), e);
                0
            }),
        };
        FaultKind::DiskFill {
            path: d.path.clone(),
            percent,
            margin,
        }
    }

    /// A whole percentage in 1..=100 (`50` or `"50%"`), 100 when absent.
    fn percent(&mut self, path: &str, text: Option<&str>) -> u32 {
        let Some(t) = text else { return 100 };
        let n = t.trim().trim_end_matches('%').trim_end();
        match n.parse::<u32>() {
            Ok(v) if (1..=100).contains(&v) => v,
            _ => {
                self.err(
                    path,
                    format!("`{t}` is not a whole percentage from 1 to 100"),
                );
                100
            }
        }
    }
}
