//! The compiled routing table: one server per rule host, locations per path.
//!
//! Built the way ingress-nginx assembles its servers, from our Ingresses
//! oldest first (creation time, then namespace/name):
//! 1. Every rule host gets a server, created by the oldest Ingress naming it,
//!    with one root location (`/`, prefix) that goes to that Ingress's
//!    `spec.defaultBackend`, or to the 404 default. Rules without host share the
//!    catch-all server; its root goes to the defaultBackend of the oldest Ingress
//!    that has one and no rules at all.
//! 2. Every rule path becomes a location of its host's server. A path and type
//!    that a server already has stays with the older Ingress; only the root
//!    default gives way.
//! 3. A server has TLS when the oldest Ingress naming its host with a `tls`
//!    section lists the host there (or holds a certificate valid for it); its
//!    certificate comes from that Secret, or is the fallback one when the
//!    Secret is missing or does not cover the host.
//!
//! A request picks one server (exact host, else one-label wildcard, else the
//! catch-all) and, within it, the first matching location in precedence order.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};
use rustls::sign::CertifiedKey;

use crate::endpoints::{BackendKey, BackendPort, EndpointSet};
use crate::host::{self, HostPattern};
use crate::path::{PathKind, PathRule};
use crate::picker::Picker;
use crate::tls;

/// ingress-nginx's annotation that turns the HTTPS redirect off for an Ingress.
pub(crate) const SSL_REDIRECT_ANNOTATION: &str = "nginx.ingress.kubernetes.io/ssl-redirect";
/// ingress-nginx's annotation that redirects to HTTPS even without TLS for the host.
pub(crate) const FORCE_SSL_REDIRECT_ANNOTATION: &str = "nginx.ingress.kubernetes.io/force-ssl-redirect";

/// One backend's live state: its endpoints and the picker that chooses among them.
pub(crate) struct Backend {
    pub(crate) key: BackendKey,
    pub(crate) endpoints: EndpointSet,
    pub(crate) picker: Box<dyn Picker>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend").field("key", &self.key).finish_non_exhaustive()
    }
}

/// Where a location sends its requests.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// The gateway's own default backend: 404.
    NotFound,
    Service(Arc<Backend>),
}

#[derive(Debug)]
pub(crate) struct Location {
    pub(crate) rule: PathRule,
    pub(crate) target: Target,
    /// `namespace/name` of the Ingress it comes from; `None` for the 404 default.
    pub(crate) ingress: Option<String>,
    pub(crate) ssl_redirect: bool,
    pub(crate) force_ssl_redirect: bool,
    /// The root location a server starts with, which a rule for `/` replaces.
    pub(crate) is_default: bool,
}

#[derive(Debug)]
pub(crate) struct Server {
    /// In precedence order: the first that matches serves.
    pub(crate) locations: Vec<Location>,
    /// Set when an Ingress configures TLS for the host.
    pub(crate) tls: Option<ServerTls>,
}

#[derive(Debug)]
pub(crate) struct ServerTls {
    /// `None`: the Secret is missing or does not cover the host; the fallback certificate serves.
    pub(crate) cert: Option<Arc<CertifiedKey>>,
}

impl Server {
    fn new(root: Location) -> Server {
        Server { locations: vec![root], tls: None }
    }

    /// The location serving `path`.
    pub(crate) fn location(&self, path: &str) -> Option<&Location> {
        self.locations.iter().find(|l| l.rule.matches(path))
    }

    fn add(&mut self, loc: Location) {
        match self.locations.iter_mut().find(|l| l.rule == loc.rule) {
            Some(existing) if existing.is_default => *existing = loc,
            Some(_) => {} // the older Ingress keeps the path
            None => self.locations.push(loc),
        }
    }
}

/// The routing table. Immutable once built; the routes swap in a new one.
#[derive(Debug)]
pub(crate) struct Table {
    exact: HashMap<String, Server>,
    /// Keyed by the suffix after `*.`.
    wildcard: HashMap<String, Server>,
    any: Server,
}

impl Default for Table {
    fn default() -> Self {
        Table { exact: HashMap::new(), wildcard: HashMap::new(), any: Server::new(not_found_root()) }
    }
}

impl Table {
    /// The server for a normalized request host.
    pub(crate) fn server(&self, host: &str) -> &Server {
        if let Some(s) = self.exact.get(host) {
            return s;
        }
        if let Some(s) = host::wildcard_suffix(host).and_then(|suffix| self.wildcard.get(suffix)) {
            return s;
        }
        &self.any
    }

