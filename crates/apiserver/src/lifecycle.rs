//! What the server keeps true by itself: the built-in namespaces, PriorityClasses,
//! the default StorageClass, the `kubernetes` and `kube-dns` Services, namespace
//! termination, and garbage collection by owner references (background, foreground
//! and orphan propagation).
//!
//! Both loops are level-triggered: each pass reads the caches, takes the steps the
//! state calls for, and never assumes it saw every event.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::{json, Value};
use skiff_api::{meta, resources, ResourceInfo, StatusError, RESOURCES};

use crate::app::{App, Decision};
use crate::handlers::{self, DeleteOpts};
use crate::object::{Entry, OwnerRef};
use crate::write::{self, Part};

const MANAGER: &str = "skiff-controller-manager";

/// The namespaces that exist from the start.
pub const BUILTIN_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

fn res(group: &str, plural: &str) -> &'static ResourceInfo {
    resources::lookup(group, "v1", plural).expect("registered")
}

/// Creates the built-in namespaces, PriorityClasses and the `kubernetes` and
/// `kube-dns` Services if missing; safe to run on every start, by every server.
pub async fn bootstrap(app: &App, advertise_ip: &str, port: u16) -> Result<(), StatusError> {
    let ns = res("", "namespaces");
    for name in BUILTIN_NAMESPACES {
        if app.read(ns, None, name).await?.is_none() {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
            match handlers::create_object(app, ns, obj, MANAGER, false).await {
                Ok(_) => {}
                Err(e) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
    }
    // The built-in PriorityClasses, which pods of the system may name.
    let pcs = resources::lookup("scheduling.k8s.io", "v1", "priorityclasses").expect("registered");
    for class in skiff_api::admission::priority::system_classes() {
        let name = meta::name(&class).to_string();
        if app.read(pcs, None, &name).await?.is_none() {
            match handlers::create_object(app, pcs, class, MANAGER, false).await {
                Ok(_) => {}
                Err(e) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
    }
    // The built-in default StorageClass: local-path volumes on the node of the
    // first pod that uses the claim.
    let scs = resources::lookup("storage.k8s.io", "v1", "storageclasses").expect("registered");
    if app.read(scs, None, skiff_api::storage::LOCAL_PATH_CLASS).await?.is_none() {
        match handlers::create_object(app, scs, skiff_api::storage::local_path_class(), MANAGER, false).await {
            Ok(_) => {}
            Err(e) if e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    let svc = res("", "services");
    if app.read(svc, Some("default"), "kubernetes").await?.is_none() {
        let first_ip = first_service_ip(app);
        let obj = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"type": "ClusterIP", "clusterIP": first_ip, "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]}
        });
        match handlers::create_object(app, svc, obj, MANAGER, false).await {
            Ok(_) => {}
            Err(e) if e.code == 409 => {}
            // Another server starting at the same time holds the address for its own
            // `kubernetes` Service, which is about to be stored.
            Err(e) if e.code == 422 && kubernetes_service_appears(app).await? => {}
            Err(e) => return Err(e),
        }
    }
    ensure_kube_dns(app).await?;
    let ep = res("", "endpoints");
    let endpoints = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": advertise_ip}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]
    });
    app.guaranteed_update(ep, Some("default"), "kubernetes", false, |current| match current {
        None => Ok(Decision::Write(write::prepare_create(ep, endpoints.clone(), Some(MANAGER), &meta::now_rfc3339())?)),
        Some(cur) => {
            let mut new = cur.clone();
            new["subsets"] = endpoints["subsets"].clone();
            let new = write::prepare_update(ep, cur, new, Part::Main, Some(MANAGER), &meta::now_rfc3339())?;
            Ok(handlers::decide_after_update(ep, cur, new))
        }
    })
    .await?;
    // Its EndpointSlice, which service proxies read (the Endpoints above are for
    // older clients; the slice is written directly, as kube-apiserver does).
    let eps = res("discovery.k8s.io", "endpointslices");
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": if advertise_ip.contains(':') { "IPv6" } else { "IPv4" },
        "endpoints": [{"addresses": [advertise_ip], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}]
    });
    app.guaranteed_update(eps, Some("default"), "kubernetes", false, |current| match current {
        None => Ok(Decision::Write(write::prepare_create(eps, slice.clone(), Some(MANAGER), &meta::now_rfc3339())?)),
        Some(cur) => {
            let mut new = cur.clone();
            for field in ["addressType", "endpoints", "ports"] {
                new[field] = slice[field].clone();
            }
            let new = write::prepare_update(eps, cur, new, Part::Main, Some(MANAGER), &meta::now_rfc3339())?;
            Ok(handlers::decide_after_update(eps, cur, new))
        }
    })
    .await?;
    Ok(())
}

