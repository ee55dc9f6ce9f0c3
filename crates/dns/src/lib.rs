//! Cluster DNS: an in-process DNS server answering for Services and their endpoints, fed by
//! watches, forwarding other names.
//!
//! The node agent runs one [`DnsServer`] per node, on the pod bridge's gateway address, and
//! keeps a [`Records`] store current from its Service and EndpointSlice informers. The answers
//! follow the Kubernetes DNS specification as CoreDNS's `kubernetes` plugin implements it
//! (`pods insecure`, TTL 5 by default):
//!
//! - `records`: the store. Updates replace one object's entries under a short write lock, so
//!   lookups see every change at once and never wait long.
//! - `lookup`: what the store answers for one question: A/AAAA, SRV, CNAME for ExternalName,
//!   endpoint and pod names, PTR, and NXDOMAIN versus NODATA inside the cluster domain.
//! - `server`: the UDP and TCP listeners (hickory-server), EDNS, truncation, and the glue
//!   that forwards every other name.
//! - `forward`: the upstream resolvers, tried in order, answers relayed unchanged.
//! - `resolv_conf`: reads the host's nameservers.
//!
//! Only IPv4 carries traffic in a Skiff cluster; IPv6 cluster IPs and endpoint addresses are
//! answered as AAAA records when present, but nothing else here depends on them.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod forward;
mod lookup;
mod records;
mod resolv_conf;
mod server;

pub use records::Records;
pub use resolv_conf::parse_resolv_conf;
pub use server::{DnsError, DnsServer};

/// How a [`DnsServer`] answers: its zone, where other names go, and how long answers live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsConfig {
    /// The cluster domain, `cluster.local` unless the cluster says otherwise. It must name the
    /// same zone as the [`Records`] the server is given.
    pub cluster_domain: String,
    /// Resolvers for every name outside the cluster domain (and for reverse names the cluster
    /// does not know), tried in order. Usually the host's `/etc/resolv.conf` nameservers. When
    /// empty, such questions are answered REFUSED so that clients move on to their next server.
    pub upstreams: Vec<std::net::SocketAddr>,
    /// TTL of the records the server makes up. CoreDNS's `kubernetes` plugin defaults to 5 s:
    /// short enough that a changed endpoint is seen soon, long enough to absorb bursts.
    pub ttl: u32,
}

impl DnsConfig {
    /// The TTL CoreDNS's `kubernetes` plugin uses unless configured otherwise.
    pub const DEFAULT_TTL: u32 = 5;
    /// The cluster domain Kubernetes clusters use unless configured otherwise.
    pub const DEFAULT_CLUSTER_DOMAIN: &'static str = "cluster.local";
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            cluster_domain: Self::DEFAULT_CLUSTER_DOMAIN.to_string(),
            upstreams: Vec::new(),
            ttl: Self::DEFAULT_TTL,
        }
    }
}
