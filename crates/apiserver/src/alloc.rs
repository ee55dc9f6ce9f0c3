//! Service cluster IP and node port allocation.
//!
//! Several API servers may serve one datastore at once, so neither the local Service
//! watch cache nor a local lock can keep two creates from picking the same address.
//! Every address a Service holds is therefore *reserved* in the datastore, under a key
//! of its own made with an atomic create-if-absent (in the spirit of upstream's
//! `IPAddress` objects):
//!
//! - `/registry/skiff.io/allocations/clusterips/<ip>`
//! - `/registry/skiff.io/allocations/nodeports/<port>`
//!
//! The value names the owner Service (namespace, name, uid) and when the reservation
//! was made. A create reserves before it writes its Service, and whoever creates the
//! key first owns the address. The watch cache only proposes candidates, and keeps
//! refusing addresses that stored Services visibly hold.
//!
//! Nothing is released when a Service goes away or stops using an address. Instead, a
//! reservation whose owner no longer holds the address is *stale*: an explicit request
//! for the address takes it over, and the [`repair`] pass that the leader runs deletes
//! it. Since a create reserves before it writes, "the owner does not exist" is only
//! conclusive once the owner was seen stored (the reservation is then marked
//! `confirmed`) or once the reservation is older than [`STALE_AFTER`]; until then a
//! create in flight on another server may still write it, and must not be robbed.
//!
//! `App::alloc_lock` still serializes the allocations of one server, which keeps its
//! own creates from competing for the same keys.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use skiff_api::{resources, Cause, ResourceInfo, StatusError};
use skiff_store::{KeyValue, ListOptions, StoreError};

use crate::app::{store_error, App};

/// Where reservations live. No watch cache covers it (no resource group is named
/// `skiff.io`), so reservations never show up as API objects.
const PREFIX: &str = "/registry/skiff.io/allocations/";
const CLUSTER_IPS: &str = "/registry/skiff.io/allocations/clusterips/";
const NODE_PORTS: &str = "/registry/skiff.io/allocations/nodeports/";

/// How old an unconfirmed reservation without a visible owner must be before it is
/// stale. Far longer than a create takes from reserving to writing its Service.
pub const STALE_AFTER: Duration = Duration::from_secs(10);

/// How often the leader runs [`repair`].
pub const REPAIR_PERIOD: Duration = Duration::from_secs(30);

/// Reservation attempts per address before looking further (see [`Reservations::reserve_any`]).
const ATTEMPTS: usize = 16;

fn services() -> &'static ResourceInfo {
    resources::lookup("", "v1", "services").expect("services registered")
}

fn in_cidr(ip: Ipv4Addr, (base, bits): (Ipv4Addr, u8)) -> bool {
    let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
    (u32::from(ip) & mask) == (u32::from(base) & mask)
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

// === impl Slot ===

/// One thing a Service can hold exclusively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Slot {
    ClusterIp(Ipv4Addr),
    NodePort(i64),
}

impl Slot {
    fn key(self) -> String {
        match self {
            Slot::ClusterIp(ip) => format!("{CLUSTER_IPS}{ip}"),
            Slot::NodePort(port) => format!("{NODE_PORTS}{port}"),
        }
    }

    fn from_key(key: &str) -> Option<Slot> {
        if let Some(ip) = key.strip_prefix(CLUSTER_IPS) {
            return ip.parse().ok().map(Slot::ClusterIp);
        }
        key.strip_prefix(NODE_PORTS)?.parse().ok().map(Slot::NodePort)
    }

    /// Whether this server allocates from where the slot lies (addresses outside the
    /// configured ranges are never candidates, so they need no reservation).
    fn in_range(self, app: &App) -> bool {
        match self {
            Slot::ClusterIp(ip) => in_cidr(ip, app.settings.service_cidr),
            Slot::NodePort(port) => {
                let (lo, hi) = app.settings.node_port_range;
                (lo as i64..=hi as i64).contains(&port)
            }
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Slot::ClusterIp(ip) => write!(f, "cluster IP {ip}"),
            Slot::NodePort(port) => write!(f, "node port {port}"),
        }
    }
}

/// The cluster IPs and node ports a Service holds.
fn held_by(svc: &Value) -> Vec<Slot> {
    let mut out = Vec::new();
    let mut add = |s: Slot| {
        if !out.contains(&s) {
            out.push(s);
        }
    };
    let ips = svc.pointer("/spec/clusterIPs").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str);
    for ip in ips.chain(svc.pointer("/spec/clusterIP").and_then(Value::as_str)) {
        if let Ok(ip) = ip.parse() {
            add(Slot::ClusterIp(ip));
        }
    }
    for p in svc.pointer("/spec/ports").and_then(Value::as_array).into_iter().flatten() {
        if let Some(n) = p.get("nodePort").and_then(Value::as_i64) {
            add(Slot::NodePort(n));
        }
    }
    out
}

