//! What a simulated node looks like: names, labels, taints, pod CIDRs and the Node
//! object with its status, built as pure functions of the configuration.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus, NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use skiff_api::validation::quantity::{Quantity as ParsedQuantity, QuantityError};

use super::SimConfig;

pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
pub const LABEL_OS: &str = "kubernetes.io/os";
pub const LABEL_ARCH: &str = "kubernetes.io/arch";
pub const LABEL_INSTANCE_TYPE: &str = "node.kubernetes.io/instance-type";
pub const LABEL_ZONE: &str = "topology.kubernetes.io/zone";
pub const LABEL_REGION: &str = "topology.kubernetes.io/region";

/// What the kubelet reports as its version; the suffix tells a simulated node apart.
pub const KUBELET_VERSION: &str = "v1.33.0-skiff";
pub const CONTAINER_RUNTIME_VERSION: &str = "sim://1.0";
pub const OS_IMAGE: &str = "Skiff simulated node";
pub const KERNEL_VERSION: &str = "6.1.0-sim";
/// The kubelet port a real node would serve; nobody dials it on a simulated one.
pub const KUBELET_PORT: i32 = 10250;

const TAINT_EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];

/// A configuration the simulated nodes cannot be built from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid taint {taint:?}: {reason}")]
    Taint { taint: String, reason: String },
    #[error("invalid node capacity {name}={value:?}: {source}")]
    Capacity {
        name: String,
        value: String,
        #[source]
        source: QuantityError,
    },
    #[error("invalid node capacity {name}={value:?}: must not be negative")]
    NegativeCapacity { name: String, value: String },
    #[error("the node name prefix must not be empty")]
    EmptyPrefix,
    #[error("{nodes} nodes need more pod CIDRs than the simulated range holds ({max} /24s)")]
    TooManyNodes { nodes: usize, max: u32 },
}

// === taints ===

/// Parses `key=value:Effect` or `key:Effect`, as `kubectl taint` writes them.
pub fn parse_taint(spec: &str) -> Result<Taint, ConfigError> {
    let err = |reason: String| ConfigError::Taint { taint: spec.to_string(), reason };
    let Some((kv, effect)) = spec.rsplit_once(':') else {
        return Err(err("must look like key=value:Effect or key:Effect".into()));
    };
    if !TAINT_EFFECTS.contains(&effect) {
        return Err(err(format!("effect {effect:?} is not one of {}", TAINT_EFFECTS.join(", "))));
    }
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (kv, None),
    };
    if let Some(reason) = qualified_name_problem(key) {
        return Err(err(format!("key {key:?} {reason}")));
    }
    if let Some(v) = value.filter(|v| !v.is_empty()) {
        if let Some(reason) = label_value_problem(v) {
            return Err(err(format!("value {v:?} {reason}")));
        }
    }
    Ok(Taint { key: key.to_string(), value: value.filter(|v| !v.is_empty()).map(String::from), effect: effect.to_string(), time_added: None })
}

/// Why `s` is not a label name part (`[a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?`, at most 63).
fn label_value_problem(s: &str) -> Option<String> {
    if s.len() > 63 {
        return Some("must be no more than 63 characters".into());
    }
    let alnum = |c: char| c.is_ascii_alphanumeric();
    let ok = s.starts_with(alnum) && s.ends_with(alnum) && s.chars().all(|c| alnum(c) || matches!(c, '-' | '_' | '.'));
    (!ok).then(|| "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character".into())
}

/// Why `key` is not a qualified name (`[prefix/]name`, the prefix a DNS subdomain).
fn qualified_name_problem(key: &str) -> Option<String> {
    let name = match key.split_once('/') {
        Some((prefix, name)) => {
            let label_ok = |l: &str| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                    && l.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                    && l.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            };
            if prefix.is_empty() || prefix.len() > 253 || !prefix.split('.').all(label_ok) {
                return Some("has a prefix that is not a lowercase DNS subdomain".into());
            }
            name
        }
        None => key,
    };
    if name.is_empty() {
        return Some("must not be empty".into());
    }
    label_value_problem(name)
}

// === pod CIDRs ===

