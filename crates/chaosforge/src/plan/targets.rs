//! `targets:` — what faults act on: proxies, processes, hosts and HTTP proxies, each validated
//! here, and (in [`check_hosts`]) checked against this machine before a run.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::Cx;
use crate::diag::Diagnostics;
use crate::fault::params::ProcessSelector;
use crate::source::Document;
use crate::spec;

/// A target, validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Target {
    /// Unique name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// What it is.
    pub kind: TargetKind,
    /// The agent it is reached through; `None`: this machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentRef>,
}

/// A `chaosforge agent`, validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentRef {
    /// `https://host:port`, without a trailing slash.
    pub url: String,
    /// The environment variable holding its token.
    pub token_env: String,
    /// The pinned certificate fingerprint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The lease asked for; `None`: the agent's default.
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "crate::units::opt_duration_text"
    )]
    pub lease: Option<std::time::Duration>,
}

/// What a target is.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// An in-process TCP fault proxy.
    Proxy {
        /// `host:port` to listen on.
        listen: String,
        /// `host:port` to forward to.
        upstream: String,
    },
    /// A proxy on a running `chaosforge proxy` or Toxiproxy server, driven through its API.
    RemoteProxy {
        /// Base URL of the API, without a trailing slash.
        api: String,
        /// The proxy's name there.
        name: String,
    },
    /// An existing process.
    Process(ProcessSelector),
    /// A host: a network namespace, or the local host (`netns: None`).
    Host {
        /// The namespace; `None` for the local host.
        netns: Option<String>,
        /// The interface faults act on; `None`: the one non-loopback interface.
        interface: Option<String>,
    },
    /// An HTTP (L7) fault proxy the runner starts.
    HttpProxy {
        /// `host:port` to listen on.
        listen: String,
        /// `http://…` or `https://…`.
        upstream: String,
        /// A PEM CA trusted for an https upstream.
        upstream_ca: Option<String>,
    },
    /// A container on a Docker engine; host network faults act in its network namespace.
    Container(crate::fault::params::ContainerSelector),
}

// === impl Cx ===

