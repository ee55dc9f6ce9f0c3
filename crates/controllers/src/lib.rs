//! Level-triggered controllers that act on what users declare, all through the API:
//! shared informers (list + watch) feed work queues; each sync reads the informer
//! stores, compares desired with actual state, and writes the difference back.
//!
//! Every controller is a module with `pub async fn run(ctx: Context)`. [`Context`]
//! holds the API client, the shared informers (one list+watch per kind for all
//! controllers) and the cluster-wide settings ([`ControllersConfig`]); `run` below
//! starts them all.
//!
//! Networking: [`nodeipam`] gives Nodes their pod CIDRs, [`servicelb`] gives
//! LoadBalancer Services their addresses and [`ingressstatus`] publishes where
//! the gateway's Ingresses are served.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod context;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod history;
pub mod ingressstatus;
pub mod job;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod podutil;
pub mod replicaset;
pub mod resourcequota;
pub mod serviceaccount;
pub mod servicelb;
pub mod statefulset;
pub mod volume;

pub use context::{Context, ControllersConfig};

use skiff_client::Client;

/// Runs every controller until the future is dropped.
pub async fn run(client: Client, config: ControllersConfig) {
    let ctx = Context::with_config(client, config);
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
        nodeipam::run(ctx.clone()),
        servicelb::run(ctx.clone()),
        ingressstatus::run(ctx.clone()),
    );
}