    /// The server and location for a normalized host and a URL path.
    pub(crate) fn route(&self, host: &str, path: &str) -> (&Server, Option<&Location>) {
        let server = self.server(host);
        (server, server.location(path))
    }

    /// The certificate to present for an SNI name; `None`: the fallback.
    pub(crate) fn certificate(&self, sni: &str) -> Option<Arc<CertifiedKey>> {
        self.server(&host::normalize(sni)).tls.as_ref().and_then(|t| t.cert.clone())
    }

    /// Builds the table from the Ingresses this gateway serves (in any order).
    /// `certs` looks up the certificate of a TLS Secret by namespace and name;
    /// `backend` returns the live backend for a key, creating it if needed.
    pub(crate) fn build(
        ingresses: &[&Ingress],
        certs: impl Fn(&str, &str) -> Option<Arc<CertifiedKey>>,
        mut backend: impl FnMut(BackendKey) -> Arc<Backend>,
    ) -> Table {
        let mut ingresses = ingresses.to_vec();
        ingresses.sort_by_cached_key(|i| {
            let ts = i.metadata.creation_timestamp.clone();
            (ts.is_none(), ts, namespace(i).to_string(), name(i).to_string())
        });

        let mut servers: HashMap<HostPattern, Server> = HashMap::new();
        let mut any = Server::new(not_found_root());
        let mut any_claimed = false;

        // 1. Servers and their root locations.
        for ing in &ingresses {
            let Some(spec) = &ing.spec else { continue };
            let rules = spec.rules.as_deref().unwrap_or_default();
            let default = spec.default_backend.as_ref().map(|b| target(ing, b, &mut backend));
            if let Some(default) = &default {
                if rules.is_empty() && !any_claimed {
                    any.locations[0] = root(ing, default.clone());
                    any_claimed = true;
                }
            }
            for rule in rules {
                let pattern = HostPattern::parse(rule.host.as_deref());
                if pattern == HostPattern::Any {
                    continue; // the catch-all server always exists
                }
                servers.entry(pattern).or_insert_with(|| {
                    let target = default.clone().unwrap_or(Target::NotFound);
                    Server::new(Location { is_default: true, ..root(ing, target) })
                });
            }
        }

        // 2. Locations.
        for ing in &ingresses {
            let Some(spec) = &ing.spec else { continue };
            for rule in spec.rules.as_deref().unwrap_or_default() {
                let pattern = HostPattern::parse(rule.host.as_deref());
                let Some(http) = &rule.http else { continue };
                for p in &http.paths {
                    let loc = Location {
                        rule: PathRule::new(p.path.as_deref(), PathKind::parse(&p.path_type)),
                        target: target(ing, &p.backend, &mut backend),
                        ..root(ing, Target::NotFound)
                    };
                    let server = match &pattern {
                        HostPattern::Any => &mut any,
                        other => servers.get_mut(other).expect("every rule host has a server"),
                    };
                    server.add(loc);
                }
            }
        }

        // 3. TLS.
        for ing in &ingresses {
            let Some(spec) = &ing.spec else { continue };
            let tls_entries = spec.tls.as_deref().unwrap_or_default();
            if tls_entries.is_empty() {
                continue;
            }
            for rule in spec.rules.as_deref().unwrap_or_default() {
                let pattern = HostPattern::parse(rule.host.as_deref());
                let server = match &pattern {
                    HostPattern::Any => &mut any,
                    other => servers.get_mut(other).expect("every rule host has a server"),
                };
                if server.tls.is_some() {
                    continue;
                }
                server.tls = Some(ServerTls { cert: server_certificate(ing, &pattern, &certs) });
            }
        }

        let mut table = Table { any, ..Table::default() };
        for (pattern, server) in servers {
            match pattern {
                HostPattern::Exact(h) => table.exact.insert(h, server),
                HostPattern::Wildcard(suffix) => table.wildcard.insert(suffix, server),
                HostPattern::Any => None,
            };
        }
        for server in table.exact.values_mut().chain(table.wildcard.values_mut()).chain([&mut table.any]) {
            // Stable: among equal precedence, the older Ingress's path stays first.
            server.locations.sort_by_key(|l| std::cmp::Reverse(l.rule.precedence()));
        }
        table
    }
}

