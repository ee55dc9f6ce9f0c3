//! [`Routes`]: the gateway's view of the cluster, written by watches, read by every request.
//!
//! One writer path (the `apply_*`/`delete_*` calls, serialized by a mutex) and
//! many readers (requests and TLS handshakes take the current table with one
//! reference count). Changes to Ingresses, IngressClasses and TLS Secrets
//! rebuild the routing table and swap it in whole; changes to Services and
//! EndpointSlices only push new endpoint lists into the affected backends, so a
//! rolling update costs one list per slice change, not a table rebuild.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use rustls::sign::CertifiedKey;

use crate::class;
use crate::endpoints::{self, BackendKey, BackendPort, EndpointSet, SERVICE_NAME_LABEL};
use crate::picker::{Picker, RoundRobin};
use crate::table::{Backend, Table};
use crate::tls;
use crate::GatewayConfig;

type NewPicker = dyn Fn() -> Box<dyn Picker> + Send + Sync;

/// Routing state, updated from watches while serving; cheap to clone.
#[derive(Clone)]
pub struct Routes {
    shared: Arc<Shared>,
}

struct Shared {
    class_name: String,
    controller: String,
    new_picker: Box<NewPicker>,
    /// std Mutex: nothing async happens while it is held.
    state: Mutex<State>,
    table: RwLock<Arc<Table>>,
}

type Key = (String, String);

#[derive(Default)]
struct State {
    ingresses: BTreeMap<Key, Ingress>,
    classes: BTreeMap<String, IngressClass>,
    services: HashMap<Key, Service>,
    slices: HashMap<Key, EndpointSlice>,
    /// (namespace, service) → names of its slices.
    slices_of: HashMap<Key, BTreeSet<String>>,
    certs: HashMap<Key, Arc<CertifiedKey>>,
    /// The backends the current table uses, by key: kept across rebuilds so
    /// their endpoint sets, pickers and in-flight counts carry on.
    backends: HashMap<BackendKey, Arc<Backend>>,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes")
            .field("class_name", &self.shared.class_name)
            .field("controller", &self.shared.controller)
            .finish_non_exhaustive()
    }
}

impl Routes {
    /// Empty routes for the gateway `cfg` describes, balancing round-robin.
    pub fn new(cfg: &GatewayConfig) -> Routes {
        Routes::with_picker(cfg, || Box::new(RoundRobin::default()))
    }

    /// Empty routes whose backends each get a picker from `new_picker`.
    pub fn with_picker(cfg: &GatewayConfig, new_picker: impl Fn() -> Box<dyn Picker> + Send + Sync + 'static) -> Routes {
        Routes {
            shared: Arc::new(Shared {
                class_name: cfg.class_name.clone(),
                controller: cfg.controller.clone(),
                new_picker: Box::new(new_picker),
                state: Mutex::new(State::default()),
                table: RwLock::new(Arc::new(Table::default())),
            }),
        }
    }

    pub fn apply_ingress(&self, ing: &Ingress) {
        let mut state = self.lock();
        state.ingresses.insert(key(&ing.metadata), ing.clone());
        self.rebuild(&mut state);
    }

    pub fn delete_ingress(&self, namespace: &str, name: &str) {
        let mut state = self.lock();
        if state.ingresses.remove(&(namespace.to_string(), name.to_string())).is_some() {
            self.rebuild(&mut state);
        }
    }

    pub fn apply_ingress_class(&self, c: &IngressClass) {
        let mut state = self.lock();
        state.classes.insert(c.metadata.name.clone().unwrap_or_default(), c.clone());
        self.rebuild(&mut state);
    }

    pub fn delete_ingress_class(&self, name: &str) {
        let mut state = self.lock();
        if state.classes.remove(name).is_some() {
            self.rebuild(&mut state);
        }
    }

    pub fn apply_service(&self, svc: &Service) {
        let mut state = self.lock();
        let k = key(&svc.metadata);
        state.services.insert(k.clone(), svc.clone());
        state.refresh(&k);
    }

    pub fn delete_service(&self, namespace: &str, name: &str) {
        let mut state = self.lock();
        let k = (namespace.to_string(), name.to_string());
        if state.services.remove(&k).is_some() {
            state.refresh(&k);
        }
    }

    pub fn apply_slice(&self, s: &EndpointSlice) {
        let mut state = self.lock();
        let k = key(&s.metadata);
        let before = state.remove_slice(&k);
        let after = service_of(s).map(|svc| (k.0.clone(), svc.to_string()));
        if let Some(svc) = &after {
            state.slices_of.entry(svc.clone()).or_default().insert(k.1.clone());
        }
        state.slices.insert(k, s.clone());
        for svc in [before, after].into_iter().flatten().collect::<BTreeSet<_>>() {
            state.refresh(&svc);
        }
    }

    pub fn delete_slice(&self, namespace: &str, name: &str) {
        let mut state = self.lock();
        if let Some(svc) = state.remove_slice(&(namespace.to_string(), name.to_string())) {
            state.refresh(&svc);
        }
    }

