//! The service proxy: Services as nftables rules in `table ip skiff` (being written).
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use crate::nft::{Nft, NftError};

/// What the proxy needs to know about its node.
#[derive(Debug, Clone, Default)]
pub struct ProxyConfig {
    pub node_name: String,
    pub node_ips: Vec<Ipv4Addr>,
    pub cluster_cidr: Option<(Ipv4Addr, u8)>,
    pub masquerade_outside: bool,
    pub pod_bridge: Option<String>,
}

/// What a sync did.
#[derive(Debug, Clone, Default)]
pub struct SyncStats {
    pub services_changed: usize,
    pub duration: Duration,
    pub script_bytes: usize,
}

/// The service proxy of one node.
pub struct Proxier {
    #[allow(dead_code)]
    cfg: ProxyConfig,
    #[allow(dead_code)]
    nft: Arc<dyn Nft>,
    dirty: bool,
}

impl Proxier {
    pub fn new(cfg: ProxyConfig, nft: Arc<dyn Nft>) -> Proxier {
        Proxier { cfg, nft, dirty: false }
    }
    pub async fn init(&mut self) -> Result<(), NftError> {
        Ok(())
    }
    pub fn apply_service(&mut self, _svc: &k8s_openapi::api::core::v1::Service) {
        self.dirty = true;
    }
    pub fn delete_service(&mut self, _namespace: &str, _name: &str) {
        self.dirty = true;
    }
    pub fn apply_slice(&mut self, _slice: &k8s_openapi::api::discovery::v1::EndpointSlice) {
        self.dirty = true;
    }
    pub fn delete_slice(&mut self, _namespace: &str, _name: &str) {
        self.dirty = true;
    }
    pub fn dirty(&self) -> bool {
        self.dirty
    }
    pub async fn sync(&mut self) -> Result<SyncStats, NftError> {
        self.dirty = false;
        Ok(SyncStats::default())
    }
}
