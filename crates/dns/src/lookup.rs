//! Answers for one question, computed from the record store.
//!
//! The name layout is the Kubernetes DNS specification's, with CoreDNS's reading of the
//! unclear corners:
//!
//! - `<svc>.<ns>.svc.<zone>`: the cluster IPs; for a headless Service, the ready endpoints
//!   (NXDOMAIN when there are none); for an ExternalName Service, a CNAME.
//! - `<endpoint>.<svc>.<ns>.svc.<zone>`: an endpoint by hostname or dashed address.
//! - `_<port>._<proto>.<svc>.<ns>.svc.<zone>`: SRV for a named port (SRV on the bare
//!   Service name lists every port, as CoreDNS does).
//! - `<a-b-c-d>.<ns>.pod.<zone>`: the address spelled in the name ("pods insecure").
//! - `<ns>.svc.<zone>`: NODATA while the namespace has a Service, else NXDOMAIN.
//! - `dns-version.<zone>` TXT, and the zone's own SOA and NS.
//! - PTR for cluster IPs and endpoint addresses; other reverse names are not ours.
//!
//! A name that exists answers NOERROR even when it has no record of the asked type (NODATA).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::records::{Records, ServiceEntry, ServiceKind, State};

/// The schema version CoreDNS publishes at `dns-version.<zone>`.
const DNS_SCHEMA_VERSION: &str = "1.1.0";
/// TTL of the schema-version record (CoreDNS's value: it never changes).
const DNS_SCHEMA_TTL: u32 = 28800;
/// How many in-zone CNAMEs one answer follows before giving up on a loop.
const MAX_CNAME_DEPTH: usize = 8;
/// The nameserver name of the zone, under the zone (CoreDNS's convention).
const NS_LABELS: [&str; 2] = ["ns", "dns"];
/// The Service whose cluster IPs are the zone's nameserver addresses.
const KUBE_DNS: (&str, &str) = ("kube-system", "kube-dns");

/// What the store says about one question.
#[derive(Debug, PartialEq)]
pub(crate) enum Lookup {
    /// Neither the cluster domain nor a reverse name the cluster knows: forward it.
    NotOurs,
    /// Inside the cluster domain, and no such name.
    NxDomain,
    /// The name exists; no answers means NODATA.
    Found(Found),
}

#[derive(Debug, Default, PartialEq)]
pub(crate) struct Found {
    pub(crate) answers: Vec<Record>,
    pub(crate) additionals: Vec<Record>,
    /// The answers end in a CNAME to a name outside the cluster: the server looks up that name
    /// (for the question's type) upstream and appends what it gets.
    pub(crate) chase: Option<Name>,
}

impl Found {
    fn nodata() -> Lookup {
        Lookup::Found(Found::default())
    }

    fn answers(answers: Vec<Record>) -> Lookup {
        Lookup::Found(Found { answers, ..Found::default() })
    }
}

// === impl Records ===

impl Records {
    /// Answers `qname`/`qtype` from the store. `qname`'s case is kept in the answers' owner
    /// names, as clients expect their question echoed.
    pub(crate) fn lookup(&self, qname: &Name, qtype: RecordType, ttl: u32) -> Lookup {
        let state = self.read();
        let cx = Cx { zone: self.cluster_domain(), state: &state, ttl };
        if let Some(ip) = reverse_ip(qname) {
            if qtype != RecordType::PTR {
                return Lookup::NotOurs;
            }
            let names = cx.ptr_names(ip);
            if names.is_empty() {
                return Lookup::NotOurs;
            }
            return Found::answers(names.into_iter().map(|n| cx.record(qname, RData::PTR(PTR(n)))).collect());
        }
        if !cx.zone.zone_of(qname) {
            return Lookup::NotOurs;
        }
        cx.resolve(qname, qtype, 0)
    }

    /// The zone's SOA record, which NXDOMAIN and NODATA answers carry in their authority
    /// section so that resolvers can cache the negative answer (for `ttl` seconds).
    pub(crate) fn soa(&self, ttl: u32) -> Record {
        let state = self.read();
        let cx = Cx { zone: self.cluster_domain(), state: &state, ttl };
        cx.soa()
    }
}

/// One lookup's view: the zone, the locked state and the TTL.
struct Cx<'a> {
    zone: &'a Name,
    state: &'a State,
    ttl: u32,
}

/// Where a name under `<svc>.<ns>.svc.<zone>` points.
struct ServiceQuery<'a> {
    namespace: &'a str,
    service: &'a str,
    endpoint: Option<&'a str>,
    /// (port name, protocol), underscores stripped.
    port: Option<(&'a str, &'a str)>,
}

