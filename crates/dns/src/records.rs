//! The record store: what the DNS server knows about Services and their endpoints.
//!
//! The store keeps a compact copy of each Service and EndpointSlice (only what DNS needs) plus
//! two reverse indexes, and computes answers when asked (see [`crate::lookup`]). Keeping the
//! objects rather than precomputed records makes every update O(size of one object) and makes
//! the order of updates irrelevant: a slice seen before its Service simply starts answering
//! once the Service arrives.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::rr::Name;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The record store; cheap to clone (an `Arc` inside), updated from watches while serving.
///
/// Updates take a write lock only for the time it takes to swap one object's entries, and
/// lookups hold the read lock only while computing one answer, so neither waits on the other
/// for long. A std lock, because nothing async happens while it is held.
#[derive(Clone)]
pub struct Records {
    shared: Arc<Shared>,
}

struct Shared {
    /// The cluster domain, lowercase and fully qualified.
    zone: Name,
    state: RwLock<State>,
}

/// A Service or EndpointSlice key: (namespace, name).
pub(crate) type Key = (String, String);

#[derive(Default)]
pub(crate) struct State {
    pub(crate) services: HashMap<Key, ServiceEntry>,
    pub(crate) slices: HashMap<Key, SliceEntry>,
    /// Slice names of each Service, by the Service's key.
    pub(crate) slices_by_service: HashMap<Key, BTreeSet<String>>,
    /// Services whose cluster IPs include an address.
    pub(crate) services_by_ip: HashMap<IpAddr, BTreeSet<Key>>,
    /// Slices with an endpoint at an address.
    pub(crate) slices_by_ip: HashMap<IpAddr, BTreeSet<Key>>,
    /// How many Services each namespace has: a namespace with none is not known to exist.
    pub(crate) namespaces: HashMap<String, usize>,
    /// The SOA serial: the Unix time of the last change, as CoreDNS reports it.
    pub(crate) serial: u32,
}

/// What DNS needs from a Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServiceEntry {
    pub(crate) kind: ServiceKind,
    pub(crate) ports: Vec<PortEntry>,
    /// `spec.publishNotReadyAddresses`: not-ready endpoints are published too.
    pub(crate) publish_not_ready: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ServiceKind {
    /// A virtual IP per family (possibly none yet, while the allocator has not run).
    ClusterIp(Vec<IpAddr>),
    /// `clusterIP: None`: the name resolves to the endpoints themselves.
    Headless,
    /// `type: ExternalName`: the name is an alias of another.
    ExternalName(Name),
}

/// A named or unnamed port, with names and protocols lowercase for matching.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PortEntry {
    pub(crate) name: String,
    pub(crate) protocol: String,
    /// `None` for an EndpointSlice port that means "all ports".
    pub(crate) port: Option<u16>,
}

/// What DNS needs from an EndpointSlice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SliceEntry {
    /// The Service this slice belongs to (same namespace).
    pub(crate) service: String,
    pub(crate) ports: Vec<PortEntry>,
    pub(crate) endpoints: Vec<EndpointEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EndpointEntry {
    pub(crate) addresses: Vec<IpAddr>,
    /// `endpoint.hostname`, lowercase (StatefulSet pods set it to the pod name).
    pub(crate) hostname: Option<String>,
    pub(crate) ready: bool,
}

// === impl Records ===

impl Records {
    /// An empty store answering for `cluster_domain` (e.g. `cluster.local`).
    ///
    /// A domain that is not a valid DNS name is a configuration error the caller should have
    /// caught; rather than refuse to serve, the store logs it and uses `cluster.local`.
    pub fn new(cluster_domain: &str) -> Records {
        let zone = parse_zone(cluster_domain).unwrap_or_else(|| {
            tracing::error!(cluster_domain, "invalid cluster domain; using cluster.local");
            Name::from_ascii("cluster.local.").expect("a valid name")
        });
        Records {
            shared: Arc::new(Shared {
                zone,
                state: RwLock::new(State { serial: now_serial(), ..State::default() }),
            }),
        }
    }

