//! The built-in Ingress gateway: an HTTP(S) reverse proxy routing by host and path to Service endpoints.
//!
//! The node agent feeds [`Routes`] from its watches (Ingresses, IngressClasses,
//! Services, EndpointSlices, TLS Secrets) and starts one [`Gateway`] that serves
//! with them. Routing follows `networking.k8s.io/v1` as ingress-nginx implements
//! it; traffic goes straight to pod addresses, never through a ClusterIP. IPv4
//! endpoints only.
//!
//! A tour of the modules:
//! - [`class`]: which Ingresses are ours (IngressClass, default class, legacy annotation).
//! - [`host`] and [`path`]: the pure matching rules for the Host header and the URL path.
//! - `table`: the compiled routing table (servers per host, locations per path), rebuilt
//!   whenever an Ingress, class or certificate changes and swapped in whole.
//! - [`endpoints`]: live, push-updated endpoint sets per backend, with per-endpoint
//!   in-flight counts; the seam for traffic-delivery policies.
//! - [`picker`]: the [`Picker`] trait that chooses an endpoint for each attempt.
//! - [`routes`]: [`Routes`], the state the agent writes and the proxy reads.
//! - `tls`: certificates from Secrets, chosen by SNI, and the fallback certificate.
//! - `pool` and `proxy`: keep-alive connections to pods, forwarding, retries, upgrades.
//! - `server`: the listeners ([`Gateway`]).
//! - [`metrics`]: request counts by status class.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod class;
pub mod endpoints;
pub mod host;
pub mod metrics;
pub mod path;
pub mod picker;
mod pool;
mod proxy;
pub mod routes;
mod server;
mod table;
mod tls;

use std::net::SocketAddr;

pub use endpoints::{BackendKey, BackendPort, Endpoint, EndpointSet};
pub use metrics::{Metrics, StatusClass};
pub use picker::{LeastRequest, Picker, RoundRobin};
pub use routes::Routes;
pub use server::Gateway;

/// Where the gateway listens and which Ingresses it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// The plain HTTP listener, e.g. `0.0.0.0:80` (tests: `127.0.0.1:0`); `None` serves no HTTP.
    pub http: Option<SocketAddr>,
    /// The HTTPS listener, e.g. `0.0.0.0:443`; `None` serves no HTTPS (and redirects nothing to it).
    pub https: Option<SocketAddr>,
    /// The IngressClass name this gateway serves by default (`skiff`).
    pub class_name: String,
    /// The `IngressClass.spec.controller` value this gateway owns (`skiff.io/ingress`).
    pub controller: String,
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    // === listeners ===
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },

    // === TLS ===
    #[error("generating the fallback certificate: {0}")]
    FallbackCertificate(#[from] rcgen::Error),
    #[error("setting up TLS: {0}")]
    Tls(#[from] rustls::Error),
}
