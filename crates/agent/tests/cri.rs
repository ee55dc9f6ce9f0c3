//! The CRI runtime against a real containerd: a private instance started the way
//! `skiff up` starts it, the CNI bridge the agent configures, and the images
//! `scripts/build-images.sh` builds. A pod gets an address, serves HTTP to the
//! host, runs commands, logs in CRI format, stops with a grace period, and is
//! OOM-killed past its memory limit.
//!
//! Needs root and containerd (CI installs both); without them the test says why
//! and passes without running.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use skiff_agent::runtime::containerd::{import_image, Containerd, ContainerdConfig};
use skiff_agent::runtime::cri::CriRuntime;
use skiff_agent::runtime::{
    cni, labels, ContainerConfig, PortMapping, Protocol, ContainerState, ContainerStatus, DnsConfig, Resources, Runtime, RuntimeError, SandboxConfig, SandboxState, Stream,
    StreamRequest,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PAUSE_IMAGE: &str = "skiff.local/pause:3.10";
const BUSYBOX_IMAGE: &str = "skiff.local/busybox:1.35";

/// Why this machine cannot run the test, if it cannot.
fn missing_prerequisite() -> Option<String> {
    if !Path::new("/usr/bin/containerd").exists() {
        return Some("/usr/bin/containerd is not installed".into());
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status.lines().find_map(|line| line.strip_prefix("Uid:")).and_then(|ids| ids.split_whitespace().next().map(str::to_string));
    if uid.as_deref() != Some("0") {
        return Some("containers need root".into());
    }
    None
}

/// The test's private world: containerd's data, the CNI config, the pod logs, the
/// images, and a bridge and pod CIDR of its own.
struct Node {
    dir: tempfile::TempDir,
    bridge: String,
    pod_cidr: String,
    gateway: IpAddr,
}

impl Node {
    fn new() -> Node {
        // Short, because containerd's socket lives under it.
        let dir = tempfile::Builder::new().prefix("skcri").tempdir_in("/tmp").unwrap();
        let pid = std::process::id();
        let subnet = 100 + pid % 100;
        Node {
            dir,
            bridge: format!("skt{pid}"),
            pod_cidr: format!("10.88.{subnet}.0/24"),
            gateway: format!("10.88.{subnet}.1").parse().unwrap(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn log_directory(&self, pod: &str) -> PathBuf {
        self.path(&format!("logs/default_{pod}_uid-{pod}"))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // The bridge is the one thing outside the temporary directory.
        let _ = std::process::Command::new("ip").args(["link", "del", &self.bridge]).stderr(std::process::Stdio::null()).status();
    }
}

fn sandbox(node: &Node, pod: &str) -> SandboxConfig {
    let uid = format!("uid-{pod}");
    SandboxConfig {
        pod_name: pod.into(),
        pod_namespace: "default".into(),
        pod_uid: uid.clone(),
        attempt: 0,
        hostname: pod.into(),
        log_directory: node.log_directory(pod),
        dns: Some(DnsConfig { servers: vec!["10.43.0.10".into()], searches: vec!["default.svc.cluster.local".into()], options: vec!["ndots:5".into()] }),
        labels: BTreeMap::from([
            (labels::POD_NAME.to_string(), pod.to_string()),
            (labels::POD_NAMESPACE.to_string(), "default".to_string()),
            (labels::POD_UID.to_string(), uid),
        ]),
        annotations: BTreeMap::from([("skiff.io/test".to_string(), "cri".to_string())]),
        ..Default::default()
    }
}

fn container(name: &str, command: &[&str]) -> ContainerConfig {
    ContainerConfig {
        name: name.into(),
        image: BUSYBOX_IMAGE.into(),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}/0.log").into(),
        labels: BTreeMap::from([(labels::CONTAINER_NAME.to_string(), name.to_string())]),
        annotations: BTreeMap::from([("skiff.io/restart-count".to_string(), "0".to_string())]),
        ..Default::default()
    }
}

async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn exited(runtime: &CriRuntime, id: &str, timeout: Duration) -> ContainerStatus {
    eventually("the container to exit", timeout, || async {
        let status = runtime.container_status(id).await.unwrap();
        (status.state == ContainerState::Exited).then_some(status)
    })
    .await
}

async fn sh(runtime: &CriRuntime, id: &str, script: &str) -> String {
    let output = runtime.exec_sync(id, &["sh".into(), "-c".into(), script.into()], Duration::from_secs(10)).await.unwrap();
    assert_eq!(output.exit_code, 0, "{script}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// One HTTP/1.0 GET from the host, the whole response as text.
async fn http_get(address: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut stream = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(address)).await??;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await??;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

/// Every line is `<RFC3339Nano> <stdout|stderr> <F|P> <content>`; returns the
/// contents of the stdout lines.
fn cri_log_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines()
        .map(|line| {
            let mut parts = line.splitn(4, ' ');
            let (time, stream, tag) = (parts.next().unwrap(), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            time.parse::<jiff::Timestamp>().unwrap_or_else(|e| panic!("bad timestamp in {line:?}: {e}"));
            assert!(matches!(stream, "stdout" | "stderr"), "bad stream in {line:?}");
            assert!(matches!(tag, "F" | "P"), "bad tag in {line:?}");
            parts.next().unwrap_or("").to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_run_on_a_private_containerd_with_network_logs_exec_and_oom_kills() {
    if let Some(reason) = missing_prerequisite() {
        eprintln!("skipping the CRI test: {reason}");
        return;
    }
    let node = Arc::new(Node::new());
    let cni_conf_dir = node.path("cni/net.d");
    cni::write_conflist(&cni_conf_dir, &node.bridge, std::slice::from_ref(&node.pod_cidr), &node.path("cni/ipam")).unwrap();

    let containerd = Containerd::start(ContainerdConfig {
        data_dir: node.path("data"),
        cni_bin_dir: "/usr/lib/cni".into(),
        cni_conf_dir,
        sandbox_image: PAUSE_IMAGE.into(),
    })
    .await
    .unwrap();
    let socket = containerd.socket().to_path_buf();
    assert!(containerd.pid().is_some());

    let runtime = Arc::new(CriRuntime::connect(&socket).await.unwrap());

    // Whatever happens in the scenario, the pods are removed and containerd
    // stopped, so that no shim, mount or network namespace outlives the test.
    let scenario = tokio::spawn(scenario(node.clone(), runtime.clone(), socket));
    let mut outcome = scenario.await;

    // A containerd that dies is started again, and the same client reconnects.
    if outcome.is_ok() {
        let before = containerd.pid().unwrap();
        let restarted = tokio::spawn(async move {
            let killed = tokio::process::Command::new("kill").args(["-KILL", &before.to_string()]).status().await.unwrap();
            assert!(killed.success());
        });
        outcome = restarted.await;
        if outcome.is_ok() {
            let deadline = Instant::now() + Duration::from_secs(20);
            let version = loop {
                if let (Some(pid), Ok(version)) = (containerd.pid(), runtime.version().await) {
                    if pid != before {
                        break Ok(version);
                    }
                }
                if Instant::now() > deadline {
                    break Err("containerd was not restarted within 20 s");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            outcome = tokio::spawn(async move { assert!(version.unwrap().starts_with("containerd://")) }).await;
        }
    }

    for sandbox in runtime.list_sandboxes().await.unwrap_or_default() {
        let _ = runtime.stop_sandbox(&sandbox.id).await;
        let _ = runtime.remove_sandbox(&sandbox.id).await;
    }
    let leftover = runtime.list_sandboxes().await.unwrap();
    let log = containerd.log_path().to_path_buf();
    containerd.stop().await;
    if let Err(error) = outcome {
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().filter(|line| !line.contains("level=info")).collect();
        eprintln!("containerd's log (warnings and errors):\n{}", lines[lines.len().saturating_sub(40)..].join("\n"));
        std::panic::resume_unwind(error.into_panic());
    }
    assert!(leftover.is_empty(), "sandboxes left after removal: {leftover:?}");
    assert!(CriRuntime::connect(&node.path("data/containerd/containerd.sock")).await.is_err(), "containerd still answers after stop");
}

async fn scenario(node: Arc<Node>, runtime: Arc<CriRuntime>, socket: PathBuf) {
    // --- images, built locally and imported ---
    let images = node.path("images");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-images.sh");
    let built = tokio::process::Command::new("bash").arg(&script).arg(&images).output().await.unwrap();
    assert!(built.status.success(), "build-images.sh failed: {}", String::from_utf8_lossy(&built.stderr));
    assert_eq!(import_image(&socket, &images.join("pause.tar")).await.unwrap(), vec![PAUSE_IMAGE]);
    assert_eq!(import_image(&socket, &images.join("busybox.tar")).await.unwrap(), vec![BUSYBOX_IMAGE]);

    let version = runtime.version().await.unwrap();
    assert!(version.starts_with("containerd://1."), "{version}");
    let image = runtime.image_status(BUSYBOX_IMAGE).await.unwrap().expect("busybox was imported");
    assert!(image.id.starts_with("sha256:"), "{image:?}");
    assert!(image.repo_tags.contains(&BUSYBOX_IMAGE.to_string()), "{image:?}");
    assert!(runtime.image_status("skiff.local/absent:1").await.unwrap().is_none());
    // A registry that refuses connections (on loopback: the test stays on this
    // machine), and the failure says which image.
    let absent = "127.0.0.1:9/skiff/absent:1";
    let pull = runtime.pull_image(absent, None).await.unwrap_err();
    assert!(matches!(&pull, RuntimeError::ImagePull { image, .. } if image == absent), "{pull:?}");

    // --- a sandbox on the bridge ---
    let mut web = sandbox(&node, "web");
    // A hostPort, reached on the host's loopback (portmap's SNAT makes that work).
    let host_port = 40000 + (std::process::id() % 1000) as u16;
    web.port_mappings = vec![PortMapping { protocol: Protocol::Tcp, container_port: 8080, host_port, host_ip: String::new() }];
    std::fs::create_dir_all(&web.log_directory).unwrap();
    let sandbox_id = runtime.run_sandbox(&web).await.unwrap();
    let status = runtime.sandbox_status(&sandbox_id).await.unwrap();
    assert_eq!(status.state, SandboxState::Ready);
    assert_eq!(status.labels[labels::POD_NAME], "web");
    assert_eq!(status.annotations["skiff.io/test"], "cri");
    let pod_ip = *status.ips.first().expect("the pod has an address");
    let IpAddr::V4(v4) = pod_ip else { panic!("expected IPv4, got {pod_ip}") };
    assert_eq!(node.pod_cidr, format!("{}.{}.{}.0/24", v4.octets()[0], v4.octets()[1], v4.octets()[2]));
    assert!(status.created_at.is_some());
    let listed = runtime.list_sandboxes().await.unwrap();
    assert!(listed.iter().any(|s| s.id == sandbox_id && s.ips == vec![pod_ip]), "{listed:?}");

    // --- a web server, reached from the host ---
    let mut httpd = container("web", &["sh", "-c", "echo serving; exec httpd -f -p 8080 -h /etc"]);
    httpd.env = vec![("GREETING".into(), "hello from skiff".into())];
    let web_id = runtime.create_container(&sandbox_id, &httpd, &web).await.unwrap();
    assert_eq!(runtime.container_status(&web_id).await.unwrap().state, ContainerState::Created);
    runtime.start_container(&web_id).await.unwrap();

    let address = SocketAddr::new(pod_ip, 8080);
    let response = eventually("the pod to serve HTTP", Duration::from_secs(20), || async { http_get(address, "/passwd").await.ok() }).await;
    assert!(response.starts_with("HTTP/1.") && response.contains(" 200 "), "{response}");
    assert!(response.contains("root:x:0:0:"), "{response}");
    let via_host_port = http_get(SocketAddr::from(([127, 0, 0, 1], host_port)), "/group").await.unwrap();
    assert!(via_host_port.contains(" 200 ") && via_host_port.contains("root:x:0:"), "{via_host_port}");

    let status = runtime.container_status(&web_id).await.unwrap();
    assert_eq!(status.state, ContainerState::Running);
    assert_eq!((status.name.as_str(), status.sandbox_id.as_str()), ("web", sandbox_id.as_str()));
    assert_eq!(status.image, BUSYBOX_IMAGE);
    assert!(status.image_ref.starts_with("sha256:"), "{status:?}");
    assert!(status.started_at.is_some() && status.finished_at.is_none());
    assert_eq!(status.labels[labels::CONTAINER_NAME], "web");
    assert_eq!(status.annotations["skiff.io/restart-count"], "0");
    assert_eq!(status.log_path, web.log_directory.join("web/0.log"));

    // --- commands in the container ---
    let hi = runtime.exec_sync(&web_id, &["echo".into(), "hi".into()], Duration::from_secs(5)).await.unwrap();
    assert_eq!((hi.exit_code, hi.stdout.as_slice(), hi.stderr.as_slice()), (0, &b"hi\n"[..], &b""[..]));
    let failed = runtime.exec_sync(&web_id, &["sh".into(), "-c".into(), "echo oops >&2; exit 3".into()], Duration::from_secs(5)).await.unwrap();
    assert_eq!((failed.exit_code, failed.stderr.as_slice()), (3, &b"oops\n"[..]));
    let slow = runtime.exec_sync(&web_id, &["sleep".into(), "30".into()], Duration::from_secs(1)).await;
    assert!(matches!(slow, Err(RuntimeError::Timeout(_))), "{slow:?}");

    assert_eq!(sh(&runtime, &web_id, "echo $GREETING").await, "hello from skiff\n");
    assert_eq!(sh(&runtime, &web_id, "hostname").await, "web\n");
    let resolv = sh(&runtime, &web_id, "cat /etc/resolv.conf").await;
    assert!(resolv.contains("nameserver 10.43.0.10") && resolv.contains("search default.svc.cluster.local") && resolv.contains("ndots:5"), "{resolv}");
    // Loopback is up in the pod, and the default route leaves through the bridge.
    let local = sh(&runtime, &web_id, "wget -q -O - http://127.0.0.1:8080/group").await;
    assert!(local.contains("root:x:0:"), "{local}");
    let routes = sh(&runtime, &web_id, "ip route").await;
    assert!(routes.contains(&format!("default via {}", node.gateway)), "{routes}");

    // --- a second container that stops cleanly on SIGTERM ---
    let graceful = container("graceful", &["sh", "-c", "trap 'echo bye; exit 0' TERM; echo ready; while :; do sleep 1 & wait $!; done"]);
    let graceful_id = runtime.create_container(&sandbox_id, &graceful, &web).await.unwrap();
    runtime.start_container(&graceful_id).await.unwrap();
    let in_pod = runtime.list_containers(Some(&sandbox_id)).await.unwrap();
    let mut names: Vec<_> = in_pod.iter().map(|c| c.name.as_str()).collect();
    names.sort();
    assert_eq!(names, vec!["graceful", "web"]);
    assert!(in_pod.iter().all(|c| c.sandbox_id == sandbox_id));
    let log = web.log_directory.join("graceful/0.log");
    eventually("the ready line", Duration::from_secs(10), || async { log.exists().then(|| cri_log_lines(&log)).filter(|lines| lines.contains(&"ready".to_string())) }).await;

    let started = Instant::now();
    runtime.stop_container(&graceful_id, Duration::from_secs(20)).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "the trap should end it long before the grace period");
    let status = exited(&runtime, &graceful_id, Duration::from_secs(5)).await;
    assert_eq!((status.exit_code, status.reason.as_str()), (0, "Completed"));
    assert!(status.finished_at.is_some());
    assert_eq!(cri_log_lines(&log), vec!["ready", "bye"]);

    // httpd ignores SIGTERM as PID 1: it is killed when the grace period ends.
    let started = Instant::now();
    runtime.stop_container(&web_id, Duration::from_millis(1500)).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1), "stopped after {:?}", started.elapsed());
    let status = exited(&runtime, &web_id, Duration::from_secs(5)).await;
    assert_eq!((status.exit_code, status.reason.as_str()), (137, "Error"));
    assert!(http_get(address, "/passwd").await.is_err(), "the server is gone");
    assert_eq!(cri_log_lines(&status.log_path).first().map(String::as_str), Some("serving"));
    // Stopping what is stopped succeeds.
    runtime.stop_container(&web_id, Duration::from_secs(1)).await.unwrap();

    // --- streaming sessions are served by containerd's streaming server ---
    let hog_sandbox = sandbox(&node, "hog");
    std::fs::create_dir_all(&hog_sandbox.log_directory).unwrap();
    let hog_sandbox_id = runtime.run_sandbox(&hog_sandbox).await.unwrap();
    let mut hog = container("hog", &["sh", "-c", "echo allocating; sleep 1; exec dd if=/dev/zero of=/dev/null bs=64M count=1"]);
    hog.resources = Resources { memory_limit_bytes: 16 << 20, ..Default::default() };
    let hog_id = runtime.create_container(&hog_sandbox_id, &hog, &hog_sandbox).await.unwrap();
    runtime.start_container(&hog_id).await.unwrap();
    let request = StreamRequest { command: vec!["sh".into()], stdin: true, stdout: true, stderr: true, tty: false };
    for stream in [runtime.exec(&hog_id, &request).await, runtime.attach(&hog_id, &request).await, runtime.port_forward(&hog_sandbox_id).await] {
        match stream.unwrap() {
            Stream::Remote(url) => assert!(url.starts_with("http://127.0.0.1:"), "{url}"),
            other => panic!("expected a remote stream, got {other:?}"),
        }
    }

    // --- past its memory limit, a container is OOM-killed ---
    let status = exited(&runtime, &hog_id, Duration::from_secs(30)).await;
    assert_eq!(status.reason, "OOMKilled", "{status:?}");
    assert_eq!(status.exit_code, 137);
    let lines = cri_log_lines(&status.log_path);
    assert_eq!(lines, vec!["allocating"]);

    // --- removal, idempotent ---
    for id in [&web_id, &graceful_id] {
        runtime.remove_container(id).await.unwrap();
        runtime.remove_container(id).await.unwrap();
        let gone = runtime.container_status(id).await;
        assert!(matches!(gone, Err(RuntimeError::NotFound(_))), "{gone:?}");
    }
    for id in [&sandbox_id, &hog_sandbox_id] {
        runtime.stop_sandbox(id).await.unwrap();
        assert_eq!(runtime.sandbox_status(id).await.unwrap().state, SandboxState::NotReady);
        runtime.remove_sandbox(id).await.unwrap();
        runtime.stop_sandbox(id).await.unwrap();
        runtime.remove_sandbox(id).await.unwrap();
        let gone = runtime.sandbox_status(id).await;
        assert!(matches!(gone, Err(RuntimeError::NotFound(_))), "{gone:?}");
    }
    assert!(runtime.list_containers(None).await.unwrap().is_empty());
    assert!(runtime.list_sandboxes().await.unwrap().is_empty());
}

#[tokio::test]
async fn dropping_the_handle_kills_containerd_and_a_running_one_is_adopted() {
    if let Some(reason) = missing_prerequisite() {
        eprintln!("skipping the containerd supervision test: {reason}");
        return;
    }
    let dir = tempfile::Builder::new().prefix("skctd").tempdir_in("/tmp").unwrap();
    let config = ContainerdConfig {
        data_dir: dir.path().to_path_buf(),
        cni_bin_dir: "/usr/lib/cni".into(),
        cni_conf_dir: dir.path().join("net.d"),
        sandbox_image: PAUSE_IMAGE.into(),
    };
    let first = Containerd::start(config.clone()).await.unwrap();
    let pid = first.pid().expect("started by this handle");
    let written = std::fs::read_to_string(dir.path().join("containerd/config.toml")).unwrap();
    assert!(written.contains(&format!("address = \"{}\"", first.socket().display())), "{written}");

    // The socket already answers: the second handle uses that containerd.
    let second = Containerd::start(config).await.unwrap();
    assert_eq!(second.pid(), None);
    assert_eq!(second.socket(), first.socket());
    drop(second);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(Path::new(&format!("/proc/{pid}")).exists(), "dropping an adopted containerd must leave it running");

    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "containerd {pid} still runs after its handle was dropped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
