//! `notify:` — webhooks told about the run as it goes (see [`NotifySpec`]).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A webhook: an HTTP POST for each event of the run it subscribes to, delivered in the
/// background (a slow or dead receiver never holds the run up; the run's end waits for pending
/// deliveries at most `timeout`).
///
/// ```yaml
/// notify:
///   - url: { env: SLACK_WEBHOOK_URL }          # or a literal "https://hooks.example/chaos"
///     format: slack                            # json (default) | slack
///     events: [started, refuted, halted, error]  # default: every event
///     headers: { Authorization: { env: CHAOS_HOOK_TOKEN }, X-Team: payments }
///     timeout: 2s                              # per attempt, and the end-of-run wait
///     retries: 3                               # after the first attempt, with backoff
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifySpec {
    /// Where to POST: an `http://` or `https://` URL, written here or read from the environment
    /// (`{ env: VAR }`, for URLs that are themselves secrets, as Slack's are).
    pub url: SecretValueSpec,
    /// A name for messages about this webhook (delivery failures). Default: `notify[N]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Which events to send. Default: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<NotifyEventSpec>>,
    /// `json` (default): the event as a JSON object; `slack`: a Slack-compatible
    /// `{"text": "…"}` message (also what Mattermost and Rocket.Chat incoming webhooks read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<NotifyFormatSpec>,
    /// Extra request headers, each a literal value or `{ env: VAR }`. Values read from the
    /// environment never appear in the journal, the report or any message.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, SecretValueSpec>,
    /// How long one attempt may take, and how long the end of the run waits for deliveries
    /// still pending. Default `2s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<super::DurationValue>")]
    pub timeout: Option<String>,
    /// Attempts after the first when delivery fails (a connection error, a timeout, a 5xx or
    /// 429 answer), with exponential backoff (100 ms, 200 ms, 400 ms, … at most 2 s). Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
}

/// A value written in the file (`"payments"`) or read from an environment variable when the
/// file is validated (`{ env: CHAOS_HOOK_TOKEN }`; unset is a validation error).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum SecretValueSpec {
    /// The value itself.
    Text(String),
    /// `{ env: VAR }`.
    Env(EnvRefSpec),
}

/// `{ env: VAR }`: the value of environment variable `VAR`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvRefSpec {
    /// The variable's name.
    pub env: String,
}

/// An event a webhook can subscribe to. The run's last event is exactly one of `confirmed`,
/// `refuted`, `not_steady`, `halted` or `error`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum NotifyEventSpec {
    /// The run started (its journal exists; nothing is injected yet).
    Started,
    /// A fault was injected on a target.
    Injected,
    /// A fault was reverted on a target (or its revert failed: `error` says why).
    Reverted,
    /// The run was halted by a policy, a signal, `chaosforge halt` or the live view's `q`.
    Halted,
    /// The hypothesis did not hold.
    Refuted,
    /// The hypothesis held and the system recovered in time.
    Confirmed,
    /// The hypothesis did not hold at baseline; nothing was injected.
    NotSteady,
    /// The run failed: a target, an injection or a revert.
    Error,
}

/// How a webhook's body is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotifyFormatSpec {
    /// The event as a JSON object.
    Json,
    /// `{"text": "…"}`, for Slack-compatible incoming webhooks.
    Slack,
}

// === impl NotifyEventSpec ===

impl NotifyEventSpec {
    /// Every event, in the order a run can send them.
    pub const ALL: [NotifyEventSpec; 8] = [
        NotifyEventSpec::Started,
        NotifyEventSpec::Injected,
        NotifyEventSpec::Reverted,
        NotifyEventSpec::Halted,
        NotifyEventSpec::Refuted,
        NotifyEventSpec::Confirmed,
        NotifyEventSpec::NotSteady,
        NotifyEventSpec::Error,
    ];

    /// The name as written in files and payloads (`not_steady`).
    pub fn name(self) -> &'static str {
        match self {
            NotifyEventSpec::Started => "started",
            NotifyEventSpec::Injected => "injected",
            NotifyEventSpec::Reverted => "reverted",
            NotifyEventSpec::Halted => "halted",
            NotifyEventSpec::Refuted => "refuted",
            NotifyEventSpec::Confirmed => "confirmed",
            NotifyEventSpec::NotSteady => "not_steady",
            NotifyEventSpec::Error => "error",
        }
    }
}

// === impl SecretValueSpec ===

// By hand, as `ScopeSpec`: an untagged enum would answer every mistake with "did not match any
// variant".
impl<'de> Deserialize<'de> for SecretValueSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = SecretValueSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string, or `{ env: VARIABLE }` to read it from the environment")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SecretValueSpec, E> {
                Ok(SecretValueSpec::Text(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<SecretValueSpec, A::Error> {
                EnvRefSpec::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(SecretValueSpec::Env)
            }
            // The decoder's placeholder for a value it already reported.
            fn visit_unit<E: serde::de::Error>(self) -> Result<SecretValueSpec, E> {
                Ok(SecretValueSpec::Text(String::new()))
            }
        }
        d.deserialize_any(V)
    }
}