/// What Services visibly hold, as this server's cache has it.
struct Seen {
    ips: HashSet<Ipv4Addr>,
    ports: HashSet<i64>,
    /// Whether the cache was brought up to date with the store before it was read.
    synced: bool,
}

impl Seen {
    fn read(app: &App, synced: bool) -> Seen {
        let res = services();
        let list = app.cache(res).list(&res.key_prefix(), None, 0, &|_| true);
        let mut seen = Seen { ips: HashSet::new(), ports: HashSet::new(), synced };
        for e in list.items {
            for slot in held_by(&e.object.value()) {
                match slot {
                    Slot::ClusterIp(ip) => seen.ips.insert(ip),
                    Slot::NodePort(port) => seen.ports.insert(port),
                };
            }
        }
        seen
    }

    fn contains(&self, slot: Slot) -> bool {
        match slot {
            Slot::ClusterIp(ip) => self.ips.contains(&ip),
            Slot::NodePort(port) => self.ports.contains(&port),
        }
    }

    /// Whether a stored Service holds `slot`. A "yes" from a cache that may lag is
    /// checked again once it has caught up: the holder may have been deleted through
    /// another server a moment ago.
    async fn holds(&mut self, app: &App, slot: Slot) -> Result<bool, StatusError> {
        if self.contains(slot) && !self.synced {
            app.sync_cache(services()).await?;
            *self = Seen::read(app, true);
        }
        Ok(self.contains(slot))
    }
}

// === impl Record ===

/// The value of a reservation key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    namespace: String,
    name: String,
    uid: String,
    /// Unix seconds, by the clock of the server that reserved.
    reserved_at: i64,
    /// The owner was seen stored holding the slot: from then on, its absence means it
    /// is gone for good, whatever the reservation's age.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    confirmed: bool,
}

impl Record {
    fn encode(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    fn decode(kv: &KeyValue) -> Option<Record> {
        serde_json::from_slice(&kv.value).ok()
    }

    fn as_confirmed(&self) -> Record {
        Record { confirmed: true, ..self.clone() }
    }
}

/// Whether the owner `r` names still holds `slot`, by the Service cache.
fn owner_holds(app: &App, slot: Slot, r: &Record) -> bool {
    let res = services();
    app.cache(res)
        .get(&res.key(Some(&r.namespace), &r.name))
        .filter(|e| e.object.uid == r.uid)
        .is_some_and(|e| held_by(&e.object.value()).contains(&slot))
}

/// Whether a reservation of `slot` may be deleted or taken over. The Service cache
/// must have caught up with the store *after* the reservation was read, so that an
/// owner stored before its reservation was confirmed is in it.
fn is_stale(app: &App, slot: Slot, record: Option<&Record>, now: i64, min_age: Duration) -> bool {
    // An unreadable value was not written by this allocator: nothing vouches for it.
    let Some(r) = record else { return true };
    if owner_holds(app, slot, r) {
        return false;
    }
    r.confirmed || now.saturating_sub(r.reserved_at) >= min_age.as_secs() as i64
}

fn gone_or_changed(e: &StoreError) -> bool {
    matches!(e, StoreError::Conflict { .. } | StoreError::NotFound { .. })
}

// === impl Reservations ===

/// The reservations one Service create made.
///
/// Keep it until the create has been written or has failed. Dropping it settles the
/// reservations in the background: if the Service was stored holding them they are
/// confirmed, otherwise (the create failed, or was abandoned) they are deleted. If
/// settling fails, [`repair`] does the same later.
#[must_use = "dropping the reservations before the Service is written releases them"]
pub struct Reservations {
    app: Option<App>,
    dry_run: bool,
    owner: Record,
    /// Each slot reserved, with the mod revision of its reservation.
    made: Vec<(Slot, i64)>,
}

impl Reservations {
    /// No reservations, for objects that need none.
    pub fn none() -> Reservations {
        Reservations { app: None, dry_run: true, owner: Record::default(), made: Vec::new() }
    }

    fn for_service(app: &App, svc: &Value, dry_run: bool) -> Reservations {
        let s = |p: &str| svc.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
        let owner = Record { namespace: s("/metadata/namespace"), name: s("/metadata/name"), uid: s("/metadata/uid"), reserved_at: unix_now(), confirmed: false };
        Reservations { app: Some(app.clone()), dry_run, owner, made: Vec::new() }
    }