    /// Adds or replaces a Service's records.
    pub fn apply_service(&self, svc: &Service) {
        let Some(key) = object_key(svc.metadata.namespace.as_deref(), svc.metadata.name.as_deref()) else {
            return;
        };
        let entry = ServiceEntry::from_service(svc);
        let mut state = self.write();
        state.remove_service(&key);
        state.insert_service(key, entry);
        state.touch();
    }

    /// Removes a Service's records (its endpoints stop answering too, until it comes back).
    pub fn delete_service(&self, namespace: &str, name: &str) {
        let key = (namespace.to_ascii_lowercase(), name.to_ascii_lowercase());
        let mut state = self.write();
        if state.remove_service(&key) {
            state.touch();
        }
    }

    /// Adds or replaces an EndpointSlice's endpoints. A slice without the
    /// `kubernetes.io/service-name` label belongs to no Service and is ignored (a previous
    /// version of it is dropped).
    pub fn apply_slice(&self, slice: &EndpointSlice) {
        let Some(key) = object_key(slice.metadata.namespace.as_deref(), slice.metadata.name.as_deref())
        else {
            return;
        };
        let entry = SliceEntry::from_slice(slice);
        let mut state = self.write();
        state.remove_slice(&key);
        if let Some(entry) = entry {
            state.insert_slice(key, entry);
        }
        state.touch();
    }

    /// Removes an EndpointSlice's endpoints.
    pub fn delete_slice(&self, namespace: &str, name: &str) {
        let key = (namespace.to_ascii_lowercase(), name.to_ascii_lowercase());
        let mut state = self.write();
        if state.remove_slice(&key) {
            state.touch();
        }
    }

    /// The cluster domain, fully qualified and lowercase.
    pub fn cluster_domain(&self) -> &Name {
        &self.shared.zone
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, State> {
        // A panic while holding the lock leaves the maps consistent (every update finishes its
        // removals before its insertions), so a poisoned lock is still safe to use.
        self.shared.state.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.shared.state.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.read();
        f.debug_struct("Records")
            .field("zone", &self.shared.zone.to_ascii())
            .field("services", &state.services.len())
            .field("slices", &state.slices.len())
            .finish()
    }
}

fn parse_zone(domain: &str) -> Option<Name> {
    let domain = domain.trim().trim_end_matches('.');
    if domain.is_empty() {
        return None;
    }
    let mut name = Name::from_ascii(domain).ok()?.to_lowercase();
    name.set_fqdn(true);
    Some(name)
}

/// Parses a cluster domain the way [`Records::new`] does, for comparing configurations.
pub(crate) fn zone_name(domain: &str) -> Option<Name> {
    parse_zone(domain)
}

fn object_key(namespace: Option<&str>, name: Option<&str>) -> Option<Key> {
    let name = name.filter(|n| !n.is_empty())?;
    let namespace = namespace.filter(|n| !n.is_empty()).unwrap_or("default");
    Some((namespace.to_ascii_lowercase(), name.to_ascii_lowercase()))
}

fn now_serial() -> u32 {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    secs as u32
}

// === impl State ===

impl State {
    fn touch(&mut self) {
        // Serials must grow for secondaries to notice; several changes within a second still
        // move it forward by one each.
        self.serial = now_serial().max(self.serial.wrapping_add(1));
    }

    fn insert_service(&mut self, key: Key, entry: ServiceEntry) {
        if let ServiceKind::ClusterIp(ips) = &entry.kind {
            for ip in ips {
                self.services_by_ip.entry(*ip).or_default().insert(key.clone());
            }
        }
        *self.namespaces.entry(key.0.clone()).or_default() += 1;
        self.services.insert(key, entry);
    }

    fn remove_service(&mut self, key: &Key) -> bool {
        let Some(old) = self.services.remove(key) else {
            return false;
        };
        if let ServiceKind::ClusterIp(ips) = &old.kind {
            for ip in ips {
                remove_from_index(&mut self.services_by_ip, ip, key);
            }
        }
        if let Some(count) = self.namespaces.get_mut(&key.0) {
            *count -= 1;
            if *count == 0 {
                self.namespaces.remove(&key.0);
            }
        }
        true
    }

