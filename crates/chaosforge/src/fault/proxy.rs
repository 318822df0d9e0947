//! Proxy faults: toxics added to a running TCP fault proxy (the `proxy` target), one per stream.

use std::sync::Arc;

use async_trait::async_trait;

use super::net::{ProxyControl, ProxyFault, ProxyToxic, Stream};
use super::{BoxError, Fault, FaultError, Guard, InjectCx, Revert};
use crate::units::Ratio;

/// A toxic (or a pair, for both streams) on one proxy target.
#[derive(Debug, Clone)]
pub struct ProxyToxicFault {
    /// The target's name.
    pub target: String,
    /// The kind users wrote (`latency`, …).
    pub kind: &'static str,
    /// The proxy.
    pub proxy: Arc<dyn ProxyControl>,
    /// The toxics to add, named after the fault so revert can remove them by name.
    pub toxics: Vec<ProxyToxic>,
}

struct RemoveToxics {
    proxy: Arc<dyn ProxyControl>,
    names: Vec<String>,
}

/// What reverting toxics named `<fault>.<stream>` undid, in words: `stopped on the downstream
/// stream`, `stopped on the upstream and downstream streams (1 was already gone)`.
pub(crate) fn undone_text(names: &[String], removed: usize) -> String {
    let streams: Vec<&str> = names
        .iter()
        .map(|n| n.rsplit_once('.').map_or(n.as_str(), |(_, s)| s))
        .collect();
    let on = match streams.as_slice() {
        [] => return "nothing was in force".into(),
        [one] => format!("stopped on the {one} stream"),
        [rest @ .., last] => format!("stopped on the {} and {last} streams", rest.join(", ")),
    };
    match names.len() - removed.min(names.len()) {
        0 => on,
        gone => format!("{on} ({gone} already gone)"),
    }
}

// === impl ProxyToxicFault ===

impl ProxyToxicFault {
    /// The toxics of fault `name`: one per stream, named `<fault>.<stream>`.
    pub fn toxics(
        name: &str,
        streams: &[Stream],
        toxicity: Ratio,
        fault: &ProxyFault,
    ) -> Vec<ProxyToxic> {
        streams
            .iter()
            .map(|s| ProxyToxic {
                name: format!(
                    "{name}.{}",
                    if *s == Stream::Upstream {
                        "upstream"
                    } else {
                        "downstream"
                    }
                ),
                stream: *s,
                toxicity,
                fault: fault.clone(),
            })
            .collect()
    }
}

#[async_trait]
impl Fault for ProxyToxicFault {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn target(&self) -> &str {
        &self.target
    }

    async fn inject(&self, cx: &InjectCx<'_>) -> Result<Guard, FaultError> {
        let names: Vec<String> = self.toxics.iter().map(|t| t.name.clone()).collect();
        cx.announce(
            &self.target,
            self.kind,
            self.proxy.revert_spec(&self.target, &self.toxics),
        )?;
        for (i, t) in self.toxics.iter().enumerate() {
            if let Err(e) = self.proxy.add_toxic(t.clone()).await {
                // Take back the ones already added, so a half-applied fault never lingers.
                let mut left = Vec::new();
                for added in &self.toxics[..i] {
                    if let Err(e) = self.proxy.remove_toxic(&added.name).await {
                        left.push(format!("`{}` ({e})", added.name));
                    }
                }
                let mut message = format!("adding toxic `{}`: {e}", t.name);
                if !left.is_empty() {
                    message.push_str(&format!("; could not take back {}", left.join(", ")));
                }
                return Err(FaultError::Apply {
                    message,
                    undone: left.is_empty(),
                });
            }
        }
        Ok(cx.guard(Box::new(RemoveToxics {
            proxy: self.proxy.clone(),
            names,
        })))
    }
}

#[async_trait]
impl Revert for RemoveToxics {
    async fn revert(self: Box<Self>) -> Result<String, BoxError> {
        // Try every toxic even if one fails: a half-reverted fault is worse than a slow error.
        let (mut removed, mut errors) = (0, Vec::new());
        for n in &self.names {
            match self.proxy.remove_toxic(n).await {
                Ok(true) => removed += 1,
                Ok(false) => {}
                Err(e) => errors.push(format!("`{n}`: {e}")),
            }
        }
        if errors.is_empty() {
            Ok(undone_text(&self.names, removed))
        } else {
            Err(format!("could not remove {}", errors.join(", ")).into())
        }
    }
}
