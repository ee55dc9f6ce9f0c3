//! What every controller shares: the client, one informer per kind, event
//! recorders, and the cluster-wide settings in [`ControllersConfig`].

use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Endpoints, LimitRange, Namespace, Node, PersistentVolumeClaim, Pod, ResourceQuota, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use skiff_client::{Api, Client, EventRecorder, Informer, ListParams};

use crate::servicelb::AddressPool;

/// Cluster-wide settings of the controllers, from `skiff server`'s flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllersConfig {
    /// Where Nodes' pod CIDRs come from (`--cluster-cidr`); `None` turns node
    /// IPAM off, and Nodes must bring their own.
    pub cluster_cidr: Option<(Ipv4Addr, u8)>,
    /// The prefix length of each Node's pod CIDR (`--node-cidr-mask-size`).
    pub node_cidr_mask: u8,
    /// The service CIDR (`--service-cidr`): pod CIDRs never overlap it.
    pub service_cidr: Option<(Ipv4Addr, u8)>,
    /// Addresses for LoadBalancer Services (`--lb-pool`); `None` gives them the
    /// addresses of the Ready nodes instead.
    pub lb_pool: Option<AddressPool>,
}

impl Default for ControllersConfig {
    /// The cluster's defaults: pod CIDRs are /24s of 10.244.0.0/16, clear of the
    /// service CIDR 10.96.0.0/12; no LoadBalancer pool.
    fn default() -> Self {
        let cluster = crate::nodeipam::DEFAULT_CLUSTER_CIDR;
        ControllersConfig {
            cluster_cidr: Some((cluster.base, cluster.prefix)),
            node_cidr_mask: crate::nodeipam::DEFAULT_NODE_CIDR_MASK,
            service_cidr: Some((Ipv4Addr::new(10, 96, 0, 0), 12)),
            lb_pool: None,
        }
    }
}

/// Shared state of the controllers. Cheap to clone.
#[derive(Clone)]
pub struct Context {
    pub client: Client,
    pub pods: Informer<Pod>,
    pub nodes: Informer<Node>,
    pub namespaces: Informer<Namespace>,
    pub services: Informer<Service>,
    pub endpoints: Informer<Endpoints>,
    pub endpoint_slices: Informer<EndpointSlice>,
    pub service_accounts: Informer<ServiceAccount>,
    pub replica_sets: Informer<ReplicaSet>,
    pub deployments: Informer<Deployment>,
    pub stateful_sets: Informer<StatefulSet>,
    pub daemon_sets: Informer<DaemonSet>,
    pub controller_revisions: Informer<ControllerRevision>,
    pub jobs: Informer<Job>,
    pub cron_jobs: Informer<CronJob>,
    pub pvcs: Informer<PersistentVolumeClaim>,
    pub pdbs: Informer<PodDisruptionBudget>,
    pub resource_quotas: Informer<ResourceQuota>,
    pub limit_ranges: Informer<LimitRange>,
    /// Node heartbeats (kube-node-lease).
    pub node_leases: Informer<Lease>,
    pub ingresses: Informer<Ingress>,
    pub ingress_classes: Informer<IngressClass>,
    pub config: Arc<ControllersConfig>,
}

impl Context {
    /// A context with the default [`ControllersConfig`].
    pub fn new(client: Client) -> Context {
        Context::with_config(client, ControllersConfig::default())
    }

    pub fn with_config(client: Client, config: ControllersConfig) -> Context {
        Context {
            pods: Informer::all(&client),
            nodes: Informer::all(&client),
            namespaces: Informer::all(&client),
            services: Informer::all(&client),
            endpoints: Informer::all(&client),
            endpoint_slices: Informer::all(&client),
            service_accounts: Informer::all(&client),
            replica_sets: Informer::all(&client),
            deployments: Informer::all(&client),
            stateful_sets: Informer::all(&client),
            daemon_sets: Informer::all(&client),
            controller_revisions: Informer::all(&client),
            jobs: Informer::all(&client),
            cron_jobs: Informer::all(&client),
            pvcs: Informer::all(&client),
            pdbs: Informer::all(&client),
            resource_quotas: Informer::all(&client),
            limit_ranges: Informer::all(&client),
            node_leases: Informer::new(Api::namespaced(&client, "kube-node-lease"), ListParams::default()),
            ingresses: Informer::all(&client),
            ingress_classes: Informer::all(&client),
            config: Arc::new(config),
            client,
        }
    }

    /// An event recorder for one controller (`component` as upstream names it, e.g.
    /// `deployment-controller`).
    pub fn recorder(&self, component: &str) -> EventRecorder {
        EventRecorder::new(self.client.clone(), component, None)
    }

    /// Runs every informer until dropped.
    pub async fn run_informers(self) {
        tokio::join!(
            self.pods.clone().run(),
            self.nodes.clone().run(),
            self.namespaces.clone().run(),
            self.services.clone().run(),
            self.endpoints.clone().run(),
            self.endpoint_slices.clone().run(),
            self.service_accounts.clone().run(),
            self.replica_sets.clone().run(),
            self.deployments.clone().run(),
            self.stateful_sets.clone().run(),
            self.daemon_sets.clone().run(),
            self.controller_revisions.clone().run(),
            self.jobs.clone().run(),
            self.cron_jobs.clone().run(),
            self.pvcs.clone().run(),
            self.pdbs.clone().run(),
            self.resource_quotas.clone().run(),
            self.limit_ranges.clone().run(),
            self.node_leases.clone().run(),
            self.ingresses.clone().run(),
            self.ingress_classes.clone().run(),
        );
    }
}
