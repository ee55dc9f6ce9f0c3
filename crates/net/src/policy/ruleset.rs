//! The policy engine's objects in `table ip skiff`, and the scripts that move the kernel
//! from one set of them to another.
//!
//! [`Ruleset`] is the whole desired state of the engine's regular chains, named sets and
//! the two verdict maps' elements. [`update_script`] writes the difference between the
//! ruleset last applied and the new one, so that a pod's label change becomes a handful of
//! `add element`/`delete element` lines rather than a rewrite; [`resync_script`] writes
//! every object with `flush` first, for when the kernel's state is not known (after a
//! failed transaction).
//!
//! The order of a script follows nftables' reference rules: a chain must exist before a rule
//! jumps to it or a map element names it, a set before a rule looks it up, and nothing can
//! be deleted while something still refers to it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::nft::{FAMILY, TABLE};

/// The base chain checking traffic towards local pods.
pub(crate) const INGRESS_CHAIN: &str = "policy-ingress";
/// The base chain checking traffic from local pods.
pub(crate) const EGRESS_CHAIN: &str = "policy-egress";
/// Local pod address → `jump` to that pod's ingress chain, for pods isolated for ingress.
pub(crate) const INGRESS_MAP: &str = "policy-ingress-pods";
/// Local pod address → `jump` to that pod's egress chain, for pods isolated for egress.
pub(crate) const EGRESS_MAP: &str = "policy-egress-pods";

/// A regular (non-base) chain.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Chain {
    /// Says what the chain is for in `nft list` output; fixed for a given chain name.
    pub comment: Option<String>,
    pub rules: Vec<String>,
}

/// A named set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Set {
    /// The set's type, e.g. `ipv4_addr`. Fixed for a given set name (the engine's names say
    /// what a set holds), so an update never has to change it.
    pub kind: &'static str,
    pub comment: Option<String>,
    pub elements: BTreeSet<String>,
}

/// Everything the engine keeps in the table besides its base chains and the maps themselves.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Ruleset {
    pub chains: BTreeMap<String, Chain>,
    pub sets: BTreeMap<String, Set>,
    /// [`INGRESS_MAP`]: pod address → chain name.
    pub ingress_pods: BTreeMap<Ipv4Addr, String>,
    /// [`EGRESS_MAP`]: pod address → chain name.
    pub egress_pods: BTreeMap<Ipv4Addr, String>,
}

/// Creates the maps and base chains (or resets them: the maps are flushed, the base chains
/// rewritten). Traffic that belongs to an established connection passes first, so a reply
/// is never judged by policy; everything else from or to an isolated local pod jumps to that
/// pod's chain, which accepts what some policy allows and drops the rest.
///
/// Each direction has its own base chain because an `accept` ends only the base chain it is
/// in: a connection between two isolated pods on this node must be accepted by the egress
/// chain and, independently, by the ingress chain.
pub(crate) fn base_script() -> String {
    let mut s = format!("add table {FAMILY} {TABLE}\n");
    for (chain, map, field, what) in [
        (INGRESS_CHAIN, INGRESS_MAP, "ip daddr", "NetworkPolicy ingress of local pods"),
        (EGRESS_CHAIN, EGRESS_MAP, "ip saddr", "NetworkPolicy egress of local pods"),
    ] {
        let _ = writeln!(s, "add map {FAMILY} {TABLE} {map} {{ type ipv4_addr : verdict; }}");
        let _ = writeln!(s, "flush map {FAMILY} {TABLE} {map}");
        let _ = writeln!(
            s,
            "add chain {FAMILY} {TABLE} {chain} {{ type filter hook forward priority filter; policy accept; comment \"{what}\"; }}"
        );
        let _ = writeln!(s, "flush chain {FAMILY} {TABLE} {chain}");
        let _ = writeln!(s, "add rule {FAMILY} {TABLE} {chain} ct state established,related accept");
        let _ = writeln!(s, "add rule {FAMILY} {TABLE} {chain} {field} vmap @{map}");
    }
    s
}

/// The script that turns `old` (what the kernel holds) into `new`; empty when they are equal.
pub(crate) fn update_script(old: &Ruleset, new: &Ruleset) -> String {
    write_script(old, new, false)
}

/// The script that makes the kernel hold `new` whatever it holds now, given that it holds
/// at most the objects of `old`, `new` and the base objects: every object of `new` is
/// created if missing and flushed before it is filled, and every object of `old` that `new`
/// lacks is created (so that deleting it cannot fail) and deleted.
pub(crate) fn resync_script(old: &Ruleset, new: &Ruleset) -> String {
    write_script(old, new, true)
}