    fn insert_slice(&mut self, key: Key, entry: SliceEntry) {
        for ip in entry.endpoints.iter().flat_map(|e| &e.addresses) {
            self.slices_by_ip.entry(*ip).or_default().insert(key.clone());
        }
        self.slices_by_service
            .entry((key.0.clone(), entry.service.clone()))
            .or_default()
            .insert(key.1.clone());
        self.slices.insert(key, entry);
    }

    fn remove_slice(&mut self, key: &Key) -> bool {
        let Some(old) = self.slices.remove(key) else {
            return false;
        };
        for ip in old.endpoints.iter().flat_map(|e| &e.addresses) {
            remove_from_index(&mut self.slices_by_ip, ip, key);
        }
        let svc_key = (key.0.clone(), old.service);
        if let Some(names) = self.slices_by_service.get_mut(&svc_key) {
            names.remove(&key.1);
            if names.is_empty() {
                self.slices_by_service.remove(&svc_key);
            }
        }
        true
    }

    /// The slices of a Service, in name order.
    pub(crate) fn slices_of<'a>(&'a self, namespace: &'a str, service: &str) -> impl Iterator<Item = &'a SliceEntry> + 'a {
        self.slices_by_service
            .get(&(namespace.to_string(), service.to_string()))
            .into_iter()
            .flatten()
            .filter_map(move |name| self.slices.get(&(namespace.to_string(), name.clone())))
    }
}

fn remove_from_index(index: &mut HashMap<IpAddr, BTreeSet<Key>>, ip: &IpAddr, key: &Key) {
    if let Some(keys) = index.get_mut(ip) {
        keys.remove(key);
        if keys.is_empty() {
            index.remove(ip);
        }
    }
}

// === impl ServiceEntry ===

impl ServiceEntry {
    pub(crate) fn from_service(svc: &Service) -> ServiceEntry {
        let spec = svc.spec.clone().unwrap_or_default();
        let ports = spec
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                Some(PortEntry {
                    name: p.name.as_deref().unwrap_or_default().to_ascii_lowercase(),
                    protocol: protocol(p.protocol.as_deref()),
                    port: Some(u16::try_from(p.port).ok()?),
                })
            })
            .collect();
        let kind = if spec.type_.as_deref() == Some("ExternalName") {
            match spec.external_name.as_deref().and_then(parse_zone) {
                Some(target) => ServiceKind::ExternalName(target),
                // An ExternalName Service without a usable name resolves to nothing, like one
                // whose cluster IP is not allocated yet.
                None => ServiceKind::ClusterIp(Vec::new()),
            }
        } else {
            let mut ips: Vec<&str> = spec.cluster_ips.iter().flatten().map(String::as_str).collect();
            if ips.is_empty() {
                ips.extend(spec.cluster_ip.as_deref());
            }
            if ips.first().is_some_and(|ip| ip.eq_ignore_ascii_case("none")) {
                ServiceKind::Headless
            } else {
                let mut parsed: Vec<IpAddr> = Vec::new();
                for ip in ips.iter().filter_map(|ip| ip.parse::<IpAddr>().ok()) {
                    if !parsed.contains(&ip) {
                        parsed.push(ip);
                    }
                }
                ServiceKind::ClusterIp(parsed)
            }
        };
        ServiceEntry { kind, ports, publish_not_ready: spec.publish_not_ready_addresses.unwrap_or(false) }
    }
}

fn protocol(p: Option<&str>) -> String {
    p.unwrap_or("TCP").to_ascii_lowercase()
}

// === impl SliceEntry ===