/// The certificate a server presents, chosen as ingress-nginx does: the Secret
/// of the `tls` entry listing the host, else of any entry whose certificate is
/// valid for the host. `None` (the fallback certificate) when there is no such
/// entry, the Secret is missing, or its certificate does not cover the host.
fn server_certificate(
    ing: &Ingress,
    pattern: &HostPattern,
    certs: &impl Fn(&str, &str) -> Option<Arc<CertifiedKey>>,
) -> Option<Arc<CertifiedKey>> {
    let ns = namespace(ing);
    let entries = ing.spec.as_ref().and_then(|s| s.tls.as_deref()).unwrap_or_default();
    let listed = entries.iter().find(|t| {
        t.hosts.as_deref().unwrap_or_default().iter().any(|h| &HostPattern::parse(Some(h)) == pattern)
    });
    let name = match (listed, pattern) {
        (Some(entry), _) => entry.secret_name.clone().unwrap_or_default(),
        (None, HostPattern::Exact(host)) => entries
            .iter()
            .filter_map(|t| t.secret_name.as_deref().filter(|n| !n.is_empty()))
            .find(|n| certs(ns, n).is_some_and(|c| tls::valid_for(&c, host)))
            .unwrap_or_default()
            .to_string(),
        (None, _) => String::new(),
    };
    if name.is_empty() {
        return None;
    }
    let Some(cert) = certs(ns, &name) else {
        tracing::warn!(ingress = %key(ing), secret = %name, "TLS Secret not found (or not a valid certificate and key); serving the fallback certificate");
        return None;
    };
    if let HostPattern::Exact(host) = pattern {
        if !tls::valid_for(&cert, host) {
            tracing::warn!(ingress = %key(ing), secret = %name, %host, "the certificate does not cover the host; serving the fallback certificate");
            return None;
        }
    }
    Some(cert)
}

/// The 404 default a server starts with.
fn not_found_root() -> Location {
    Location {
        rule: PathRule::new(Some("/"), PathKind::Prefix),
        target: Target::NotFound,
        ingress: None,
        ssl_redirect: true,
        force_ssl_redirect: false,
        is_default: true,
    }
}

/// A root default location belonging to `ing`, with its annotations.
fn root(ing: &Ingress, target: Target) -> Location {
    let annotation = |k: &str| ing.metadata.annotations.as_ref().and_then(|a| a.get(k)).map(String::as_str);
    Location {
        target,
        ingress: Some(key(ing)),
        ssl_redirect: annotation(SSL_REDIRECT_ANNOTATION) != Some("false"),
        force_ssl_redirect: annotation(FORCE_SSL_REDIRECT_ANNOTATION) == Some("true"),
        is_default: false,
        ..not_found_root()
    }
}

fn target(ing: &Ingress, b: &IngressBackend, backend: &mut impl FnMut(BackendKey) -> Arc<Backend>) -> Target {
    let Some(svc) = &b.service else {
        tracing::warn!(ingress = %key(ing), "resource backends are not supported; their paths answer 404");
        return Target::NotFound;
    };
    let port = svc.port.as_ref().and_then(|p| match (&p.name, p.number) {
        (Some(name), _) if !name.is_empty() => Some(BackendPort::Name(name.clone())),
        (_, Some(n)) => Some(BackendPort::Number(n)),
        _ => None,
    });
    let Some(port) = port else {
        tracing::warn!(ingress = %key(ing), service = %svc.name, "backend without a port; its paths answer 404");
        return Target::NotFound;
    };
    Target::Service(backend(BackendKey { namespace: namespace(ing).to_string(), service: svc.name.clone(), port }))
}

fn namespace(ing: &Ingress) -> &str {
    ing.metadata.namespace.as_deref().unwrap_or_default()
}

fn name(ing: &Ingress) -> &str {
    ing.metadata.name.as_deref().unwrap_or_default()
}

