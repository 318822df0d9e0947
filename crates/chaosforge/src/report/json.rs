//! The JSON renderer: the [`Report`] model as written, keys in declaration order.

use super::Report;

// === impl Report ===

impl Report {
    /// Renders the report as pretty JSON.
    pub fn render_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}