    /// Keeps the certificate of a Secret holding `tls.crt` and `tls.key`; other
    /// Secrets are ignored. The table is rebuilt when an Ingress names the Secret.
    pub fn apply_secret(&self, s: &Secret) {
        let mut state = self.lock();
        let k = key(&s.metadata);
        let had = match tls::from_secret(s) {
            Some(Ok(cert)) => {
                state.certs.insert(k.clone(), cert);
                true
            }
            Some(Err(error)) => {
                tracing::warn!(secret = %format!("{}/{}", k.0, k.1), %error, "TLS Secret not usable");
                state.certs.remove(&k).is_some()
            }
            None => state.certs.remove(&k).is_some(),
        };
        if (had || state.certs.contains_key(&k)) && state.names_secret(&k) {
            self.rebuild(&mut state);
        }
    }

    pub fn delete_secret(&self, namespace: &str, name: &str) {
        let mut state = self.lock();
        let k = (namespace.to_string(), name.to_string());
        if state.certs.remove(&k).is_some() && state.names_secret(&k) {
            self.rebuild(&mut state);
        }
    }

    /// The live endpoint set of a backend some Ingress of ours names; `None` when
    /// no Ingress does. Subscribe to it to follow its membership.
    pub fn endpoints(&self, namespace: &str, service: &str, port: BackendPort) -> Option<EndpointSet> {
        let k = BackendKey { namespace: namespace.to_string(), service: service.to_string(), port };
        self.lock().backends.get(&k).map(|b| b.endpoints.clone())
    }

    /// The routing table as of now.
    pub(crate) fn table(&self) -> Arc<Table> {
        self.shared.table.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Recompiles the table from our Ingresses and publishes it. Called with the
    /// state locked, so tables are published in the order of the changes.
    fn rebuild(&self, state: &mut State) {
        let shared = &self.shared;
        let ours: Vec<&Ingress> = state
            .ingresses
            .values()
            .filter(|i| class::is_ours(i, &state.classes, &shared.class_name, &shared.controller))
            .collect();
        let mut used: HashMap<BackendKey, Arc<Backend>> = HashMap::new();
        let table = Table::build(
            &ours,
            |ns, name| state.certs.get(&(ns.to_string(), name.to_string())).cloned(),
            |k| {
                if let Some(b) = used.get(&k) {
                    return b.clone();
                }
                let b = state.backends.get(&k).cloned().unwrap_or_else(|| {
                    let b = Arc::new(Backend { key: k.clone(), endpoints: EndpointSet::default(), picker: (shared.new_picker)() });
                    state.fill(&b);
                    b
                });
                used.insert(k, b.clone());
                b
            },
        );
        state.backends = used;
        *shared.table.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
    }
}

impl State {
    /// Pushes fresh endpoints into every backend of the Service `svc`.
    fn refresh(&self, svc: &Key) {
        for b in self.backends.values() {
            if b.key.namespace == svc.0 && b.key.service == svc.1 {
                self.fill(b);
            }
        }
    }

    fn fill(&self, b: &Backend) {
        let svc = (b.key.namespace.clone(), b.key.service.clone());
        let slices = self
            .slices_of
            .get(&svc)
            .into_iter()
            .flatten()
            .filter_map(|name| self.slices.get(&(svc.0.clone(), name.clone())));
        let addrs = endpoints::resolve(&b.key.port, self.services.get(&svc), slices);
        if b.endpoints.replace(&addrs) {
            tracing::debug!(namespace = %svc.0, service = %svc.1, port = ?b.key.port, endpoints = addrs.len(), "backend endpoints changed");
        }
    }

    /// Forgets a slice; returns the Service it belonged to.
    fn remove_slice(&mut self, k: &Key) -> Option<Key> {
        let old = self.slices.remove(k)?;
        let svc = (k.0.clone(), service_of(&old)?.to_string());
        if let Some(names) = self.slices_of.get_mut(&svc) {
            names.remove(&k.1);
            if names.is_empty() {
                self.slices_of.remove(&svc);
            }
        }
        Some(svc)
    }

