//! How this kernel carries out each kernel-level network fault: netem where it can, else
//! chaosforge's NFQUEUE handler, nft `dup` or an htb class — chosen from the capabilities
//! `fault::host::caps` probed, so a plan says exactly what will happen here.

use super::{FaultKind, Plan};
use crate::diag::Diagnostics;
use crate::fault::host::caps::NetCapabilities;
use crate::fault::params::{Mechanism, NetDirection, NetEffect};
use crate::source::Document;

/// What a qdisc tree lacks here: htb with u32 filters (when `htb` is needed) and ifb (for
/// `ingress`).
fn qdisc_tree_missing(htb: bool, ingress: bool, caps: &NetCapabilities) -> Vec<String> {
    let mut missing = Vec::new();
    if htb && !caps.htb_u32 {
        missing.push("the htb qdisc with the u32 classifier".to_string());
    }
    if ingress && !caps.ifb {
        missing.push(
            "ifb devices with the ingress qdisc and mirred (to shape incoming packets)".to_string(),
        );
    }
    missing
}

/// How a kernel-level network fault can be carried out with `caps`, preferring netem; `Err`
/// names what is missing.
pub fn mechanism_for(
    effect: &NetEffect,
    filtered: bool,
    direction: NetDirection,
    caps: &NetCapabilities,
) -> Result<Mechanism, String> {
    let ingress = direction != NetDirection::Egress;
    if let NetEffect::Rate { .. } = effect {
        let missing = qdisc_tree_missing(true, ingress, caps);
        return if missing.is_empty() {
            Ok(Mechanism::Htb)
        } else {
            Err(format!("`rate` needs {}", missing.join(" and ")))
        };
    }
    let mut missing = Vec::new();
    if caps.netem {
        missing = qdisc_tree_missing(filtered, ingress, caps);
        if missing.is_empty() {
            return Ok(Mechanism::Netem);
        }
    } else {
        missing.push("the netem qdisc (sch_netem)".to_string());
    }
    match effect {
        NetEffect::Duplicate { .. } => {
            if caps.nft_dup && !ingress {
                return Ok(Mechanism::NftDup);
            }
            if ingress {
                missing.push(
                    "(nft `dup` only duplicates outgoing packets: use `direction: egress`)"
                        .to_string(),
                );
            } else {
                missing.push("nftables `dup` (nft_dup_ipv4/ipv6)".to_string());
            }
        }
        _ => match &caps.nfqueue {
            Ok(()) => return Ok(Mechanism::Nfqueue),
            Err(why) => missing.push(format!("NFQUEUE ({why})")),
        },
    }
    let kind = effect.name();
    Err(format!(
        "kernel-level `{kind}` is not possible on this machine: missing {}",
        missing.join("; ")
    ))
}

/// Chooses how each kernel-level network fault of `plan` is carried out with the capabilities
/// of this machine. A fault no mechanism can carry out is a plan-time error at its key, naming
/// the missing capability.
pub fn choose_mechanisms(
    doc: &Document,
    plan: &mut Plan,
    caps: &NetCapabilities,
) -> Result<(), Diagnostics> {
    let mut diags = Diagnostics::new();
    for f in &mut plan.faults {
        let name = f.kind.name();
        if let FaultKind::Network {
            effect,
            peers,
            ports,
            direction,
            mechanism,
        } = &mut f.kind
        {
            let filtered = !peers.is_empty() || !ports.is_empty();
            match mechanism_for(effect, filtered, *direction, caps) {
                Ok(m) => *mechanism = Some(m),
                Err(why) => diags.push(doc.diag(&format!("faults[{}].{name}", f.index), why)),
            }
        }
    }
    if diags.is_empty() { Ok(()) } else { Err(diags) }
}