impl Cx<'_> {
    /// One entry per spec target, `None` where it was invalid (so indices stay aligned).
    pub(super) fn targets(&mut self, specs: &[spec::TargetSpec]) -> Vec<Option<Target>> {
        self.unique("target", "targets", specs.iter().map(|t| t.name.as_str()));
        specs
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let base = format!("targets[{i}]");
                let kinds: Vec<&str> = [
                    ("proxy", t.proxy.is_some()),
                    ("process", t.process.is_some()),
                    ("netns", t.netns.is_some()),
                    ("host", t.host.is_some()),
                    ("http_proxy", t.http_proxy.is_some()),
                    ("container", t.container.is_some()),
                ]
                .into_iter()
                .filter_map(|(k, p)| p.then_some(k))
                .collect();
                if let Some(second) = kinds.get(1) {
                    self.err(
                        &format!("{base}.{second}"),
                        format!("a target has one kind; this one has {}", kinds.join(" and ")),
                    );
                    return None;
                }
                if t.interface.is_some() && t.netns.is_none() && t.host.is_none() && t.container.is_none() {
                    self.err(&format!("{base}.interface"), "`interface` goes with `netns`, `host` or `container`");
                }
                let kind = if let Some(p) = &t.proxy {
                    self.proxy_target(&format!("{base}.proxy"), p)?
                } else if let Some(c) = &t.container {
                    let mut sel = self.container(&format!("{base}.container"), c)?;
                    sel.interface = t.interface.clone();
                    TargetKind::Container(sel)
                } else if let Some(h) = &t.http_proxy {
                    self.http_proxy_target(&format!("{base}.http_proxy"), h)
                } else if let Some(p) = &t.process {
                    TargetKind::Process(self.process(&format!("{base}.process"), p)?)
                } else if let Some(ns) = &t.netns {
                    if !valid_netns_name(ns) {
                        self.err(
                            &format!("{base}.netns"),
                            format!("`{ns}` is not a network namespace name (letters, digits, `-`, `_`, `.`)"),
                        );
                    }
                    TargetKind::Host { netns: Some(ns.clone()), interface: t.interface.clone() }
                } else if let Some(h) = &t.host {
                    if h != "local" {
                        self.err(
                            &format!("{base}.host"),
                            format!("`{h}` is not a host chaosforge can reach yet; use `host: local` (remote agents come later)"),
                        );
                    }
                    TargetKind::Host { netns: None, interface: t.interface.clone() }
                } else {
                    self.err(
                        &base,
                        format!("target `{}` needs a kind: `proxy`, `http_proxy`, `process`, `netns`, `host` or `container`", t.name),
                    );
                    return None;
                };
                if let Some(i) = &t.interface
                    && !valid_interface_name(i)
                {
                    self.err(&format!("{base}.interface"), format!("`{i}` is not an interface name"));
                }
                let agent = t
                    .agent
                    .as_ref()
                    .and_then(|a| self.agent_ref(&format!("{base}.agent"), a, &kind));
                Some(Target {
                    name: t.name.clone(),
                    labels: t.labels.clone(),
                    kind,
                    agent,
                })
            })
            .collect()
    }

    /// `agent:` — only on targets an agent can resolve or run on its host (`host`, `netns`,
    /// `process`, a `proxy` it starts), with an `https` URL, a token variable and a well-formed fingerprint.
    fn agent_ref(
        &mut self,
        base: &str,
        a: &spec::AgentSpec,
        kind: &TargetKind,
    ) -> Option<AgentRef> {
        let named;
        let a = match a {
            spec::AgentSpec::Inline(a) => a,
            spec::AgentSpec::Named(name) => match self.agents.get(name) {
                Some(a) => {
                    named = a.clone();
                    &named
                }
                None => {
                    let known: Vec<&str> = self.agents.keys().map(String::as_str).collect();
                    self.err(
                        base,
                        if known.is_empty() {
                            format!("no agent `{name}`: agents are named in an inventory file's `agents:`, next to the targets that use them")
                        } else {
                            format!("no agent `{name}` in this inventory file (it has {})", known.join(", "))
                        },
                    );
                    return None;
                }
            },
        };
        if !matches!(
            kind,
            TargetKind::Host { .. } | TargetKind::Process(_) | TargetKind::Proxy { .. }
        ) {
            self.err(
                base,
                "`agent` goes with `host`, `netns`, `process` or `proxy` (listen/upstream) targets",
            );
            return None;
        }
        match reqwest::Url::parse(&a.url) {
            Ok(u) if u.scheme() == "https" && u.host().is_some() => {}
            _ => self.err(
                &format!("{base}.url"),
                format!("`{}` is not an https URL of an agent, e.g. `https://10.0.0.7:7700` (agents speak HTTPS only)", a.url),
            ),
        }
        let valid_env = !a.token_env.is_empty()
            && a.token_env
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid_env {
            self.err(
                &format!("{base}.token_env"),
                format!("`{}` is not an environment variable name", a.token_env),
            );
        }
        if let Some(f) = &a.fingerprint
            && let Err(e) = crate::fault::agent::parse_fingerprint(f)
        {
            self.err(&format!("{base}.fingerprint"), e);
        }
        let lease = a.lease.as_deref().map(|l| {
            let d = self.positive_duration(
                &format!("{base}.lease"),
                Some(l),
                std::time::Duration::from_secs(10),
            );
            if d < std::time::Duration::from_secs(2) {
                self.err(
                    &format!("{base}.lease"),
                    "a lease under 2s would expire between two renewals (they come every second)",
                );
            }
            d
        });
        Some(AgentRef {
            url: a.url.trim_end_matches('/').to_string(),
            token_env: a.token_env.clone(),
            fingerprint: a.fingerprint.clone(),
            lease,
        })
    }

    fn http_proxy_target(&mut self, base: &str, h: &spec::HttpProxyTargetSpec) -> TargetKind {
        self.address(&format!("{base}.listen"), &h.listen);
        match reqwest::Url::parse(&h.upstream) {
            Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => {}
            _ => self.err(
                &format!("{base}.upstream"),
                format!("`{}` is not an http(s) URL, e.g. `http://127.0.0.1:8080` or `https://api.internal:8443`", h.upstream),
            ),
        }
        if let Some(ca) = &h.upstream_ca {
            if !h.upstream.starts_with("https://") {
                self.err(
                    &format!("{base}.upstream_ca"),
                    "`upstream_ca` is for an `https://` upstream",
                );
            } else if !Path::new(ca).is_file() {
                self.err(
                    &format!("{base}.upstream_ca"),
                    format!("`{ca}` is not a file"),
                );
            }
        }
        TargetKind::HttpProxy {
            listen: h.listen.clone(),
            upstream: h.upstream.clone(),
            upstream_ca: h.upstream_ca.clone(),
        }
    }

    fn proxy_target(&mut self, base: &str, p: &spec::ProxyTargetSpec) -> Option<TargetKind> {
        match (&p.listen, &p.upstream, &p.api, &p.name) {
            (Some(listen), Some(upstream), None, None) => {
                self.address(&format!("{base}.listen"), listen);
                self.address(&format!("{base}.upstream"), upstream);
                Some(TargetKind::Proxy {
                    listen: listen.clone(),
                    upstream: upstream.clone(),
                })
            }
            (None, None, Some(api), Some(name)) => {
                match reqwest::Url::parse(api) {
                    Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                    _ => self.err(
                        &format!("{base}.api"),
                        format!("`{api}` is not an http(s) URL of a proxy API, e.g. `http://127.0.0.1:8474`"),
                    ),
                }
                if name.trim().is_empty() {
                    self.err(&format!("{base}.name"), "empty proxy name");
                }
                Some(TargetKind::RemoteProxy {
                    api: api.trim_end_matches('/').to_string(),
                    name: name.clone(),
                })
            }
            _ => {
                self.err(
                    base,
                    "give either `listen` and `upstream` (a proxy the runner starts) or `api` and `name` (a proxy on a running server)",
                );
                None
            }
        }
    }

    fn process(&mut self, base: &str, p: &spec::ProcessTargetSpec) -> Option<ProcessSelector> {
        let given = [p.pid.is_some(), p.pidfile.is_some(), p.command.is_some()];
        if given.iter().filter(|g| **g).count() != 1 {
            self.err(base, "give exactly one of `pid`, `pidfile` or `command`");
            return None;
        }
        if let Some(pid) = p.pid {
            return match i32::try_from(pid) {
                Ok(pid) if pid > 1 => Some(ProcessSelector::Pid(pid)),
                _ => {
                    self.err(
                        &format!("{base}.pid"),
                        format!(
                            "`{pid}` is not a process id a fault may act on (it must be above 1)"
                        ),
                    );
                    None
                }
            };
        }
        if let Some(f) = &p.pidfile {
            if f.trim().is_empty() {
                self.err(&format!("{base}.pidfile"), "empty path");
                return None;
            }
            return Some(ProcessSelector::Pidfile(f.clone()));
        }
        let c = p.command.as_deref().unwrap_or_default();
        match regex::Regex::new(c) {
            Ok(_) if !c.is_empty() => Some(ProcessSelector::Command(c.to_string())),
            Ok(_) => {
                self.err(
                    &format!("{base}.command"),
                    "empty pattern would match every process",
                );
                None
            }
            Err(e) => {
                let msg = e
                    .to_string()
                    .lines()
                    .last()
                    .unwrap_or("invalid")
                    .trim()
                    .trim_start_matches("error: ")
                    .to_string();
                self.err(
                    &format!("{base}.command"),
                    format!("invalid regular expression: {msg}"),
                );
                None
            }
        }
    }
}

