//! The CRI runtime: containerd (or any CRI v1 runtime) over its unix socket.

use std::path::Path;

/// A CRI v1 runtime and image service on a unix socket.
pub struct CriRuntime {
    _private: (),
}

impl CriRuntime {
    /// Connects to the runtime's socket (e.g. `/run/containerd/containerd.sock`) and
    /// checks it answers CRI v1 `Version`.
    pub async fn connect(socket: &Path) -> super::Result<CriRuntime> {
        Err(super::RuntimeError::Unavailable(format!("CRI over {} is not built yet", socket.display())))
    }
}
