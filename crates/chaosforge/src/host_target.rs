//! Resolving `netns` and `host` targets when a run starts: the namespace must exist, and the
//! interface faults act on (given, or the only non-loopback one) and its addresses are read with
//! `ip -j addr`; and `container` targets, whose network namespace is named for `ip netns`.

use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;

/// A host target as found at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostTarget {
    /// The namespace; `None` for the local host.
    pub netns: Option<String>,
    /// The interface faults act on: the one named, or the only non-loopback one.
    pub interface: Option<String>,
    /// Its addresses (IPv4 and IPv6, link-local left out).
    pub addresses: Vec<IpAddr>,
    /// For a `container` target: the container, whose network namespace `netns` names.
    pub container: Option<crate::fault::container::ContainerTarget>,
}

#[derive(Debug, Deserialize)]
struct Link {
    ifname: String,
    #[serde(default)]
    addr_info: Vec<AddrInfo>,
}

#[derive(Debug, Deserialize)]
struct AddrInfo {
    local: Option<String>,
    #[serde(default)]
    scope: String,
}

/// Finds the namespace, interface and addresses of a host target.
pub async fn resolve(netns: Option<&str>, interface: Option<&str>) -> Result<HostTarget, String> {
    if let Some(ns) = netns
        && !std::path::Path::new("/run/netns").join(ns).exists()
    {
        return Err(format!(
            "network namespace `{ns}` does not exist (see `ip netns list`)"
        ));
    }
    let mut cmd = tokio::process::Command::new("ip");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    cmd.args(["-j", "addr", "show"]).kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(10), cmd.output())
        .await
        .map_err(|_| "`ip -j addr show` did not answer within 10s".to_string())?
        .map_err(|e| format!("cannot run `ip` (is iproute2 installed?): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`ip -j addr show` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let links: Vec<Link> = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("cannot read `ip -j addr show`: {e}"))?;
    pick(netns, interface, links)
}

fn pick(
    netns: Option<&str>,
    interface: Option<&str>,
    links: Vec<Link>,
) -> Result<HostTarget, String> {
    let where_ = netns.map_or("the host".to_string(), |n| format!("namespace `{n}`"));
    let candidates: Vec<&Link> = links.iter().filter(|l| l.ifname != "lo").collect();
    // An interface is needed only by faults that shape an interface; without one named, take
    // the only non-loopback one if there is exactly one, and every address of the host.
    let chosen: Vec<&Link> = match interface {
        Some(i) => vec![links.iter().find(|l| l.ifname == i).ok_or_else(|| {
            let names: Vec<&str> = links.iter().map(|l| l.ifname.as_str()).collect();
            format!(
                "{where_} has no interface `{i}` (it has: {})",
                names.join(", ")
            )
        })?],
        None => candidates.clone(),
    };
    let addresses = chosen
        .iter()
        .flat_map(|l| l.addr_info.iter())
        .filter(|a| a.scope != "link" && a.scope != "host")
        .filter_map(|a| a.local.as_deref()?.parse().ok())
        .collect();
    let interface = match (interface, candidates.as_slice()) {
        (Some(i), _) => Some(i.to_string()),
        (None, [one]) => Some(one.ifname.clone()),
        _ => None,
    };
    Ok(HostTarget {
        netns: netns.map(str::to_string),
        interface,
        addresses,
        container: None,
    })
}

/// Finds a `container` target on its Docker engine, gives its network namespace an `ip netns`
/// name (`fault::container::attach_netns`) and reads its interface and addresses there, so
/// that host network faults and peers naming it work as for a `netns` target.
pub async fn resolve_container(
    sel: &crate::fault::params::ContainerSelector,
) -> Result<HostTarget, String> {
    let mut c = crate::fault::container::find(sel).await?;
    let netns = crate::fault::container::attach_netns(&mut c).await?;
    let mut h = match resolve(Some(&netns), sel.interface.as_deref()).await {
        Ok(h) => h,
        Err(e) => {
            // Nothing was injected with the name yet.
            let _ = crate::fault::container::release_netns(&c).await;
            return Err(e);
        }
    };
    h.container = Some(c);
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links() -> Vec<Link> {
        serde_json::from_str(
            r#"[{"ifname":"lo","addr_info":[{"local":"127.0.0.1","scope":"host"}]},
                {"ifname":"veth-b","addr_info":[{"local":"10.77.0.2","scope":"global"},{"local":"fe80::1","scope":"link"}]}]"#,
        )
        .unwrap()
    }

    #[test]
    fn picks_the_only_non_loopback_interface_and_its_global_addresses() {
        let h = pick(Some("b"), None, links()).unwrap();
        assert_eq!(h.interface.as_deref(), Some("veth-b"));
        assert_eq!(h.addresses, vec!["10.77.0.2".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn unknown_interfaces_are_named_with_the_ones_that_exist() {
        let e = pick(Some("b"), Some("eth9"), links()).unwrap_err();
        assert_eq!(
            e,
            "namespace `b` has no interface `eth9` (it has: lo, veth-b)"
        );
    }
}
