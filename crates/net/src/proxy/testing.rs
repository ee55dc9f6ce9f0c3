//! Builders for Services and EndpointSlices, for tests and benchmarks of the proxy.
//!
//! ```
//! use skiff_net::proxy::testing::{ServiceBuilder, SliceBuilder};
//! let svc = ServiceBuilder::new("default", "web").cluster_ip("10.96.0.20").port("http", 80, "TCP").build();
//! let slice = SliceBuilder::new("default", "web-abc", "web")
//!     .port("http", 8080, "TCP")
//!     .endpoint("10.244.0.5", Some("node-1"))
//!     .build();
//! # let _ = (svc, slice);
//! ```
//!
//! [`synthetic_cluster`] makes N services with M endpoints each; timing a sync of it is how
//! the proxy's cost is measured:
//!
//! ```no_run
//! # async fn bench() -> Result<(), skiff_net::nft::NftError> {
//! use std::sync::Arc;
//! use skiff_net::nft::{self, NftCli};
//! use skiff_net::proxy::{testing::synthetic_cluster, Proxier, ProxyConfig};
//! let nft = Arc::new(NftCli::new());
//! nft::reset_table(nft.as_ref()).await?;
//! let mut proxier = Proxier::new(ProxyConfig::default(), nft);
//! proxier.init().await?;
//! let (services, slices) = synthetic_cluster(1000, 10);
//! services.iter().for_each(|s| proxier.apply_service(s));
//! slices.iter().for_each(|s| proxier.apply_slice(s));
//! let full = proxier.sync().await?; // full.duration: everything at once
//! proxier.apply_slice(&slices[0]); // change one slice, then:
//! let one = proxier.sync().await?; // one.duration: one service's incremental update
//! # let _ = (full, one);
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{
    ClientIPConfig, LoadBalancerIngress, LoadBalancerStatus, Service, ServicePort,
    ServiceSpec, ServiceStatus, SessionAffinityConfig,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::model::SERVICE_NAME_LABEL;

/// Builds a Service: ClusterIP 10.96.0.100 with one TCP port 80 named `http` unless told.
#[derive(Debug, Clone)]
pub struct ServiceBuilder {
    svc: Service,
    default_port: bool,
}

impl ServiceBuilder {
    pub fn new(namespace: &str, name: &str) -> Self {
        ServiceBuilder {
            svc: Service {
                metadata: ObjectMeta {
                    namespace: Some(namespace.into()),
                    name: Some(name.into()),
                    ..Default::default()
                },
                spec: Some(ServiceSpec {
                    type_: Some("ClusterIP".into()),
                    cluster_ip: Some("10.96.0.100".into()),
                    ..Default::default()
                }),
                status: None,
            },
            default_port: true,
        }
    }

    fn spec(&mut self) -> &mut ServiceSpec {
        self.svc.spec.as_mut().expect("spec")
    }

    pub fn type_(mut self, t: &str) -> Self {
        self.spec().type_ = Some(t.into());
        self
    }

    pub fn cluster_ip(mut self, ip: &str) -> Self {
        self.spec().cluster_ip = Some(ip.into());
        self
    }

    pub fn cluster_ips(mut self, ips: &[&str]) -> Self {
        self.spec().cluster_ips = Some(ips.iter().map(|s| s.to_string()).collect());
        self
    }

    /// Adds a port (the first call replaces the default `http` port).
    pub fn port(mut self, name: &str, port: i32, protocol: &str) -> Self {
        if std::mem::take(&mut self.default_port) {
            self.spec().ports = Some(Vec::new());
        }
        self.spec().ports.get_or_insert_with(Vec::new).push(ServicePort {
            name: (!name.is_empty()).then(|| name.to_string()),
            port,
            protocol: Some(protocol.into()),
            ..Default::default()
        });
        self
    }

    /// Sets the NodePort of the last port added.
    pub fn node_port(mut self, node_port: i32) -> Self {
        self.ensure_port();
        if let Some(p) = self.spec().ports.as_mut().and_then(|p| p.last_mut()) {
            p.node_port = Some(node_port);
        }
        self
    }

    pub fn external_ip(mut self, ip: &str) -> Self {
        self.spec().external_ips.get_or_insert_with(Vec::new).push(ip.into());
        self
    }

    pub fn lb_ingress(mut self, ip: &str, ip_mode: Option<&str>) -> Self {
        let status = self.svc.status.get_or_insert_with(ServiceStatus::default);
        let lb = status.load_balancer.get_or_insert_with(LoadBalancerStatus::default);
        lb.ingress.get_or_insert_with(Vec::new).push(LoadBalancerIngress {
            ip: Some(ip.into()),
            ip_mode: ip_mode.map(Into::into),
            ..Default::default()
        });
        self
    }

    pub fn lb_source_range(mut self, cidr: &str) -> Self {
        self.spec().load_balancer_source_ranges.get_or_insert_with(Vec::new).push(cidr.into());
        self
    }

    pub fn internal_traffic_policy(mut self, p: &str) -> Self {
        self.spec().internal_traffic_policy = Some(p.into());
        self
    }

    pub fn external_traffic_policy(mut self, p: &str) -> Self {
        self.spec().external_traffic_policy = Some(p.into());
        self
    }

    /// `sessionAffinity: ClientIP`, with `timeoutSeconds` if given.
    pub fn session_affinity(mut self, timeout_seconds: Option<i32>) -> Self {
        self.spec().session_affinity = Some("ClientIP".into());
        self.spec().session_affinity_config = timeout_seconds.map(|t| SessionAffinityConfig {
            client_ip: Some(ClientIPConfig { timeout_seconds: Some(t) }),
        });
        self
    }

    fn ensure_port(&mut self) {
        if self.default_port && self.spec().ports.is_none() {
            self.spec().ports = Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                protocol: Some("TCP".into()),
                ..Default::default()
            }]);
        }
    }

    pub fn build(mut self) -> Service {
        self.ensure_port();
        self.svc
    }
}