impl SliceEntry {
    /// `None` when the slice names no Service.
    pub(crate) fn from_slice(slice: &EndpointSlice) -> Option<SliceEntry> {
        let service = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
        if service.is_empty() {
            return None;
        }
        let ports = slice
            .ports
            .iter()
            .flatten()
            .map(|p| PortEntry {
                name: p.name.as_deref().unwrap_or_default().to_ascii_lowercase(),
                protocol: protocol(p.protocol.as_deref()),
                port: p.port.and_then(|p| u16::try_from(p).ok()),
            })
            .collect();
        // FQDN slices name hosts, not addresses; DNS has nothing to publish for them.
        let addressed = matches!(slice.address_type.as_str(), "IPv4" | "IPv6");
        let endpoints = slice
            .endpoints
            .iter()
            .filter(|_| addressed)
            .map(|e| EndpointEntry {
                addresses: e.addresses.iter().filter_map(|a| a.parse().ok()).collect(),
                hostname: e.hostname.as_deref().filter(|h| !h.is_empty()).map(str::to_ascii_lowercase),
                // An unset condition means "unknown", which consumers treat as ready.
                ready: e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true),
            })
            .filter(|e| !e.addresses.is_empty())
            .collect();
        Some(SliceEntry { service: service.to_ascii_lowercase(), ports, endpoints })
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Builders for the Services and EndpointSlices the tests feed the store.

