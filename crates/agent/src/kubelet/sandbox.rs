//! A pod's sandbox as the kubelet asks the runtime for it: hostname, DNS per
//! dnsPolicy, hostPort mappings, labels and log directory; and the kubelet-managed
//! `/etc/hosts` of its containers.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;

use crate::runtime::{labels, DnsConfig, PortMapping, Protocol, SandboxConfig};

/// Upstream's limits on a pod's resolv.conf search list.
const MAX_DNS_SEARCH_PATHS: usize = 32;
const MAX_DNS_SEARCH_LENGTH: usize = 2048;
/// Hostnames are DNS labels.
const MAX_HOSTNAME: usize = 63;

/// What the node contributes to its pods' sandboxes.
#[derive(Debug, Clone)]
pub struct NodeDns {
    /// Nameservers of ClusterFirst pods (empty: they get the host's config).
    pub cluster_dns: Vec<String>,
    pub cluster_domain: String,
    /// The host's resolver configuration (dnsPolicy Default).
    pub host: DnsConfig,
}

impl NodeDns {
    /// Reads the host's resolver config. A systemd-resolved stub (every nameserver
    /// on loopback) is useless inside a pod's network namespace, so the upstream
    /// list it forwards to is used instead when it exists, as kubeadm sets up.
    pub fn new(cluster_dns: Vec<String>, cluster_domain: String) -> NodeDns {
        let read = |p: &str| std::fs::read_to_string(p).ok().map(|t| parse_resolv_conf(&t));
        let mut host = read("/etc/resolv.conf").unwrap_or_default();
        let loopback_only = !host.servers.is_empty() && host.servers.iter().all(|s| s.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()));
        if loopback_only {
            if let Some(upstream) = read("/run/systemd/resolve/resolv.conf") {
                host = upstream;
            }
        }
        NodeDns { cluster_dns, cluster_domain, host }
    }
}

/// Parses resolv.conf: nameservers, the (last) search list, options.
pub fn parse_resolv_conf(text: &str) -> DnsConfig {
    let mut config = DnsConfig::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("nameserver") => config.servers.extend(fields.next().map(String::from)),
            Some("search") => config.searches = fields.map(String::from).collect(),
            Some("options") => config.options.extend(fields.map(String::from)),
            _ => {}
        }
    }
    config
}

/// The pod's hostname and, with a subdomain, its domain (upstream's
/// `GeneratePodHostNameAndDomain`): spec.hostname or the pod name, at most 63
/// characters without a trailing `-` or `.`.
pub fn hostname_and_domain(pod: &Pod, cluster_domain: &str) -> (String, Option<String>) {
    let spec = pod.spec.as_ref();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let mut hostname = spec.and_then(|s| s.hostname.clone()).filter(|h| !h.is_empty()).unwrap_or(name);
    if hostname.len() > MAX_HOSTNAME {
        hostname.truncate(MAX_HOSTNAME);
        while hostname.ends_with(['-', '.']) {
            hostname.pop();
        }
    }
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let domain = spec.and_then(|s| s.subdomain.as_deref()).filter(|s| !s.is_empty()).map(|sub| format!("{sub}.{namespace}.svc.{cluster_domain}"));
    (hostname, domain)
}

fn host_network(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false)
}

/// The pod's resolv.conf (upstream's `GetPodDNS`).
pub fn dns_config(pod: &Pod, node: &NodeDns) -> DnsConfig {
    let spec = pod.spec.as_ref();
    let policy = spec.and_then(|s| s.dns_policy.as_deref()).unwrap_or("ClusterFirst");
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let cluster = match policy {
        "None" => None,
        "ClusterFirstWithHostNet" => Some(true),
        "ClusterFirst" if !host_network(pod) => Some(true),
        _ => Some(false),
    };
    let mut config = match cluster {
        None => DnsConfig::default(),
        // Without cluster DNS the pod falls back to the host's config.
        Some(true) if !node.cluster_dns.is_empty() => {
            let domain = &node.cluster_domain;
            let mut searches = vec![format!("{namespace}.svc.{domain}"), format!("svc.{domain}"), domain.clone()];
            searches.extend(node.host.searches.iter().cloned());
            DnsConfig { servers: node.cluster_dns.clone(), searches, options: vec!["ndots:5".into()] }
        }
        Some(_) => node.host.clone(),
    };
    if let Some(extra) = spec.and_then(|s| s.dns_config.as_ref()) {
        config.servers = dedup(config.servers.into_iter().chain(extra.nameservers.iter().flatten().cloned()));
        config.searches = dedup(config.searches.into_iter().chain(extra.searches.iter().flatten().cloned()));
        let mut options: Vec<(String, Option<String>)> = Vec::new();
        let mut set = |name: String, value: Option<String>| match options.iter_mut().find(|(n, _)| *n == name) {
            Some(o) => o.1 = value,
            None => options.push((name, value)),
        };
        for o in &config.options {
            match o.split_once(':') {
                Some((n, v)) => set(n.to_string(), Some(v.to_string())),
                None => set(o.clone(), None),
            }
        }
        for o in extra.options.iter().flatten() {
            set(o.name.clone().unwrap_or_default(), o.value.clone());
        }
        config.options = options.into_iter().map(|(n, v)| v.filter(|v| !v.is_empty()).map_or(n.clone(), |v| format!("{n}:{v}"))).collect();
    }
    config.searches = trim_searches(config.searches);
    config
}

