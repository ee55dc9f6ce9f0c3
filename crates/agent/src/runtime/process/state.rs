//! The process runtime's state on disk. Everything is a file, so that an agent that
//! restarts (a new runtime on the same directory) finds its sandboxes and containers,
//! and the exits the supervisors recorded while it was away.
//!
//! ```text
//! <state_dir>/sandboxes/<id>/sandbox.json      SandboxRecord
//! <state_dir>/containers/<id>/config.json      ContainerRecord (written at create)
//! <state_dir>/containers/<id>/started.json     Started (written by the supervisor)
//! <state_dir>/containers/<id>/exited.json      Exited (by the supervisor, or the
//!                                              runtime when the supervisor is gone)
//! ```
//!
//! Every file is written whole to a temporary name and renamed into place, so a
//! reader sees the old content or the new, never half of it.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use jiff::Timestamp;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub(crate) const SANDBOX_FILE: &str = "sandbox.json";
pub(crate) const CONFIG_FILE: &str = "config.json";
pub(crate) const STARTED_FILE: &str = "started.json";
pub(crate) const EXITED_FILE: &str = "exited.json";

/// What is kept of a sandbox's config.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SandboxRecord {
    pub id: String,
    pub pod_name: String,
    pub pod_namespace: String,
    pub pod_uid: String,
    pub attempt: u32,
    pub hostname: String,
    pub log_directory: PathBuf,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// RFC 3339.
    pub created_at: String,
    pub ready: bool,
}

/// A container as created: everything the supervisor needs to start it, and what
/// the runtime reports about it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ContainerRecord {
    pub id: String,
    pub sandbox_id: String,
    pub name: String,
    pub attempt: u32,
    pub image: String,
    /// The command and its arguments (never empty).
    pub argv: Vec<String>,
    /// The complete environment, defaults included.
    pub env: Vec<(String, String)>,
    pub working_dir: PathBuf,
    /// Absolute path of the CRI-format log file.
    pub log_path: PathBuf,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// RFC 3339.
    pub created_at: String,
}

/// Written by the supervisor once the container's process runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Started {
    pub shim_pid: u32,
    pub shim_start_ticks: u64,
    /// The container's process; also its process group.
    pub pid: u32,
    pub pid_start_ticks: u64,
    /// RFC 3339.
    pub started_at: String,
}

/// Written when the container's process has ended (or could not start).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Exited {
    pub exit_code: i32,
    pub reason: String,
    #[serde(default)]
    pub message: String,
    /// RFC 3339; absent when the end was not witnessed.
    pub finished_at: Option<String>,
}

/// Reasons recorded for ended containers (the values containerd reports).
pub(crate) mod reason {
    pub const COMPLETED: &str = "Completed";
    pub const ERROR: &str = "Error";
    pub const START_ERROR: &str = "StartError";
}

impl Exited {
    /// An exit the supervisor witnessed.
    pub fn with_code(exit_code: i32, finished_at: Timestamp) -> Exited {
        let reason = if exit_code == 0 { reason::COMPLETED } else { reason::ERROR };
        Exited { exit_code, reason: reason.to_string(), message: String::new(), finished_at: Some(finished_at.to_string()) }
    }

    /// A process that never ran: containerd's StartError with exit code 128.
    pub fn start_error(message: String, finished_at: Timestamp) -> Exited {
        Exited { exit_code: 128, reason: reason::START_ERROR.to_string(), message, finished_at: Some(finished_at.to_string()) }
    }
}

/// Writes `value` as JSON to `path` atomically (temporary file, fsync, rename).
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state");
    // Unique per writer, so two writers of the same record cannot interleave.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_file_name(format!(".{file_name}.{}.{n}.tmp", std::process::id()));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

/// Reads a JSON file; `Ok(None)` when it does not exist.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Parses a recorded RFC 3339 time (`None` for a missing or unreadable one).
pub(crate) fn timestamp(recorded: Option<&str>) -> Option<Timestamp> {
    recorded?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_record_reads_back_and_a_missing_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(EXITED_FILE);
        assert!(read_json::<Exited>(&path).unwrap().is_none());
        let now = Timestamp::now();
        write_json(&path, &Exited::with_code(3, now)).unwrap();
        let back: Exited = read_json(&path).unwrap().unwrap();
        assert_eq!((back.exit_code, back.reason.as_str()), (3, reason::ERROR));
        assert_eq!(timestamp(back.finished_at.as_deref()), Some(now));
        // Only the record itself is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from(EXITED_FILE)]);
    }

    #[test]
    fn a_zero_exit_is_completed_and_any_other_an_error() {
        assert_eq!(Exited::with_code(0, Timestamp::now()).reason, reason::COMPLETED);
        assert_eq!(Exited::with_code(137, Timestamp::now()).reason, reason::ERROR);
        assert_eq!(Exited::start_error("no such file".into(), Timestamp::now()).exit_code, 128);
    }
}
