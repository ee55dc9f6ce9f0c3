//! Parsing a request path and query into what the API call is about
//! (the equivalent of upstream's `RequestInfo`).

use std::collections::HashMap;

use skiff_api::resources::{self, ResourceInfo, Subresource};
use skiff_api::StatusError;

/// Which API path a request names.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// `/api/v1/...` or `/apis/{g}/{v}/...` naming a resource.
    Resource(ResourceRequest),
    /// `/api`, `/api/v1`, `/apis`, `/apis/{g}`, `/apis/{g}/{v}`.
    Discovery(DiscoveryPath),
    Openapi(String),
    Health(&'static str),
    Version,
    Metrics,
    NotFound,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DiscoveryPath {
    Api,
    ApiVersion,
    Apis,
    Group(String),
    GroupVersion(String, String),
}

/// A request for a resource, a collection or a subresource.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceRequest {
    pub res: &'static ResourceInfo,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<Subresource>,
    /// The legacy `/watch/` path prefix was used.
    pub legacy_watch: bool,
}

/// Splits and decodes a path into segments.
fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect()
}

/// Parses a request path.
pub fn parse_path(path: &str) -> Result<Target, StatusError> {
    let segs = segments(path);
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    match s.as_slice() {
        [] => Ok(Target::NotFound),
        ["healthz", ..] => Ok(Target::Health("healthz")),
        ["livez", ..] => Ok(Target::Health("livez")),
        ["readyz", ..] => Ok(Target::Health("readyz")),
        ["version"] => Ok(Target::Version),
        ["metrics"] => Ok(Target::Metrics),
        ["openapi", rest @ ..] => Ok(Target::Openapi(rest.join("/"))),
        ["api"] => Ok(Target::Discovery(DiscoveryPath::Api)),
        ["api", "v1"] => Ok(Target::Discovery(DiscoveryPath::ApiVersion)),
        ["api", "v1", rest @ ..] => parse_resource("", "v1", rest),
        ["apis"] => Ok(Target::Discovery(DiscoveryPath::Apis)),
        ["apis", g] => Ok(Target::Discovery(DiscoveryPath::Group(g.to_string()))),
        ["apis", g, v] => Ok(Target::Discovery(DiscoveryPath::GroupVersion(g.to_string(), v.to_string()))),
        ["apis", g, v, rest @ ..] => parse_resource(g, v, rest),
        _ => Ok(Target::NotFound),
    }
}

fn parse_resource(group: &str, version: &str, rest: &[&str]) -> Result<Target, StatusError> {
    let (legacy_watch, mut parts) = match rest {
        ["watch", tail @ ..] => (true, tail.to_vec()),
        other => (false, other.to_vec()),
    };
    let mut namespace = None;
    if parts.first() == Some(&"namespaces") && parts.len() > 1 {
        namespace = Some(parts[1].to_string());
        if parts.len() > 2 && !matches!(parts[2], "status" | "finalize") {
            parts = parts[2..].to_vec();
        }
    }
    let Some(plural) = parts.first() else { return Ok(Target::NotFound) };
    let Some(res) = resources::lookup(group, version, plural) else { return Ok(Target::NotFound) };
    let name = parts.get(1).map(|s| s.to_string());
    // A namespace request names itself: `/api/v1/namespaces/{name}`.
    let (namespace, name) = if res.plural == "namespaces" && !res.namespaced {
        (None, name.or(namespace))
    } else if res.namespaced {
        (namespace, name)
    } else if namespace.is_some() {
        // A cluster-scoped resource under a namespace path does not exist.
        return Ok(Target::NotFound);
    } else {
        (None, name)
    };
    let subresource = match parts.get(2) {
        None => None,
        Some(sub) => match Subresource::from_name(sub).filter(|s| res.has_subresource(*s)) {
            Some(s) => Some(s),
            None => return Ok(Target::NotFound),
        },
    };
    if parts.len() > 3 {
        return Ok(Target::NotFound);
    }
    Ok(Target::Resource(ResourceRequest { res, namespace, name, subresource, legacy_watch }))
}

/// Query parameters, decoded.
#[derive(Debug, Clone, Default)]
pub struct Query(pub HashMap<String, String>);

impl Query {
    pub fn parse(q: Option<&str>) -> Query {
        let mut map = HashMap::new();
        if let Some(q) = q {
            for (k, v) in form_urlencoded::parse(q.as_bytes()) {
                map.insert(k.into_owned(), v.into_owned());
            }
        }
        Query(map)
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }

    pub fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true") | Some("1") | Some(""))
    }

    pub fn int(&self, k: &str) -> Result<Option<i64>, StatusError> {
        match self.get(k) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| StatusError::bad_request(format!("invalid value {v:?} for query parameter {k}"))),
        }
    }

    pub fn dry_run(&self) -> bool {
        self.get("dryRun").is_some_and(|v| v == "All")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(path: &str) -> ResourceRequest {
        match parse_path(path).unwrap() {
            Target::Resource(r) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn namespaced_paths_split_into_namespace_name_and_subresource() {
        let r = res("/apis/apps/v1/namespaces/prod/deployments/web/scale");
        assert_eq!(r.res.kind, "Deployment");
        assert_eq!(r.namespace.as_deref(), Some("prod"));
        assert_eq!(r.name.as_deref(), Some("web"));
        assert_eq!(r.subresource, Some(Subresource::Scale));
    }

    #[test]
    fn namespace_objects_and_their_status_are_not_namespaced_requests() {
        let r = res("/api/v1/namespaces/prod");
        assert_eq!(r.res.kind, "Namespace");
        assert_eq!(r.name.as_deref(), Some("prod"));
        let r = res("/api/v1/namespaces/prod/status");
        assert_eq!((r.res.kind, r.subresource), ("Namespace", Some(Subresource::Status)));
        let r = res("/api/v1/namespaces/prod/pods");
        assert_eq!((r.res.kind, r.namespace.as_deref(), r.name.as_deref()), ("Pod", Some("prod"), None));
    }

    #[test]
    fn unknown_resources_and_subresources_are_not_found() {
        assert_eq!(parse_path("/api/v1/widgets").unwrap(), Target::NotFound);
        assert_eq!(parse_path("/api/v1/namespaces/a/pods/p/bogus").unwrap(), Target::NotFound);
        assert_eq!(parse_path("/api/v1/namespaces/a/nodes").unwrap(), Target::NotFound);
    }

    #[test]
    fn legacy_watch_paths_are_recognised() {
        let r = res("/api/v1/watch/namespaces/a/pods");
        assert!(r.legacy_watch);
        assert_eq!(r.namespace.as_deref(), Some("a"));
    }
}