impl Cx<'_> {
    /// A `container:` target: exactly one of `name`, `id`, `label`; an absolute `socket`.
    fn container(
        &mut self,
        base: &str,
        c: &spec::ContainerTargetSpec,
    ) -> Option<crate::fault::params::ContainerSelector> {
        use crate::fault::params::{ContainerRef, ContainerSelector};
        let given: Vec<(&str, &String)> = [("name", &c.name), ("id", &c.id), ("label", &c.label)]
            .into_iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
            .collect();
        let by = match given.as_slice() {
            [] => {
                self.err(base, "give the container's `name`, `id` or `label`");
                return None;
            }
            [(key, value)] => {
                let ok = match *key {
                    // Docker's own name rule: [a-zA-Z0-9][a-zA-Z0-9_.-]+
                    "name" => {
                        value.len() >= 2
                            && value.starts_with(|ch: char| ch.is_ascii_alphanumeric())
                            && value.chars().all(|ch| {
                                ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.' | '-')
                            })
                    }
                    "id" => value.len() <= 64 && value.chars().all(|ch| ch.is_ascii_hexdigit()),
                    _ => !value.starts_with('=') && !value.chars().any(char::is_whitespace),
                } && !value.is_empty();
                if !ok {
                    let what = match *key {
                        "name" => "a container name (two or more letters, digits, `_`, `.`, `-`)",
                        "id" => "a container id (hex digits)",
                        _ => "a label (`KEY=VALUE` or `KEY`)",
                    };
                    self.err(&format!("{base}.{key}"), format!("`{value}` is not {what}"));
                }
                match *key {
                    "name" => ContainerRef::Name(value.to_string()),
                    "id" => ContainerRef::Id(value.to_lowercase()),
                    _ => ContainerRef::Label(value.to_string()),
                }
            }
            [(first, _), (second, _), ..] => {
                self.err(
                    &format!("{base}.{second}"),
                    format!("name the container one way; this has `{first}` and `{second}`"),
                );
                return None;
            }
        };
        if let Some(sock) = &c.socket
            && !Path::new(sock.trim_start_matches("unix://")).is_absolute()
        {
            self.err(
                &format!("{base}.socket"),
                format!("`{sock}` is not an absolute path to the engine's unix socket"),
            );
        }
        Some(ContainerSelector {
            by,
            socket: c
                .socket
                .as_ref()
                .map(|s| s.trim_start_matches("unix://").to_string()),
            interface: None,
        })
    }
}