fn key(ing: &Ingress) -> String {
    format!("{}/{}", namespace(ing), name(ing))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::picker::RoundRobin;
    use k8s_openapi::api::networking::v1::{
        HTTPIngressPath, HTTPIngressRuleValue, IngressRule, IngressServiceBackend, IngressSpec, IngressTLS,
        ServiceBackendPort,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    /// A test Ingress, built up rule by rule.
    struct MakeIngress(Ingress);

    fn make(name: &str, created: i64) -> MakeIngress {
        MakeIngress(Ingress {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                creation_timestamp: Some(Time(k8s_openapi::jiff::Timestamp::from_second(created).unwrap())),
                ..Default::default()
            },
            spec: Some(IngressSpec::default()),
            status: None,
        })
    }

    fn service(name: &str) -> IngressBackend {
        IngressBackend {
            service: Some(IngressServiceBackend {
                name: name.into(),
                port: Some(ServiceBackendPort { number: Some(80), name: None }),
            }),
            resource: None,
        }
    }

    impl MakeIngress {
        fn path(mut self, host: Option<&str>, path: &str, path_type: &str, svc: &str) -> Self {
            let spec = self.0.spec.as_mut().unwrap();
            let rules = spec.rules.get_or_insert_with(Vec::new);
            let host = host.map(str::to_string);
            let idx = match rules.iter().position(|r| r.host == host) {
                Some(i) => i,
                None => {
                    rules.push(IngressRule { host, http: Some(HTTPIngressRuleValue { paths: vec![] }) });
                    rules.len() - 1
                }
            };
            rules[idx].http.as_mut().unwrap().paths.push(HTTPIngressPath {
                path: Some(path.into()),
                path_type: path_type.into(),
                backend: service(svc),
            });
            self
        }

        fn default_backend(mut self, svc: &str) -> Self {
            self.0.spec.as_mut().unwrap().default_backend = Some(service(svc));
            self
        }

        fn tls(mut self, hosts: &[&str], secret: &str) -> Self {
            self.0.spec.as_mut().unwrap().tls.get_or_insert_with(Vec::new).push(IngressTLS {
                hosts: Some(hosts.iter().map(|h| h.to_string()).collect()),
                secret_name: Some(secret.into()),
            });
            self
        }

        fn annotate(mut self, k: &str, v: &str) -> Self {
            self.0.metadata.annotations.get_or_insert_with(Default::default).insert(k.into(), v.into());
            self
        }

        fn obj(self) -> Ingress {
            self.0
        }
    }

    fn table(ingresses: &[Ingress]) -> Table {
        let refs: Vec<&Ingress> = ingresses.iter().collect();
        Table::build(&refs, |_, _| None, new_backend)
    }

    fn new_backend(key: BackendKey) -> Arc<Backend> {
        Arc::new(Backend { key, endpoints: EndpointSet::default(), picker: Box::new(RoundRobin::default()) })
    }

    /// The Service a request for `host` and `path` reaches; `None` for 404.
    fn service_for(t: &Table, host: &str, path: &str) -> Option<String> {
        match t.route(host, path).1.map(|l| &l.target) {
            Some(Target::Service(b)) => Some(b.key.service.clone()),
            _ => None,
        }
    }

    #[test]
    fn requests_route_by_exact_host_then_wildcard_then_any() {
        let t = table(&[make("a", 1)
            .path(Some("foo.example.com"), "/", "Prefix", "exact")
            .path(Some("*.example.com"), "/", "Prefix", "wild")
            .path(None, "/", "Prefix", "any")
            .obj()]);
        assert_eq!(service_for(&t, "foo.example.com", "/x").as_deref(), Some("exact"));
        assert_eq!(service_for(&t, "bar.example.com", "/x").as_deref(), Some("wild"));
        assert_eq!(service_for(&t, "a.b.example.com", "/x").as_deref(), Some("any"));
        assert_eq!(service_for(&t, "example.com", "/x").as_deref(), Some("any"));
    }

    #[test]
    fn a_known_host_does_not_fall_through_to_rules_without_host() {
        let t = table(&[make("a", 1).path(Some("foo.test"), "/api", "Prefix", "api").path(None, "/", "Prefix", "any").obj()]);
        assert_eq!(service_for(&t, "foo.test", "/api/v1").as_deref(), Some("api"));
        assert_eq!(service_for(&t, "foo.test", "/other"), None);
        assert_eq!(service_for(&t, "other.test", "/other").as_deref(), Some("any"));
    }

    #[test]
    fn the_longest_path_wins_and_exact_beats_prefix_of_the_same_length() {
        let t = table(&[make("a", 1)
            .path(Some("h.test"), "/", "Prefix", "root")
            .path(Some("h.test"), "/foo", "Prefix", "foo-prefix")
            .path(Some("h.test"), "/foo", "Exact", "foo-exact")
            .path(Some("h.test"), "/foo/bar", "ImplementationSpecific", "bar")
            .obj()]);
        assert_eq!(service_for(&t, "h.test", "/foo").as_deref(), Some("foo-exact"));
        assert_eq!(service_for(&t, "h.test", "/foo/").as_deref(), Some("foo-prefix"));
        assert_eq!(service_for(&t, "h.test", "/foo/bar/baz").as_deref(), Some("bar"));
        assert_eq!(service_for(&t, "h.test", "/foobar").as_deref(), Some("root"));
    }

    #[test]
    fn ingresses_for_one_host_merge_and_the_oldest_keeps_a_contested_path() {
        let newer = make("newer", 20).path(Some("h.test"), "/a", "Prefix", "newer-a").path(Some("h.test"), "/b", "Prefix", "b").obj();
        let older = make("older", 10).path(Some("h.test"), "/a", "Prefix", "older-a").obj();
        let t = table(&[newer, older]);
        assert_eq!(service_for(&t, "h.test", "/a").as_deref(), Some("older-a"));
        assert_eq!(service_for(&t, "h.test", "/b").as_deref(), Some("b"));
    }

    #[test]
    fn a_default_backend_serves_unmatched_paths_of_its_own_hosts_only() {
        let t = table(&[
            make("a", 1).path(Some("a.test"), "/api", "Prefix", "api").default_backend("fallback").obj(),
            make("b", 2).path(Some("b.test"), "/api", "Prefix", "b-api").obj(),
        ]);
        assert_eq!(service_for(&t, "a.test", "/api").as_deref(), Some("api"));
        assert_eq!(service_for(&t, "a.test", "/elsewhere").as_deref(), Some("fallback"));
        assert_eq!(service_for(&t, "b.test", "/elsewhere"), None);
        assert_eq!(service_for(&t, "unknown.test", "/"), None);
    }

    #[test]
    fn an_explicit_root_path_replaces_the_default_backend() {
        let t = table(&[make("a", 1).path(Some("a.test"), "/", "Prefix", "root").default_backend("fallback").obj()]);
        assert_eq!(service_for(&t, "a.test", "/anything").as_deref(), Some("root"));
    }

    #[test]
    fn an_ingress_with_only_a_default_backend_catches_every_unknown_host() {
        let t = table(&[
            make("catch-all", 5).default_backend("everything").obj(),
            make("later", 6).default_backend("ignored").obj(),
            make("site", 1).path(Some("site.test"), "/", "Prefix", "site").obj(),
        ]);
        assert_eq!(service_for(&t, "whatever.test", "/x").as_deref(), Some("everything"));
        assert_eq!(service_for(&t, "site.test", "/x").as_deref(), Some("site"));
    }

    #[test]
    fn resource_backends_answer_not_found() {
        let mut ing = make("a", 1).path(Some("a.test"), "/", "Prefix", "x").obj();
        let path = &mut ing.spec.as_mut().unwrap().rules.as_mut().unwrap()[0].http.as_mut().unwrap().paths[0];
        path.backend = IngressBackend { service: None, resource: Some(Default::default()) };
        let t = table(&[ing]);
        assert!(matches!(t.route("a.test", "/").1.unwrap().target, Target::NotFound));
    }

    #[test]
    fn one_backend_is_shared_by_every_path_naming_it() {
        let t = table(&[make("a", 1).path(Some("a.test"), "/x", "Prefix", "svc").path(Some("b.test"), "/y", "Prefix", "svc").obj()]);
        let (Some(Target::Service(x)), Some(Target::Service(y))) =
            (t.route("a.test", "/x").1.map(|l| &l.target), t.route("b.test", "/y").1.map(|l| &l.target))
        else {
            panic!("both paths reach the service")
        };
        // The table asks for the backend once per path; the routes hand out one per key.
        assert_eq!(x.key, y.key);
    }

    #[test]
    fn tls_is_set_per_host_by_the_oldest_ingress_with_a_tls_section() {
        let t = table(&[
            make("a", 1).path(Some("secure.test"), "/", "Prefix", "s").tls(&["secure.test"], "missing").obj(),
            make("b", 2).path(Some("plain.test"), "/", "Prefix", "p").obj(),
        ]);
        let secure = t.server("secure.test");
        assert!(secure.tls.is_some(), "the host is listed in a tls section");
        assert!(secure.tls.as_ref().unwrap().cert.is_none(), "a missing Secret serves the fallback certificate");
        assert!(t.server("plain.test").tls.is_none());
        assert!(t.certificate("secure.test").is_none());
    }

    #[test]
    fn the_ssl_redirect_annotations_are_read_per_ingress() {
        let t = table(&[
            make("off", 1).path(Some("a.test"), "/", "Prefix", "a").annotate(SSL_REDIRECT_ANNOTATION, "false").obj(),
            make("forced", 2).path(Some("b.test"), "/", "Prefix", "b").annotate(FORCE_SSL_REDIRECT_ANNOTATION, "true").obj(),
        ]);
        let a = t.route("a.test", "/").1.unwrap();
        assert!(!a.ssl_redirect);
        let b = t.route("b.test", "/").1.unwrap();
        assert!(b.ssl_redirect && b.force_ssl_redirect);
    }
}
