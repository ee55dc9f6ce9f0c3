//! The serviceaccount controller (upstream pkg/controller/serviceaccount): every
//! active namespace has a `default` ServiceAccount, created again if deleted, so
//! pods that name no account can always be admitted.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use skiff_client::{Api, InformerEvent, WorkQueue};

use crate::podutil::{is_namespace_terminating, run_workers};
use crate::Context;

pub const COMPONENT: &str = "serviceaccount-controller";
/// The accounts every namespace gets.
pub const SERVICE_ACCOUNTS: &[&str] = &["default"];
const WORKERS: usize = 2;

/// Runs the controller until the future is dropped.
pub async fn run(ctx: Context) {
    let queue: WorkQueue<String> = WorkQueue::new();
    let q = queue.clone();
    ctx.namespaces.on_event(Arc::new(move |ev: &InformerEvent<Namespace>| {
        if let InformerEvent::Applied { new, .. } = ev {
            q.add(new.metadata.name.clone().unwrap_or_default());
        }
    }));
    let q = queue.clone();
    ctx.service_accounts.on_event(Arc::new(move |ev: &InformerEvent<ServiceAccount>| {
        if let InformerEvent::Deleted(sa) = ev {
            if SERVICE_ACCOUNTS.contains(&sa.metadata.name.as_deref().unwrap_or("")) {
                q.add(sa.metadata.namespace.clone().unwrap_or_default());
            }
        }
    }));
    ctx.namespaces.wait_synced().await;
    ctx.service_accounts.wait_synced().await;
    let c = ctx.clone();
    run_workers(COMPONENT, queue, WORKERS, move |ns| {
        let c = c.clone();
        async move { sync(&c, &ns).await }
    })
    .await;
}

/// Creates the missing accounts of one namespace.
async fn sync(ctx: &Context, ns: &str) -> Result<Option<std::time::Duration>, skiff_client::Error> {
    let Some(namespace) = ctx.namespaces.store().get("", ns) else { return Ok(None) };
    if !namespace_active(&namespace) {
        return Ok(None);
    }
    let api: Api<ServiceAccount> = Api::namespaced(&ctx.client, ns);
    for name in missing_accounts(ctx, ns) {
        let sa = ServiceAccount {
            metadata: ObjectMeta { name: Some(name.to_string()), namespace: Some(ns.to_string()), ..Default::default() },
            ..Default::default()
        };
        match api.create(&sa).await {
            Ok(_) => {}
            Err(e) if e.reason() == Some("AlreadyExists") || is_namespace_terminating(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// A namespace accounts are made in: not deleting, phase `Active` (or not yet set).
pub fn namespace_active(ns: &Namespace) -> bool {
    let phase = ns.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Active");
    ns.metadata.deletion_timestamp.is_none() && phase == "Active"
}

fn missing_accounts(ctx: &Context, ns: &str) -> Vec<&'static str> {
    let store = ctx.service_accounts.store();
    SERVICE_ACCOUNTS.iter().copied().filter(|name| store.get(ns, name).is_none()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NamespaceStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    #[test]
    fn only_active_namespaces_get_accounts() {
        let mut ns = Namespace::default();
        assert!(namespace_active(&ns));
        ns.status = Some(NamespaceStatus { phase: Some("Terminating".into()), ..Default::default() });
        assert!(!namespace_active(&ns));
        ns.status = None;
        ns.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        assert!(!namespace_active(&ns));
    }
}
