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
//! An update reserves the addresses its new version needs and the stored one does not
//! hold (node ports when the type comes to need them, a changed node port, a cluster
//! IP for a former ExternalName), and gives them back if the write fails. Those the
//! new version stops holding are released once it is stored, as upstream releases
//! them only when the update has succeeded (see [`update_service`]).
//!
//! Nothing is released when a Service goes away, or when releasing after an update
//! fails. Instead, a reservation whose owner no longer holds the address is *stale*:
//! an explicit request for the address takes it over, and the [`repair`] pass that the
//! leader runs deletes it. Since a create reserves before it writes, "the owner does
//! not exist" is only conclusive once the owner was seen stored (the reservation is
//! then marked `confirmed`) or once the reservation is older than [`STALE_AFTER`];
//! until then a create in flight on another server may still write it, and must not be
//! robbed.
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

use crate::app::{encode_for_store, store_error, App, Decision, Written};
use crate::write;

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

/// The cluster IPs and node ports (the health check node port among them) a Service
/// holds.
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
        if let Some(n) = p.get("nodePort").and_then(Value::as_i64).filter(|n| *n != 0) {
            add(Slot::NodePort(n));
        }
    }
    if let Some(n) = svc.pointer("/spec/healthCheckNodePort").and_then(Value::as_i64).filter(|n| *n != 0) {
        add(Slot::NodePort(n));
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

/// Fills in `spec.clusterIP(s)`, node ports and the health check node port of a new
/// Service (whose uid is set), reserving each address in the datastore. Keep the
/// returned [`Reservations`] until the Service is written or the create failed. A dry
/// run reserves nothing.
pub async fn allocate_service(app: &App, mut svc: Value, dry_run: bool) -> Result<(Value, Reservations), StatusError> {
    let mut held = Reservations::for_service(app, &svc, dry_run);
    match assign(app, &mut svc, None, &mut held).await {
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

/// One Service's allocation: the stored version it replaces (none on create), and
/// what it holds so far.
struct Assignment<'a> {
    app: &'a App,
    name: String,
    /// What the stored version holds: kept without a second reservation.
    kept: HashSet<Slot>,
    seen: Seen,
    /// The node ports the Service holds once done (one number may serve several of
    /// its ports: the TCP and UDP sides of one port).
    own: HashSet<i64>,
}

impl Assignment<'_> {
    fn invalid(&self, field: impl Into<String>, value: &Value, message: impl AsRef<str>) -> StatusError {
        StatusError::invalid("", "Service", &self.name, vec![Cause::invalid(field, value, message)])
    }

    fn out_of_range(&self, n: i64) -> Option<String> {
        let (lo, hi) = self.app.settings.node_port_range;
        (!(lo as i64..=hi as i64).contains(&n)).then(|| format!("provided port is not in the valid range. The range of valid ports is {lo}-{hi}"))
    }

    /// Reserves a node port the client asked for, unless the Service already holds it.
    /// `Err` carries why it cannot have it.
    async fn claim_node_port(&mut self, held: &mut Reservations, n: i64) -> Result<Result<(), String>, StatusError> {
        let slot = Slot::NodePort(n);
        if self.own.contains(&n) || self.kept.contains(&slot) {
            self.own.insert(n);
            return Ok(Ok(()));
        }
        if let Some(why) = self.out_of_range(n) {
            return Ok(Err(why));
        }
        if self.seen.holds(self.app, slot).await? || !held.claim(slot).await? {
            return Ok(Err("provided port is already allocated".into()));
        }
        self.own.insert(n);
        Ok(Ok(()))
    }

    /// Reserves any free node port.
    async fn any_node_port(&mut self, held: &mut Reservations) -> Result<Option<i64>, StatusError> {
        let range = self.app.settings.node_port_range;
        loop {
            let taken: HashSet<i64> = self.seen.ports.union(&self.own).copied().collect();
            if let Some(Slot::NodePort(n)) = held.reserve_any(NODE_PORTS, || port_candidates(range, &taken)).await? {
                self.own.insert(n);
                return Ok(Some(n));
            }
            if !self.catch_up().await? {
                return Ok(None);
            }
        }
    }

    /// Reserves any free cluster IP.
    async fn any_cluster_ip(&mut self, held: &mut Reservations) -> Result<Option<Ipv4Addr>, StatusError> {
        let cidr = self.app.settings.service_cidr;
        loop {
            if let Some(Slot::ClusterIp(ip)) = held.reserve_any(CLUSTER_IPS, || ip_candidates(cidr, &self.seen.ips)).await? {
                return Ok(Some(ip));
            }
            if !self.catch_up().await? {
                return Ok(None);
            }
        }
    }

    /// Before calling a range full: a cache that may lag can still show addresses as
    /// held that were given up a moment ago through another server. `false` if the
    /// cache was up to date already.
    async fn catch_up(&mut self) -> Result<bool, StatusError> {
        if self.seen.synced {
            return Ok(false);
        }
        self.app.sync_cache(services()).await?;
        self.seen = Seen::read(self.app, true);
        Ok(true)
    }
}

/// Allocates what `svc` needs and does not hold yet (`old`: the stored version it
/// replaces). Upstream's `allocateCreate` and `allocateUpdate`, over reservations.
async fn assign(app: &App, svc: &mut Value, old: Option<&Value>, held: &mut Reservations) -> Result<(), StatusError> {
    let name = svc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
    let typ = svc.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP").to_string();
    let kept = old.map(held_by).unwrap_or_default().into_iter().collect();
    let mut a = Assignment { app, name, kept, seen: Seen::read(app, false), own: HashSet::new() };
    if typ != "ExternalName" {
        assign_cluster_ip(&mut a, svc, held).await?;
    }
    if matches!(typ.as_str(), "NodePort" | "LoadBalancer") {
        assign_node_ports(&mut a, svc, old.is_none(), held).await?;
    }
    if write::service::needs_health_check(svc) {
        assign_health_check_node_port(&mut a, svc, held).await?;
    }
    Ok(())
}

async fn assign_cluster_ip(a: &mut Assignment<'_>, svc: &mut Value, held: &mut Reservations) -> Result<(), StatusError> {
    let cidr = a.app.settings.service_cidr;
    match svc.pointer("/spec/clusterIP").and_then(Value::as_str).map(String::from) {
        Some(ip) if ip == "None" => {}
        Some(ip) if !ip.is_empty() => {
            let parsed: Ipv4Addr = ip.parse().map_err(|_| a.invalid("spec.clusterIPs[0]", &json!(ip), "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"))?;
            let slot = Slot::ClusterIp(parsed);
            if !a.kept.contains(&slot) {
                if !in_cidr(parsed, cidr) {
                    let why = format!("failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {}/{}", cidr.0, cidr.1);
                    return Err(a.invalid("spec.clusterIPs", &json!([ip]), why));
                }
                if a.seen.holds(a.app, slot).await? || !held.claim(slot).await? {
                    return Err(a.invalid("spec.clusterIPs", &json!([ip]), format!("failed to allocate IP {ip}: provided IP is already allocated")));
                }
            }
            svc["spec"]["clusterIPs"] = json!([ip]);
        }
        _ => {
            let Some(ip) = a.any_cluster_ip(held).await? else {
                return Err(StatusError::internal("failed to allocate a serviceIP: range is full"));
            };
            svc["spec"]["clusterIP"] = json!(ip.to_string());
            svc["spec"]["clusterIPs"] = json!([ip.to_string()]);
        }
    }
    Ok(())
}

/// Node ports for every port without one, unless a LoadBalancer asked for none
/// (`allocateLoadBalancerNodePorts: false`; node ports asked for are still honoured).
/// On create, the ports of one number share a node port, as upstream's create does.
async fn assign_node_ports(a: &mut Assignment<'_>, svc: &mut Value, create: bool, held: &mut Reservations) -> Result<(), StatusError> {
    let allocate_new = svc.pointer("/spec/allocateLoadBalancerNodePorts").and_then(Value::as_bool) != Some(false);
    let ports: Vec<Value> = svc.pointer("/spec/ports").and_then(Value::as_array).cloned().unwrap_or_default();
    let number = |p: &Value| p.get("port").and_then(Value::as_i64).unwrap_or(0);
    let node_port = |p: &Value| p.get("nodePort").and_then(Value::as_i64).filter(|n| *n != 0);
    let mut by_number: HashMap<i64, i64> = HashMap::new();
    for (i, port) in ports.iter().enumerate() {
        let mut wanted = node_port(port);
        if wanted.is_none() && create {
            let n = number(port);
            wanted = by_number.get(&n).copied().or_else(|| ports.iter().filter(|p| number(p) == n).find_map(node_port));
        }
        let n = match wanted {
            Some(n) => {
                if let Err(why) = a.claim_node_port(held, n).await? {
                    return Err(a.invalid(format!("spec.ports[{i}].nodePort"), &json!(n), why));
                }
                n
            }
            None if !allocate_new => continue,
            None => match a.any_node_port(held).await? {
                Some(n) => n,
                None => return Err(StatusError::internal("failed to allocate a nodePort: range is full")),
            },
        };
        by_number.insert(number(port), n);
        svc["spec"]["ports"][i]["nodePort"] = json!(n);
    }
    Ok(())
}

/// The health check node port of a LoadBalancer with the Local traffic policy: the one
/// asked for, the one the Service has, or a new one.
async fn assign_health_check_node_port(a: &mut Assignment<'_>, svc: &mut Value, held: &mut Reservations) -> Result<(), StatusError> {
    match svc.pointer("/spec/healthCheckNodePort").and_then(Value::as_i64).filter(|n| *n != 0) {
        Some(n) => {
            // Shared with one of the Service's own ports is as taken as anyone else's.
            let result = if a.own.contains(&n) { Err("provided port is already allocated".into()) } else { a.claim_node_port(held, n).await? };
            if let Err(why) = result {
                return Err(StatusError::internal(format!("failed to allocate requested HealthCheck NodePort {n}: {why}")));
            }
        }
        None => match a.any_node_port(held).await? {
            Some(n) => svc["spec"]["healthCheckNodePort"] = json!(n),
            None => return Err(StatusError::internal("failed to allocate a HealthCheck NodePort: range is full")),
        },
    }
    Ok(())
}

// === update ===

/// What a Service update changes in the allocations, between allocating and writing.
struct Change {
    /// The new addresses, reserved.
    reservations: Reservations,
    /// Reservations of addresses the stored version holds and the new one does not,
    /// as read before the write: released once the update is stored.
    released: Vec<(Slot, Record, i64)>,
}

impl Change {
    /// The update was stored: the old addresses go.
    async fn commit(mut self, app: &App) {
        for (slot, record, rev) in std::mem::take(&mut self.released) {
            release_reservation(app, slot, &record, rev).await;
        }
        // Dropping the reservations confirms them.
    }

    /// The update was not stored: the new addresses go, the old ones stay.
    async fn revert(mut self) {
        self.reservations.release().await;
    }
}

/// Allocates what the update of `old` to `new` needs, and finds what it will release.
async fn allocate_update(app: &App, old: &Value, mut new: Value, dry_run: bool) -> Result<(Value, Change), StatusError> {
    let mut held = Reservations::for_service(app, &new, dry_run);
    if let Err(e) = assign(app, &mut new, Some(old), &mut held).await {
        held.release().await;
        return Err(e);
    }
    let mut change = Change { reservations: held, released: Vec::new() };
    if dry_run {
        return Ok((new, change));
    }
    let still = held_by(&new);
    let uid = old.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
    for slot in held_by(old).into_iter().filter(|s| !still.contains(s) && s.in_range(app)) {
        let kv = match app.store.get(&slot.key()).await {
            Ok(kv) => kv,
            Err(e) => {
                let e = change.reservations.error(e);
                change.revert().await;
                return Err(e);
            }
        };
        // Not reserved, or reserved for another Service (which the repair pass
        // reports): nothing to release.
        if let Some((record, kv)) = kv.and_then(|kv| Some((Record::decode(&kv)?, kv))).filter(|(r, _)| r.uid == uid) {
            change.released.push((slot, record, kv.mod_revision));
        }
    }
    Ok((new, change))
}

/// Deletes the reservation `record` of `slot`, read at `rev`, unless someone has made
/// it theirs since. Settling (confirming) the same reservation changes its revision
/// but not whose it is; a takeover writes a new record.
async fn release_reservation(app: &App, slot: Slot, record: &Record, mut rev: i64) {
    let key = slot.key();
    for _ in 0..4 {
        match app.store.delete(&key, Some(rev)).await {
            Ok(_) => {
                tracing::debug!(%slot, "released");
                return;
            }
            Err(StoreError::Conflict { .. }) => match app.store.get(&key).await {
                Ok(Some(kv)) if Record::decode(&kv).is_some_and(|r| r.as_confirmed() == record.as_confirmed()) => rev = kv.mod_revision,
                _ => return,
            },
            Err(StoreError::NotFound { .. }) => return,
            Err(e) => {
                tracing::debug!(%slot, error = %e, "releasing a reservation failed; the repair pass will");
                return;
            }
        }
    }
}

/// [`App::guaranteed_update`], with what Services need besides (see
/// [`update_service`]): how the handlers update objects of any resource.
pub async fn guaranteed_update<F>(app: &App, res: &ResourceInfo, namespace: Option<&str>, name: &str, dry_run: bool, decide: F) -> Result<Written, StatusError>
where
    F: FnMut(Option<&Value>) -> Result<Decision, StatusError>,
{
    if res.group.is_empty() && res.kind == "Service" {
        update_service(app, namespace, name, dry_run, decide).await
    } else {
        app.guaranteed_update(res, namespace, name, dry_run, decide).await
    }
}

/// Read-modify-write of a Service, as [`App::guaranteed_update`], that also allocates
/// what the new version needs and does not hold (node ports and a health check node
/// port when the type comes to need them, a cluster IP when it stops being an
/// ExternalName, a node port the client changed) and releases what it stops holding.
///
/// As upstream, allocation runs after `decide` (which defaults and validates), new
/// addresses are reserved before the write and given back if the write fails, and the
/// old ones are released only once the new version is stored. Every attempt starts
/// from a consistent read, since allocation must judge the version it replaces.
pub async fn update_service<F>(app: &App, namespace: Option<&str>, name: &str, dry_run: bool, mut decide: F) -> Result<Written, StatusError>
where
    F: FnMut(Option<&Value>) -> Result<Decision, StatusError>,
{
    let res = services();
    let key = res.key(namespace, name);
    let with_revision = |mut v: Value, kv: &KeyValue| {
        skiff_api::meta::set_resource_version(&mut v, kv.mod_revision);
        v
    };
    for _ in 0..16 {
        let current = app.read(res, namespace, name).await?;
        let decision = decide(current.as_ref().map(|(v, _)| v))?;
        let (new, old, kv) = match (decision, current) {
            (Decision::Keep(v), _) => return Ok(Written::Unchanged(v)),
            (Decision::Delete, None) => return Err(StatusError::not_found(res.group, res.plural, name)),
            (Decision::Delete, Some((old, kv))) => {
                if dry_run {
                    return Ok(Written::Deleted(old));
                }
                match app.store.delete(&key, Some(kv.mod_revision)).await {
                    Ok(d) => return Ok(Written::Deleted(with_revision(old, &d))),
                    Err(e) if gone_or_changed(&e) => continue,
                    Err(e) => return Err(store_error(res, name, e)),
                }
            }
            (Decision::Write(new), None) => {
                let _guard = app.alloc_lock.lock().await;
                let (new, _reservations) = allocate_service(app, new, dry_run).await?;
                if dry_run {
                    return Ok(Written::Created(new));
                }
                match app.store.create(&key, encode_for_store(res, &new)).await {
                    Ok(kv) => return Ok(Written::Created(with_revision(new, &kv))),
                    Err(StoreError::AlreadyExists { .. }) => continue,
                    Err(e) => return Err(store_error(res, name, e)),
                }
            }
            (Decision::Write(new), Some((old, kv))) => (new, old, kv),
        };
        if new.get("spec") == old.get("spec") {
            // Metadata or status alone: nothing to allocate or release.
            if dry_run {
                return Ok(Written::Updated(with_revision(new, &kv)));
            }
            match app.store.update(&key, encode_for_store(res, &new), kv.mod_revision).await {
                Ok(stored) => return Ok(Written::Updated(with_revision(new, &stored))),
                Err(e) if gone_or_changed(&e) => continue,
                Err(e) => return Err(store_error(res, name, e)),
            }
        }
        let _guard = app.alloc_lock.lock().await;
        let (new, change) = allocate_update(app, &old, new, dry_run).await?;
        if dry_run {
            // A dry run reports the version the object has now, as upstream.
            return Ok(Written::Updated(with_revision(new, &kv)));
        }
        match app.store.update(&key, encode_for_store(res, &new), kv.mod_revision).await {
            Ok(stored) => {
                if !change.reservations.made.is_empty() {
                    // Make the allocation visible before the next allocation runs.
                    let _ = app.cache(res).wait_for(stored.mod_revision, Duration::from_secs(5)).await;
                }
                change.commit(app).await;
                return Ok(Written::Updated(with_revision(new, &stored)));
            }
            Err(e) => {
                change.revert().await;
                if !gone_or_changed(&e) {
                    return Err(store_error(res, name, e));
                }
            }
        }
    }
    Err(StatusError::conflict(res.group, res.plural, name, "too many concurrent writers; please try again"))
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

        let free: Ipv4Addr = if ip.octets()[3] == 200 { "10.0.0.201" } else { "10.0.0.200" }.parse().unwrap();
        let e = create(&s.apps[1], with_address(service("clash"), free, Some(port))).await.unwrap_err();
        assert_eq!(e.code, 422);
        assert_eq!(cause_message(&e), format!("Invalid value: {port}: provided port is already allocated"));
        assert_eq!(e.causes[0].field, "spec.ports[0].nodePort");
        // The refused create gave back the address it had reserved.
        eventually("the refused create's reservation is released", || async { reservation(&s.apps[0], Slot::ClusterIp(free)).await.is_none() }).await;
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
        // Addresses of its own, so that the second create fails for its name alone.
        create(&s.apps[0], with_address(service("web"), "10.0.0.69".parse().unwrap(), Some(30069))).await.unwrap();
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

    // === updates ===

    /// A node port range of one port: whatever holds it, nobody else can have one.
    fn one_node_port() -> Settings {
        Settings { node_port_range: (30000, 30000), ..crowded() }
    }

    fn typed(name: &str, typ: &str) -> Value {
        let mut svc = service(name);
        svc["spec"]["type"] = json!(typ);
        svc
    }

    /// An update of `name` as the handlers make it: `change` applied to the stored
    /// version, then the update strategy, defaults and validation.
    async fn update(app: &App, name: &str, change: impl Fn(&mut Value)) -> Result<Value, StatusError> {
        let written = update_service(app, Some("default"), name, false, |current| {
            let current = current.expect("the Service exists");
            let mut new = current.clone();
            change(&mut new);
            Ok(Decision::Write(write::prepare_update(services(), current, new, write::Part::Main, Some("test"), &meta::now_rfc3339())?))
        })
        .await?;
        match written {
            Written::Updated(v) => Ok(v),
            _ => panic!("the update was not written"),
        }
    }

    fn set_type(typ: &'static str) -> impl Fn(&mut Value) {
        move |svc| svc["spec"]["type"] = json!(typ)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_type_change_to_node_port_reserves_the_new_node_ports_for_the_service() {
        let s = servers(1, crowded()).await;
        let web = create(&s.apps[0], typed("web", "ClusterIP")).await.unwrap();
        assert!(web["spec"]["ports"][0].get("nodePort").is_none());

        let web = update(&s.apps[0], "web", set_type("NodePort")).await.unwrap();
        let uid = uid_of(&web);
        eventually("the new node port's reservation is confirmed", || confirmed(&s.apps[0], Slot::NodePort(node_port_of(&web)), &uid)).await;
        // The cluster IP it had is still its own.
        assert!(confirmed(&s.apps[0], Slot::ClusterIp(ip_of(&web)), &uid).await);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn addresses_an_update_stops_using_are_released_once_it_is_stored() {
        let s = servers(1, crowded()).await;
        let mut lb = typed("web", "LoadBalancer");
        lb["spec"]["externalTrafficPolicy"] = json!("Local");
        let web = create(&s.apps[0], lb).await.unwrap();
        let (ip, port, uid) = (ip_of(&web), node_port_of(&web), uid_of(&web));
        let hc = web["spec"]["healthCheckNodePort"].as_i64().expect("a LoadBalancer with the Local policy has a health check port");
        assert_ne!(hc, port);
        for slot in [Slot::ClusterIp(ip), Slot::NodePort(port), Slot::NodePort(hc)] {
            eventually("the reservations are confirmed", || confirmed(&s.apps[0], slot, &uid)).await;
        }

        let web = update(&s.apps[0], "web", set_type("ClusterIP")).await.unwrap();
        assert!(web["spec"]["ports"][0].get("nodePort").is_none() && web["spec"].get("healthCheckNodePort").is_none(), "{web}");
        assert!(reservation(&s.apps[0], Slot::NodePort(port)).await.is_none());
        assert!(reservation(&s.apps[0], Slot::NodePort(hc)).await.is_none());
        assert!(confirmed(&s.apps[0], Slot::ClusterIp(ip), &uid).await);

        update(&s.apps[0], "web", |svc| {
            svc["spec"]["type"] = json!("ExternalName");
            svc["spec"]["externalName"] = json!("example.com");
        })
        .await
        .unwrap();
        assert!(reservation(&s.apps[0], Slot::ClusterIp(ip)).await.is_none());
        // Nothing is left for the repair pass.
        assert_eq!(repair(&s.apps[0], Duration::ZERO).await.unwrap(), Repaired::default());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_released_node_port_is_handed_out_again() {
        let s = servers(2, one_node_port()).await;
        let first = create(&s.apps[0], typed("first", "NodePort")).await.unwrap();
        assert_eq!(node_port_of(&first), 30000);
        let e = create(&s.apps[1], typed("second", "NodePort")).await.unwrap_err();
        assert_eq!(e.code, 500, "{e:?}");

        update(&s.apps[0], "first", set_type("ClusterIP")).await.unwrap();
        let second = create(&s.apps[1], typed("second", "NodePort")).await.unwrap();
        assert_eq!(node_port_of(&second), 30000);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_update_that_loses_a_race_gives_back_what_it_reserved_and_tries_again() {
        let s = servers(1, one_node_port()).await;
        create(&s.apps[0], typed("web", "ClusterIP")).await.unwrap();
        let key = services().key(Some("default"), "web");
        let store = s.apps[0].store.clone();
        let mut attempts = 0;
        let written = update_service(&s.apps[0], Some("default"), "web", false, |current| {
            let current = current.unwrap();
            attempts += 1;
            if attempts == 1 {
                // Another writer gets in between this read and the write.
                let (store, key) = (store.clone(), key.clone());
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    rt.block_on(async {
                        let kv = store.get(&key).await.unwrap().unwrap();
                        let mut v: Value = serde_json::from_slice(&kv.value).unwrap();
                        v["metadata"]["labels"] = json!({"touched": "yes"});
                        store.update(&key, Bytes::from(serde_json::to_vec(&v).unwrap()), kv.mod_revision).await.unwrap();
                    })
                })
                .join()
                .unwrap();
            }
            let mut new = current.clone();
            new["spec"]["type"] = json!("NodePort");
            Ok(Decision::Write(write::prepare_update(services(), current, new, write::Part::Main, Some("test"), &meta::now_rfc3339())?))
        })
        .await
        .unwrap();
        assert_eq!(attempts, 2);
        // The only node port there is was reserved by the first attempt: had it kept
        // it, the second would have found the range full.
        let Written::Updated(web) = written else { panic!("not updated") };
        assert_eq!(node_port_of(&web), 30000);
        assert_eq!(web["metadata"]["labels"]["touched"], "yes");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_node_port_change_keeps_the_port_the_service_had() {
        let s = servers(2, crowded()).await;
        let web = create(&s.apps[0], with_address(service("web"), "10.0.0.90".parse().unwrap(), Some(30090))).await.unwrap();
        create(&s.apps[0], with_address(service("busy"), "10.0.0.91".parse().unwrap(), Some(30091))).await.unwrap();
        let uid = uid_of(&web);
        eventually("the reservation is confirmed", || confirmed(&s.apps[0], Slot::NodePort(30090), &uid)).await;

        let e = update(&s.apps[1], "web", |svc| svc["spec"]["ports"][0]["nodePort"] = json!(30091)).await.unwrap_err();
        assert_eq!(cause_message(&e), "Invalid value: 30091: provided port is already allocated");
        assert_eq!(e.causes[0].field, "spec.ports[0].nodePort");
        assert!(confirmed(&s.apps[0], Slot::NodePort(30090), &uid).await);

        // A free one is taken, and the old one released.
        let web = update(&s.apps[1], "web", |svc| svc["spec"]["ports"][0]["nodePort"] = json!(30092)).await.unwrap();
        assert_eq!(node_port_of(&web), 30092);
        assert!(reservation(&s.apps[0], Slot::NodePort(30090)).await.is_none());
        eventually("the new reservation is confirmed", || confirmed(&s.apps[0], Slot::NodePort(30092), &uid)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dry_run_update_reserves_and_releases_nothing() {
        let s = servers(1, crowded()).await;
        let web = create(&s.apps[0], typed("web", "NodePort")).await.unwrap();
        let (port, uid) = (node_port_of(&web), uid_of(&web));
        eventually("the reservation is confirmed", || confirmed(&s.apps[0], Slot::NodePort(port), &uid)).await;
        let written = update_service(&s.apps[0], Some("default"), "web", true, |current| {
            let current = current.unwrap();
            let mut new = current.clone();
            new["spec"]["type"] = json!("LoadBalancer");
            new["spec"]["externalTrafficPolicy"] = json!("Local");
            new["spec"]["ports"][0]["nodePort"] = json!(30100);
            Ok(Decision::Write(write::prepare_update(services(), current, new, write::Part::Main, Some("test"), &meta::now_rfc3339())?))
        })
        .await
        .unwrap();
        let Written::Updated(shown) = written else { panic!("not updated") };
        let hc = shown["spec"]["healthCheckNodePort"].as_i64().expect("a health check port is shown");
        assert_eq!(node_port_of(&shown), 30100);
        assert!(reservation(&s.apps[0], Slot::NodePort(30100)).await.is_none());
        assert!(reservation(&s.apps[0], Slot::NodePort(hc)).await.is_none());
        assert!(confirmed(&s.apps[0], Slot::NodePort(port), &uid).await);
        let (stored, _) = s.apps[0].read_existing(services(), Some("default"), "web").await.unwrap();
        assert_eq!(stored["spec"]["type"], "NodePort");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_tcp_and_udp_sides_of_one_port_share_a_node_port_on_create() {
        let s = servers(1, crowded()).await;
        let mut dns = typed("dns", "NodePort");
        dns["spec"]["ports"] = json!([{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]);
        let dns = create(&s.apps[0], dns).await.unwrap();
        assert_eq!(dns["spec"]["ports"][0]["nodePort"], dns["spec"]["ports"][1]["nodePort"]);

        let mut lb = typed("lb", "LoadBalancer");
        lb["spec"]["allocateLoadBalancerNodePorts"] = json!(false);
        let lb = create(&s.apps[0], lb).await.unwrap();
        assert!(lb["spec"]["ports"][0].get("nodePort").is_none(), "{lb}");
    }
}