    use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    pub(crate) fn service(ns: &str, name: &str, cluster_ip: &str, ports: &[(&str, &str, i32)]) -> Service {
        Service {
            metadata: ObjectMeta { namespace: Some(ns.into()), name: Some(name.into()), ..Default::default() },
            spec: Some(ServiceSpec {
                cluster_ip: Some(cluster_ip.into()),
                cluster_ips: Some(vec![cluster_ip.into()]),
                ports: Some(
                    ports
                        .iter()
                        .map(|(name, proto, port)| ServicePort {
                            name: (!name.is_empty()).then(|| name.to_string()),
                            protocol: Some(proto.to_string()),
                            port: *port,
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    pub(crate) fn external(ns: &str, name: &str, target: &str) -> Service {
        Service {
            metadata: ObjectMeta { namespace: Some(ns.into()), name: Some(name.into()), ..Default::default() },
            spec: Some(ServiceSpec {
                type_: Some("ExternalName".into()),
                external_name: Some(target.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// An endpoint: address, hostname, ready.
    pub(crate) type Ep<'a> = (&'a str, Option<&'a str>, bool);

    pub(crate) fn slice(ns: &str, name: &str, service: &str, ports: &[(&str, &str, i32)], endpoints: &[Ep<'_>]) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                labels: Some([("kubernetes.io/service-name".to_string(), service.to_string())].into()),
                ..Default::default()
            },
            address_type: if endpoints.iter().any(|(a, _, _)| a.contains(':')) { "IPv6" } else { "IPv4" }.into(),
            endpoints: endpoints
                .iter()
                .map(|(addr, hostname, ready)| Endpoint {
                    addresses: vec![addr.to_string()],
                    hostname: hostname.map(str::to_string),
                    conditions: Some(EndpointConditions { ready: Some(*ready), ..Default::default() }),
                    ..Default::default()
                })
                .collect(),
            ports: Some(
                ports
                    .iter()
                    .map(|(name, proto, port)| EndpointPort {
                        name: Some(name.to_string()),
                        protocol: Some(proto.to_string()),
                        port: Some(*port),
                        ..Default::default()
                    })
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_service_is_indexed_by_its_cluster_ip_and_namespace() {
        let records = Records::new("cluster.local");
        records.apply_service(&service("default", "web", "10.96.0.20", &[("http", "TCP", 80)]));
        let state = records.read();
        assert!(state.services_by_ip[&ip("10.96.0.20")].contains(&("default".into(), "web".into())));
        assert_eq!(state.namespaces["default"], 1);
    }

    #[test]
    fn replacing_a_service_drops_its_old_cluster_ip_from_the_index() {
        let records = Records::new("cluster.local");
        records.apply_service(&service("default", "web", "10.96.0.20", &[]));
        records.apply_service(&service("default", "web", "10.96.0.21", &[]));
        let state = records.read();
        assert!(!state.services_by_ip.contains_key(&ip("10.96.0.20")));
        assert!(state.services_by_ip.contains_key(&ip("10.96.0.21")));
        assert_eq!(state.namespaces["default"], 1);
    }

    #[test]
    fn deleting_the_last_service_of_a_namespace_forgets_the_namespace() {
        let records = Records::new("cluster.local");
        records.apply_service(&service("team", "web", "10.96.0.20", &[]));
        records.delete_service("team", "web");
        let state = records.read();
        assert!(state.namespaces.is_empty());
        assert!(state.services_by_ip.is_empty());
    }

    #[test]
    fn slices_are_grouped_by_their_service_label_and_leave_no_trace_when_deleted() {
        let records = Records::new("cluster.local");
        records.apply_slice(&slice("default", "web-abc", "web", &[], &[("10.244.1.5", None, true)]));
        records.apply_slice(&slice("default", "web-def", "web", &[], &[("10.244.2.5", None, true)]));
        {
            let state = records.read();
            assert_eq!(state.slices_of("default", "web").count(), 2);
            assert!(state.slices_by_ip.contains_key(&ip("10.244.2.5")));
        }
        records.delete_slice("default", "web-abc");
        records.delete_slice("default", "web-def");
        let state = records.read();
        assert_eq!(state.slices_of("default", "web").count(), 0);
        assert!(state.slices_by_ip.is_empty());
        assert!(state.slices_by_service.is_empty());
    }

    #[test]
    fn a_slice_without_a_service_label_is_ignored_and_replaces_its_labelled_self() {
        let records = Records::new("cluster.local");
        let mut s = slice("default", "web-abc", "web", &[], &[("10.244.1.5", None, true)]);
        records.apply_slice(&s);
        s.metadata.labels = None;
        records.apply_slice(&s);
        let state = records.read();
        assert!(state.slices.is_empty());
        assert!(state.slices_by_ip.is_empty());
    }

    #[test]
    fn headless_and_external_name_services_are_recognised() {
        let headless = ServiceEntry::from_service(&service("default", "db", "None", &[]));
        assert_eq!(headless.kind, ServiceKind::Headless);
        let ext = ServiceEntry::from_service(&external("default", "ext", "Example.COM."));
        assert_eq!(ext.kind, ServiceKind::ExternalName(Name::from_ascii("example.com.").unwrap()));
    }

    #[test]
    fn ports_default_to_tcp_and_match_in_lowercase() {
        let mut svc = service("default", "web", "10.96.0.20", &[("HTTP", "TCP", 80)]);
        svc.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].protocol = None;
        let entry = ServiceEntry::from_service(&svc);
        assert_eq!(entry.ports, vec![PortEntry { name: "http".into(), protocol: "tcp".into(), port: Some(80) }]);
    }

    #[test]
    fn endpoints_without_a_ready_condition_count_as_ready() {
        let mut s = slice("default", "web-abc", "web", &[], &[("10.244.1.5", Some("Web-0"), true)]);
        s.endpoints[0].conditions = None;
        let entry = SliceEntry::from_slice(&s).unwrap();
        assert!(entry.endpoints[0].ready);
        assert_eq!(entry.endpoints[0].hostname.as_deref(), Some("web-0"));
    }

    #[test]
    fn fqdn_slices_publish_no_endpoints() {
        let mut s = slice("default", "web-abc", "web", &[], &[("10.244.1.5", None, true)]);
        s.address_type = "FQDN".into();
        assert!(SliceEntry::from_slice(&s).unwrap().endpoints.is_empty());
    }

    #[test]
    fn every_change_moves_the_serial_forward() {
        let records = Records::new("cluster.local");
        let before = records.read().serial;
        records.apply_service(&service("default", "web", "10.96.0.20", &[]));
        let after = records.read().serial;
        assert!(after > before);
    }

    #[test]
    fn the_cluster_domain_is_stored_lowercase_and_fully_qualified() {
        assert_eq!(Records::new("Cluster.Local").cluster_domain().to_ascii(), "cluster.local.");
        assert_eq!(Records::new("cluster.local.").cluster_domain().to_ascii(), "cluster.local.");
        assert_eq!(Records::new("").cluster_domain().to_ascii(), "cluster.local.");
    }
}
