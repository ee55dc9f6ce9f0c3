//! The few facts about host processes the runtime needs: whether a recorded pid is
//! still the process it was (pids are reused, so the kernel's start time is kept
//! beside each pid), and signals to process groups.
//!
//! Signals are sent with the host's `kill(1)`: the crate forbids unsafe code and the
//! standard library can only SIGKILL its own children, while a restarted agent has to
//! signal supervisors and containers it did not start.

use std::io;
use std::path::Path;
use std::process::{ExitStatus, Stdio};

/// A process as the kernel's `/proc/<pid>/stat` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// The state letter: `R`, `S`, `D`, `Z` (zombie), `X` (dead), ...
    pub state: char,
    /// Start time in clock ticks after boot; with the pid it names one process.
    pub start_ticks: u64,
}

impl ProcStat {
    /// Reads `/proc/<pid>/stat`; `None` when there is no such process.
    pub fn read(pid: u32) -> Option<ProcStat> {
        let text = std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")).ok()?;
        parse_stat(&text)
    }

    /// The calling process's own entry.
    pub fn current() -> Option<ProcStat> {
        ProcStat::read(std::process::id())
    }
}

/// Parses the fields of `/proc/<pid>/stat` after the command name, which is in
/// parentheses and may itself contain spaces and parentheses (hence the last `)`).
fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    // Fields are numbered from 1 in proc(5): state is the 3rd, starttime the 22nd.
    let state = fields.next()?.chars().next()?;
    let start_ticks = fields.nth(22 - 4)?.parse().ok()?;
    Some(ProcStat { state, start_ticks })
}

/// Whether `pid` is still the live process that had `start_ticks` when recorded.
/// A zombie counts as gone: it has exited and only waits for its parent to reap it.
pub(crate) fn is_alive(pid: u32, start_ticks: u64) -> bool {
    match ProcStat::read(pid) {
        Some(stat) => stat.start_ticks == start_ticks && !matches!(stat.state, 'Z' | 'X' | 'x'),
        None => false,
    }
}

/// A signal the runtime sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    Term,
    Kill,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Signal::Term => "TERM",
            Signal::Kill => "KILL",
        }
    }

    /// The exit code of a process this signal ended: 128 + its number.
    pub fn exit_code(self) -> i32 {
        match self {
            Signal::Term => 128 + 15,
            Signal::Kill => 128 + 9,
        }
    }
}

/// Sends `signal` to every process of the group `pgid`. A group that no longer exists
/// is not an error (the processes already ended, which is what the caller wants).
pub(crate) async fn kill_group(pgid: u32, signal: Signal) -> io::Result<()> {
    let args = kill_args(pgid, signal)?;
    let output = tokio::process::Command::new("kill").args(&args).stdin(Stdio::null()).output().await?;
    log_failure(pgid, signal, &output);
    Ok(())
}

/// [`kill_group`] for the supervisor, which has no async runtime.
pub(crate) fn kill_group_blocking(pgid: u32, signal: Signal) {
    let Ok(args) = kill_args(pgid, signal) else { return };
    if let Ok(output) = std::process::Command::new("kill").args(&args).stdin(Stdio::null()).output() {
        log_failure(pgid, signal, &output);
    }
}

fn kill_args(pgid: u32, signal: Signal) -> io::Result<[String; 4]> {
    if pgid <= 1 {
        // `kill -- -1` would signal every process the agent may signal.
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("refusing to signal process group {pgid}")));
    }
    Ok(["-s".to_string(), signal.name().to_string(), "--".to_string(), format!("-{pgid}")])
}

fn log_failure(pgid: u32, signal: Signal, output: &std::process::Output) {
    if !output.status.success() {
        tracing::debug!(
            pgid,
            signal = signal.name(),
            stderr = %String::from_utf8_lossy(&output.stderr).trim(),
            "kill failed (the group has probably ended)"
        );
    }
}

/// The exit code a shell would report: the code, or 128 + the signal that ended it.
pub(crate) fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 255,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_found_after_a_command_name_with_spaces_and_parentheses() {
        let line = "4242 (we (i) rd) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615";
        assert_eq!(parse_stat(line), Some(ProcStat { state: 'S', start_ticks: 987654 }));
    }

    #[test]
    fn the_current_process_is_alive_and_a_different_start_time_is_not() {
        let me = ProcStat::current().expect("own stat");
        assert!(is_alive(std::process::id(), me.start_ticks));
        assert!(!is_alive(std::process::id(), me.start_ticks + 1));
    }

    #[test]
    fn signals_are_reported_as_128_plus_the_signal() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(15)), 143);
        assert_eq!(exit_code(ExitStatus::from_raw(9)), 137);
    }
}