    fn app(&self) -> &App {
        self.app.as_ref().expect("allocation happens on reservations made for a Service")
    }

    fn error(&self, e: StoreError) -> StatusError {
        store_error(services(), &self.owner.name, e)
    }

    fn record(&self) -> Bytes {
        Record { reserved_at: unix_now(), ..self.owner.clone() }.encode()
    }

    /// Reserves `slot` if nobody has. Dry runs only look.
    async fn try_reserve(&mut self, slot: Slot) -> Result<bool, StatusError> {
        let key = slot.key();
        if self.dry_run {
            return self.app().store.get(&key).await.map(|kv| kv.is_none()).map_err(|e| self.error(e));
        }
        match self.app().store.create(&key, self.record()).await {
            Ok(kv) => {
                self.made.push((slot, kv.mod_revision));
                Ok(true)
            }
            Err(StoreError::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Reserves an address the client asked for: free, or held by a stale reservation,
    /// which is taken over. `false` if another Service holds it.
    async fn claim(&mut self, slot: Slot) -> Result<bool, StatusError> {
        let key = slot.key();
        for _ in 0..4 {
            if self.try_reserve(slot).await? {
                return Ok(true);
            }
            let app = self.app().clone();
            let Some(current) = app.store.get(&key).await.map_err(|e| self.error(e))? else {
                // Released since: try to create it again.
                continue;
            };
            app.sync_cache(services()).await?;
            if !is_stale(&app, slot, Record::decode(&current).as_ref(), unix_now(), STALE_AFTER) {
                return Ok(false);
            }
            if self.dry_run {
                return Ok(true);
            }
            match app.store.update(&key, self.record(), current.mod_revision).await {
                Ok(kv) => {
                    tracing::info!(%slot, previous = %String::from_utf8_lossy(&current.value), "took over a stale reservation");
                    self.made.push((slot, kv.mod_revision));
                    return Ok(true);
                }
                // Someone else moved first: look again.
                Err(e) if gone_or_changed(&e) => continue,
                Err(e) => return Err(self.error(e)),
            }
        }
        Ok(false)
    }

    /// Reserves one of `candidates()`, which yields the slots of one kind the cache
    /// calls free, from a random place. Most are free indeed, so a few are tried in
    /// order; when they are not (creates in flight elsewhere, stale reservations, an
    /// almost full range), every reserved slot is skipped. `None`: the range is full.
    async fn reserve_any<I>(&mut self, prefix: &str, mut candidates: impl FnMut() -> I) -> Result<Option<Slot>, StatusError>
    where
        I: Iterator<Item = Slot>,
    {
        for slot in candidates().take(ATTEMPTS) {
            if self.try_reserve(slot).await? {
                return Ok(Some(slot));
            }
        }
        let reserved: HashSet<Slot> = self
            .app()
            .store
            .list(prefix, ListOptions::default())
            .await
            .map_err(|e| self.error(e))?
            .items
            .iter()
            .filter_map(|kv| Slot::from_key(&kv.key))
            .collect();
        for slot in candidates().filter(|s| !reserved.contains(s)).take(ATTEMPTS) {
            if self.try_reserve(slot).await? {
                return Ok(Some(slot));
            }
        }
        Ok(None)
    }

    /// Deletes the reservations made so far (the create is given up).
    async fn release(&mut self) {
        let made = std::mem::take(&mut self.made);
        let Some(app) = &self.app else { return };
        for (slot, rev) in made {
            if let Err(e) = app.store.delete(&slot.key(), Some(rev)).await {
                if !gone_or_changed(&e) {
                    tracing::debug!(%slot, error = %e, "releasing a reservation failed; the repair pass will");
                }
            }
        }
    }
}

impl Drop for Reservations {
    fn drop(&mut self) {
        if self.made.is_empty() {
            return;
        }
        let (Some(app), Ok(runtime)) = (self.app.clone(), tokio::runtime::Handle::try_current()) else { return };
        runtime.spawn(settle(app, self.owner.clone(), std::mem::take(&mut self.made)));
    }
}

/// Confirms the reservations a stored Service holds and deletes the others.
async fn settle(app: App, owner: Record, made: Vec<(Slot, i64)>) {
    let stored = match app.read(services(), Some(&owner.namespace), &owner.name).await {
        Ok(found) => found.map(|(v, _)| v).filter(|v| v.pointer("/metadata/uid").and_then(Value::as_str) == Some(owner.uid.as_str())),
        Err(e) => {
            tracing::debug!(error = %e, "settling reservations failed; the repair pass will");
            return;
        }
    };
    let holds = stored.as_ref().map(held_by).unwrap_or_default();
    for (slot, rev) in made {
        let key = slot.key();
        let result = if holds.contains(&slot) {
            app.store.update(&key, owner.as_confirmed().encode(), rev).await.map(drop)
        } else {
            app.store.delete(&key, Some(rev)).await.map(drop)
        };
        if let Err(e) = result {
            if !gone_or_changed(&e) {
                tracing::debug!(%slot, error = %e, "settling a reservation failed; the repair pass will");
            }
        }
    }
}

// === allocation ===

/// Fills in `spec.clusterIP(s)` and node ports of a new Service (whose uid is set),
/// reserving each address in the datastore. Keep the returned [`Reservations`] until
/// the Service is written or the create failed. A dry run reserves nothing.
pub async fn allocate_service(app: &App, mut svc: Value, dry_run: bool) -> Result<(Value, Reservations), StatusError> {
    let mut held = Reservations::for_service(app, &svc, dry_run);
    match assign(app, &mut svc, &mut held).await {
        Ok(()) => Ok((svc, held)),
        Err(e) => {
            held.release().await;
            Err(e)
        }
    }
}

/// The cluster IPs of `cidr` outside `used`, from a random place (as upstream, so that
/// allocations spread), skipping the network and broadcast addresses.
fn ip_candidates(cidr: (Ipv4Addr, u8), used: &HashSet<Ipv4Addr>) -> impl Iterator<Item = Slot> + '_ {
    let base = u32::from(cidr.0);
    let size = 1u64 << (32 - cidr.1 as u32);
    let start = rand::rng().random_range(1..size.saturating_sub(1).max(2));
    (0..size)
        .map(move |i| (start + i) % size)
        .filter(move |&off| off != 0 && off != size - 1)
        .map(move |off| Ipv4Addr::from(base.wrapping_add(off as u32)))
        .filter(move |ip| !used.contains(ip))
        .map(Slot::ClusterIp)
}

/// The node ports of `lo..=hi` outside `taken`, from a random place.
fn port_candidates((lo, hi): (u16, u16), taken: &HashSet<i64>) -> impl Iterator<Item = Slot> + '_ {
    let span = (hi as i64 - lo as i64 + 1).max(1);
    let start = rand::rng().random_range(0..span);
    (0..span).map(move |k| lo as i64 + (start + k) % span).filter(move |n| !taken.contains(n)).map(Slot::NodePort)
}

async fn assign(app: &App, svc: &mut Value, held: &mut Reservations) -> Result<(), StatusError> {
    let name = svc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
    let typ = svc.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP").to_string();
    let mut seen = Seen::read(app, false);
    let cidr = app.settings.service_cidr;
    if typ != "ExternalName" {
        match svc.pointer("/spec/clusterIP").and_then(Value::as_str).map(String::from) {
            Some(ip) if ip == "None" => {}
            Some(ip) if !ip.is_empty() => {
                let parsed: Ipv4Addr = ip.parse().map_err(|_| {
                    StatusError::invalid("", "Service", &name, vec![Cause::invalid("spec.clusterIPs[0]", &json!(ip), "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")])
                })?;
                if !in_cidr(parsed, cidr) {
                    return Err(StatusError::invalid("", "Service", &name, vec![Cause::invalid("spec.clusterIPs", &json!([ip]), format!("failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {}/{}", cidr.0, cidr.1))]));
                }
                let slot = Slot::ClusterIp(parsed);
                if seen.holds(app, slot).await? || !held.claim(slot).await? {
                    return Err(StatusError::invalid("", "Service", &name, vec![Cause::invalid("spec.clusterIPs", &json!([ip]), format!("failed to allocate IP {ip}: provided IP is already allocated"))]));
                }
                svc["spec"]["clusterIPs"] = json!([ip]);
            }
            _ => {
                let ip = match held.reserve_any(CLUSTER_IPS, || ip_candidates(cidr, &seen.ips)).await? {
                    Some(Slot::ClusterIp(ip)) => ip,
                    _ => return Err(StatusError::internal("failed to allocate a serviceIP: range is full")),
                };
                svc["spec"]["clusterIP"] = json!(ip.to_string());
                svc["spec"]["clusterIPs"] = json!([ip.to_string()]);
            }
        }
    }
    if matches!(typ.as_str(), "NodePort" | "LoadBalancer") {
        let (lo, hi) = app.settings.node_port_range;
        // This Service's own node ports, so that it never gets one twice.
        let mut own = HashSet::new();
        let count = svc.pointer("/spec/ports").and_then(Value::as_array).map_or(0, Vec::len);
        for i in 0..count {
            match svc["spec"]["ports"][i].get("nodePort").and_then(Value::as_i64) {
                Some(n) => {
                    if n < lo as i64 || n > hi as i64 {
                        return Err(StatusError::invalid("", "Service", &name, vec![Cause::invalid(format!("spec.ports[{i}].nodePort"), &json!(n), format!("provided port is not in the valid range. The range of valid ports is {lo}-{hi}"))]));
                    }
                    let slot = Slot::NodePort(n);
                    if !own.insert(n) || seen.holds(app, slot).await? || !held.claim(slot).await? {
                        return Err(StatusError::invalid("", "Service", &name, vec![Cause::invalid(format!("spec.ports[{i}].nodePort"), &json!(n), "provided port is already allocated")]));
                    }
                }
                None => {
                    let taken: HashSet<i64> = seen.ports.union(&own).copied().collect();
                    let n = match held.reserve_any(NODE_PORTS, || port_candidates((lo, hi), &taken)).await? {
                        Some(Slot::NodePort(n)) => n,
                        _ => return Err(StatusError::internal("failed to allocate a nodePort: range is full")),
                    };
                    own.insert(n);
                    svc["spec"]["ports"][i]["nodePort"] = json!(n);
                }
            }
        }
    }
    Ok(())
}

// === repair ===

/// What one [`repair`] pass changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Repaired {
    /// Stale reservations deleted.
    pub released: usize,
    /// Reservations made for Services that held an address without one (Services
    /// stored before reservations existed, or whose create lost its reservation).
    pub restored: usize,
}

/// Brings the reservations in line with the Services, as upstream's allocator repair
/// loops do: deletes stale reservations (compare-and-delete, so one renewed meanwhile
/// stays), confirms those whose owner is stored, and reserves what Services hold
/// without a reservation. `min_age` is [`STALE_AFTER`] outside tests. Run by one
/// server at a time (the leader); concurrent passes are safe, only wasteful.
pub async fn repair(app: &App, min_age: Duration) -> Result<Repaired, StatusError> {
    let res = services();
    let error = |e| store_error(res, "", e);
    // Reservations first, the cache after: every Service stored before a reservation
    // was read (in particular, before it was confirmed) is then in the cache.
    let reservations = app.store.list(PREFIX, ListOptions::default()).await.map_err(error)?;
    app.sync_cache(res).await?;
    let now = unix_now();
    let mut out = Repaired::default();
    let mut owners: HashMap<Slot, String> = HashMap::new();
    for kv in &reservations.items {
        let Some(slot) = Slot::from_key(&kv.key) else { continue };
        let record = Record::decode(kv);
        match record {
            Some(r) if !is_stale(app, slot, Some(&r), now, min_age) => {
                if !r.confirmed && owner_holds(app, slot, &r) {
                    // The create's own confirmation was lost; record it now.
                    match app.store.update(&kv.key, r.as_confirmed().encode(), kv.mod_revision).await {
                        Ok(_) => {}
                        Err(e) if gone_or_changed(&e) => {}
                        Err(e) => return Err(error(e)),
                    }
                }
                owners.insert(slot, r.uid);
            }
            _ => match app.store.delete(&kv.key, Some(kv.mod_revision)).await {
                Ok(_) => {
                    tracing::debug!(%slot, "released a stale reservation");
                    out.released += 1;
                }
                Err(e) if gone_or_changed(&e) => {}
                Err(e) => return Err(error(e)),
            },
        }
    }
    for e in app.cache(res).list(&res.key_prefix(), None, 0, &|_| true).items {
        let namespace = e.object.namespace.clone().unwrap_or_default();
        for slot in held_by(&e.object.value()) {
            if !slot.in_range(app) {
                continue;
            }
            match owners.get(&slot) {
                Some(uid) if *uid == e.object.uid => {}
                Some(_) => tracing::warn!(%slot, service = %format!("{namespace}/{}", e.object.name), "the address is reserved for another Service"),
                None => {
                    let record = Record { namespace: namespace.clone(), name: e.object.name.clone(), uid: e.object.uid.clone(), reserved_at: now, confirmed: true };
                    match app.store.create(&slot.key(), record.encode()).await {
                        Ok(_) => out.restored += 1,
                        // Reserved since the list (a create in flight): that one wins.
                        Err(StoreError::AlreadyExists { .. }) => {}
                        Err(e) => return Err(error(e)),
                    }
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use skiff_api::meta;
    use skiff_store::{SqliteStore, Store};

    use super::*;
    use crate::app::{Settings, Tokens};
    use crate::handlers::{self, DeleteOpts};
    use crate::{lifecycle, write};

    /// Several servers over one datastore, as an HA control plane runs them.
    struct Servers {
        apps: Vec<App>,
        _dir: tempfile::TempDir,
    }

    /// A small service range and node port range, so that concurrent creates compete
    /// for the same addresses.
    fn crowded() -> Settings {
        Settings { service_cidr: ("10.0.0.0".parse().unwrap(), 24), node_port_range: (30000, 30249), compaction_interval: None, ..Settings::default() }
    }

    async fn servers(n: usize, settings: Settings) -> Servers {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("state.db")).unwrap());
        let mut apps = Vec::new();
        for _ in 0..n {
            let tokens = Tokens { admin: "admin".into(), node: "node".into() };
            apps.push(App::new(store.clone(), tokens, settings.clone()).await.unwrap());
        }
        // Both bootstrap at once, as servers started together do.
        let results = futures::future::join_all(apps.iter().map(|app| lifecycle::bootstrap(app, "127.0.0.1", 6443))).await;
        for r in results {
            r.unwrap();
        }
        Servers { apps, _dir: dir }
    }

    fn service(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"type": "NodePort", "selector": {"app": name}, "ports": [{"port": 80}]}})
    }