/// An IPv4 CIDR, as Node `spec.podCIDR` holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    /// Addresses in the block.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// The address at `offset` from the base.
    pub fn nth(&self, offset: u64) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base).wrapping_add(offset as u32))
    }

    /// The offset of `ip` in the block, if it is inside.
    pub fn offset_of(&self, ip: Ipv4Addr) -> Option<u64> {
        let off = u64::from(u32::from(ip).wrapping_sub(u32::from(self.base)));
        (u32::from(ip) >= u32::from(self.base) && off < self.size()).then_some(off)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr, String> {
        let (ip, bits) = s.split_once('/').ok_or_else(|| format!("{s:?} is not a CIDR"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| format!("{s:?} is not an IPv4 CIDR"))?;
        let prefix: u8 = bits.parse().ok().filter(|b| (1..=32).contains(b)).ok_or_else(|| format!("{s:?} has no valid prefix length"))?;
        let mask = u32::MAX << (32 - u32::from(prefix));
        Ok(Cidr { base: Ipv4Addr::from(u32::from(ip) & mask), prefix })
    }
}

/// How many /24s the simulated pod range (10.128.0.0/9) holds.
pub const SIM_POD_CIDRS: u32 = 1 << 15;

/// The `k`-th /24 handed to simulated nodes: 10.244.0.0/24, 10.244.1.0/24, … up to
/// 10.255.255.0/24, then on from 10.128.0.0/24, so that 32,768 nodes fit in
/// 10.128.0.0/9 (clear of the default service range 10.96.0.0/12). Never routed.
pub fn sim_pod_cidr(k: u32) -> Cidr {
    let block = (116 * 256 + k) % SIM_POD_CIDRS;
    Cidr { base: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + block * 256), prefix: 24 }
}

/// Pod CIDRs for the nodes that have none yet: the first /24s of the simulated
/// sequence that no node uses (other agents' nodes included), in order.
pub fn assign_pod_cidrs(existing: &[Option<Cidr>], used: &HashSet<Cidr>) -> Result<Vec<Cidr>, ConfigError> {
    let mut taken: HashSet<Cidr> = used.iter().copied().chain(existing.iter().flatten().copied()).collect();
    let mut next = 0u32;
    let mut out = Vec::with_capacity(existing.len());
    for cidr in existing {
        if let Some(c) = cidr {
            out.push(*c);
            continue;
        }
        loop {
            if next >= SIM_POD_CIDRS {
                return Err(ConfigError::TooManyNodes { nodes: existing.len(), max: SIM_POD_CIDRS });
            }
            let c = sim_pod_cidr(next);
            next += 1;
            if taken.insert(c) {
                out.push(c);
                break;
            }
        }
    }
    Ok(out)
}

/// The node's InternalIP: in 127.0.0.0/8, so it is never dialled anywhere else, and
/// derived from the pod CIDR (10.b.c.0/24 → 127.b.c.1) so that it is unique too.
pub fn internal_ip(cidr: &Cidr) -> Ipv4Addr {
    let o = cidr.base.octets();
    Ipv4Addr::new(127, o[1], o[2], 1)
}

// === template ===

/// The parts of every simulated node that come from the configuration, checked once.
#[derive(Debug, Clone)]
pub struct NodeTemplate {
    pub prefix: String,
    pub nodes: usize,
    pub capacity: BTreeMap<String, Quantity>,
    pub labels: BTreeMap<String, String>,
    pub zones: Vec<String>,
    pub taints: Vec<Taint>,
}

impl NodeTemplate {
    pub fn new(config: &SimConfig) -> Result<NodeTemplate, ConfigError> {
        if config.prefix.is_empty() {
            return Err(ConfigError::EmptyPrefix);
        }
        let mut capacity = BTreeMap::new();
        for (name, value) in &config.capacity {
            let q = ParsedQuantity::parse(value).map_err(|source| ConfigError::Capacity { name: name.clone(), value: value.clone(), source })?;
            if q.is_negative() {
                return Err(ConfigError::NegativeCapacity { name: name.clone(), value: value.clone() });
            }
            capacity.insert(name.clone(), Quantity(value.trim().to_string()));
        }
        let taints = config.taints.iter().filter(|t| !t.trim().is_empty()).map(|t| parse_taint(t.trim())).collect::<Result<Vec<_>, _>>()?;
        Ok(NodeTemplate {
            prefix: config.prefix.clone(),
            nodes: config.nodes,
            capacity,
            labels: config.labels.clone(),
            zones: config.zones.iter().filter(|z| !z.is_empty()).cloned().collect(),
            taints,
        })
    }

    /// `prefix-i`, or just `prefix` for a single node.
    pub fn node_name(&self, i: usize) -> String {
        if self.nodes == 1 {
            self.prefix.clone()
        } else {
            format!("{}-{i}", self.prefix)
        }
    }

