//! Discovery: `/api`, `/api/v1`, `/apis`, `/apis/{g}`, `/apis/{g}/{v}`, and the
//! aggregated form (`apidiscovery.k8s.io/v2`) that kubectl asks for first.

use serde_json::{json, Value};
use skiff_api::resources::{self, ResourceInfo, Subresource};

/// The verbs of a resource.
pub fn verbs(res: &ResourceInfo) -> Vec<&'static str> {
    let mut v = vec!["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
    if res.plural == "namespaces" {
        v.retain(|x| *x != "deletecollection");
    }
    v
}

fn sub_verbs(s: Subresource) -> Vec<&'static str> {
    match s {
        Subresource::Status | Subresource::Scale => vec!["get", "patch", "update"],
        Subresource::Binding | Subresource::Eviction => vec!["create"],
        Subresource::Finalize => vec!["update"],
        Subresource::Log => vec!["get"],
        Subresource::Exec | Subresource::Attach | Subresource::PortForward => vec!["create", "get"],
        Subresource::Token => vec!["create"],
    }
}

fn sub_kind(res: &ResourceInfo, s: Subresource) -> (&'static str, &'static str, &'static str) {
    match s {
        Subresource::Scale => ("autoscaling", "v1", "Scale"),
        Subresource::Binding => ("", "v1", "Binding"),
        Subresource::Eviction => ("policy", "v1", "Eviction"),
        Subresource::Exec => ("", "v1", "PodExecOptions"),
        Subresource::Attach => ("", "v1", "PodAttachOptions"),
        Subresource::PortForward => ("", "v1", "PodPortForwardOptions"),
        Subresource::Token => ("authentication.k8s.io", "v1", "TokenRequest"),
        _ => (res.group, res.version, res.kind),
    }
}

/// A stable short hash, as upstream's `storageVersionHash`.
fn storage_hash(res: &ResourceInfo) -> String {
    use base64::Engine;
    let mut h: u64 = 0xcbf29ce484222325;
    for b in format!("{}/{}/{}", res.group, res.version, res.kind).bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    base64::engine::general_purpose::STANDARD.encode(h.to_be_bytes())[..11].to_string()
}

/// `APIResourceList` of a group version.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let list: Vec<&ResourceInfo> = resources::in_group_version(group, version).collect();
    if list.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for r in &list {
        let mut e = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": verbs(r),
            "storageVersionHash": storage_hash(r),
        });
        if !r.short_names.is_empty() {
            e["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            e["categories"] = json!(r.categories);
        }
        out.push(e);
        for s in r.subresources {
            let (g, v, k) = sub_kind(r, *s);
            let mut e = json!({
                "name": format!("{}/{}", r.plural, s.name()),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": k,
                "verbs": sub_verbs(*s),
            });
            if g != r.group || v != r.version {
                e["group"] = json!(g);
                e["version"] = json!(v);
            }
            out.push(e);
        }
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}))
}

pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_json(name: &str, versions: &[&str]) -> Value {
    let vs: Vec<Value> = versions.iter().map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v})).collect();
    json!({"name": name, "versions": vs, "preferredVersion": vs[0]})
}

pub fn api_group_list() -> Value {
    let groups: Vec<Value> = resources::groups().iter().map(|(g, vs)| group_json(g, vs)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn api_group(name: &str) -> Option<Value> {
    let (g, vs) = resources::groups().into_iter().find(|(g, _)| *g == name)?;
    let mut v = group_json(g, &vs);
    v["kind"] = json!("APIGroup");
    v["apiVersion"] = json!("v1");
    Some(v)
}

/// The media type of aggregated discovery, if the client accepts it.
pub fn aggregated_media_type(accept: &str) -> Option<&'static str> {
    for part in accept.split(',') {
        let p: Vec<&str> = part.split(';').map(str::trim).collect();
        let has = |x: &str| p.contains(&x);
        if p.first() == Some(&"application/json") && has("g=apidiscovery.k8s.io") && has("as=APIGroupDiscoveryList") {
            if has("v=v2") {
                return Some("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList");
            }
            if has("v=v2beta1") {
                return Some("application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList");
            }
        }
    }
    None
}

fn discovery_resource(r: &ResourceInfo) -> Value {
    let mut e = json!({
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": verbs(r),
    });
    if !r.short_names.is_empty() {
        e["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        e["categories"] = json!(r.categories);
    }
    if !r.subresources.is_empty() {
        let subs: Vec<Value> = r
            .subresources
            .iter()
            .map(|s| {
                let (g, v, k) = sub_kind(r, *s);
                json!({"subresource": s.name(), "responseKind": {"group": g, "version": v, "kind": k}, "verbs": sub_verbs(*s)})
            })
            .collect();
        e["subresources"] = json!(subs);
    }
    e
}

/// `APIGroupDiscoveryList` for `/api` (core) or `/apis` (every named group).
pub fn aggregated(core: bool, api_version: &str) -> Value {
    let groups: Vec<(&str, Vec<&str>)> = if core { vec![("", vec!["v1"])] } else { resources::groups() };
    let items: Vec<Value> = groups
        .iter()
        .map(|(g, vs)| {
            let versions: Vec<Value> = vs
                .iter()
                .map(|v| {
                    let rs: Vec<Value> = resources::in_group_version(g, v).map(discovery_resource).collect();
                    json!({"version": v, "resources": rs, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": g, "creationTimestamp": null}, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": api_version, "metadata": {}, "items": items})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_list_has_subresources_with_their_kinds() {
        let l = resource_list("", "v1").unwrap();
        let rs = l["resources"].as_array().unwrap();
        let binding = rs.iter().find(|r| r["name"] == "pods/binding").unwrap();
        assert_eq!(binding["kind"], "Binding");
        let pods = rs.iter().find(|r| r["name"] == "pods").unwrap();
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
    }

    #[test]
    fn scale_subresource_reports_autoscaling_scale() {
        let l = resource_list("apps", "v1").unwrap();
        let s = l["resources"].as_array().unwrap().iter().find(|r| r["name"] == "deployments/scale").unwrap().clone();
        assert_eq!((s["group"].as_str(), s["version"].as_str(), s["kind"].as_str()), (Some("autoscaling"), Some("v1"), Some("Scale")));
    }

    #[test]
    fn aggregated_discovery_is_negotiated_only_when_asked() {
        assert!(aggregated_media_type("application/json").is_none());
        let a = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";
        assert_eq!(aggregated_media_type(a), Some("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"));
    }
}