/// An address a Service name leads to, with the name that owns it (the SRV target) and the
/// port, when there is one.
struct Target {
    host: Name,
    addr: IpAddr,
    port: Option<u16>,
}

impl Cx<'_> {
    fn resolve(&self, qname: &Name, qtype: RecordType, depth: usize) -> Lookup {
        let labels = relative_labels(qname, self.zone);
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        match labels.as_slice() {
            [] => self.apex(qname, qtype),
            [rest @ .., "svc"] => self.svc(qname, qtype, rest, depth),
            [rest @ .., "pod"] => self.pod(qname, qtype, rest),
            ["dns-version"] => match qtype {
                RecordType::TXT => {
                    let txt = RData::TXT(TXT::new(vec![DNS_SCHEMA_VERSION.to_string()]));
                    Found::answers(vec![Record::from_rdata(qname.clone(), DNS_SCHEMA_TTL, txt)])
                }
                _ => Found::nodata(),
            },
            l if l == NS_LABELS => Found::answers(self.address_records(qname, qtype, &self.nameserver_ips())),
            _ => Lookup::NxDomain,
        }
    }

    fn apex(&self, qname: &Name, qtype: RecordType) -> Lookup {
        match qtype {
            RecordType::SOA => Found::answers(vec![self.soa()]),
            RecordType::NS => {
                let Some(ns) = self.name(&NS_LABELS) else {
                    return Found::nodata();
                };
                let additionals = self.address_records(&ns, RecordType::A, &self.nameserver_ips());
                Lookup::Found(Found {
                    answers: vec![self.record(qname, RData::NS(NS(ns)))],
                    additionals,
                    chase: None,
                })
            }
            _ => Found::nodata(),
        }
    }

    fn svc(&self, qname: &Name, qtype: RecordType, rest: &[&str], depth: usize) -> Lookup {
        let query = match *rest {
            [] => return Found::nodata(),
            [ns] => {
                return if self.state.namespaces.contains_key(ns) { Found::nodata() } else { Lookup::NxDomain };
            }
            [service, namespace] => ServiceQuery { namespace, service, endpoint: None, port: None },
            [endpoint, service, namespace] => ServiceQuery { namespace, service, endpoint: Some(endpoint), port: None },
            [port, proto, service, namespace] => ServiceQuery {
                namespace,
                service,
                endpoint: None,
                port: Some((strip_underscore(port), strip_underscore(proto))),
            },
            _ => return Lookup::NxDomain,
        };
        let Some(svc) = self.state.services.get(&(query.namespace.to_string(), query.service.to_string())) else {
            return Lookup::NxDomain;
        };
        if let ServiceKind::ExternalName(target) = &svc.kind {
            if query.endpoint.is_some() || query.port.is_some() {
                return Lookup::NxDomain;
            }
            return self.cname(qname, target, qtype, depth);
        }
        match self.targets(&query, svc) {
            Some(targets) => Lookup::Found(self.target_records(qname, qtype, &targets)),
            None => Lookup::NxDomain,
        }
    }

    /// The addresses a Service name leads to; `None` when the name does not exist.
    fn targets(&self, query: &ServiceQuery<'_>, svc: &ServiceEntry) -> Option<Vec<Target>> {
        let service_name = self.name(&[query.service, query.namespace, "svc"])?;
        if let (ServiceKind::ClusterIp(ips), None) = (&svc.kind, query.endpoint) {
            let ports: Vec<u16> = svc
                .ports
                .iter()
                .filter(|p| port_matches(query.port, &p.name, &p.protocol))
                .filter_map(|p| p.port)
                .collect();
            if query.port.is_some() && ports.is_empty() {
                return None;
            }
            let mut targets = Vec::new();
            for &addr in ips {
                if ports.is_empty() {
                    targets.push(Target { host: service_name.clone(), addr, port: None });
                }
                for &port in &ports {
                    targets.push(Target { host: service_name.clone(), addr, port: Some(port) });
                }
            }
            return Some(targets);
        }

        // A headless Service, or one endpoint of any Service: the endpoints answer.
        let mut targets = Vec::new();
        for slice in self.state.slices_of(query.namespace, query.service) {
            let ports: Vec<Option<u16>> = if slice.ports.is_empty() {
                if query.port.is_some() {
                    continue;
                }
                vec![None]
            } else {
                slice.ports.iter().filter(|p| port_matches(query.port, &p.name, &p.protocol)).map(|p| p.port).collect()
            };
            for endpoint in slice.endpoints.iter().filter(|e| e.ready || svc.publish_not_ready) {
                for &addr in &endpoint.addresses {
                    let dashed = dashed(addr);
                    if let Some(wanted) = query.endpoint {
                        if endpoint.hostname.as_deref() != Some(wanted) && dashed != wanted {
                            continue;
                        }
                    }
                    let host_label = endpoint.hostname.as_deref().unwrap_or(&dashed);
                    let Some(host) = self.name(&[host_label, query.service, query.namespace, "svc"]) else {
                        continue;
                    };
                    for &port in &ports {
                        targets.push(Target { host: host.clone(), addr, port });
                    }
                }
            }
        }
        // No ready endpoint: the name does not exist (spec 2.4.1).
        (!targets.is_empty()).then_some(targets)
    }

    fn target_records(&self, qname: &Name, qtype: RecordType, targets: &[Target]) -> Found {
        match qtype {
            RecordType::A | RecordType::AAAA => {
                let addrs: Vec<IpAddr> = targets.iter().map(|t| t.addr).collect();
                Found { answers: self.address_records(qname, qtype, &addrs), ..Found::default() }
            }
            RecordType::SRV => {
                let mut seen = HashSet::new();
                let srv: Vec<(&Name, u16)> = targets
                    .iter()
                    .filter_map(|t| Some((&t.host, t.port?)))
                    .filter(|(host, port)| seen.insert(((*host).clone(), *port)))
                    .collect();
                // All SRV records share priority 0 and split a weight of 100 evenly, at least
                // 1 each, as CoreDNS does.
                let weight = u16::try_from((100 / srv.len().max(1)).max(1)).unwrap_or(1);
                let answers = srv
                    .iter()
                    .map(|(host, port)| self.record(qname, RData::SRV(SRV::new(0, weight, *port, (*host).clone()))))
                    .collect();
                let mut seen = HashSet::new();
                let additionals = targets
                    .iter()
                    .filter(|t| t.port.is_some() && seen.insert((t.host.clone(), t.addr)))
                    .map(|t| self.record(&t.host, address_rdata(t.addr)))
                    .collect();
                Found { answers, additionals, chase: None }
            }
            _ => Found::default(),
        }
    }

    fn cname(&self, qname: &Name, target: &Name, qtype: RecordType, depth: usize) -> Lookup {
        let cname = self.record(qname, RData::CNAME(CNAME(target.clone())));
        if qtype == RecordType::CNAME {
            return Found::answers(vec![cname]);
        }
        if !self.zone.zone_of(target) {
            return Lookup::Found(Found { answers: vec![cname], additionals: Vec::new(), chase: Some(target.clone()) });
        }
        let mut found = Found { answers: vec![cname], ..Found::default() };
        if depth < MAX_CNAME_DEPTH {
            if let Lookup::Found(next) = self.resolve(target, qtype, depth + 1) {
                found.answers.extend(next.answers);
                found.additionals = next.additionals;
                found.chase = next.chase;
            }
        }
        Lookup::Found(found)
    }

    fn pod(&self, qname: &Name, qtype: RecordType, rest: &[&str]) -> Lookup {
        match *rest {
            // `pod.<zone>` and `<ns>.pod.<zone>` exist as long as pods can.
            [] | [_] => Found::nodata(),
            [pod, _namespace] => match pod_ip(pod) {
                Some(ip) => Found::answers(self.address_records(qname, qtype, &[ip])),
                None => Lookup::NxDomain,
            },
            _ => Lookup::NxDomain,
        }
    }

    /// Names that point at `ip`: the Service whose cluster IP it is, or else the endpoints
    /// at that address.
    fn ptr_names(&self, ip: IpAddr) -> Vec<Name> {
        if let Some((ns, name)) = self.state.services_by_ip.get(&ip).and_then(|keys| keys.iter().next()) {
            return self.name(&[name, ns, "svc"]).into_iter().collect();
        }
        let mut names = Vec::new();
        for (ns, slice_name) in self.state.slices_by_ip.get(&ip).into_iter().flatten() {
            let Some(slice) = self.state.slices.get(&(ns.clone(), slice_name.clone())) else {
                continue;
            };
            let Some(svc) = self.state.services.get(&(ns.clone(), slice.service.clone())) else {
                continue;
            };
            if matches!(svc.kind, ServiceKind::ExternalName(_)) {
                continue;
            }
            for endpoint in &slice.endpoints {
                if !(endpoint.ready || svc.publish_not_ready) || !endpoint.addresses.contains(&ip) {
                    continue;
                }
                let dashed = dashed(ip);
                let host = endpoint.hostname.as_deref().unwrap_or(&dashed);
                if let Some(name) = self.name(&[host, &slice.service, ns, "svc"]) {
                    if !names.contains(&name) {
                        names.push(name);
                    }
                }
            }
        }
        names
    }

    fn nameserver_ips(&self) -> Vec<IpAddr> {
        match self.state.services.get(&(KUBE_DNS.0.to_string(), KUBE_DNS.1.to_string())) {
            Some(ServiceEntry { kind: ServiceKind::ClusterIp(ips), .. }) => ips.clone(),
            _ => Vec::new(),
        }
    }

    /// A or AAAA records (by `qtype`) for the addresses of that family, each once, in order.
    fn address_records(&self, owner: &Name, qtype: RecordType, addrs: &[IpAddr]) -> Vec<Record> {
        let mut seen = HashSet::new();
        addrs
            .iter()
            .filter(|a| match qtype {
                RecordType::A => a.is_ipv4(),
                RecordType::AAAA => a.is_ipv6(),
                _ => false,
            })
            .filter(|a| seen.insert(**a))
            .map(|a| self.record(owner, address_rdata(*a)))
            .collect()
    }

    fn soa(&self) -> Record {
        let mname = self.name(&NS_LABELS).unwrap_or_else(|| self.zone.clone());
        let rname = self.name(&["hostmaster"]).unwrap_or_else(|| self.zone.clone());
        let soa = SOA::new(mname, rname, self.state.serial, 7200, 1800, 86400, self.ttl);
        Record::from_rdata(self.zone.clone(), self.ttl.min(300), RData::SOA(soa))
    }

    fn record(&self, owner: &Name, rdata: RData) -> Record {
        Record::from_rdata(owner.clone(), self.ttl, rdata)
    }

    /// `labels` (leftmost first) under the zone; `None` if they do not form a valid name.
    fn name(&self, labels: &[&str]) -> Option<Name> {
        let mut name = self.zone.clone();
        for label in labels.iter().rev() {
            name = name.prepend_label(*label).ok()?;
        }
        Some(name)
    }
}

