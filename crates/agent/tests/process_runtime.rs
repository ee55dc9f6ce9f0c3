//! The process runtime against real host processes and its real supervisor binary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use skiff_agent::runtime::process::ProcessRuntime;
use skiff_agent::runtime::{
    labels, ContainerConfig, ContainerState, ContainerStatus, Runtime, RuntimeError, SandboxConfig, SandboxState, Stream,
    StreamRequest,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Node {
    dir: tempfile::TempDir,
    runtime: ProcessRuntime,
}

impl Node {
    fn new() -> Node {
        let dir = tempfile::tempdir().expect("temporary directory");
        let runtime = runtime_at(dir.path());
        Node { dir, runtime }
    }

    fn sandbox_config(&self, name: &str) -> SandboxConfig {
        let uid = format!("uid-{name}");
        SandboxConfig {
            pod_name: name.to_string(),
            pod_namespace: "default".to_string(),
            pod_uid: uid.clone(),
            hostname: name.to_string(),
            log_directory: self.dir.path().join("logs").join(format!("default_{name}_{uid}")),
            labels: BTreeMap::from([
                (labels::POD_NAME.to_string(), name.to_string()),
                (labels::POD_NAMESPACE.to_string(), "default".to_string()),
                (labels::POD_UID.to_string(), uid),
            ]),
            annotations: BTreeMap::from([("skiff.io/test".to_string(), "yes".to_string())]),
            host_network: true,
            runtime_handler: "process".to_string(),
            ..SandboxConfig::default()
        }
    }

    /// A sandbox and a started container running `sh -c <script>`.
    async fn run(&self, pod: &str, script: &str) -> (String, String, SandboxConfig) {
        let sandbox = self.sandbox_config(pod);
        let sandbox_id = self.runtime.run_sandbox(&sandbox).await.expect("run sandbox");
        let id = self.runtime.create_container(&sandbox_id, &shell("main", script), &sandbox).await.expect("create");
        self.runtime.start_container(&id).await.expect("start");
        (sandbox_id, id, sandbox)
    }
}

fn runtime_at(dir: &Path) -> ProcessRuntime {
    ProcessRuntime::new(dir.join("state"), vec![env!("CARGO_BIN_EXE_skiff-process-shim").to_string()]).expect("runtime")
}

fn shell(name: &str, script: &str) -> ContainerConfig {
    ContainerConfig {
        name: name.to_string(),
        image: "skiff.local/none:1".to_string(),
        command: vec!["sh".to_string(), "-c".to_string()],
        args: vec![script.to_string()],
        log_path: PathBuf::from(name).join("0.log"),
        labels: BTreeMap::from([(labels::CONTAINER_NAME.to_string(), name.to_string())]),
        annotations: BTreeMap::from([("io.kubernetes.container.restartCount".to_string(), "0".to_string())]),
        ..ContainerConfig::default()
    }
}

/// Polls the container's status until `done` holds (or fails after 15 s).
async fn wait_for(runtime: &ProcessRuntime, id: &str, what: &str, done: impl Fn(&ContainerStatus) -> bool) -> ContainerStatus {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = runtime.container_status(id).await.expect("status");
        if done(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "container never {what}: {status:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn wait_exited(runtime: &ProcessRuntime, id: &str) -> ContainerStatus {
    wait_for(runtime, id, "exited", |s| s.state == ContainerState::Exited).await
}

/// Waits until the log file has at least `n` lines, and returns them.
async fn log_lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(Instant::now() < deadline, "the log {} never had {n} lines: {lines:?}", path.display());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A CRI log line: (time, stream, tag, content).
fn cri_fields(line: &str) -> (jiff::Timestamp, &str, &str, &str) {
    let mut parts = line.splitn(4, ' ');
    let time = parts.next().unwrap().parse().unwrap_or_else(|e| panic!("{line:?} starts with no RFC 3339 time: {e}"));
    (time, parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap_or(""))
}

#[tokio::test]
async fn a_container_runs_logs_both_streams_in_cri_format_and_stops_on_sigterm() {
    let node = Node::new();
    let (sandbox_id, id, sandbox) = node.run("web", "echo hello; echo err >&2; sleep 30").await;

    let status = node.runtime.container_status(&id).await.unwrap();
    assert_eq!(status.state, ContainerState::Running);
    assert_eq!((status.name.as_str(), status.sandbox_id.as_str()), ("main", sandbox_id.as_str()));
    assert!(status.started_at.is_some() && status.finished_at.is_none());
    assert_eq!(status.labels[labels::CONTAINER_NAME], "main");
    assert_eq!(status.log_path, sandbox.log_directory.join("main/0.log"));

    let mut lines = log_lines(&status.log_path, 2).await;
    lines.sort_by_key(|l| cri_fields(l).1.to_string());
    let stderr = cri_fields(&lines[0]);
    let stdout = cri_fields(&lines[1]);
    assert_eq!((stdout.1, stdout.2, stdout.3), ("stdout", "F", "hello"));
    assert_eq!((stderr.1, stderr.2, stderr.3), ("stderr", "F", "err"));

    let out = node.runtime.exec_sync(&id, &["echo".to_string(), "hi".to_string()], Duration::from_secs(5)).await.unwrap();
    assert_eq!((out.exit_code, out.stdout.as_slice(), out.stderr.as_slice()), (0, b"hi\n".as_slice(), b"".as_slice()));

    let begun = Instant::now();
    node.runtime.stop_container(&id, Duration::from_secs(10)).await.unwrap();
    assert!(begun.elapsed() < Duration::from_secs(5), "sh ends on SIGTERM at once, took {:?}", begun.elapsed());
    let status = node.runtime.container_status(&id).await.unwrap();
    assert_eq!(status.state, ContainerState::Exited);
    assert_eq!((status.exit_code, status.reason.as_str()), (143, "Error"));
    assert!(status.finished_at.unwrap() >= status.started_at.unwrap());

    // Stopping again is fine; removing keeps the log, which is the kubelet's.
    node.runtime.stop_container(&id, Duration::from_secs(1)).await.unwrap();
    node.runtime.remove_container(&id).await.unwrap();
    node.runtime.remove_container(&id).await.unwrap();
    assert!(matches!(node.runtime.container_status(&id).await, Err(RuntimeError::NotFound(_))));
    assert!(status.log_path.exists());
}

#[tokio::test]
async fn exit_codes_are_recorded_with_error_or_completed() {
    let node = Node::new();
    let (_, failing, _) = node.run("failing", "exit 3").await;
    let (_, done, _) = node.run("done", "echo bye").await;

    let failing = wait_exited(&node.runtime, &failing).await;
    assert_eq!((failing.exit_code, failing.reason.as_str()), (3, "Error"));
    let done = wait_exited(&node.runtime, &done).await;
    assert_eq!((done.exit_code, done.reason.as_str()), (0, "Completed"));
    assert!(done.finished_at.is_some());
    // The exit is recorded only once the output is in the log.
    let log = std::fs::read_to_string(&done.log_path).unwrap();
    assert!(log.ends_with(" stdout F bye\n"), "{log:?}");
}

#[tokio::test]
async fn a_process_that_ignores_sigterm_is_killed_after_the_grace_period() {
    let node = Node::new();
    let (_, id, _) = node.run("stubborn", "trap '' TERM; echo ready; sleep 30").await;
    let log = node.runtime.container_status(&id).await.unwrap().log_path;
    log_lines(&log, 1).await;

    let begun = Instant::now();
    node.runtime.stop_container(&id, Duration::from_secs(1)).await.unwrap();
    let took = begun.elapsed();
    assert!(took >= Duration::from_secs(1) && took < Duration::from_secs(8), "took {took:?}");
    let status = node.runtime.container_status(&id).await.unwrap();
    assert_eq!((status.state, status.exit_code, status.reason.as_str()), (ContainerState::Exited, 137, "Error"));
}

#[tokio::test]
async fn a_restarted_runtime_finds_running_containers_and_exits_that_happened_meanwhile() {
    let node = Node::new();
    let (sandbox_id, running, _) = node.run("long", "sleep 30").await;
    let (_, ending, _) = node.run("short", "sleep 0.3; exit 7").await;
    drop(node.runtime);
    tokio::time::sleep(Duration::from_millis(800)).await;

    let runtime = runtime_at(node.dir.path());
    let sandboxes = runtime.list_sandboxes().await.unwrap();
    assert_eq!(sandboxes.len(), 2);
    let sandbox = sandboxes.iter().find(|s| s.id == sandbox_id).expect("the sandbox");
    assert_eq!(sandbox.state, SandboxState::Ready);
    assert!(sandbox.ips.is_empty());
    assert_eq!(sandbox.labels[labels::POD_NAME], "long");
    assert_eq!(sandbox.annotations["skiff.io/test"], "yes");

    let containers = runtime.list_containers(None).await.unwrap();
    assert_eq!(containers.len(), 2);
    let long = containers.iter().find(|c| c.id == running).expect("the running container");
    assert_eq!(long.state, ContainerState::Running);
    assert_eq!(long.annotations["io.kubernetes.container.restartCount"], "0");
    let short = containers.iter().find(|c| c.id == ending).expect("the ended container");
    assert_eq!((short.state, short.exit_code, short.reason.as_str()), (ContainerState::Exited, 7, "Error"));
    assert_eq!(runtime.list_containers(Some(&sandbox_id)).await.unwrap().len(), 1);

    runtime.stop_container(&running, Duration::from_secs(5)).await.unwrap();
    let status = runtime.container_status(&running).await.unwrap();
    assert_eq!((status.state, status.exit_code), (ContainerState::Exited, 143));
}

#[tokio::test]
async fn exec_streams_stdin_to_the_process_and_its_output_back() {
    let node = Node::new();
    let (_, id, _) = node.run("exec", "sleep 30").await;

    let request = StreamRequest {
        command: vec!["sh".to_string(), "-c".to_string(), "cat; echo done >&2; exit 4".to_string()],
        stdin: true,
        stdout: true,
        stderr: true,
        tty: false,
    };
    let Stream::Local(mut session) = node.runtime.exec(&id, &request).await.unwrap() else { panic!("a local stream") };
    let mut stdin = session.stdin.take().expect("stdin");
    stdin.write_all(b"ping\n").await.unwrap();
    drop(stdin);
    let mut stdout = String::new();
    session.stdout.take().expect("stdout").read_to_string(&mut stdout).await.unwrap();
    let mut stderr = String::new();
    session.stderr.take().expect("stderr").read_to_string(&mut stderr).await.unwrap();
    assert_eq!((stdout.as_str(), stderr.as_str()), ("ping\n", "done\n"));
    assert_eq!(session.exit.await.unwrap(), 4);

    // A terminal request gets one output stream.
    let request = StreamRequest { tty: true, stdin: false, ..request };
    let request = StreamRequest { command: vec!["sh".into(), "-c".into(), "echo out; echo err >&2".into()], ..request };
    let Stream::Local(mut session) = node.runtime.exec(&id, &request).await.unwrap() else { panic!("a local stream") };
    assert!(session.stderr.is_none() && session.stdin.is_none());
    let mut out = String::new();
    session.stdout.take().unwrap().read_to_string(&mut out).await.unwrap();
    assert_eq!(out, "out\nerr\n");
    assert_eq!(session.exit.await.unwrap(), 0);

    node.runtime.stop_container(&id, Duration::ZERO).await.unwrap();
    assert_eq!(node.runtime.container_status(&id).await.unwrap().exit_code, 137);
}

#[tokio::test]
async fn attach_follows_the_output_until_the_container_exits() {
    let node = Node::new();
    let (_, id, _) = node.run("attach", "echo before; while [ ! -e go ]; do sleep 0.05; done; echo one; echo two >&2; exit 2").await;
    let status = node.runtime.container_status(&id).await.unwrap();
    log_lines(&status.log_path, 1).await;

    let request = StreamRequest { stdout: true, stderr: true, ..StreamRequest::default() };
    let Stream::Local(mut session) = node.runtime.attach(&id, &request).await.unwrap() else { panic!("a local stream") };
    assert!(session.stdin.is_none());
    // The working directory defaults to the sandbox's directory.
    let sandbox_dir = node.dir.path().join("state/sandboxes").join(&status.sandbox_id);
    std::fs::write(sandbox_dir.join("go"), b"").unwrap();

    let mut stdout = String::new();
    session.stdout.take().unwrap().read_to_string(&mut stdout).await.unwrap();
    let mut stderr = String::new();
    session.stderr.take().unwrap().read_to_string(&mut stderr).await.unwrap();
    // Output from before the attach is not repeated.
    assert_eq!((stdout.as_str(), stderr.as_str()), ("one\n", "two\n"));
    assert_eq!(session.exit.await.unwrap(), 2);
}

#[tokio::test]
async fn the_environment_and_working_directory_are_the_containers() {
    let node = Node::new();
    let sandbox = node.sandbox_config("env");
    let sandbox_id = node.runtime.run_sandbox(&sandbox).await.unwrap();
    let work = node.dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let config = ContainerConfig {
        env: vec![("GREETING".to_string(), "hello there".to_string())],
        working_dir: Some(work.display().to_string()),
        ..shell("main", "echo \"$GREETING\"; pwd; echo \"$PATH\"; sleep 30")
    };
    let id = node.runtime.create_container(&sandbox_id, &config, &sandbox).await.unwrap();
    node.runtime.start_container(&id).await.unwrap();

    let log = node.runtime.container_status(&id).await.unwrap().log_path;
    let lines = log_lines(&log, 3).await;
    let contents: Vec<&str> = lines.iter().map(|l| cri_fields(l).3).collect();
    assert_eq!(contents[..2], ["hello there", work.to_str().unwrap()]);
    assert!(contents[2].contains("/usr/bin"), "{}", contents[2]);

    let out = node.runtime.exec_sync(&id, &["sh".into(), "-c".into(), "echo $GREETING; pwd".into()], Duration::ZERO).await.unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), format!("hello there\n{}\n", work.display()));
    node.runtime.stop_container(&id, Duration::from_secs(1)).await.unwrap();
}