    fn with_address(mut svc: Value, ip: Ipv4Addr, node_port: Option<i64>) -> Value {
        svc["spec"]["clusterIP"] = json!(ip.to_string());
        if let Some(n) = node_port {
            svc["spec"]["ports"][0]["nodePort"] = json!(n);
        }
        svc
    }

    async fn create(app: &App, svc: Value) -> Result<Value, StatusError> {
        handlers::create_object(app, services(), svc, "test", false).await
    }

    async fn delete(app: &App, name: &str) {
        handlers::delete_object(app, services(), Some("default"), name, &DeleteOpts::default()).await.unwrap();
    }

    fn ip_of(svc: &Value) -> Ipv4Addr {
        svc["spec"]["clusterIP"].as_str().unwrap().parse().unwrap()
    }

    fn node_port_of(svc: &Value) -> i64 {
        svc["spec"]["ports"][0]["nodePort"].as_i64().unwrap()
    }

    fn uid_of(svc: &Value) -> String {
        svc["metadata"]["uid"].as_str().unwrap().to_string()
    }

    async fn reservation(app: &App, slot: Slot) -> Option<(Record, KeyValue)> {
        let kv = app.store.get(&slot.key()).await.unwrap()?;
        Some((Record::decode(&kv).expect("a reservation record"), kv))
    }

