//! Live endpoint sets: where a backend's traffic may go, right now.
//!
//! Each backend an Ingress names (Service + port) owns one [`EndpointSet`]. The
//! routes push a new list into it whenever the Service or one of its
//! EndpointSlices changes; readers take the current list without locking, and
//! anyone may [`EndpointSet::subscribe`] to be told of changes instead of asking.
//! An endpoint keeps its in-flight counter across updates, so a picker that
//! balances on load sees the requests still running on an endpoint that was
//! listed again.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use tokio::sync::watch;

/// The label an EndpointSlice names its Service with.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A Service port as an Ingress backend names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BackendPort {
    Number(i32),
    Name(String),
}

/// One backend: a Service and one of its ports, in the Ingress's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendKey {
    pub namespace: String,
    pub service: String,
    pub port: BackendPort,
}

/// One place a request can go, with the number of requests it is serving now.
#[derive(Debug, Clone)]
pub struct Endpoint {
    addr: SocketAddr,
    in_flight: Arc<AtomicUsize>,
}

impl Endpoint {
    /// The pod address and target port.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests sent to this endpoint whose responses (or upgraded
    /// connections) have not finished yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts one request until the guard drops.
    pub(crate) fn begin(&self) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.in_flight.clone())
    }
}

/// One request counted against its endpoint; dropping it ends the request.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A backend's endpoints, replaced whole on every change and pushed to subscribers.
#[derive(Debug, Clone)]
pub struct EndpointSet {
    tx: Arc<watch::Sender<Arc<[Endpoint]>>>,
}

impl Default for EndpointSet {
    fn default() -> Self {
        EndpointSet { tx: Arc::new(watch::Sender::new(Arc::from(Vec::new()))) }
    }
}

impl EndpointSet {
    /// The endpoints as of now (cheap: one reference count).
    pub fn current(&self) -> Arc<[Endpoint]> {
        self.tx.borrow().clone()
    }

    /// A receiver that sees every later list as it is published.
    pub fn subscribe(&self) -> watch::Receiver<Arc<[Endpoint]>> {
        self.tx.subscribe()
    }

    /// Publishes `addrs` (in that order) if they differ from the current list,
    /// keeping the in-flight counters of addresses already present. Returns
    /// whether anything changed.
    pub(crate) fn replace(&self, addrs: &[SocketAddr]) -> bool {
        self.tx.send_if_modified(|current| {
            if current.len() == addrs.len() && current.iter().zip(addrs).all(|(e, a)| e.addr == *a) {
                return false;
            }
            let known: HashMap<SocketAddr, Arc<AtomicUsize>> =
                current.iter().map(|e| (e.addr, e.in_flight.clone())).collect();
            *current = addrs
                .iter()
                .map(|&addr| Endpoint { addr, in_flight: known.get(&addr).cloned().unwrap_or_default() })
                .collect();
            true
        })
    }
}