/// Checks, on this machine, that every `netns` target's namespace exists and that every named
/// interface is there: a typo is caught before the run, with its position.
pub fn check_hosts(doc: &Document, plan: &super::Plan) -> Diagnostics {
    let mut diags = Diagnostics::new();
    // A valid plan holds every target, in file order.
    for (i, t) in plan.targets.iter().enumerate() {
        let TargetKind::Host { netns, interface } = &t.kind else {
            continue;
        };
        // An agent's host is checked by the agent when the run starts.
        if t.agent.is_some() {
            continue;
        }
        if let Some(ns) = netns
            && !Path::new("/run/netns").join(ns).exists()
        {
            diags.push(doc.diag(
                &format!("targets[{i}].netns"),
                format!("network namespace `{ns}` does not exist (see `ip netns list`)"),
            ));
            continue;
        }
        let Some(name) = interface else { continue };
        let mut cmd = std::process::Command::new("ip");
        if let Some(ns) = netns {
            cmd.args(["-n", ns]);
        }
        let found = cmd
            .args(["link", "show", "dev", name])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        match found {
            Ok(s) if s.success() => {}
            Ok(_) => {
                let place = netns
                    .as_ref()
                    .map_or("this host".to_string(), |ns| format!("namespace `{ns}`"));
                diags.push(doc.diag(
                    &format!("targets[{i}].interface"),
                    format!("{place} has no interface `{name}` (see `ip link`)"),
                ));
            }
            // Without `ip` the run finds out when it resolves the target; say nothing here.
            Err(_) => {}
        }
    }
    diags
}

/// `ip netns` names: what iproute2 accepts as a file name under /run/netns, kept conservative.
fn valid_netns_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n != "."
        && n != ".."
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Linux interface names: at most 15 bytes, no `/`, no whitespace.
fn valid_interface_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 15 && !n.contains('/') && !n.chars().any(char::is_whitespace)
}