/// Builds an IPv4 EndpointSlice of a service.
#[derive(Debug, Clone)]
pub struct SliceBuilder {
    slice: EndpointSlice,
}

impl SliceBuilder {
    pub fn new(namespace: &str, name: &str, service: &str) -> Self {
        SliceBuilder {
            slice: EndpointSlice {
                metadata: ObjectMeta {
                    namespace: Some(namespace.into()),
                    name: Some(name.into()),
                    labels: Some(BTreeMap::from([(SERVICE_NAME_LABEL.to_string(), service.to_string())])),
                    ..Default::default()
                },
                address_type: "IPv4".into(),
                endpoints: Vec::new(),
                ports: None,
            },
        }
    }

    pub fn port(mut self, name: &str, port: i32, protocol: &str) -> Self {
        self.slice.ports.get_or_insert_with(Vec::new).push(EndpointPort {
            name: Some(name.into()),
            port: Some(port),
            protocol: Some(protocol.into()),
            app_protocol: None,
        });
        self
    }

    /// A ready endpoint.
    pub fn endpoint(self, ip: &str, node: Option<&str>) -> Self {
        self.endpoint_with(ip, node, true, true, false)
    }

    /// An endpoint with explicit conditions.
    pub fn endpoint_with(
        mut self,
        ip: &str,
        node: Option<&str>,
        ready: bool,
        serving: bool,
        terminating: bool,
    ) -> Self {
        self.slice.endpoints.push(Endpoint {
            addresses: vec![ip.into()],
            conditions: Some(EndpointConditions {
                ready: Some(ready),
                serving: Some(serving),
                terminating: Some(terminating),
            }),
            node_name: node.map(Into::into),
            ..Default::default()
        });
        self
    }

    pub fn build(self) -> EndpointSlice {
        self.slice
    }
}

/// `n` ClusterIP services (`svc-0` … in namespace `bench`, IPs from 10.96.0.0 on, one TCP port
/// 80 named `http`) with `endpoints` ready endpoints each (pod IPs from 10.244.0.0 on, port 8080),
/// one slice per service.
pub fn synthetic_cluster(n: usize, endpoints: usize) -> (Vec<Service>, Vec<EndpointSlice>) {
    let mut services = Vec::with_capacity(n);
    let mut slices = Vec::with_capacity(n);
    let mut pod_ip = u32::from(Ipv4Addr::new(10, 244, 0, 2));
    for i in 0..n {
        let name = format!("svc-{i}");
        let cip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + 1 + i as u32);
        services.push(
            ServiceBuilder::new("bench", &name)
                .cluster_ip(&cip.to_string())
                .port("http", 80, "TCP")
                .build(),
        );
        let mut slice = SliceBuilder::new("bench", &format!("{name}-abcde"), &name).port("http", 8080, "TCP");
        for _ in 0..endpoints {
            slice = slice.endpoint(&Ipv4Addr::from(pod_ip).to_string(), Some("bench-node"));
            pod_ip += 1;
        }
        slices.push(slice.build());
    }
    (services, slices)
}