    /// Whether any Ingress names the Secret in its `tls` section.
    fn names_secret(&self, secret: &Key) -> bool {
        self.ingresses.iter().any(|((ns, _), ing)| {
            ns == &secret.0
                && ing
                    .spec
                    .as_ref()
                    .and_then(|s| s.tls.as_ref())
                    .is_some_and(|t| t.iter().any(|t| t.secret_name.as_deref() == Some(secret.1.as_str())))
        })
    }
}

fn key(m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Key {
    (m.namespace.clone().unwrap_or_default(), m.name.clone().unwrap_or_default())
}

fn service_of(s: &EndpointSlice) -> Option<&str> {
    s.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)).map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::api::discovery::v1::{Endpoint as SliceEndpoint, EndpointPort};
    use k8s_openapi::api::networking::v1::{
        HTTPIngressPath, HTTPIngressRuleValue, IngressBackend, IngressClassSpec, IngressRule, IngressServiceBackend,
        IngressSpec, ServiceBackendPort,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::net::SocketAddr;

    fn cfg() -> GatewayConfig {
        GatewayConfig { http: None, https: None, class_name: "skiff".into(), controller: "skiff.io/ingress".into() }
    }

    fn meta(ns: &str, name: &str) -> ObjectMeta {
        ObjectMeta { namespace: Some(ns.into()), name: Some(name.into()), ..Default::default() }
    }

    fn ingress(class: &str, svc: &str) -> Ingress {
        Ingress {
            metadata: meta("default", "web"),
            spec: Some(IngressSpec {
                ingress_class_name: Some(class.into()),
                rules: Some(vec![IngressRule {
                    host: Some("web.test".into()),
                    http: Some(HTTPIngressRuleValue {
                        paths: vec![HTTPIngressPath {
                            path: Some("/".into()),
                            path_type: "Prefix".into(),
                            backend: IngressBackend {
                                service: Some(IngressServiceBackend {
                                    name: svc.into(),
                                    port: Some(ServiceBackendPort { name: Some("http".into()), number: None }),
                                }),
                                resource: None,
                            },
                        }],
                    }),
                }]),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn service(name: &str) -> Service {
        Service {
            metadata: meta("default", name),
            spec: Some(ServiceSpec {
                ports: Some(vec![ServicePort { name: Some("http".into()), port: 80, ..Default::default() }]),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn slice(name: &str, svc: &str, ips: &[&str]) -> EndpointSlice {
        let mut m = meta("default", name);
        m.labels = Some([(SERVICE_NAME_LABEL.to_string(), svc.to_string())].into());
        EndpointSlice {
            metadata: m,
            address_type: "IPv4".into(),
            endpoints: ips.iter().map(|ip| SliceEndpoint { addresses: vec![ip.to_string()], ..Default::default() }).collect(),
            ports: Some(vec![EndpointPort { name: Some("http".into()), port: Some(8080), ..Default::default() }]),
        }
    }

    fn addrs(set: &EndpointSet) -> Vec<SocketAddr> {
        set.current().iter().map(|e| e.addr()).collect()
    }

    fn http() -> BackendPort {
        BackendPort::Name("http".into())
    }

    #[test]
    fn slice_changes_are_pushed_to_the_backend_without_rebuilding_the_table() {
        let routes = Routes::new(&cfg());
        routes.apply_service(&service("web"));
        routes.apply_slice(&slice("web-1", "web", &["10.0.0.1"]));
        routes.apply_ingress(&ingress("skiff", "web"));
        let set = routes.endpoints("default", "web", http()).expect("the Ingress names the backend");
        assert_eq!(addrs(&set), ["10.0.0.1:8080".parse().unwrap()]);

        let table = routes.table();
        let rx = set.subscribe();
        routes.apply_slice(&slice("web-2", "web", &["10.0.0.2"]));
        assert!(rx.has_changed().unwrap(), "subscribers hear of the change");
        assert_eq!(addrs(&set), ["10.0.0.1:8080".parse().unwrap(), "10.0.0.2:8080".parse().unwrap()]);
        routes.delete_slice("default", "web-1");
        assert_eq!(addrs(&set), ["10.0.0.2:8080".parse().unwrap()]);
        routes.delete_service("default", "web");
        assert!(addrs(&set).is_empty());
        assert!(Arc::ptr_eq(&table, &routes.table()), "endpoint changes leave the table alone");
    }

    #[test]
    fn a_slice_relabelled_to_another_service_leaves_the_first() {
        let routes = Routes::new(&cfg());
        routes.apply_service(&service("web"));
        routes.apply_ingress(&ingress("skiff", "web"));
        routes.apply_slice(&slice("s", "web", &["10.0.0.1"]));
        let set = routes.endpoints("default", "web", http()).unwrap();
        assert_eq!(addrs(&set).len(), 1);
        routes.apply_slice(&slice("s", "other", &["10.0.0.1"]));
        assert!(addrs(&set).is_empty());
    }

    #[test]
    fn backends_follow_the_ingress_class_and_keep_their_state_across_rebuilds() {
        let routes = Routes::new(&cfg());
        routes.apply_service(&service("web"));
        routes.apply_slice(&slice("web-1", "web", &["10.0.0.1"]));
        routes.apply_ingress(&ingress("public", "web"));
        assert!(routes.endpoints("default", "web", http()).is_none(), "`public` is not our class name");
        // It becomes ours through its IngressClass.
        let mut class = IngressClass {
            metadata: meta("", "public"),
            spec: Some(IngressClassSpec { controller: Some("skiff.io/ingress".into()), ..Default::default() }),
        };
        routes.apply_ingress_class(&class);
        let set = routes.endpoints("default", "web", http()).expect("ours through the class");
        let _running = set.current()[0].begin();
        routes.apply_ingress(&ingress("public", "web"));
        assert_eq!(routes.endpoints("default", "web", http()).unwrap().current()[0].in_flight(), 1, "same backend after a rebuild");

        class.spec.as_mut().unwrap().controller = Some("k8s.io/ingress-nginx".into());
        routes.apply_ingress_class(&class);
        assert!(routes.endpoints("default", "web", http()).is_none(), "another controller's class");
    }
}
