//! The node agent. Today it has the simulated runtime ([`sim`]): nodes that register,
//! heartbeat and "run" their pods instantly, for controller tests and scale
//! benchmarks (what kwok is to Kubernetes).
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod sim;