/// The lowercase labels of `name` left of `zone` (which must contain it).
fn relative_labels(name: &Name, zone: &Name) -> Vec<String> {
    let count = name.iter().count().saturating_sub(zone.iter().count());
    name.iter().take(count).map(|l| String::from_utf8_lossy(l).to_ascii_lowercase()).collect()
}

fn strip_underscore(label: &str) -> &str {
    label.strip_prefix('_').unwrap_or(label)
}

fn port_matches(wanted: Option<(&str, &str)>, name: &str, protocol: &str) -> bool {
    match wanted {
        None => true,
        Some((port, proto)) => !name.is_empty() && name == port && protocol == proto,
    }
}

fn address_rdata(addr: IpAddr) -> RData {
    match addr {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    }
}

/// `10.244.1.5` → `10-244-1-5`; IPv6 colons become dashes too (`fd00--5`).
fn dashed(addr: IpAddr) -> String {
    addr.to_string().replace(['.', ':'], "-")
}

/// The address a pod name spells: `10-244-1-5`, or for IPv6 `fd00--5`.
fn pod_ip(label: &str) -> Option<IpAddr> {
    if label.matches('-').count() == 3 && !label.contains("--") {
        label.replace('-', ".").parse::<Ipv4Addr>().ok().map(IpAddr::V4)
    } else {
        label.replace('-', ":").parse::<Ipv6Addr>().ok().map(IpAddr::V6)
    }
}

