//! The node agent: the kubelet ([`kubelet`]) running pods on a container runtime
//! ([`runtime`]: containerd over CRI, or host processes), and simulated nodes
//! ([`sim`]) whose pods "run" instantly, for controller tests and scale benchmarks
//! (what kwok is to Kubernetes).
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod kubelet;
pub mod network;
pub mod runtime;
pub mod sim;
