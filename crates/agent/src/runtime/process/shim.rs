//! The supervisor of one container's process (`skiff process-shim run <dir>`).
//!
//! The runtime starts one per container, in a process group of its own with its
//! standard streams on `/dev/null`, so that it outlives the agent and a Ctrl-C at the
//! agent's terminal does not reach it. (A session of its own would detach it from the
//! terminal entirely, but the standard library cannot call setsid without unsafe
//! code; a background process group receives no terminal signals either.) It starts the container's process (in a
//! process group of its own too, which is what the runtime signals to stop it),
//! copies its stdout and stderr into the CRI-format log file, and records in the
//! container's state directory when the process started and how it ended. It keeps
//! no other state: a restarted agent learns everything from those files.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;

use super::host::{self, ProcStat};
use super::log::{LineSplitter, LogStream};
use super::state::{self, ContainerRecord, Exited, Started, CONFIG_FILE, EXITED_FILE, STARTED_FILE};

/// How long the output of an ended process may take to reach the log before its exit
/// is recorded anyway (a descendant that escaped the process group may hold the
/// pipes open indefinitely).
const DRAIN: Duration = Duration::from_secs(2);

/// The entry point of the shim binary (and of `skiff process-shim`). `args` are the
/// arguments after the shim's own command: `run <container-state-dir>`. Returns the
/// process's exit code: 0 once the container's exit is recorded, 1 when it could not
/// be started (recorded too, as a StartError), 2 for a usage error.
pub fn shim_main(args: Vec<String>) -> i32 {
    match args.as_slice() {
        [verb, dir] if verb == "run" => run(Path::new(dir)),
        _ => {
            eprintln!("usage: process-shim run <container-state-dir>");
            2
        }
    }
}

fn run(dir: &Path) -> i32 {
    let record: ContainerRecord = match state::read_json(&dir.join(CONFIG_FILE)) {
        Ok(Some(record)) => record,
        Ok(None) => return start_failed(dir, format!("no container config in {}", dir.display())),
        Err(e) => return start_failed(dir, format!("reading the container config: {e}")),
    };
    let Some((program, args)) = record.argv.split_first() else {
        return start_failed(dir, "the process runtime needs a command".to_string());
    };
    let log = match open_log(&record.log_path) {
        Ok(log) => log,
        Err(e) => return start_failed(dir, format!("opening the log file {}: {e}", record.log_path.display())),
    };

    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(record.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&record.working_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(gid) = record.gid {
        command.gid(gid);
    }
    if let Some(uid) = record.uid {
        command.uid(uid);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return start_failed(dir, format!("failed to start {program:?}: {e}")),
    };
    let pid = child.id();
    let started = Started {
        shim_pid: std::process::id(),
        shim_start_ticks: ProcStat::current().map(|s| s.start_ticks).unwrap_or_default(),
        pid,
        // Readable even if the process already ended: it stays a zombie until waited for.
        pid_start_ticks: ProcStat::read(pid).map(|s| s.start_ticks).unwrap_or_default(),
        started_at: Timestamp::now().to_string(),
    };
    if let Err(e) = state::write_json(&dir.join(STARTED_FILE), &started) {
        let _ = child.kill();
        let _ = child.wait();
        return start_failed(dir, format!("recording the start: {e}"));
    }

    let log = Arc::new(Mutex::new(log));
    let (done, drained) = mpsc::channel();
    let pipes: [(Option<Box<dyn Read + Send>>, LogStream); 2] = [
        (child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>), LogStream::Stdout),
        (child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>), LogStream::Stderr),
    ];
    for (pipe, stream) in pipes {
        let Some(pipe) = pipe else { continue };
        let log = log.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            copy_to_log(pipe, stream, &log);
            let _ = done.send(());
        });
    }
    drop(done);

    let exit_code = match child.wait() {
        Ok(status) => host::exit_code(status),
        Err(_) => 255,
    };
    let finished_at = Timestamp::now();
    // What the process left behind in its group ends with it, as it would with a
    // container's pid namespace; that also closes the pipes it held.
    host::kill_group_blocking(pid, host::Signal::Kill);
    let deadline = Instant::now() + DRAIN;
    while drained.recv_timeout(deadline.saturating_duration_since(Instant::now())).is_ok() {}
    if let Ok(log) = log.lock() {
        let _ = log.sync_data();
    }
    match state::write_json(&dir.join(EXITED_FILE), &Exited::with_code(exit_code, finished_at)) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

/// Records that the process could not be started; returns the shim's exit code.
fn start_failed(dir: &Path, message: String) -> i32 {
    let _ = state::write_json(&dir.join(EXITED_FILE), &Exited::start_error(message, Timestamp::now()));
    1
}

fn open_log(path: &Path) -> io::Result<File> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

/// Copies one stream into the log until it closes. Records are written whole (and the
/// file is in append mode), so the two streams' records never interleave mid-line.
/// A failing write (a full disk) loses output but never stalls the process.
fn copy_to_log(mut pipe: impl Read, stream: LogStream, log: &Mutex<File>) {
    let mut splitter = LineSplitter::new(stream);
    let mut buf = vec![0u8; 32 * 1024];
    let write = |records: Vec<u8>| {
        if records.is_empty() {
            return;
        }
        if let Ok(mut log) = log.lock() {
            let _ = log.write_all(&records);
        }
    };
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => write(splitter.feed(Timestamp::now(), &buf[..n])),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    write(splitter.finish(Timestamp::now()));
}