#[tokio::test]
async fn exec_sync_past_its_timeout_is_killed_and_times_out() {
    let node = Node::new();
    let (_, id, _) = node.run("probe", "sleep 30").await;
    let begun = Instant::now();
    let result = node.runtime.exec_sync(&id, &["sh".into(), "-c".into(), "sleep 20; echo late".into()], Duration::from_millis(300)).await;
    assert!(matches!(result, Err(RuntimeError::Timeout(_))), "{result:?}");
    assert!(begun.elapsed() < Duration::from_secs(5));

    let out = node.runtime.exec_sync(&id, &["sh".into(), "-c".into(), "exit 9".into()], Duration::from_secs(5)).await.unwrap();
    assert_eq!(out.exit_code, 9);
    node.runtime.stop_container(&id, Duration::ZERO).await.unwrap();
    // A stopped container has nothing to exec in.
    let result = node.runtime.exec_sync(&id, &["true".into()], Duration::from_secs(5)).await;
    assert!(matches!(result, Err(RuntimeError::Failed(_))), "{result:?}");
}

#[tokio::test]
async fn a_container_without_a_command_is_refused_and_one_that_cannot_start_is_a_start_error() {
    let node = Node::new();
    let sandbox = node.sandbox_config("broken");
    let sandbox_id = node.runtime.run_sandbox(&sandbox).await.unwrap();

    let no_command = ContainerConfig { command: Vec::new(), args: Vec::new(), ..shell("main", "") };
    match node.runtime.create_container(&sandbox_id, &no_command, &sandbox).await {
        Err(RuntimeError::Failed(message)) => assert!(message.contains("needs a command"), "{message}"),
        other => panic!("expected a failure, got {other:?}"),
    }
    // Only args (`kubectl run x -- cmd`): they are the command.
    let args_only = ContainerConfig { command: Vec::new(), args: vec!["sh".into(), "-c".into(), "exit 5".into()], ..shell("main", "") };
    let id = node.runtime.create_container(&sandbox_id, &args_only, &sandbox).await.unwrap();
    node.runtime.start_container(&id).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = node.runtime.container_status(&id).await.unwrap();
        if status.state == ContainerState::Exited {
            assert_eq!(status.exit_code, 5);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the args-only container did not run: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let missing = ContainerConfig { command: vec!["/nonexistent/program".into()], args: Vec::new(), ..shell("main", "") };
    let id = node.runtime.create_container(&sandbox_id, &missing, &sandbox).await.unwrap();
    assert_eq!(node.runtime.container_status(&id).await.unwrap().state, ContainerState::Created);
    let result = node.runtime.start_container(&id).await;
    assert!(matches!(&result, Err(RuntimeError::Failed(m)) if m.contains("/nonexistent/program")), "{result:?}");
    let status = node.runtime.container_status(&id).await.unwrap();
    assert_eq!((status.state, status.exit_code, status.reason.as_str()), (ContainerState::Exited, 128, "StartError"));
    assert!(status.message.contains("No such file"), "{}", status.message);

    assert!(matches!(node.runtime.create_container("nope", &shell("x", "true"), &sandbox).await, Err(RuntimeError::NotFound(_))));
}

#[tokio::test]
async fn stopping_a_sandbox_kills_its_containers_and_removing_it_removes_them() {
    let node = Node::new();
    let (sandbox_id, id, sandbox) = node.run("pod", "trap '' TERM; sleep 30").await;
    let second = node.runtime.create_container(&sandbox_id, &shell("side", "sleep 30"), &sandbox).await.unwrap();
    node.runtime.start_container(&second).await.unwrap();

    let begun = Instant::now();
    node.runtime.stop_sandbox(&sandbox_id).await.unwrap();
    assert!(begun.elapsed() < Duration::from_secs(5));
    assert_eq!(node.runtime.sandbox_status(&sandbox_id).await.unwrap().state, SandboxState::NotReady);
    for id in [&id, &second] {
        let status = node.runtime.container_status(id).await.unwrap();
        assert_eq!((status.state, status.exit_code), (ContainerState::Exited, 137));
    }

    node.runtime.remove_sandbox(&sandbox_id).await.unwrap();
    assert!(node.runtime.list_containers(None).await.unwrap().is_empty());
    assert!(node.runtime.list_sandboxes().await.unwrap().is_empty());
    assert!(matches!(node.runtime.sandbox_status(&sandbox_id).await, Err(RuntimeError::NotFound(_))));
    // Idempotent, as CRI wants.
    node.runtime.stop_sandbox(&sandbox_id).await.unwrap();
    node.runtime.remove_sandbox(&sandbox_id).await.unwrap();
}

#[tokio::test]
async fn images_are_always_present_and_port_forward_goes_to_the_host() {
    let node = Node::new();
    assert_eq!(node.runtime.handler(), "process");
    assert!(node.runtime.version().await.unwrap().starts_with("process://"));
    let image = node.runtime.image_status("anything:latest").await.unwrap().expect("an image");
    assert_eq!(image.repo_tags, vec!["anything:latest".to_string()]);
    assert_eq!(node.runtime.pull_image("anything:latest", None).await.unwrap(), image.id);

    let sandbox_id = node.runtime.run_sandbox(&node.sandbox_config("pf")).await.unwrap();
    match node.runtime.port_forward(&sandbox_id).await.unwrap() {
        Stream::Direct(ip) => assert!(ip.is_loopback()),
        other => panic!("expected a direct stream, got {other:?}"),
    }
}

/// The supervisor's record of the container's start (the runtime's on-disk layout).
fn started_record(node: &Node, id: &str) -> serde_json::Value {
    let path = node.dir.path().join("state/containers").join(id).join("started.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Whether any live (not zombie) process is in the process group `pgid`.
fn group_has_live_members(pgid: u64) -> bool {
    std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()).any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { return false };
        let Some(close) = stat.rfind(')') else { return false };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string()
    })
}