/// Whether the `kubernetes` Service exists within a few seconds.
async fn kubernetes_service_appears(app: &App) -> Result<bool, StatusError> {
    service_appears(app, "default", "kubernetes").await
}

/// Whether a Service exists within a few seconds.
async fn service_appears(app: &App, namespace: &str, name: &str) -> Result<bool, StatusError> {
    for _ in 0..20 {
        if app.read(res("", "services"), Some(namespace), name).await?.is_some() {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(false)
}

fn first_service_ip(app: &App) -> String {
    nth_service_ip(app, 1).to_string()
}

/// The `n`th address of the service CIDR (counting its network address as 0).
fn nth_service_ip(app: &App, n: u32) -> std::net::Ipv4Addr {
    let (base, bits) = app.settings.service_cidr;
    let mask = if bits == 0 { 0 } else { u32::MAX << (32 - u32::from(bits)) };
    std::net::Ipv4Addr::from((u32::from(base) & mask) + n)
}

/// The cluster DNS Service's name and namespace, as kubeadm and CoreDNS name it.
pub const KUBE_DNS_SERVICE: &str = "kube-dns";
pub const KUBE_DNS_NAMESPACE: &str = "kube-system";

/// The cluster DNS Service: `kube-system/kube-dns` on the 10th address of the
/// service CIDR (10.96.0.10 by default), DNS over UDP and TCP on port 53. It has
/// no selector: each node's agent publishes an EndpointSlice for the DNS server
/// it runs itself, and `internalTrafficPolicy: Local` keeps every pod's queries
/// on its own node. IPv4 only.
pub fn kube_dns_service(cluster_ip: std::net::Ipv4Addr) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {
            "name": KUBE_DNS_SERVICE, "namespace": KUBE_DNS_NAMESPACE,
            "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS", "kubernetes.io/cluster-service": "true"}
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": cluster_ip.to_string(),
            "internalTrafficPolicy": "Local",
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}
            ]
        }
    })
}