    /// The zone of node `i` (round-robin), if zones were given.
    pub fn zone(&self, i: usize) -> Option<&str> {
        (!self.zones.is_empty()).then(|| self.zones[i % self.zones.len()].as_str())
    }

    /// The labels of node `i`: user labels, then the well-known ones over them.
    pub fn labels(&self, i: usize) -> BTreeMap<String, String> {
        let mut labels = self.labels.clone();
        let name = self.node_name(i);
        for (k, v) in [
            (LABEL_HOSTNAME, name.as_str()),
            (LABEL_OS, "linux"),
            (LABEL_ARCH, "amd64"),
            ("beta.kubernetes.io/os", "linux"),
            ("beta.kubernetes.io/arch", "amd64"),
            (LABEL_INSTANCE_TYPE, "sim"),
        ] {
            labels.insert(k.to_string(), v.to_string());
        }
        if let Some(zone) = self.zone(i) {
            labels.insert(LABEL_ZONE.to_string(), zone.to_string());
            labels.insert(LABEL_REGION.to_string(), "sim".to_string());
        }
        labels
    }

    /// A new Node object for node `i`, status included (a kubelet registers with it).
    pub fn new_node(&self, i: usize, cidr: &Cidr, now: Timestamp) -> Node {
        let name = self.node_name(i);
        Node {
            metadata: ObjectMeta { name: Some(name.clone()), labels: Some(self.labels(i)), ..Default::default() },
            spec: Some(NodeSpec {
                taints: (!self.taints.is_empty()).then(|| self.taints.clone()),
                pod_cidr: Some(cidr.to_string()),
                pod_cidrs: Some(vec![cidr.to_string()]),
                ..Default::default()
            }),
            status: Some(self.status(&name, cidr, None, now)),
        }
    }

    /// Brings an existing Node of ours in line with the configuration: our labels set,
    /// our taints added (taints others put there, such as the node lifecycle
    /// controller's, stay), the pod CIDR filled in when it has none. `None` when it
    /// already is.
    pub fn adopt(&self, i: usize, existing: &Node, cidr: &Cidr) -> Option<Node> {
        let mut node = existing.clone();
        let labels = node.metadata.labels.get_or_insert_with(BTreeMap::new);
        for (k, v) in self.labels(i) {
            labels.insert(k, v);
        }
        let spec = node.spec.get_or_insert_with(NodeSpec::default);
        let taints = spec.taints.get_or_insert_with(Vec::new);
        for t in &self.taints {
            if !taints.iter().any(|x| x.key == t.key && x.effect == t.effect) {
                taints.push(t.clone());
            }
        }
        if taints.is_empty() {
            spec.taints = None;
        }
        if spec.pod_cidr.as_deref().is_none_or(str::is_empty) {
            spec.pod_cidr = Some(cidr.to_string());
            spec.pod_cidrs = Some(vec![cidr.to_string()]);
        }
        (node.metadata.labels != existing.metadata.labels || node.spec != existing.spec).then_some(node)
    }

