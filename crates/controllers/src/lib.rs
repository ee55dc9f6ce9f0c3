//! Level-triggered controllers that act on what users declare, all through the API:
//! shared informers (list + watch) feed work queues; each sync reads the informer
//! stores, compares desired with actual state, and writes the difference back.
//!
//! Every controller is a module with `pub async fn run(ctx: Context)`. [`Context`]
//! holds the API client and the shared informers (one list+watch per kind for all
//! controllers); `run` below starts them all.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod context;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod history;
pub mod job;
pub mod nodelifecycle;
pub mod podutil;
pub mod replicaset;
pub mod resourcequota;
pub mod serviceaccount;
pub mod statefulset;
pub mod volume;

pub use context::Context;

use skiff_client::Client;

/// Runs every controller until the future is dropped.
pub async fn run(client: Client) {
    let ctx = Context::new(client);
    let informers = ctx.clone().run_informers();
    tokio::join!(
        informers,
        replicaset::run(ctx.clone()),
        deployment::run(ctx.clone()),
        statefulset::run(ctx.clone()),
        daemonset::run(ctx.clone()),
        job::run(ctx.clone()),
        cronjob::run(ctx.clone()),
        nodelifecycle::run(ctx.clone()),
        disruption::run(ctx.clone()),
        serviceaccount::run(ctx.clone()),
        endpoints::run(ctx.clone()),
        resourcequota::run(ctx.clone()),
        volume::run(ctx.clone()),
    );
}