fn write_script(old: &Ruleset, new: &Ruleset, resync: bool) -> String {
    let mut s = String::new();
    let t = format!("{FAMILY} {TABLE}");

    // 1. Sets first: rules written below may look them up.
    for (name, set) in &new.sets {
        let before = old.sets.get(name).filter(|_| !resync);
        match before {
            Some(before) => {
                let gone: Vec<&str> = before.elements.difference(&set.elements).map(String::as_str).collect();
                let added: Vec<&str> = set.elements.difference(&before.elements).map(String::as_str).collect();
                if !gone.is_empty() {
                    let _ = writeln!(s, "delete element {t} {name} {{ {} }}", gone.join(", "));
                }
                if !added.is_empty() {
                    let _ = writeln!(s, "add element {t} {name} {{ {} }}", added.join(", "));
                }
            }
            None => {
                let _ = writeln!(s, "add set {t} {name} {{ type {};{} }}", set.kind, comment(&set.comment));
                if resync {
                    let _ = writeln!(s, "flush set {t} {name}");
                }
                if !set.elements.is_empty() {
                    let elements: Vec<&str> = set.elements.iter().map(String::as_str).collect();
                    let _ = writeln!(s, "add element {t} {name} {{ {} }}", elements.join(", "));
                }
            }
        }
    }

    // 2. Every new chain exists before any rule jumps to it...
    for (name, chain) in &new.chains {
        if resync || !old.chains.contains_key(name) {
            let _ = writeln!(s, "add chain {t} {name}{}", chain_comment(&chain.comment));
        }
    }
    // 3. ...then new and changed chains get their rules.
    for (name, chain) in &new.chains {
        let unchanged = old.chains.get(name).is_some_and(|c| c.rules == chain.rules);
        if unchanged && !resync {
            continue;
        }
        if resync || old.chains.contains_key(name) {
            let _ = writeln!(s, "flush chain {t} {name}");
        }
        for rule in &chain.rules {
            let _ = writeln!(s, "add rule {t} {name} {rule}");
        }
    }

    // 4. Map elements: removed and changed ones go before new ones take their keys.
    for (map, before, after) in [
        (INGRESS_MAP, &old.ingress_pods, &new.ingress_pods),
        (EGRESS_MAP, &old.egress_pods, &new.egress_pods),
    ] {
        if resync {
            let _ = writeln!(s, "flush map {t} {map}");
        } else {
            let gone: Vec<String> =
                before.iter().filter(|(ip, chain)| after.get(ip) != Some(chain)).map(|(ip, _)| ip.to_string()).collect();
            if !gone.is_empty() {
                let _ = writeln!(s, "delete element {t} {map} {{ {} }}", gone.join(", "));
            }
        }
        let added: Vec<String> = after
            .iter()
            .filter(|(ip, chain)| resync || before.get(ip) != Some(chain))
            .map(|(ip, chain)| format!("{ip} : jump {chain}"))
            .collect();
        if !added.is_empty() {
            let _ = writeln!(s, "add element {t} {map} {{ {} }}", added.join(", "));
        }
    }

    // 5. Chains no longer wanted: emptied first, so that jumps between them are gone, then
    // deleted. Nothing else refers to them any more: the maps and the kept chains were
    // rewritten above.
    let gone_chains: Vec<&String> = old.chains.keys().filter(|n| !new.chains.contains_key(*n)).collect();
    for name in &gone_chains {
        if resync {
            let _ = writeln!(s, "add chain {t} {name}");
        }
        let _ = writeln!(s, "flush chain {t} {name}");
    }
    for name in &gone_chains {
        let _ = writeln!(s, "delete chain {t} {name}");
    }

    // 6. Sets no longer wanted.
    for (name, set) in &old.sets {
        if new.sets.contains_key(name) {
            continue;
        }
        if resync {
            let _ = writeln!(s, "add set {t} {name} {{ type {}; }}", set.kind);
        }
        let _ = writeln!(s, "delete set {t} {name}");
    }
    s
}

fn comment(c: &Option<String>) -> String {
    c.as_ref().map(|c| format!(" comment \"{}\";", escape(c))).unwrap_or_default()
}

fn chain_comment(c: &Option<String>) -> String {
    c.as_ref().map(|c| format!(" {{ comment \"{}\"; }}", escape(c))).unwrap_or_default()
}

