//! What an HTTP proxy's rules did, journaled once every rule is reverted.

use serde::{Deserialize, Serialize};

/// What an HTTP proxy's rules did.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct HttpProxyReport {
    /// Per rule, in the order they were first set.
    pub rules: Vec<HttpRuleCounters>,
    /// Security findings, one sentence each ("client accepted an expired certificate (3
    /// handshakes)").
    pub findings: Vec<String>,
}

/// Counters of one rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpRuleCounters {
    /// The rule's name.
    pub name: String,
    /// Requests it matched (for `tls-mitm`: new TLS connections it was asked about).
    pub matched: u64,
    /// Requests it faulted, matched and drawn (for `tls-mitm`: TLS connections it terminated).
    pub faulted: u64,
}