fn dedup(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// At most 32 search domains of at most 2048 characters in all, as upstream trims.
fn trim_searches(mut searches: Vec<String>) -> Vec<String> {
    searches.truncate(MAX_DNS_SEARCH_PATHS);
    while !searches.is_empty() && searches.join(" ").len() > MAX_DNS_SEARCH_LENGTH {
        searches.pop();
    }
    searches
}

/// hostPort mappings of the pod's containers.
pub fn port_mappings(pod: &Pod) -> Vec<PortMapping> {
    let containers = pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
    containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.unwrap_or(0) > 0)
        .map(|p| PortMapping {
            protocol: match p.protocol.as_deref() {
                Some("UDP") => Protocol::Udp,
                Some("SCTP") => Protocol::Sctp,
                _ => Protocol::Tcp,
            },
            container_port: p.container_port as u16,
            host_port: p.host_port.unwrap_or(0) as u16,
            host_ip: p.host_ip.clone().unwrap_or_default(),
        })
        .collect()
}

/// `<data_dir>/logs/<namespace>_<name>_<uid>`.
pub fn log_directory(data_dir: &Path, pod: &Pod) -> PathBuf {
    let m = &pod.metadata;
    data_dir.join("logs").join(format!("{}_{}_{}", m.namespace.as_deref().unwrap_or(""), m.name.as_deref().unwrap_or(""), m.uid.as_deref().unwrap_or("")))
}

/// Labels the kubelet puts on everything of a pod, the pod's own included.
pub fn pod_labels(pod: &Pod) -> BTreeMap<String, String> {
    let m = &pod.metadata;
    let mut out = m.labels.clone().unwrap_or_default();
    out.insert(labels::POD_NAME.into(), m.name.clone().unwrap_or_default());
    out.insert(labels::POD_NAMESPACE.into(), m.namespace.clone().unwrap_or_default());
    out.insert(labels::POD_UID.into(), m.uid.clone().unwrap_or_default());
    out
}

/// The sandbox config of a pod (upstream's `generatePodSandboxConfig`).
pub fn sandbox_config(pod: &Pod, data_dir: &Path, node: &NodeDns, attempt: u32, runtime_handler: &str) -> SandboxConfig {
    let m = &pod.metadata;
    let spec = pod.spec.as_ref();
    let (hostname, domain) = hostname_and_domain(pod, &node.cluster_domain);
    let hostname = match domain {
        Some(d) if spec.and_then(|s| s.set_hostname_as_fqdn).unwrap_or(false) => format!("{hostname}.{d}"),
        _ => hostname,
    };
    let sysctls = spec
        .and_then(|s| s.security_context.as_ref())
        .and_then(|sc| sc.sysctls.as_ref())
        .map(|v| v.iter().map(|s| (s.name.clone(), s.value.clone())).collect())
        .unwrap_or_default();
    let mut annotations = m.annotations.clone().unwrap_or_default();
    if let Some(grace) = spec.and_then(|s| s.termination_grace_period_seconds) {
        annotations.insert(super::podstate::annotations::POD_TERMINATION_GRACE_PERIOD.into(), grace.to_string());
    }
    SandboxConfig {
        pod_name: m.name.clone().unwrap_or_default(),
        pod_namespace: m.namespace.clone().unwrap_or_default(),
        pod_uid: m.uid.clone().unwrap_or_default(),
        attempt,
        hostname,
        log_directory: log_directory(data_dir, pod),
        dns: Some(dns_config(pod, node)),
        port_mappings: port_mappings(pod),
        labels: pod_labels(pod),
        annotations,
        host_network: host_network(pod),
        cgroup_parent: String::new(),
        sysctls,
        runtime_handler: runtime_handler.to_string(),
    }
}

