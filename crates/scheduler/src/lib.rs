//! The scheduler: places each unscheduled pod on a node.
//!
//! Informers feed a node cache (each node's allocatable and what its pods request)
//! and a scheduling queue (active, backoff and unschedulable pods). For each pod the
//! framework runs the plugins at their extension points, PreFilter, Filter, Score
//! and Bind, the same shape as kube-scheduler's framework, then binds through the
//! pods/binding subresource. Plugins are pure functions of the pod and node state.
//!
//! A tour of the modules:
//! - [`resources`]: requests and allocatable as integers.
//! - [`selectors`]: compiled label and node selectors.
//! - [`types`]: `PodInfo` and `NodeInfo`, what plugins read.
//! - [`status`]: plugin verdicts and upstream's failure message.
//! - [`framework`]: the extension points and the per-pod algorithm.
//! - [`plugins`]: the default plugins.
//! - [`preemption`]: DefaultPreemption, the PostFilter.
//! - [`queue`]: activeQ, backoffQ and the unschedulable pods.
//! - [`cache`]: nodes with their pods, assumed pods and nominations.
//! - [`scheduler`]: informers, the scheduling loop, binding, status and events.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod cache;
pub mod framework;
pub mod plugins;
pub mod preemption;
pub mod queue;
pub mod resources;
pub mod scheduler;
pub mod selectors;
pub mod status;
pub mod types;

#[cfg(test)]
mod testing;

use skiff_client::Client;

/// How the scheduler runs.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Pods whose `spec.schedulerName` is this are ours (`default-scheduler`).
    pub name: String,
    /// Concurrent binding requests in flight.
    pub bind_parallelism: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig { name: "default-scheduler".into(), bind_parallelism: 64 }
    }
}

/// Runs the scheduler until the future is dropped.
pub async fn run(client: Client, config: SchedulerConfig) {
    scheduler::Scheduler::new(client, config).run().await
}
