//! Pod network and service datapath of a node: nftables service proxy and network policy in one table, host-gw routes.
//!
//! - [`nft`]: the seam to the kernel. Every module writes `nft` scripts into the one table
//!   `table ip skiff`; [`nft::Nft`] applies a script as one atomic transaction.
//! - [`proxy`]: the service proxy (kube-proxy's nftables mode): Service virtual IPs, NodePorts,
//!   external and load-balancer IPs, DNAT to endpoints, masquerading.
//! - [`policy`]: NetworkPolicy enforcement in the same table (objects named `policy-*`).
//! - [`routes`]: host-gw routes to other nodes' pod CIDRs and the pod bridge.
//!
//! IPv4 only: there is no IPv6 datapath.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod cidr;
pub mod nft;
pub mod policy;
pub mod proxy;
pub mod routes;

pub use cidr::Cidr;