    async fn eventually<F, Fut>(what: &str, mut f: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        for _ in 0..100 {
            if f().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting until {what}");
    }

    async fn confirmed(app: &App, slot: Slot, uid: &str) -> bool {
        reservation(app, slot).await.is_some_and(|(r, _)| r.confirmed && r.uid == uid)
    }

    /// Rewrites a reservation as if it had been made `secs` seconds ago.
    async fn age(app: &App, slot: Slot, secs: i64) {
        let (mut r, kv) = reservation(app, slot).await.unwrap();
        r.reserved_at -= secs;
        app.store.update(&kv.key, r.encode(), kv.mod_revision).await.unwrap();
    }

    /// A Service as a create has it right before allocation (uid assigned).
    fn prepared(name: &str, ip: Ipv4Addr, node_port: i64) -> Value {
        write::prepare_create(services(), with_address(service(name), ip, Some(node_port)), Some("test"), &meta::now_rfc3339()).unwrap()
    }

    /// The message of the one cause of a 422.
    fn cause_message(e: &StatusError) -> String {
        assert_eq!((e.code, e.causes.len()), (422, 1), "{e:?}");
        e.causes[0].message.clone()
    }

    #[test]
    fn cidr_membership() {
        let c = ("10.96.0.0".parse().unwrap(), 12);
        assert!(in_cidr("10.96.0.1".parse().unwrap(), c));
        assert!(in_cidr("10.111.255.254".parse().unwrap(), c));
        assert!(!in_cidr("10.112.0.1".parse().unwrap(), c));
    }

    #[test]
    fn reservation_keys_lie_outside_every_watch_cache() {
        for r in skiff_api::RESOURCES {
            let p = r.key_prefix();
            assert!(!PREFIX.starts_with(&p) && !p.starts_with(PREFIX), "{p} overlaps {PREFIX}");
        }
        for slot in [Slot::ClusterIp("10.0.0.7".parse().unwrap()), Slot::NodePort(30007)] {
            assert!(slot.key().starts_with(PREFIX));
            assert_eq!(Slot::from_key(&slot.key()), Some(slot));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn servers_bootstrapping_together_agree_on_the_kubernetes_service() {
        let s = servers(2, crowded()).await;
        let (svc, _) = s.apps[1].read_existing(services(), Some("default"), "kubernetes").await.unwrap();
        assert_eq!(svc["spec"]["clusterIP"], "10.0.0.1");
        let uid = uid_of(&svc);
        eventually("the kubernetes Service's reservation is confirmed", || confirmed(&s.apps[0], Slot::ClusterIp("10.0.0.1".parse().unwrap()), &uid)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_servers_sharing_a_datastore_never_hand_out_the_same_address() {
        let s = servers(2, crowded()).await;
        let creates = (0..200).map(|i| {
            let app = s.apps[i % 2].clone();
            tokio::spawn(async move { create(&app, service(&format!("svc-{i}"))).await })
        });
        let mut ips = HashSet::new();
        let mut ports = HashSet::new();
        let mut created = Vec::new();
        for c in futures::future::join_all(creates).await {
            let svc = c.unwrap().unwrap();
            assert!(ips.insert(ip_of(&svc)), "cluster IP {} handed out twice", ip_of(&svc));
            assert!(ports.insert(node_port_of(&svc)), "node port {} handed out twice", node_port_of(&svc));
            created.push(svc);
        }
        assert!(!ips.contains(&"10.0.0.1".parse().unwrap()), "the kubernetes Service's address was handed out");
        // Every address ends up reserved for, and confirmed by, its Service.
        for svc in &created {
            let uid = uid_of(svc);
            eventually("cluster IP reservations are confirmed", || confirmed(&s.apps[0], Slot::ClusterIp(ip_of(svc)), &uid)).await;
            eventually("node port reservations are confirmed", || confirmed(&s.apps[0], Slot::NodePort(node_port_of(svc)), &uid)).await;
        }
        // Nothing is stale, nothing is missing.
        assert_eq!(repair(&s.apps[1], Duration::ZERO).await.unwrap(), Repaired::default());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_address_held_by_a_live_service_is_refused_on_the_other_server() {
        let s = servers(2, crowded()).await;
        let web = create(&s.apps[0], service("web")).await.unwrap();
        let (ip, port) = (ip_of(&web), node_port_of(&web));

        let e = create(&s.apps[1], with_address(service("clash"), ip, None)).await.unwrap_err();
        assert_eq!(e.code, 422);
        assert_eq!(cause_message(&e), format!("Invalid value: [\"{ip}\"]: failed to allocate IP {ip}: provided IP is already allocated"));
        assert_eq!(e.causes[0].field, "spec.clusterIPs");

        let e = create(&s.apps[1], with_address(service("clash"), "10.0.0.200".parse().unwrap(), Some(port))).await.unwrap_err();
        assert_eq!(e.code, 422);
        assert_eq!(cause_message(&e), format!("Invalid value: {port}: provided port is already allocated"));
        assert_eq!(e.causes[0].field, "spec.ports[0].nodePort");
        // The refused create gave back the address it had reserved.
        eventually("the refused create's reservation is released", || async { reservation(&s.apps[0], Slot::ClusterIp("10.0.0.200".parse().unwrap())).await.is_none() }).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_create_in_flight_on_another_server_is_never_robbed() {
        let s = servers(2, crowded()).await;
        let ip: Ipv4Addr = "10.0.0.50".parse().unwrap();
        // Server 0 reserved the addresses and has not written its Service yet.
        let (_, in_flight) = allocate_service(&s.apps[0], prepared("first", ip, 30050), false).await.unwrap();

        let e = create(&s.apps[1], with_address(service("second"), ip, None)).await.unwrap_err();
        assert_eq!(cause_message(&e), format!("Invalid value: [\"{ip}\"]: failed to allocate IP {ip}: provided IP is already allocated"));
        let e = create(&s.apps[1], with_address(service("second"), "10.0.0.51".parse().unwrap(), Some(30050))).await.unwrap_err();
        assert_eq!(cause_message(&e), "Invalid value: 30050: provided port is already allocated");
        // The repair pass leaves young reservations alone.
        assert_eq!(repair(&s.apps[1], STALE_AFTER).await.unwrap(), Repaired::default());
        assert!(reservation(&s.apps[0], Slot::ClusterIp(ip)).await.is_some());

        // A create that never finished (its server died) leaves a reservation that
        // turns stale with age, and an explicit request then takes it over.
        age(&s.apps[0], Slot::ClusterIp(ip), STALE_AFTER.as_secs() as i64 + 1).await;
        let second = create(&s.apps[1], with_address(service("second"), ip, None)).await.unwrap();
        assert_eq!(ip_of(&second), ip);
        // The abandoned create settling late does not take the address back.
        drop(in_flight);
        let uid = uid_of(&second);
        eventually("the new owner's reservation is confirmed", || confirmed(&s.apps[0], Slot::ClusterIp(ip), &uid)).await;
        eventually("the abandoned node port reservation is released", || async { reservation(&s.apps[0], Slot::NodePort(30050)).await.is_none() }).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reservation_left_by_a_failed_create_is_released_by_the_repair_pass() {
        let s = servers(2, crowded()).await;
        let ip: Ipv4Addr = "10.0.0.60".parse().unwrap();
        // The server crashed between reserving and writing: nothing settles.
        let (_, lost) = allocate_service(&s.apps[0], prepared("lost", ip, 30060), false).await.unwrap();
        std::mem::forget(lost);

        assert_eq!(repair(&s.apps[1], STALE_AFTER).await.unwrap(), Repaired::default());
        assert!(reservation(&s.apps[0], Slot::ClusterIp(ip)).await.is_some());
        assert_eq!(repair(&s.apps[1], Duration::ZERO).await.unwrap(), Repaired { released: 2, restored: 0 });
        assert!(reservation(&s.apps[0], Slot::ClusterIp(ip)).await.is_none());
        assert!(reservation(&s.apps[0], Slot::NodePort(30060)).await.is_none());
        create(&s.apps[1], with_address(service("next"), ip, Some(30060))).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_create_that_fails_after_reserving_releases_what_it_reserved() {
        let s = servers(2, crowded()).await;
        create(&s.apps[0], service("web")).await.unwrap();
        let ip: Ipv4Addr = "10.0.0.70".parse().unwrap();
        let e = create(&s.apps[1], with_address(service("web"), ip, Some(30070))).await.unwrap_err();
        assert_eq!(e.code, 409, "{e:?}");
        eventually("the failed create's reservations are released", || async {
            reservation(&s.apps[0], Slot::ClusterIp(ip)).await.is_none() && reservation(&s.apps[0], Slot::NodePort(30070)).await.is_none()
        })
        .await;
        create(&s.apps[0], with_address(service("other"), ip, Some(30070))).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_deleted_services_address_can_be_asked_for_on_another_server() {
        let s = servers(2, crowded()).await;
        let ip: Ipv4Addr = "10.0.0.80".parse().unwrap();
        let first = create(&s.apps[0], with_address(service("first"), ip, Some(30080))).await.unwrap();
        let uid = uid_of(&first);
        eventually("the reservation is confirmed", || confirmed(&s.apps[0], Slot::ClusterIp(ip), &uid)).await;
        delete(&s.apps[0], "first").await;

        // The reservation is still there (nothing releases it on delete), but stale.
        assert!(reservation(&s.apps[1], Slot::ClusterIp(ip)).await.is_some());
        let second = create(&s.apps[1], with_address(service("second"), ip, Some(30080))).await.unwrap();
        assert_eq!((ip_of(&second), node_port_of(&second)), (ip, 30080));
        let (r, _) = reservation(&s.apps[1], Slot::NodePort(30080)).await.unwrap();
        assert_eq!(r.uid, uid_of(&second));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_repair_pass_reserves_what_services_hold_without_a_reservation() {
        let s = servers(1, crowded()).await;
        let web = create(&s.apps[0], service("web")).await.unwrap();
        let (ip, port, uid) = (ip_of(&web), node_port_of(&web), uid_of(&web));
        eventually("the reservation is confirmed", || confirmed(&s.apps[0], Slot::ClusterIp(ip), &uid)).await;
        // As for a Service stored before reservations existed.
        for slot in [Slot::ClusterIp(ip), Slot::NodePort(port)] {
            s.apps[0].store.delete(&slot.key(), None).await.unwrap();
        }
        assert_eq!(repair(&s.apps[0], STALE_AFTER).await.unwrap(), Repaired { released: 0, restored: 2 });
        assert!(confirmed(&s.apps[0], Slot::ClusterIp(ip), &uid).await);
        assert!(confirmed(&s.apps[0], Slot::NodePort(port), &uid).await);
        // Once the Service is gone, its confirmed reservations are stale at any age.
        delete(&s.apps[0], "web").await;
        assert_eq!(repair(&s.apps[0], STALE_AFTER).await.unwrap(), Repaired { released: 2, restored: 0 });
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dry_run_reserves_nothing() {
        let s = servers(1, crowded()).await;
        let svc = handlers::create_object(&s.apps[0], services(), service("web"), "test", true).await.unwrap();
        assert!(reservation(&s.apps[0], Slot::ClusterIp(ip_of(&svc))).await.is_none());
        assert!(reservation(&s.apps[0], Slot::NodePort(node_port_of(&svc))).await.is_none());
    }
}