/// The addresses a backend's traffic goes to, from its Service and that
/// Service's EndpointSlices (as kube-proxy and ingress-nginx read them):
/// - the Ingress's port (number or name) is found among the Service's ports,
///   and the slices' port of the same name gives the target port;
/// - ready endpoints (a missing condition counts as ready); when there are
///   none, the ones still serving while terminating, so that a Service whose
///   every pod is shutting down keeps answering until they are gone;
/// - IPv4 addresses only, the first address of each endpoint, sorted and without
///   duplicates.
///
/// No Service, no such port, or an `ExternalName` Service: no endpoints.
pub fn resolve<'a>(
    port: &BackendPort,
    service: Option<&Service>,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
) -> Vec<SocketAddr> {
    let Some(spec) = service.and_then(|s| s.spec.as_ref()) else { return Vec::new() };
    if spec.type_.as_deref() == Some("ExternalName") {
        return Vec::new();
    }
    let ports = spec.ports.as_deref().unwrap_or_default();
    let service_port = ports.iter().find(|p| match port {
        BackendPort::Number(n) => p.port == *n,
        BackendPort::Name(name) => p.name.as_deref() == Some(name.as_str()),
    });
    let Some(service_port) = service_port else { return Vec::new() };
    let port_name = service_port.name.as_deref().unwrap_or_default();

    let (mut ready, mut terminating) = (BTreeSet::new(), BTreeSet::new());
    for slice in slices {
        if slice.address_type != "IPv4" {
            continue;
        }
        let target = slice.ports.as_deref().unwrap_or_default().iter().find(|p| {
            p.name.as_deref().unwrap_or_default() == port_name && p.protocol.as_deref().unwrap_or("TCP") == "TCP"
        });
        let Some(target) = target.and_then(|p| p.port).and_then(|p| u16::try_from(p).ok()) else { continue };
        for ep in &slice.endpoints {
            let Some(ip) = ep.addresses.first().and_then(|a| a.parse::<IpAddr>().ok()) else { continue };
            if !ip.is_ipv4() {
                continue;
            }
            let cond = ep.conditions.as_ref();
            let is_ready = cond.and_then(|c| c.ready).unwrap_or(true);
            let serving = cond.and_then(|c| c.serving).unwrap_or(is_ready);
            let is_terminating = cond.and_then(|c| c.terminating).unwrap_or(false);
            if is_ready {
                ready.insert(SocketAddr::new(ip, target));
            } else if serving && is_terminating {
                terminating.insert(SocketAddr::new(ip, target));
            }
        }
    }
    if ready.is_empty() { terminating } else { ready }.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::api::discovery::v1::{Endpoint as SliceEndpoint, EndpointConditions, EndpointPort};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn service(ports: &[(Option<&str>, i32)]) -> Service {
        Service {
            metadata: ObjectMeta { name: Some("web".into()), namespace: Some("default".into()), ..Default::default() },
            spec: Some(ServiceSpec {
                ports: Some(
                    ports
                        .iter()
                        .map(|(name, port)| ServicePort { name: name.map(Into::into), port: *port, ..Default::default() })
                        .collect(),
                ),
                ..Default::default()
            }),
            status: None,
        }
    }

    /// An endpoint as (address, ready, serving, terminating).
    type Conditions<'a> = (&'a str, Option<bool>, Option<bool>, Option<bool>);

    /// A slice with one port.
    fn slice(port: (Option<&str>, i32), endpoints: &[Conditions<'_>]) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta { name: Some("web-abc".into()), namespace: Some("default".into()), ..Default::default() },
            address_type: "IPv4".into(),
            endpoints: endpoints
                .iter()
                .map(|(ip, ready, serving, terminating)| SliceEndpoint {
                    addresses: vec![ip.to_string()],
                    conditions: Some(EndpointConditions { ready: *ready, serving: *serving, terminating: *terminating }),
                    ..Default::default()
                })
                .collect(),
            ports: Some(vec![EndpointPort { name: port.0.map(Into::into), port: Some(port.1), ..Default::default() }]),
        }
    }

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn a_port_number_finds_the_target_port_through_the_port_name() {
        let svc = service(&[(Some("http"), 80), (Some("metrics"), 9090)]);
        let slices = [
            slice((Some("http"), 8080), &[("10.0.0.1", Some(true), None, None)]),
            slice((Some("metrics"), 9100), &[("10.0.0.1", Some(true), None, None)]),
        ];
        assert_eq!(resolve(&BackendPort::Number(80), Some(&svc), &slices), addrs(&["10.0.0.1:8080"]));
        assert_eq!(resolve(&BackendPort::Name("metrics".into()), Some(&svc), &slices), addrs(&["10.0.0.1:9100"]));
        assert!(resolve(&BackendPort::Number(81), Some(&svc), &slices).is_empty());
    }

    #[test]
    fn an_unnamed_single_port_matches_the_unnamed_slice_port() {
        let svc = service(&[(None, 80)]);
        let slices = [slice((None, 8080), &[("10.0.0.2", None, None, None), ("10.0.0.1", Some(true), None, None)])];
        assert_eq!(resolve(&BackendPort::Number(80), Some(&svc), &slices), addrs(&["10.0.0.1:8080", "10.0.0.2:8080"]));
    }

    #[test]
    fn terminating_endpoints_serve_only_when_nothing_is_ready() {
        let svc = service(&[(None, 80)]);
        let mixed = [slice(
            (None, 8080),
            &[("10.0.0.1", Some(true), Some(true), None), ("10.0.0.2", Some(false), Some(true), Some(true))],
        )];
        assert_eq!(resolve(&BackendPort::Number(80), Some(&svc), &mixed), addrs(&["10.0.0.1:8080"]));
        let draining = [slice(
            (None, 8080),
            &[("10.0.0.2", Some(false), Some(true), Some(true)), ("10.0.0.3", Some(false), Some(false), Some(true))],
        )];
        assert_eq!(resolve(&BackendPort::Number(80), Some(&svc), &draining), addrs(&["10.0.0.2:8080"]));
    }

    #[test]
    fn no_service_means_no_endpoints() {
        let slices = [slice((None, 8080), &[("10.0.0.1", Some(true), None, None)])];
        assert!(resolve(&BackendPort::Number(80), None, &slices).is_empty());
    }

    #[test]
    fn replacing_a_set_keeps_the_counters_of_endpoints_that_stay_and_tells_subscribers() {
        let set = EndpointSet::default();
        let mut rx = set.subscribe();
        assert!(set.replace(&addrs(&["10.0.0.1:80", "10.0.0.2:80"])));
        assert!(rx.has_changed().unwrap());
        let running = set.current()[1].begin();
        rx.borrow_and_update();
        assert!(!set.replace(&addrs(&["10.0.0.1:80", "10.0.0.2:80"])), "the same list is no change");
        assert!(!rx.has_changed().unwrap());
        assert!(set.replace(&addrs(&["10.0.0.2:80", "10.0.0.3:80"])));
        let now = set.current();
        assert_eq!(now[0].addr(), "10.0.0.2:80".parse().unwrap());
        assert_eq!(now[0].in_flight(), 1);
        assert_eq!(now[1].in_flight(), 0);
        drop(running);
        assert_eq!(now[0].in_flight(), 0);
    }
}