/// The address a full reverse name stands for (`5.1.244.10.in-addr.arpa.`, or the 32-nibble
/// `ip6.arpa.` form); `None` for anything else, partial reverse names included.
fn reverse_ip(name: &Name) -> Option<IpAddr> {
    let labels: Vec<String> = name.iter().map(|l| String::from_utf8_lossy(l).to_ascii_lowercase()).collect();
    let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
    match labels.as_slice() {
        [d, c, b, a, "in-addr", "arpa"] => {
            let octet = |s: &str| s.parse::<u8>().ok();
            Some(IpAddr::V4(Ipv4Addr::new(octet(a)?, octet(b)?, octet(c)?, octet(d)?)))
        }
        [nibbles @ .., "ip6", "arpa"] if nibbles.len() == 32 => {
            let mut bits: u128 = 0;
            for nibble in nibbles.iter().rev() {
                let mut chars = nibble.chars();
                let value = chars.next()?.to_digit(16)?;
                if chars.next().is_some() {
                    return None;
                }
                bits = (bits << 4) | u128::from(value);
            }
            Some(IpAddr::V6(Ipv6Addr::from(bits)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::testing::*;

    const TTL: u32 = 5;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn records() -> Records {
        Records::new("cluster.local")
    }

    fn found(lookup: Lookup) -> Found {
        match lookup {
            Lookup::Found(found) => found,
            other => panic!("expected an answer, got {other:?}"),
        }
    }

    fn rdata(found: &Found) -> Vec<String> {
        found.answers.iter().map(|r| r.data.to_string()).collect()
    }

    fn lookup(records: &Records, qname: &str, qtype: RecordType) -> Lookup {
        records.lookup(&name(qname), qtype, TTL)
    }

    #[test]
    fn a_cluster_ip_service_answers_its_cluster_ip() {
        let r = records();
        r.apply_service(&service("default", "web", "10.96.0.20", &[("http", "TCP", 80)]));
        let f = found(lookup(&r, "web.default.svc.cluster.local.", RecordType::A));
        assert_eq!(rdata(&f), vec!["10.96.0.20"]);
        assert_eq!(f.answers[0].ttl, TTL);
        assert_eq!(f.answers[0].name, name("web.default.svc.cluster.local."));
    }

    #[test]
    fn names_match_case_insensitively_and_keep_the_askers_case() {
        let r = records();
        r.apply_service(&service("default", "web", "10.96.0.20", &[]));
        let f = found(lookup(&r, "WEB.Default.SVC.cluster.LOCAL.", RecordType::A));
        assert_eq!(rdata(&f), vec!["10.96.0.20"]);
        assert_eq!(f.answers[0].name.to_ascii(), "WEB.Default.SVC.cluster.LOCAL.");
    }

    #[test]
    fn aaaa_for_an_ipv4_only_service_is_nodata() {
        let r = records();
        r.apply_service(&service("default", "web", "10.96.0.20", &[]));
        assert_eq!(lookup(&r, "web.default.svc.cluster.local.", RecordType::AAAA), Lookup::Found(Found::default()));
        assert_eq!(lookup(&r, "web.default.svc.cluster.local.", RecordType::MX), Lookup::Found(Found::default()));
    }

    #[test]
    fn a_dual_stack_service_answers_aaaa_with_its_ipv6_cluster_ip() {
        let r = records();
        let mut svc = service("default", "web", "10.96.0.20", &[]);
        svc.spec.as_mut().unwrap().cluster_ips = Some(vec!["10.96.0.20".into(), "fd00:96::20".into()]);
        r.apply_service(&svc);
        assert_eq!(rdata(&found(lookup(&r, "web.default.svc.cluster.local.", RecordType::AAAA))), vec!["fd00:96::20"]);
        assert_eq!(rdata(&found(lookup(&r, "web.default.svc.cluster.local.", RecordType::A))), vec!["10.96.0.20"]);
    }

    #[test]
    fn unknown_names_in_the_cluster_domain_do_not_exist() {
        let r = records();
        r.apply_service(&service("default", "web", "10.96.0.20", &[]));
        for qname in [
            "nope.default.svc.cluster.local.",
            "web.other.svc.cluster.local.",
            "a.b.c.d.web.default.svc.cluster.local.",
            "something.cluster.local.",
            "web.default.cluster.local.",
        ] {
            assert_eq!(lookup(&r, qname, RecordType::A), Lookup::NxDomain, "{qname}");
        }
    }

    #[test]
    fn names_outside_the_cluster_domain_are_not_ours() {
        let r = records();
        assert_eq!(lookup(&r, "example.com.", RecordType::A), Lookup::NotOurs);
        assert_eq!(lookup(&r, "local.", RecordType::A), Lookup::NotOurs);
    }

    #[test]
    fn a_namespace_exists_while_it_has_a_service() {
        let r = records();
        r.apply_service(&service("team", "web", "10.96.0.20", &[]));
        assert_eq!(lookup(&r, "team.svc.cluster.local.", RecordType::A), Lookup::Found(Found::default()));
        assert_eq!(lookup(&r, "svc.cluster.local.", RecordType::A), Lookup::Found(Found::default()));
        r.delete_service("team", "web");
        assert_eq!(lookup(&r, "team.svc.cluster.local.", RecordType::A), Lookup::NxDomain);
    }

    #[test]
    fn srv_for_a_named_port_points_at_the_service_name() {
        let r = records();
        r.apply_service(&service("default", "web", "10.96.0.20", &[("http", "TCP", 80), ("", "TCP", 81), ("dns", "UDP", 53)]));
        let f = found(lookup(&r, "_http._tcp.web.default.svc.cluster.local.", RecordType::SRV));
        assert_eq!(rdata(&f), vec!["0 100 80 web.default.svc.cluster.local."]);
        assert_eq!(f.additionals.len(), 1);
        assert_eq!(f.additionals[0].name, name("web.default.svc.cluster.local."));
        assert_eq!(f.additionals[0].data.to_string(), "10.96.0.20");
        // The protocol must match too, and unnamed ports have no SRV name.
        assert_eq!(lookup(&r, "_http._udp.web.default.svc.cluster.local.", RecordType::SRV), Lookup::NxDomain);
        assert_eq!(rdata(&found(lookup(&r, "_dns._udp.web.default.svc.cluster.local.", RecordType::SRV))), vec!["0 100 53 web.default.svc.cluster.local."]);
    }

    #[test]
    fn srv_on_the_bare_service_name_lists_every_port() {
        let r = records();
        r.apply_service(&service("default", "web", "10.96.0.20", &[("http", "TCP", 80), ("https", "TCP", 443)]));
        let f = found(lookup(&r, "web.default.svc.cluster.local.", RecordType::SRV));
        assert_eq!(rdata(&f), vec!["0 50 80 web.default.svc.cluster.local.", "0 50 443 web.default.svc.cluster.local."]);
        // One additional record for the one target address.
        assert_eq!(f.additionals.len(), 1);
    }

    fn headless(r: &Records) {
        r.apply_service(&service("default", "nginx", "None", &[("web", "TCP", 80)]));
        r.apply_slice(&slice(
            "default",
            "nginx-abc",
            "nginx",
            &[("web", "TCP", 8080)],
            &[("10.244.1.5", Some("web-0"), true), ("10.244.2.6", None, true), ("10.244.3.7", Some("web-2"), false)],
        ));
    }

    #[test]
    fn a_headless_service_answers_its_ready_endpoints() {
        let r = records();
        headless(&r);
        let f = found(lookup(&r, "nginx.default.svc.cluster.local.", RecordType::A));
        assert_eq!(rdata(&f), vec!["10.244.1.5", "10.244.2.6"]);
    }

    #[test]
    fn publish_not_ready_addresses_includes_not_ready_endpoints() {
        let r = records();
        headless(&r);
        let mut svc = service("default", "nginx", "None", &[("web", "TCP", 80)]);
        svc.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
        r.apply_service(&svc);
        let f = found(lookup(&r, "nginx.default.svc.cluster.local.", RecordType::A));
        assert_eq!(rdata(&f), vec!["10.244.1.5", "10.244.2.6", "10.244.3.7"]);
        assert_eq!(rdata(&found(lookup(&r, "web-2.nginx.default.svc.cluster.local.", RecordType::A))), vec!["10.244.3.7"]);
    }

    #[test]
    fn a_headless_service_without_ready_endpoints_does_not_exist() {
        let r = records();
        r.apply_service(&service("default", "nginx", "None", &[("web", "TCP", 80)]));
        assert_eq!(lookup(&r, "nginx.default.svc.cluster.local.", RecordType::A), Lookup::NxDomain);
        r.apply_slice(&slice("default", "nginx-abc", "nginx", &[("web", "TCP", 80)], &[("10.244.1.5", None, false)]));
        assert_eq!(lookup(&r, "nginx.default.svc.cluster.local.", RecordType::A), Lookup::NxDomain);
    }

    #[test]
    fn endpoints_answer_by_hostname_and_by_dashed_address() {
        let r = records();
        headless(&r);
        assert_eq!(rdata(&found(lookup(&r, "web-0.nginx.default.svc.cluster.local.", RecordType::A))), vec!["10.244.1.5"]);
        assert_eq!(rdata(&found(lookup(&r, "10-244-1-5.nginx.default.svc.cluster.local.", RecordType::A))), vec!["10.244.1.5"]);
        assert_eq!(rdata(&found(lookup(&r, "10-244-2-6.nginx.default.svc.cluster.local.", RecordType::A))), vec!["10.244.2.6"]);
        // Not ready, so not published.
        assert_eq!(lookup(&r, "web-2.nginx.default.svc.cluster.local.", RecordType::A), Lookup::NxDomain);
        assert_eq!(lookup(&r, "web-9.nginx.default.svc.cluster.local.", RecordType::A), Lookup::NxDomain);
    }

    #[test]
    fn endpoints_of_a_cluster_ip_service_have_names_too() {
        let r = records();
        r.apply_service(&service("default", "web", "10.96.0.20", &[("http", "TCP", 80)]));
        r.apply_slice(&slice("default", "web-abc", "web", &[("http", "TCP", 8080)], &[("10.244.1.5", None, true)]));
        assert_eq!(rdata(&found(lookup(&r, "10-244-1-5.web.default.svc.cluster.local.", RecordType::A))), vec!["10.244.1.5"]);
        // The service name itself still answers with the cluster IP.
        assert_eq!(rdata(&found(lookup(&r, "web.default.svc.cluster.local.", RecordType::A))), vec!["10.96.0.20"]);
    }

    #[test]
    fn headless_srv_has_one_record_per_ready_endpoint_with_endpoint_targets() {
        let r = records();
        headless(&r);
        let f = found(lookup(&r, "_web._tcp.nginx.default.svc.cluster.local.", RecordType::SRV));
        assert_eq!(
            rdata(&f),
            vec!["0 50 8080 web-0.nginx.default.svc.cluster.local.", "0 50 8080 10-244-2-6.nginx.default.svc.cluster.local."]
        );
        let extra: Vec<String> = f.additionals.iter().map(|r| format!("{} {}", r.name, r.data)).collect();
        assert_eq!(
            extra,
            vec!["web-0.nginx.default.svc.cluster.local. 10.244.1.5", "10-244-2-6.nginx.default.svc.cluster.local. 10.244.2.6"]
        );
    }

    #[test]
    fn ptr_names_a_cluster_ip_and_headless_endpoints() {
        let r = records();
        headless(&r);
        r.apply_service(&service("default", "web", "10.96.0.20", &[]));
        let f = found(lookup(&r, "20.0.96.10.in-addr.arpa.", RecordType::PTR));
        assert_eq!(rdata(&f), vec!["web.default.svc.cluster.local."]);
        let f = found(lookup(&r, "5.1.244.10.in-addr.arpa.", RecordType::PTR));
        assert_eq!(rdata(&f), vec!["web-0.nginx.default.svc.cluster.local."]);
        let f = found(lookup(&r, "6.2.244.10.IN-ADDR.ARPA.", RecordType::PTR));
        assert_eq!(rdata(&f), vec!["10-244-2-6.nginx.default.svc.cluster.local."]);
    }

    #[test]
    fn unknown_reverse_names_and_other_types_are_forwarded() {
        let r = records();
        headless(&r);
        assert_eq!(lookup(&r, "9.9.244.10.in-addr.arpa.", RecordType::PTR), Lookup::NotOurs);
        assert_eq!(lookup(&r, "7.3.244.10.in-addr.arpa.", RecordType::PTR), Lookup::NotOurs, "not ready");
        assert_eq!(lookup(&r, "5.1.244.10.in-addr.arpa.", RecordType::A), Lookup::NotOurs);
        assert_eq!(lookup(&r, "244.10.in-addr.arpa.", RecordType::PTR), Lookup::NotOurs);
    }

    #[test]
    fn ipv6_reverse_names_are_understood() {
        let r = records();
        let mut svc = service("default", "web", "10.96.0.20", &[]);
        svc.spec.as_mut().unwrap().cluster_ips = Some(vec!["10.96.0.20".into(), "fd00::20".into()]);
        r.apply_service(&svc);
        let qname = "0.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.";
        assert_eq!(rdata(&found(lookup(&r, qname, RecordType::PTR))), vec!["web.default.svc.cluster.local."]);
    }

    #[test]
    fn an_external_name_service_is_a_cname_chased_upstream() {
        let r = records();
        r.apply_service(&external("default", "ext", "www.example.com"));
        let f = found(lookup(&r, "ext.default.svc.cluster.local.", RecordType::A));
        assert_eq!(rdata(&f), vec!["www.example.com."]);
        assert_eq!(f.chase, Some(name("www.example.com.")));
        let f = found(lookup(&r, "ext.default.svc.cluster.local.", RecordType::CNAME));
        assert_eq!(rdata(&f), vec!["www.example.com."]);
        assert_eq!(f.chase, None);
        assert_eq!(lookup(&r, "x.ext.default.svc.cluster.local.", RecordType::A), Lookup::NxDomain);
    }

    #[test]
    fn an_external_name_inside_the_cluster_is_followed_locally() {
        let r = records();
        r.apply_service(&service("default", "web", "10.96.0.20", &[]));
        r.apply_service(&external("default", "alias", "web.default.svc.cluster.local"));
        let f = found(lookup(&r, "alias.default.svc.cluster.local.", RecordType::A));
        assert_eq!(rdata(&f), vec!["web.default.svc.cluster.local.", "10.96.0.20"]);
        assert_eq!(f.chase, None);
    }

    #[test]
    fn cname_loops_stop() {
        let r = records();
        r.apply_service(&external("default", "a", "b.default.svc.cluster.local"));
        r.apply_service(&external("default", "b", "a.default.svc.cluster.local"));
        let f = found(lookup(&r, "a.default.svc.cluster.local.", RecordType::A));
        assert_eq!(f.answers.len(), MAX_CNAME_DEPTH + 1);
    }

    #[test]
    fn pod_names_spell_their_address() {
        let r = records();
        let f = found(lookup(&r, "10-244-1-5.default.pod.cluster.local.", RecordType::A));
        assert_eq!(rdata(&f), vec!["10.244.1.5"]);
        assert_eq!(lookup(&r, "10-244-1-5.default.pod.cluster.local.", RecordType::AAAA), Lookup::Found(Found::default()));
        let f = found(lookup(&r, "fd00--5.default.pod.cluster.local.", RecordType::AAAA));
        assert_eq!(rdata(&f), vec!["fd00::5"]);
        assert_eq!(lookup(&r, "10-244-1-999.default.pod.cluster.local.", RecordType::A), Lookup::NxDomain);
        assert_eq!(lookup(&r, "web.default.pod.cluster.local.", RecordType::A), Lookup::NxDomain);
        assert_eq!(lookup(&r, "default.pod.cluster.local.", RecordType::A), Lookup::Found(Found::default()));
    }

    #[test]
    fn the_zone_apex_has_an_soa_and_a_nameserver() {
        let r = records();
        r.apply_service(&service("kube-system", "kube-dns", "10.96.0.10", &[("dns", "UDP", 53)]));
        let f = found(lookup(&r, "cluster.local.", RecordType::SOA));
        assert_eq!(f.answers.len(), 1);
        let RData::SOA(soa) = &f.answers[0].data else { panic!("expected an SOA") };
        assert_eq!(soa.mname, name("ns.dns.cluster.local."));
        assert_eq!(soa.rname, name("hostmaster.cluster.local."));
        assert_eq!(soa.minimum, TTL);
        let f = found(lookup(&r, "cluster.local.", RecordType::NS));
        assert_eq!(rdata(&f), vec!["ns.dns.cluster.local."]);
        assert_eq!(f.additionals[0].data.to_string(), "10.96.0.10");
        assert_eq!(rdata(&found(lookup(&r, "ns.dns.cluster.local.", RecordType::A))), vec!["10.96.0.10"]);
        assert_eq!(lookup(&r, "cluster.local.", RecordType::A), Lookup::Found(Found::default()));
    }

    #[test]
    fn the_schema_version_is_published() {
        let r = records();
        let f = found(lookup(&r, "dns-version.cluster.local.", RecordType::TXT));
        assert_eq!(rdata(&f), vec!["1.1.0"]);
    }

    #[test]
    fn updates_and_deletions_are_visible_to_the_next_lookup() {
        let r = records();
        r.apply_service(&service("default", "web", "10.96.0.20", &[]));
        r.apply_service(&service("default", "web", "10.96.0.21", &[]));
        assert_eq!(rdata(&found(lookup(&r, "web.default.svc.cluster.local.", RecordType::A))), vec!["10.96.0.21"]);
        r.delete_service("default", "web");
        assert_eq!(lookup(&r, "web.default.svc.cluster.local.", RecordType::A), Lookup::NxDomain);
        assert_eq!(lookup(&r, "21.0.96.10.in-addr.arpa.", RecordType::PTR), Lookup::NotOurs);
    }

    #[test]
    fn a_slice_seen_before_its_service_answers_once_the_service_arrives() {
        let r = records();
        r.apply_slice(&slice("default", "db-1", "db", &[], &[("10.244.1.9", None, true)]));
        assert_eq!(lookup(&r, "db.default.svc.cluster.local.", RecordType::A), Lookup::NxDomain);
        r.apply_service(&service("default", "db", "None", &[]));
        assert_eq!(rdata(&found(lookup(&r, "db.default.svc.cluster.local.", RecordType::A))), vec!["10.244.1.9"]);
    }

    #[test]
    fn the_soa_ttl_is_the_record_ttl_capped_at_five_minutes() {
        let r = records();
        assert_eq!(r.soa(5).ttl, 5);
        assert_eq!(r.soa(3600).ttl, 300);
    }
}
