//! The seam to nftables: scripts in, one atomic transaction per script.
//!
//! Everything Skiff puts in the kernel's packet filter lives in one table, `table ip skiff`
//! ([`FAMILY`], [`TABLE`]). The service proxy and the policy engine each own their objects in
//! it (the policy engine's names start with `policy-`), and only [`reset_table`] and
//! [`delete_table`] touch the table as a whole.
//!
//! [`Nft`] is the trait every writer goes through: [`NftCli`] runs the `nft` binary,
//! [`RecordingNft`] keeps the scripts for unit tests.
//!
//! # Cost of a transaction
//!
//! `nft -f -` is one process per transaction. That keeps each change atomic (a script is
//! applied entirely or not at all), which a long-lived `nft -i` would not give: interactive
//! mode commits every line on its own, and it refetches its cache after every commit anyway,
//! since each commit changes the ruleset generation. On an idle 2-core machine a small
//! transaction costs about 4 ms (process start, cache fetch, commit) against a table of a few
//! hundred chains. Before each transaction `nft` reads every chain of the table, so the cost
//! grows with the table: about 25 ms with 6000 chains (1000 services of 5 endpoints). Callers
//! therefore batch: the proxy writes all pending changes in one script per sync.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// Name of the one table (`table ip skiff`) holding the proxy's and the policy engine's objects.
pub const TABLE: &str = "skiff";
/// Address family of [`TABLE`]: IPv4 only.
pub const FAMILY: &str = "ip";

/// Why a script did not reach the kernel.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// The `nft` process could not be started or talked to (binary missing, pipe broken).
    #[error("running nft: {0}")]
    Spawn(std::io::Error),
    /// `nft` parsed or committed the script and refused it; nothing of it was applied.
    #[error("nft rejected the ruleset: {stderr}")]
    Rejected { stderr: String, script: String },
}

/// Applies nftables scripts, each as one atomic transaction.
#[async_trait::async_trait]
pub trait Nft: Send + Sync {
    /// Applies `script` (the `nft -f` language) entirely, or nothing of it.
    async fn apply(&self, script: &str) -> Result<(), NftError>;
}

// === impl NftCli ===

/// Runs `nft -f -` with the script on stdin (one atomic transaction).
#[derive(Debug, Clone, Default)]
pub struct NftCli {
    /// Network namespace (a name under `/run/netns`) to run `nft` in, through `nsenter`.
    /// `None` is the caller's own namespace, which is what the node agent uses.
    netns: Option<String>,
    /// The `nft` binary; `nft` from `PATH` unless set.
    binary: Option<PathBuf>,
}

impl NftCli {
    /// Applies scripts in the caller's network namespace.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies scripts inside the named network namespace (`/run/netns/NAME`, as made by
    /// `ip netns add`), so tests can program a namespace of their own without touching the
    /// host's ruleset. `nft` runs under `nsenter --net=…`: `ip netns exec` would do too, but it
    /// remounts /sys for every call, which costs about 20 ms.
    pub fn in_netns(name: &str) -> Self {
        NftCli { netns: Some(name.to_string()), binary: None }
    }