/// The kubelet-managed `/etc/hosts` of a pod with addresses of its own.
pub fn hosts_file(pod: &Pod, ips: &[IpAddr], cluster_domain: &str) -> String {
    let (hostname, domain) = hostname_and_domain(pod, cluster_domain);
    let mut out = String::from("# Kubernetes-managed hosts file.\n");
    out.push_str("127.0.0.1\tlocalhost\n");
    out.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
    out.push_str("fe00::0\tip6-localnet\n");
    out.push_str("fe00::0\tip6-mcastprefix\n");
    out.push_str("fe00::1\tip6-allnodes\n");
    out.push_str("fe00::2\tip6-allrouters\n");
    for ip in ips {
        match &domain {
            Some(d) => out.push_str(&format!("{ip}\t{hostname}.{d}\t{hostname}\n")),
            None => out.push_str(&format!("{ip}\t{hostname}\n")),
        }
    }
    let aliases = pod.spec.as_ref().and_then(|s| s.host_aliases.as_deref()).unwrap_or_default();
    if !aliases.is_empty() {
        out.push_str("\n# Entries added by HostAliases.\n");
        for a in aliases {
            out.push_str(&format!("{}\t{}\n", a.ip, a.hostnames.iter().flatten().cloned().collect::<Vec<_>>().join("\t")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "web-0", "namespace": "shop", "uid": "u1", "labels": {"app": "web"}}, "spec": spec})).unwrap()
    }

    fn node() -> NodeDns {
        NodeDns {
            cluster_dns: vec!["10.96.0.10".into()],
            cluster_domain: "cluster.local".into(),
            host: DnsConfig { servers: vec!["192.168.1.1".into()], searches: vec!["lan".into()], options: vec!["edns0".into()] },
        }
    }

    #[test]
    fn cluster_first_pods_resolve_through_cluster_dns() {
        let d = dns_config(&pod(json!({"containers": []})), &node());
        assert_eq!(d.servers, ["10.96.0.10"]);
        assert_eq!(d.searches, ["shop.svc.cluster.local", "svc.cluster.local", "cluster.local", "lan"]);
        assert_eq!(d.options, ["ndots:5"]);
    }

    #[test]
    fn host_network_and_default_pods_use_the_host_config() {
        let host = node().host;
        assert_eq!(dns_config(&pod(json!({"dnsPolicy": "Default", "containers": []})), &node()), host);
        assert_eq!(dns_config(&pod(json!({"hostNetwork": true, "containers": []})), &node()), host);
        let with_net = dns_config(&pod(json!({"hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet", "containers": []})), &node());
        assert_eq!(with_net.servers, ["10.96.0.10"]);
        let no_cluster_dns = NodeDns { cluster_dns: vec![], ..node() };
        assert_eq!(dns_config(&pod(json!({"containers": []})), &no_cluster_dns), host, "no cluster DNS: the host's");
    }

    #[test]
    fn dns_config_is_merged_and_none_takes_only_it() {
        let p = pod(json!({"dnsConfig": {"nameservers": ["1.1.1.1", "10.96.0.10"], "searches": ["extra"], "options": [{"name": "ndots", "value": "2"}, {"name": "rotate"}]}, "containers": []}));
        let d = dns_config(&p, &node());
        assert_eq!(d.servers, ["10.96.0.10", "1.1.1.1"]);
        assert_eq!(d.searches.last().unwrap(), "extra");
        assert_eq!(d.options, ["ndots:2", "rotate"]);
        let none = pod(json!({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["8.8.8.8"]}, "containers": []}));
        assert_eq!(dns_config(&none, &node()), DnsConfig { servers: vec!["8.8.8.8".into()], searches: vec![], options: vec![] });
    }

    #[test]
    fn resolv_conf_parses_like_the_resolver_reads_it() {
        let c = parse_resolv_conf("# comment\nnameserver 10.0.0.1\nnameserver 10.0.0.2 # second\nsearch a b\nsearch c\noptions ndots:2 edns0\n");
        assert_eq!(c, DnsConfig { servers: vec!["10.0.0.1".into(), "10.0.0.2".into()], searches: vec!["c".into()], options: vec!["ndots:2".into(), "edns0".into()] });
    }

    #[test]
    fn the_sandbox_carries_hostname_ports_labels_and_log_directory() {
        let p = pod(json!({
            "hostname": "db", "subdomain": "backend", "setHostnameAsFQDN": true,
            "containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 53, "protocol": "UDP"}]}]
        }));
        let c = sandbox_config(&p, Path::new("/var/lib/skiff"), &node(), 2, "");
        assert_eq!(c.hostname, "db.backend.shop.svc.cluster.local");
        assert_eq!(c.port_mappings, vec![PortMapping { protocol: Protocol::Tcp, container_port: 80, host_port: 8080, host_ip: String::new() }]);
        assert_eq!(c.log_directory, Path::new("/var/lib/skiff/logs/shop_web-0_u1"));
        assert_eq!(c.labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(c.labels.get(labels::POD_UID).map(String::as_str), Some("u1"));
        assert_eq!(c.attempt, 2);
    }

    #[test]
    fn long_names_become_valid_hostnames() {
        let name = format!("{}-.abc", "a".repeat(62));
        let p: Pod = serde_json::from_value(json!({"metadata": {"name": name, "namespace": "d"}, "spec": {"containers": []}})).unwrap();
        assert_eq!(hostname_and_domain(&p, "cluster.local").0, "a".repeat(62));
    }

    #[test]
    fn the_hosts_file_names_the_pod_and_its_aliases() {
        let p = pod(json!({"subdomain": "svc1", "hostAliases": [{"ip": "1.2.3.4", "hostnames": ["foo", "bar"]}], "containers": []}));
        let text = hosts_file(&p, &["10.244.0.5".parse().unwrap()], "cluster.local");
        assert!(text.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
        assert!(text.contains("10.244.0.5\tweb-0.svc1.shop.svc.cluster.local\tweb-0\n"), "{text}");
        assert!(text.ends_with("\n# Entries added by HostAliases.\n1.2.3.4\tfoo\tbar\n"), "{text}");
    }
}