/// Object names are DNS labels and subdomains; anything else is left out of a comment
/// rather than risking the script's syntax.
fn escape(c: &str) -> String {
    c.chars().filter(|ch| ch.is_ascii_graphic() && *ch != '"' && *ch != '\\' || *ch == ' ').collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(elements: &[&str]) -> Set {
        Set { kind: "ipv4_addr", comment: None, elements: elements.iter().map(|e| e.to_string()).collect() }
    }

    fn chain(rules: &[&str]) -> Chain {
        Chain { comment: None, rules: rules.iter().map(|r| r.to_string()).collect() }
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn equal_rulesets_need_no_script() {
        let mut r = Ruleset::default();
        r.sets.insert("policy-s".into(), set(&["10.0.0.1"]));
        r.chains.insert("policy-c".into(), chain(&["drop"]));
        r.ingress_pods.insert(ip("10.0.0.2"), "policy-c".into());
        assert_eq!(update_script(&r, &r), "");
    }

    #[test]
    fn a_changed_set_moves_by_elements() {
        let mut old = Ruleset::default();
        old.sets.insert("policy-s".into(), set(&["10.0.0.1", "10.0.0.2"]));
        let mut new = Ruleset::default();
        new.sets.insert("policy-s".into(), set(&["10.0.0.2", "10.0.0.3"]));
        assert_eq!(
            update_script(&old, &new),
            "delete element ip skiff policy-s { 10.0.0.1 }\nadd element ip skiff policy-s { 10.0.0.3 }\n"
        );
    }

    #[test]
    fn chains_exist_before_map_elements_name_them_and_go_after_the_elements_are_gone() {
        let old = Ruleset {
            chains: [("policy-in-10.0.0.1".to_string(), chain(&["drop"]))].into(),
            ingress_pods: [(ip("10.0.0.1"), "policy-in-10.0.0.1".to_string())].into(),
            ..Default::default()
        };
        let new = Ruleset {
            chains: [("policy-in-10.0.0.2".to_string(), chain(&["drop"]))].into(),
            ingress_pods: [(ip("10.0.0.2"), "policy-in-10.0.0.2".to_string())].into(),
            ..Default::default()
        };
        assert_eq!(
            update_script(&old, &new),
            "add chain ip skiff policy-in-10.0.0.2\n\
             add rule ip skiff policy-in-10.0.0.2 drop\n\
             delete element ip skiff policy-ingress-pods { 10.0.0.1 }\n\
             add element ip skiff policy-ingress-pods { 10.0.0.2 : jump policy-in-10.0.0.2 }\n\
             flush chain ip skiff policy-in-10.0.0.1\n\
             delete chain ip skiff policy-in-10.0.0.1\n"
        );
    }

    #[test]
    fn a_changed_chain_is_flushed_and_rewritten() {
        let old = Ruleset { chains: [("policy-c".to_string(), chain(&["accept"]))].into(), ..Default::default() };
        let new = Ruleset { chains: [("policy-c".to_string(), chain(&["drop"]))].into(), ..Default::default() };
        assert_eq!(update_script(&old, &new), "flush chain ip skiff policy-c\nadd rule ip skiff policy-c drop\n");
    }

    #[test]
    fn a_resync_flushes_everything_it_fills_and_can_delete_what_may_be_missing() {
        let old = Ruleset {
            chains: [("policy-old".to_string(), chain(&["drop"]))].into(),
            sets: [("policy-old-set".to_string(), set(&[]))].into(),
            ..Default::default()
        };
        let new = Ruleset {
            sets: [("policy-s".to_string(), set(&["10.0.0.1"]))].into(),
            egress_pods: [(ip("10.0.0.1"), "policy-c".to_string())].into(),
            chains: [("policy-c".to_string(), chain(&["drop"]))].into(),
            ..Default::default()
        };
        assert_eq!(
            resync_script(&old, &new),
            "add set ip skiff policy-s { type ipv4_addr; }\n\
             flush set ip skiff policy-s\n\
             add element ip skiff policy-s { 10.0.0.1 }\n\
             add chain ip skiff policy-c\n\
             flush chain ip skiff policy-c\n\
             add rule ip skiff policy-c drop\n\
             flush map ip skiff policy-ingress-pods\n\
             flush map ip skiff policy-egress-pods\n\
             add element ip skiff policy-egress-pods { 10.0.0.1 : jump policy-c }\n\
             add chain ip skiff policy-old\n\
             flush chain ip skiff policy-old\n\
             delete chain ip skiff policy-old\n\
             add set ip skiff policy-old-set { type ipv4_addr; }\n\
             delete set ip skiff policy-old-set\n"
        );
    }

    #[test]
    fn comments_cannot_break_out_of_their_quotes() {
        assert_eq!(comment(&Some("ns/a\"; flush table ip skiff; \\".into())), " comment \"ns/a; flush table ip skiff; \";");
    }
}