    /// Uses this `nft` binary instead of the one on `PATH`.
    pub fn with_binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = Some(path.into());
        self
    }

    /// Checks `script` without committing it (`nft -c -f -`): the kernel validates it, nothing
    /// changes. Tests use it to prove a generated ruleset is well-formed.
    pub async fn check(&self, script: &str) -> Result<(), NftError> {
        self.run(&["-c", "-f", "-"], script).await.map(drop)
    }

    /// Prints the current table (`nft list table ip skiff`), for tests and diagnostics.
    pub async fn list_table(&self) -> Result<String, NftError> {
        self.run(&["list", "table", FAMILY, TABLE], "").await
    }

    fn command(&self) -> Command {
        let nft = self.binary.clone().unwrap_or_else(|| PathBuf::from("nft"));
        match &self.netns {
            Some(ns) => {
                let mut cmd = Command::new("nsenter");
                cmd.arg(format!("--net={}", netns_path(ns).display())).arg(nft);
                cmd
            }
            None => Command::new(nft),
        }
    }

    async fn run(&self, args: &[&str], script: &str) -> Result<String, NftError> {
        let mut child = self
            .command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(NftError::Spawn)?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        // Write while the child reads; a big script could otherwise fill the pipe before `nft`
        // starts reading and the output pipes are drained by `wait_with_output` below.
        let write = async {
            let res = stdin.write_all(script.as_bytes()).await;
            drop(stdin);
            res
        };
        let (written, output) = tokio::join!(write, child.wait_with_output());
        let output = output.map_err(NftError::Spawn)?;
        if !output.status.success() {
            let mut stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
            if stderr.is_empty() {
                stderr = format!("nft exited with {}", output.status);
            }
            return Err(NftError::Rejected { stderr, script: script.to_string() });
        }
        // A broken pipe with a successful exit cannot happen for `-f -` (nft reads to EOF), but
        // if it does, the script was not fully read: report it.
        written.map_err(NftError::Spawn)?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

#[async_trait::async_trait]
impl Nft for NftCli {
    async fn apply(&self, script: &str) -> Result<(), NftError> {
        self.run(&["-f", "-"], script).await.map(drop)
    }
}

/// The bind-mounted namespace file `ip netns add NAME` creates.
pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

// === impl RecordingNft ===

/// Records scripts instead of applying them (unit tests).
#[derive(Default, Clone)]
pub struct RecordingNft {
    /// Every script passed to [`Nft::apply`], in order.
    pub scripts: Arc<Mutex<Vec<String>>>,
}

impl RecordingNft {
    /// The scripts applied so far.
    pub fn taken(&self) -> Vec<String> {
        self.scripts.lock().expect("recording lock").clone()
    }

    /// The last script applied, if any.
    pub fn last(&self) -> Option<String> {
        self.scripts.lock().expect("recording lock").last().cloned()
    }
}

#[async_trait::async_trait]
impl Nft for RecordingNft {
    async fn apply(&self, script: &str) -> Result<(), NftError> {
        // std Mutex: nothing awaits while it is held.
        self.scripts.lock().expect("recording lock").push(script.to_string());
        Ok(())
    }
}

// === table-wide operations ===

/// The script of [`reset_table`]; adding first makes the delete succeed on a fresh host.
pub fn reset_table_script() -> String {
    format!("add table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\nadd table {FAMILY} {TABLE}\n")
}

/// Deletes and recreates the table: `add table ip skiff; delete table ip skiff; add table ip skiff`.
///
/// The agent calls this once at start, before the proxy and the policy engine create their
/// objects, so nothing stale from an earlier run survives.
pub async fn reset_table(nft: &dyn Nft) -> Result<(), NftError> {
    nft.apply(&reset_table_script()).await
}

/// Deletes the table (agent shutdown with --cleanup, tests). Succeeds when there is none.
pub async fn delete_table(nft: &dyn Nft) -> Result<(), NftError> {
    nft.apply(&format!("add table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n")).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reset_table_recreates_the_table_in_one_transaction() {
        let rec = RecordingNft::default();
        reset_table(&rec).await.unwrap();
        delete_table(&rec).await.unwrap();
        let scripts = rec.taken();
        assert_eq!(scripts.len(), 2);
        assert_eq!(scripts[0], "add table ip skiff\ndelete table ip skiff\nadd table ip skiff\n");
        assert_eq!(scripts[1], "add table ip skiff\ndelete table ip skiff\n");
    }

    #[tokio::test]
    async fn a_missing_binary_is_a_spawn_error() {
        let nft = NftCli::new().with_binary("/nonexistent/skiff-test-nft");
        match nft.apply("add table ip skiff\n").await {
            Err(NftError::Spawn(_)) => {}
            other => panic!("expected a spawn error, got {other:?}"),
        }
    }
}