/// Creates the cluster DNS Service when it is missing. One that exists is left as
/// it is, whatever a user changed in it. Its address is reserved as any
/// Service's is; if something else holds it already, the server still starts
/// and says so.
async fn ensure_kube_dns(app: &App) -> Result<(), StatusError> {
    let svc = res("", "services");
    if app.read(svc, Some(KUBE_DNS_NAMESPACE), KUBE_DNS_SERVICE).await?.is_some() {
        return Ok(());
    }
    let ip = nth_service_ip(app, 10);
    match handlers::create_object(app, svc, kube_dns_service(ip), MANAGER, false).await {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => Ok(()),
        // Another server starting at the same time holds the address for its own
        // kube-dns Service, which is about to be stored.
        Err(e) if e.code == 422 && service_appears(app, KUBE_DNS_NAMESPACE, KUBE_DNS_SERVICE).await? => Ok(()),
        Err(e) if e.code == 422 => {
            tracing::warn!(address = %ip, error = %e.message, "cannot create the kube-dns Service: its address is taken; cluster DNS has no Service address");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Compacts the datastore's history every interval, to the revision seen one interval
/// before (as kube-apiserver does), so watchers have one interval to resume.
pub async fn compact(app: App, every: Duration) {
    let mut previous: Option<i64> = None;
    loop {
        tokio::time::sleep(every).await;
        let Ok(rev) = app.store.current_revision().await else { continue };
        if let Some(p) = previous {
            if p > 0 {
                if let Err(e) = app.store.compact(p).await {
                    tracing::warn!("compaction to revision {p} failed: {e}");
                }
            }
        }
        previous = Some(rev);
    }
}

/// Runs the namespace and garbage-collection loops, and the repair of Service address
/// reservations, until the task is dropped.
pub async fn run(app: App) {
    let mut last_rev = -1;
    let mut next_repair = tokio::time::Instant::now();
    loop {
        let rev = app.store.current_revision().await.unwrap_or(last_rev);
        if rev != last_rev {
            last_rev = rev;
            if let Err(e) = pass(&app).await {
                tracing::warn!("lifecycle pass failed: {e}");
            }
        }
        if tokio::time::Instant::now() >= next_repair {
            if let Err(e) = crate::alloc::repair(&app, crate::alloc::STALE_AFTER).await {
                tracing::warn!("repairing Service address reservations failed: {e}");
            }
            next_repair = tokio::time::Instant::now() + crate::alloc::REPAIR_PERIOD;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// All objects of every resource, as cached.
fn everything(app: &App) -> Vec<(&'static ResourceInfo, Entry)> {
    let mut out = Vec::new();
    for r in RESOURCES {
        for e in app.cache(r).list(&r.key_prefix(), None, 0, &|_| true).items {
            out.push((r, e));
        }
    }
    out
}

async fn pass(app: &App) -> Result<(), StatusError> {
    let all = everything(app);
    namespaces(app, &all).await?;
    publish_root_ca(app, &all).await?;
    garbage_collect(app, &all).await
}

// === kube-root-ca.crt ===

/// The ConfigMap every namespace gets with the cluster CA, which service account
/// token volumes mount as `ca.crt` (upstream's root-ca-cert-publisher).
const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";

async fn publish_root_ca(app: &App, all: &[(&'static ResourceInfo, Entry)]) -> Result<(), StatusError> {
    let Some(ca) = app.ca_pem.get().filter(|c| !c.is_empty()) else { return Ok(()) };
    // One spelling of the PEM (servers may hold it with or without the final
    // newline), so that servers sharing a datastore agree and never rewrite it.
    let ca = format!("{}\n", ca.trim_end());
    let ca = &ca;
    let cms = res("", "configmaps");
    for (_, ns) in all.iter().filter(|(r, e)| r.kind == "Namespace" && r.group.is_empty() && !e.object.deleting) {
        let name = &ns.object.name;
        match app.cache(cms).get(&cms.key(Some(name), ROOT_CA_CONFIGMAP)) {
            Some(e) if e.object.value().pointer("/data/ca.crt").and_then(Value::as_str) == Some(ca.as_str()) => {}
            Some(_) => {
                app.guaranteed_update(cms, Some(name), ROOT_CA_CONFIGMAP, false, |current| {
                    let Some(cur) = current else { return Ok(Decision::Keep(Value::Null)) };
                    let mut new = cur.clone();
                    new["data"] = json!({"ca.crt": ca});
                    let new = write::prepare_update(cms, cur, new, Part::Main, Some(MANAGER), &meta::now_rfc3339())?;
                    Ok(handlers::decide_after_update(cms, cur, new))
                })
                .await
                .map(|_| ())
                .or_else(ignore_not_found)?;
            }
            None => {
                let obj = json!({
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": ROOT_CA_CONFIGMAP, "namespace": name, "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
                    "data": {"ca.crt": ca},
                });
                match handlers::create_object(app, cms, obj, MANAGER, false).await {
                    Ok(_) => {}
                    // Created meanwhile, or the namespace started terminating.
                    Err(e) if e.code == 409 || e.code == 403 || e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(())
}

// === namespace termination ===

async fn namespaces(app: &App, all: &[(&'static ResourceInfo, Entry)]) -> Result<(), StatusError> {
    let ns_res = res("", "namespaces");
    let terminating: Vec<&Entry> = all.iter().filter(|(r, e)| r.kind == "Namespace" && e.object.deleting).map(|(_, e)| e).collect();
    for ns in terminating {
        let name = ns.object.name.clone();
        let content: Vec<&(&'static ResourceInfo, Entry)> =
            all.iter().filter(|(r, e)| r.namespaced && e.object.namespace.as_deref() == Some(name.as_str())).collect();
        if content.is_empty() {
            // Empty: drop the `kubernetes` finalizer; the namespace then goes away.
            app.guaranteed_update(ns_res, None, &name, false, |current| {
                let Some(cur) = current else { return Ok(Decision::Keep(Value::Null)) };
                let mut new = cur.clone();
                new["spec"]["finalizers"] = json!([]);
                let new = write::prepare_update(ns_res, cur, new, Part::Main, Some(MANAGER), &meta::now_rfc3339())?;
                Ok(handlers::decide_after_update(ns_res, cur, new))
            })
            .await
            .map(|_| ())
            .or_else(ignore_not_found)?;
            continue;
        }
        for (r, e) in content {
            if e.object.deleting && r.kind != "Pod" {
                continue;
            }
            // Pods in a terminating namespace are removed at once (there may be no node
            // to finish a graceful deletion).
            let grace = if r.kind == "Pod" { Some(0) } else { None };
            let opts = DeleteOpts { grace, propagation: Some("Background".into()), ..Default::default() };
            handlers::delete_object(app, r, e.object.namespace.as_deref(), &e.object.name, &opts).await.map(|_| ()).or_else(ignore_not_found)?;
        }
    }
    Ok(())
}

fn ignore_not_found<T: Default>(e: StatusError) -> Result<T, StatusError> {
    if e.code == 404 {
        Ok(T::default())
    } else {
        Err(e)
    }
}

// === garbage collection ===

/// Whether the owner named by `o` (in `namespace` if its kind is namespaced) still
/// exists with the same uid. The cache answers first; an absence is confirmed with a
/// store read, since deleting a dependent by mistake cannot be undone.
async fn owner_exists(app: &App, namespace: Option<&str>, o: &OwnerRef) -> Result<bool, StatusError> {
    let (group, _version) = match o.api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", o.api_version.as_str()),
    };
    let Some(r) = resources::lookup_kind(group, &o.kind) else {
        // An owner of a kind this server does not serve: leave the dependent alone.
        return Ok(true);
    };
    let ns = if r.namespaced { namespace } else { None };
    if let Some(e) = app.cache(r).get(&r.key(ns, &o.name)) {
        if e.object.uid == o.uid {
            return Ok(true);
        }
    }
    Ok(match app.read(r, ns, &o.name).await? {
        Some((v, _)) => v.pointer("/metadata/uid").and_then(Value::as_str) == Some(o.uid.as_str()),
        None => false,
    })
}

async fn garbage_collect(app: &App, all: &[(&'static ResourceInfo, Entry)]) -> Result<(), StatusError> {
    // Owners being deleted with the orphan or foreground finalizer, by uid.
    let finalizing: HashMap<&str, &(&'static ResourceInfo, Entry)> = all
        .iter()
        .filter(|(_, e)| e.object.deleting && e.object.finalizers.iter().any(|f| f == "orphan" || f == "foregroundDeletion"))
        .map(|item| (item.1.object.uid.as_str(), item))
        .collect();
    let mut dependents: HashMap<&str, Vec<&(&'static ResourceInfo, Entry)>> = HashMap::new();
    if !finalizing.is_empty() {
        for item in all {
            for o in &item.1.object.owners {
                if finalizing.contains_key(o.uid.as_str()) {
                    dependents.entry(o.uid.as_str()).or_default().push(item);
                }
            }
        }
    }
    let mut seen = HashSet::new();
    for (uid, (r, owner)) in &finalizing {
        if !seen.insert(*uid) {
            continue;
        }
        let deps = dependents.get(uid).cloned().unwrap_or_default();
        if owner.object.finalizers.iter().any(|f| f == "orphan") {
            for (dr, d) in &deps {
                remove_owner_ref(app, dr, d, uid).await?;
            }
            remove_finalizer(app, r, owner, "orphan").await?;
        } else if deps.is_empty() {
            remove_finalizer(app, r, owner, "foregroundDeletion").await?;
        } else {
            for (dr, d) in &deps {
                if !d.object.deleting {
                    let opts = DeleteOpts { propagation: Some("Foreground".into()), ..Default::default() };
                    handlers::delete_object(app, dr, d.object.namespace.as_deref(), &d.object.name, &opts).await.map(|_| ()).or_else(ignore_not_found)?;
                }
            }
        }
    }

    // Dependents whose owners are all gone are deleted (background propagation).
    for (r, e) in all {
        if e.object.owners.is_empty() || e.object.deleting {
            continue;
        }
        let mut any_alive = false;
        for o in &e.object.owners {
            if owner_exists(app, e.object.namespace.as_deref(), o).await? {
                any_alive = true;
                break;
            }
        }
        if !any_alive {
            delete_if_orphaned(app, r, e).await?;
        }
    }
    Ok(())
}

/// Deletes a dependent whose owners all look gone, after re-reading it from the store:
/// the cached copy may predate an update that removed or replaced its owners. The
/// delete carries the re-read version as a precondition.
async fn delete_if_orphaned(app: &App, r: &'static ResourceInfo, e: &Entry) -> Result<(), StatusError> {
    let ns = e.object.namespace.as_deref();
    let Some((fresh, _)) = app.read(r, ns, &e.object.name).await? else { return Ok(()) };
    if meta::is_deleting(&fresh) {
        return Ok(());
    }
    let owners: Vec<OwnerRef> = crate::object::cached(r, &fresh).owners;
    if owners.is_empty() {
        return Ok(());
    }
    for o in &owners {
        if owner_exists(app, ns, o).await? {
            return Ok(());
        }
    }
    let opts = DeleteOpts {
        propagation: Some("Background".into()),
        uid: fresh.pointer("/metadata/uid").and_then(Value::as_str).map(String::from),
        rv: fresh.pointer("/metadata/resourceVersion").and_then(Value::as_str).map(String::from),
        ..Default::default()
    };
    match handlers::delete_object(app, r, ns, &e.object.name, &opts).await {
        Ok(_) => Ok(()),
        // Changed or gone since the read: the next pass looks again.
        Err(err) if err.code == 404 || err.code == 409 => Ok(()),
        Err(err) => Err(err),
    }
}

async fn remove_owner_ref(app: &App, r: &'static ResourceInfo, e: &Entry, owner_uid: &str) -> Result<(), StatusError> {
    app.guaranteed_update(r, e.object.namespace.as_deref(), &e.object.name, false, |current| {
        let Some(cur) = current else { return Ok(Decision::Keep(Value::Null)) };
        let mut new = cur.clone();
        if let Some(refs) = new.pointer_mut("/metadata/ownerReferences").and_then(Value::as_array_mut) {
            refs.retain(|o| o.get("uid").and_then(Value::as_str) != Some(owner_uid));
            if refs.is_empty() {
                meta::metadata_mut(&mut new).remove("ownerReferences");
            }
        }
        let new = write::prepare_update(r, cur, new, Part::Main, Some(MANAGER), &meta::now_rfc3339())?;
        Ok(handlers::decide_after_update(r, cur, new))
    })
    .await
    .map(|_| ())
    .or_else(ignore_not_found)
}

async fn remove_finalizer(app: &App, r: &'static ResourceInfo, e: &Entry, finalizer: &str) -> Result<(), StatusError> {
    app.guaranteed_update(r, e.object.namespace.as_deref(), &e.object.name, false, |current| {
        let Some(cur) = current else { return Ok(Decision::Keep(Value::Null)) };
        let mut new = cur.clone();
        let f: Vec<String> = meta::finalizers(&new).into_iter().filter(|x| x != finalizer).collect();
        if f.is_empty() {
            meta::metadata_mut(&mut new).remove("finalizers");
        } else {
            meta::metadata_mut(&mut new).insert("finalizers".into(), json!(f));
        }
        let new = write::prepare_update(r, cur, new, Part::Main, Some(MANAGER), &meta::now_rfc3339())?;
        Ok(handlers::decide_after_update(r, cur, new))
    })
    .await
    .map(|_| ())
    .or_else(ignore_not_found)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use skiff_store::{SqliteStore, Store};

    use super::*;
    use crate::app::{Settings, Tokens};

    async fn app(settings: Settings) -> (App, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("state.db")).unwrap());
        let tokens = Tokens { admin: "admin".into(), node: "node".into() };
        let app = App::new(store, tokens, settings).await.unwrap();
        bootstrap(&app, "127.0.0.1", 6443).await.unwrap();
        (app, dir)
    }

    async fn kube_dns(app: &App) -> Option<Value> {
        app.read(res("", "services"), Some(KUBE_DNS_NAMESPACE), KUBE_DNS_SERVICE).await.unwrap().map(|(v, _)| v)
    }

    #[tokio::test]
    async fn bootstrap_creates_the_kube_dns_service_on_the_tenth_service_address() {
        let (app, _dir) = app(Settings { compaction_interval: None, ..Settings::default() }).await;
        let svc = kube_dns(&app).await.expect("kube-dns exists");
        assert_eq!(svc["spec"]["clusterIP"], "10.96.0.10");
        assert_eq!(svc["spec"]["clusterIPs"], json!(["10.96.0.10"]));
        assert_eq!(svc["spec"]["internalTrafficPolicy"], "Local");
        assert!(svc["spec"].get("selector").is_none_or(Value::is_null), "no selector: the agents publish its endpoints");
        let ports: Vec<(String, i64, String, i64)> = svc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["name"].as_str().unwrap().into(), p["port"].as_i64().unwrap(), p["protocol"].as_str().unwrap().into(), p["targetPort"].as_i64().unwrap()))
            .collect();
        assert_eq!(ports, [("dns".into(), 53, "UDP".into(), 53), ("dns-tcp".into(), 53, "TCP".into(), 53)]);
        let labels = &svc["metadata"]["labels"];
        assert_eq!((labels["k8s-app"].as_str(), labels["kubernetes.io/name"].as_str(), labels["kubernetes.io/cluster-service"].as_str()), (Some("kube-dns"), Some("CoreDNS"), Some("true")));
        // The address is the allocator's: a Service asking for it is refused.
        let mut clash = kube_dns_service("10.96.0.10".parse().unwrap());
        clash["metadata"]["name"] = json!("clash");
        let e = handlers::create_object(&app, res("", "services"), clash, "test", false).await.unwrap_err();
        assert_eq!(e.code, 422, "{}", e.message);
    }

    #[tokio::test]
    async fn the_kube_dns_address_follows_the_service_cidr() {
        let (app, _dir) = app(Settings { service_cidr: ("172.20.0.5".parse().unwrap(), 16), compaction_interval: None, ..Settings::default() }).await;
        assert_eq!(kube_dns(&app).await.unwrap()["spec"]["clusterIP"], "172.20.0.10");
    }

    #[tokio::test]
    async fn a_changed_kube_dns_service_is_kept_and_a_deleted_one_comes_back() {
        let (app, _dir) = app(Settings { compaction_interval: None, ..Settings::default() }).await;
        let services = res("", "services");
        handlers::delete_object(&app, services, Some(KUBE_DNS_NAMESPACE), KUBE_DNS_SERVICE, &DeleteOpts::default()).await.unwrap();
        bootstrap(&app, "127.0.0.1", 6443).await.unwrap();
        assert!(kube_dns(&app).await.is_some(), "re-created on the next start");

        handlers::delete_object(&app, services, Some(KUBE_DNS_NAMESPACE), KUBE_DNS_SERVICE, &DeleteOpts::default()).await.unwrap();
        let mut mine = kube_dns_service("10.96.0.53".parse().unwrap());
        mine["spec"]["ports"] = json!([{"name": "dns", "port": 5353, "protocol": "UDP", "targetPort": 5353}]);
        handlers::create_object(&app, services, mine, "test", false).await.unwrap();
        bootstrap(&app, "127.0.0.1", 6443).await.unwrap();
        let svc = kube_dns(&app).await.unwrap();
        assert_eq!((svc["spec"]["clusterIP"].as_str(), svc["spec"]["ports"][0]["port"].as_i64()), (Some("10.96.0.53"), Some(5353)));
    }
}
