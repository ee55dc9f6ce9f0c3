//! A private containerd, started and supervised by `skiff up` when containerd is
//! installed but not running: its config, root, state and socket all live under the
//! data directory, as k3s does.

use std::path::{Path, PathBuf};

/// Where a supervised containerd keeps everything.
#[derive(Debug, Clone)]
pub struct ContainerdConfig {
    /// Root of everything: `<dir>/containerd/{config.toml,root,state,containerd.sock}`.
    pub data_dir: PathBuf,
    /// CNI plugin binaries (Debian: /usr/lib/cni).
    pub cni_bin_dir: PathBuf,
    /// Where the agent writes the CNI conflist.
    pub cni_conf_dir: PathBuf,
    /// The sandbox ("pause") image, which must be imported, never pulled.
    pub sandbox_image: String,
}

/// The containerd binary on PATH (or in /usr/bin, /usr/local/bin), if installed.
pub fn find_binary() -> Option<PathBuf> {
    None
}

/// A running containerd this process started; it is restarted if it exits, and
/// stopped when this is dropped.
pub struct Containerd {
    socket: PathBuf,
}

impl Containerd {
    /// Writes the config, starts containerd and waits until its socket answers.
    pub async fn start(config: ContainerdConfig) -> anyhow::Result<Containerd> {
        anyhow::bail!("supervising containerd under {} is not built yet", config.data_dir.display())
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }
}