fn kill(pid: u64, signal: &str) {
    let status = std::process::Command::new("kill").args(["-s", signal, &pid.to_string()]).status().unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn a_container_whose_supervisor_died_can_still_be_stopped_and_a_lost_exit_is_reported() {
    let node = Node::new();
    let (_, orphan, _) = node.run("orphan", "sleep 30").await;
    let (_, lost, _) = node.run("lost", "sleep 30").await;

    // Without its supervisor the process still runs, and the runtime stops it itself.
    kill(started_record(&node, &orphan)["shim_pid"].as_u64().unwrap(), "KILL");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(node.runtime.container_status(&orphan).await.unwrap().state, ContainerState::Running);
    node.runtime.stop_container(&orphan, Duration::from_secs(2)).await.unwrap();
    let status = node.runtime.container_status(&orphan).await.unwrap();
    assert_eq!((status.state, status.exit_code), (ContainerState::Exited, 143));
    assert!(!group_has_live_members(started_record(&node, &orphan)["pid"].as_u64().unwrap()));

    // With both gone, nobody saw the exit code.
    let started = started_record(&node, &lost);
    let pid = started["pid"].as_u64().unwrap();
    kill(started["shim_pid"].as_u64().unwrap(), "KILL");
    kill(pid, "KILL");
    assert!(group_has_live_members(pid), "sh's sleep outlives sh");
    let status = wait_exited(&node.runtime, &lost).await;
    assert!(!group_has_live_members(pid), "what was left of the container is killed");
    assert_eq!((status.exit_code, status.reason.as_str()), (255, "Error"));
    assert!(status.message.contains("exit code is unknown"), "{}", status.message);
    // The verdict is recorded, so it does not change on the next look.
    let again = node.runtime.container_status(&lost).await.unwrap();
    assert_eq!(again.finished_at, status.finished_at);
}