    /// The status a healthy kubelet reports. Conditions keep their lastTransitionTime
    /// while their status stays what `previous` says.
    pub fn status(&self, name: &str, cidr: &Cidr, previous: Option<&NodeStatus>, now: Timestamp) -> NodeStatus {
        let conditions = kubelet_conditions(("True", "KubeletReady", "kubelet is posting ready status"), previous, now);
        NodeStatus {
            capacity: Some(self.capacity.clone()),
            allocatable: Some(self.capacity.clone()),
            conditions: Some(conditions),
            addresses: Some(vec![
                NodeAddress { type_: "InternalIP".into(), address: internal_ip(cidr).to_string() },
                NodeAddress { type_: "Hostname".into(), address: name.to_string() },
            ]),
            daemon_endpoints: Some(NodeDaemonEndpoints { kubelet_endpoint: Some(DaemonEndpoint { port: KUBELET_PORT }) }),
            node_info: Some(NodeSystemInfo {
                machine_id: stable_hex(name, 1, 32),
                system_uuid: uuid_like(&stable_hex(name, 2, 32)),
                boot_id: uuid_like(&stable_hex(name, 3, 32)),
                kernel_version: KERNEL_VERSION.into(),
                os_image: OS_IMAGE.into(),
                container_runtime_version: CONTAINER_RUNTIME_VERSION.into(),
                kubelet_version: KUBELET_VERSION.into(),
                kube_proxy_version: String::new(),
                operating_system: "linux".into(),
                architecture: "amd64".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// Whether the status says what a healthy simulated node reports (Ready=True); a
/// node lifecycle controller that marked it Unknown makes this false.
pub fn reports_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// `len` hex digits that depend only on `seed` and `salt`: stable identifiers that
/// survive an agent restart without being stored anywhere.
pub fn stable_hex(seed: &str, salt: u64, len: usize) -> String {
    use std::hash::{Hash, Hasher};
    let mut out = String::with_capacity(len + 16);
    let mut round = 0u64;
    while out.len() < len {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (seed, salt, round).hash(&mut h);
        out.push_str(&format!("{:016x}", h.finish()));
        round += 1;
    }
    out.truncate(len);
    out
}

fn uuid_like(hex: &str) -> String {
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}


/// The four conditions a kubelet reports, with `ready` as (status, reason,
/// message) of Ready and no pressure. A condition keeps its lastTransitionTime
/// while its status stays what `previous` says.
pub fn kubelet_conditions(ready: (&str, &str, &str), previous: Option<&NodeStatus>, now: Timestamp) -> Vec<NodeCondition> {
    [
        ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        ("Ready", ready.0, ready.1, ready.2),
    ]
    .into_iter()
    .map(|(type_, status, reason, message)| {
        let before = previous.and_then(|p| p.conditions.as_ref()).and_then(|cs| cs.iter().find(|c| c.type_ == type_));
        let since = match before {
            Some(c) if c.status == status => c.last_transition_time.clone().unwrap_or(Time(now)),
            _ => Time(now),
        };
        NodeCondition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            last_heartbeat_time: Some(Time(now)),
            last_transition_time: Some(since),
        }
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(nodes: usize, zones: &[&str], taints: &[&str]) -> NodeTemplate {
        let config = SimConfig {
            prefix: "sim".into(),
            nodes,
            zones: zones.iter().map(|z| z.to_string()).collect(),
            taints: taints.iter().map(|t| t.to_string()).collect(),
            ..SimConfig::default()
        };
        NodeTemplate::new(&config).unwrap()
    }

    #[test]
    fn taints_parse_in_kubectl_form() {
        let t = parse_taint("dedicated=x:NoSchedule").unwrap();
        assert_eq!((t.key.as_str(), t.value.as_deref(), t.effect.as_str()), ("dedicated", Some("x"), "NoSchedule"));
        let t = parse_taint("example.com/gpu:NoExecute").unwrap();
        assert_eq!((t.key.as_str(), t.value.as_deref(), t.effect.as_str()), ("example.com/gpu", None, "NoExecute"));
        let t = parse_taint("spot=:PreferNoSchedule").unwrap();
        assert_eq!((t.key.as_str(), t.value, t.effect.as_str()), ("spot", None, "PreferNoSchedule"));
    }

    #[test]
    fn malformed_taints_say_what_is_wrong() {
        let msg = |s: &str| parse_taint(s).unwrap_err().to_string();
        assert_eq!(msg("dedicated=x"), "invalid taint \"dedicated=x\": must look like key=value:Effect or key:Effect");
        assert_eq!(msg("a=b:Sometimes"), "invalid taint \"a=b:Sometimes\": effect \"Sometimes\" is not one of NoSchedule, PreferNoSchedule, NoExecute");
        assert!(msg(":NoSchedule").contains("key \"\" must not be empty"));
        assert!(msg("-bad=x:NoSchedule").contains("key \"-bad\" must consist of alphanumeric"));
        assert!(msg("Bad.Prefix/k:NoSchedule").contains("prefix that is not a lowercase DNS subdomain"));
        assert!(msg("k=has space:NoSchedule").contains("value \"has space\""));
        assert!(msg(&format!("{}:NoSchedule", "k".repeat(64))).contains("no more than 63 characters"));
    }

    #[test]
    fn a_bad_taint_or_capacity_fails_the_whole_configuration() {
        let config = SimConfig { taints: vec!["ok:NoSchedule".into(), "broken".into()], ..SimConfig::default() };
        assert!(matches!(NodeTemplate::new(&config), Err(ConfigError::Taint { .. })));
        let mut config = SimConfig::default();
        config.capacity.insert("cpu".into(), "lots".into());
        assert_eq!(NodeTemplate::new(&config).unwrap_err().to_string().split(':').next(), Some("invalid node capacity cpu=\"lots\""));
    }

    #[test]
    fn nodes_are_named_after_the_prefix() {
        assert_eq!(template(1, &[], &[]).node_name(0), "sim");
        let t = template(3, &[], &[]);
        assert_eq!((0..3).map(|i| t.node_name(i)).collect::<Vec<_>>(), ["sim-0", "sim-1", "sim-2"]);
    }

    #[test]
    fn zones_go_round_robin_with_a_region() {
        let t = template(4, &["a", "b", "c"], &[]);
        let zones: Vec<_> = (0..4).map(|i| t.labels(i)[LABEL_ZONE].clone()).collect();
        assert_eq!(zones, ["a", "b", "c", "a"]);
        assert_eq!(t.labels(1)[LABEL_REGION], "sim");
        let plain = template(2, &[], &[]).labels(1);
        assert!(!plain.contains_key(LABEL_ZONE) && !plain.contains_key(LABEL_REGION));
        assert_eq!(plain[LABEL_HOSTNAME], "sim-1");
        assert_eq!(plain[LABEL_OS], "linux");
        assert_eq!(plain[LABEL_ARCH], "amd64");
        assert_eq!(plain[LABEL_INSTANCE_TYPE], "sim");
    }

    #[test]
    fn well_known_labels_win_over_user_labels() {
        let mut config = SimConfig { nodes: 2, ..SimConfig::default() };
        config.labels.insert("team".into(), "a".into());
        config.labels.insert(LABEL_HOSTNAME.into(), "spoofed".into());
        let labels = NodeTemplate::new(&config).unwrap().labels(0);
        assert_eq!(labels["team"], "a");
        assert_eq!(labels[LABEL_HOSTNAME], "sim-0");
    }

    #[test]
    fn pod_cidrs_start_at_10_244_and_wrap_inside_10_128_slash_9() {
        assert_eq!(sim_pod_cidr(0).to_string(), "10.244.0.0/24");
        assert_eq!(sim_pod_cidr(1).to_string(), "10.244.1.0/24");
        assert_eq!(sim_pod_cidr(256).to_string(), "10.245.0.0/24");
        assert_eq!(sim_pod_cidr(12 * 256 - 1).to_string(), "10.255.255.0/24");
        assert_eq!(sim_pod_cidr(12 * 256).to_string(), "10.128.0.0/24");
        let all: HashSet<Cidr> = (0..SIM_POD_CIDRS).map(sim_pod_cidr).collect();
        assert_eq!(all.len(), SIM_POD_CIDRS as usize);
    }

    #[test]
    fn assigned_cidrs_skip_those_in_use_and_keep_existing_ones() {
        let used: HashSet<Cidr> = [sim_pod_cidr(0), sim_pod_cidr(2)].into();
        let mine = "10.1.2.0/24".parse().unwrap();
        let got = assign_pod_cidrs(&[None, Some(mine), None, None], &used).unwrap();
        assert_eq!(got, vec![sim_pod_cidr(1), mine, sim_pod_cidr(3), sim_pod_cidr(4)]);
        assert_eq!(internal_ip(&got[0]), Ipv4Addr::new(127, 244, 1, 1));
    }

    #[test]
    fn cidrs_parse_to_their_network() {
        let c: Cidr = "10.244.3.7/24".parse().unwrap();
        assert_eq!(c.to_string(), "10.244.3.0/24");
        assert_eq!(c.size(), 256);
        assert_eq!(c.offset_of(Ipv4Addr::new(10, 244, 3, 9)), Some(9));
        assert_eq!(c.offset_of(Ipv4Addr::new(10, 244, 4, 0)), None);
        assert_eq!(c.offset_of(Ipv4Addr::new(10, 244, 2, 255)), None);
        assert!("10.0.0.0".parse::<Cidr>().is_err());
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
    }

    #[test]
    fn a_new_node_reports_ready_with_its_capacity_taints_and_identity() {
        let t = template(3, &["a"], &["dedicated=x:NoSchedule"]);
        let now: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
        let node = t.new_node(2, &sim_pod_cidr(2), now);
        assert_eq!(node.metadata.name.as_deref(), Some("sim-2"));
        let spec = node.spec.as_ref().unwrap();
        assert_eq!(spec.taints.as_ref().unwrap()[0].key, "dedicated");
        assert_eq!(spec.pod_cidr.as_deref(), Some("10.244.2.0/24"));
        let status = node.status.as_ref().unwrap();
        assert_eq!(status.capacity, status.allocatable);
        assert_eq!(status.capacity.as_ref().unwrap()["cpu"], Quantity("8".into()));
        let types: Vec<_> = status.conditions.as_ref().unwrap().iter().map(|c| (c.type_.as_str(), c.status.as_str())).collect();
        assert_eq!(types, [("MemoryPressure", "False"), ("DiskPressure", "False"), ("PIDPressure", "False"), ("Ready", "True")]);
        let ready = &status.conditions.as_ref().unwrap()[3];
        assert_eq!((ready.reason.as_deref(), ready.message.as_deref()), (Some("KubeletReady"), Some("kubelet is posting ready status")));
        let addrs = status.addresses.as_ref().unwrap();
        assert_eq!((addrs[0].type_.as_str(), addrs[0].address.as_str()), ("InternalIP", "127.244.2.1"));
        assert_eq!((addrs[1].type_.as_str(), addrs[1].address.as_str()), ("Hostname", "sim-2"));
        let info = status.node_info.as_ref().unwrap();
        assert_eq!(info.kubelet_version, KUBELET_VERSION);
        assert_eq!(info.container_runtime_version, "sim://1.0");
        assert_eq!(info.system_uuid.len(), 36);
        assert_eq!(status.daemon_endpoints.as_ref().unwrap().kubelet_endpoint.as_ref().unwrap().port, 10250);
        assert!(reports_ready(&node));
    }

    #[test]
    fn status_updates_keep_transition_times_of_unchanged_conditions() {
        let t = template(1, &[], &[]);
        let cidr = sim_pod_cidr(0);
        let t0: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2025-01-01T00:05:00Z".parse().unwrap();
        let mut first = t.status("sim", &cidr, None, t0);
        let again = t.status("sim", &cidr, Some(&first), t1);
        let ready = again.conditions.as_ref().unwrap().iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.last_transition_time, Some(Time(t0)));
        assert_eq!(ready.last_heartbeat_time, Some(Time(t1)));
        // A controller marked the node Unknown: Ready=True is a transition again.
        first.conditions.as_mut().unwrap()[3].status = "Unknown".into();
        let recovered = t.status("sim", &cidr, Some(&first), t1);
        assert_eq!(recovered.conditions.as_ref().unwrap()[3].last_transition_time, Some(Time(t1)));
    }

    #[test]
    fn adopting_a_node_sets_our_labels_and_adds_our_taints_without_dropping_others() {
        let t = template(2, &["z"], &["dedicated=x:NoSchedule"]);
        let now = Timestamp::UNIX_EPOCH;
        let fresh = t.new_node(0, &sim_pod_cidr(0), now);
        assert!(t.adopt(0, &fresh, &sim_pod_cidr(0)).is_none(), "a node as we would create it needs nothing");

        let mut existing = fresh.clone();
        existing.metadata.labels.as_mut().unwrap().remove(LABEL_ZONE);
        existing.metadata.labels.as_mut().unwrap().insert("extra".into(), "kept".into());
        existing.spec.as_mut().unwrap().taints = Some(vec![Taint { key: "node.kubernetes.io/unreachable".into(), effect: "NoExecute".into(), ..Default::default() }]);
        let adopted = t.adopt(0, &existing, &sim_pod_cidr(5)).unwrap();
        let labels = adopted.metadata.labels.as_ref().unwrap();
        assert_eq!((labels[LABEL_ZONE].as_str(), labels["extra"].as_str()), ("z", "kept"));
        let keys: Vec<_> = adopted.spec.as_ref().unwrap().taints.as_ref().unwrap().iter().map(|t| t.key.as_str()).collect();
        assert_eq!(keys, ["node.kubernetes.io/unreachable", "dedicated"]);
        assert_eq!(adopted.spec.as_ref().unwrap().pod_cidr.as_deref(), Some("10.244.0.0/24"), "an existing pod CIDR stays");
    }

    #[test]
    fn stable_ids_depend_on_their_seed_only() {
        assert_eq!(stable_hex("a", 1, 64), stable_hex("a", 1, 64));
        assert_ne!(stable_hex("a", 1, 64), stable_hex("b", 1, 64));
        assert_ne!(stable_hex("a", 1, 64), stable_hex("a", 2, 64));
        assert_eq!(stable_hex("a", 1, 64).len(), 64);
    }
}
