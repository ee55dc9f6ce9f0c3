//! Test support: a real `skiff server` process on a free port, simulated nodes
//! from `skiff agent --runtime sim` next to it, and real kubectl.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A `skiff server` child process with its own data directory. Killed on drop.
pub struct TestServer {
    pub child: Child,
    pub addr: String,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts the server binary on 127.0.0.1:0 and waits for its "listening" line.
    pub fn start() -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir)
    }

    pub fn start_in(dir: tempfile::TempDir) -> TestServer {
        Self::start_with(dir, &[])
    }

    /// Starts the server with extra flags.
    pub fn start_with(dir: tempfile::TempDir, extra: &[&str]) -> TestServer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(["server", "--data-dir"])
            .arg(dir.path())
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .env("SKIFF_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting skiff server");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            match lines.next() {
                Some(Ok(l)) if l.starts_with("listening ") => break l["listening ".len()..].trim().to_string(),
                Some(Ok(_)) => continue,
                _ => panic!("skiff server exited before listening"),
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        TestServer { child, addr, dir }
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig.yaml")
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pki/admin.token")).unwrap().trim().to_string()
    }

    pub fn ca(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("pki/ca.crt")).unwrap()
    }

    /// Runs kubectl with this server's kubeconfig.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_stdin(args, None)
    }

    /// The server's address as a URL.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// A kubectl command with this server's kubeconfig, not yet started; for
    /// commands that run in the background, such as `get -w`.
    pub fn kubectl_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.args(args).env("KUBECONFIG", self.kubeconfig()).env("HOME", self.dir.path()).env_remove("KUBECTL_EXTERNAL_DIFF");
        cmd
    }

    pub fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = self.kubectl_command(args);
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("running kubectl");
        if let Some(input) = stdin {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        }
        let out = wait_with_timeout(child, Duration::from_secs(60));
        out
    }

    /// Runs kubectl, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        succeeded(args, self.kubectl(args))
    }

    /// Runs kubectl with stdin, asserts success, returns stdout.
    pub fn ok_stdin(&self, args: &[&str], stdin: &str) -> String {
        succeeded(args, self.kubectl_stdin(args, Some(stdin)))
    }

    /// Runs kubectl, asserts failure, returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        failed(args, self.kubectl(args))
    }

    pub fn fails_stdin(&self, args: &[&str], stdin: &str) -> String {
        failed(args, self.kubectl_stdin(args, Some(stdin)))
    }

    /// Runs kubectl `-o json` and parses the output.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a: Vec<&str> = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).expect("kubectl printed JSON")
    }

    /// `kubectl get <what> -o json`, or `None` where kubectl fails (not found).
    pub fn get(&self, what: &[&str]) -> Option<Value> {
        let mut args = vec!["get"];
        args.extend_from_slice(what);
        args.extend(["-o", "json"]);
        let out = self.kubectl(&args);
        out.status.success().then(|| serde_json::from_slice(&out.stdout).unwrap())
    }

    /// The `items` of a list that kubectl `-o json` prints for `args`.
    pub fn items(&self, args: &[&str]) -> Vec<Value> {
        self.json(args)["items"].as_array().cloned().unwrap_or_default()
    }

    /// `reason message` of every event about the object called `name`.
    pub fn event_messages(&self, name: &str) -> Vec<String> {
        self.items(&["get", "events", "--field-selector", &format!("involvedObject.name={name}")])
            .iter()
            .map(|e| format!("{} {}", e["reason"].as_str().unwrap_or_default(), e["message"].as_str().unwrap_or_default()))
            .collect()
    }

    /// Waits until the cluster has exactly `n` nodes, all Ready; returns them.
    pub fn wait_for_ready_nodes(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let mut nodes = Vec::new();
        self.eventually(&format!("{n} Ready nodes"), timeout, || {
            nodes = self.get(&["nodes"]).map(|l| l["items"].as_array().cloned().unwrap_or_default()).unwrap_or_default();
            nodes.len() == n && nodes.iter().all(is_ready)
        });
        nodes
    }

    /// An HTTPS client builder that trusts this server's CA (and no other).
    pub fn https(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder().tls_built_in_root_certs(false).add_root_certificate(reqwest::Certificate::from_pem(&self.ca()).unwrap())
    }

    /// A skiff API client for this server alone, with the admin token.
    pub fn client(&self, timeout: Duration) -> skiff_client::Client {
        skiff_client::Client::new(skiff_client::ClientConfig {
            servers: vec![self.url()],
            token: self.token(),
            ca_pem: String::from_utf8(self.ca()).unwrap(),
            timeout,
        })
        .expect("client")
    }

    /// Polls until `f` returns true or the timeout passes.
    pub fn eventually(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("timed out waiting for {what}");
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the server with SIGKILL (by PID) and returns its data directory.
    pub fn kill(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        dir
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `skiff agent --runtime sim` child process next to a [`TestServer`], with
/// its own state directory. Killed (by PID) on drop.
pub struct SimAgent {
    child: Child,
    _state: tempfile::TempDir,
}

impl SimAgent {
    /// Starts an agent whose node is `name` (with `--nodes N`, the nodes are
    /// `name-0` … `name-{N-1}`), with extra agent flags.
    pub fn start(server: &TestServer, name: &str, extra: &[&str]) -> SimAgent {
        let state = tempfile::tempdir().expect("tempdir");
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(["agent", "--server", &server.url(), "--token-file"])
            .arg(server.data_dir().join("node-token"))
            .arg("--data-dir")
            .arg(state.path())
            .args(["--runtime", "sim", "--node-name", name])
            .args(extra)
            .env("SKIFF_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting skiff agent");
        SimAgent { child, _state: state }
    }

    /// SIGKILL by PID, as a crash would: the nodes stop heartbeating.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SimAgent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The condition of type `type_` in an object's `status.conditions`.
pub fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_)
}

/// Whether a pod or node has the condition `Ready` with status `True`.
pub fn is_ready(obj: &Value) -> bool {
    condition(obj, "Ready").is_some_and(|c| c["status"] == "True")
}

/// One pod as a watch event showed it.
#[derive(Debug, Clone)]
pub struct PodEvent {
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub kind: String,
    pub name: String,
    pub uid: String,
    pub phase: String,
    pub ready: bool,
    /// Whether the pod has a deletion timestamp.
    pub deleting: bool,
    /// The image of the first container.
    pub image: String,
    /// The name of the controller that owns the pod, or empty.
    pub owner: String,
}

impl PodEvent {
    fn from_event(event: &Value) -> PodEvent {
        let obj = &event["object"];
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let owner = obj["metadata"]["ownerReferences"].as_array().and_then(|rs| rs.iter().find(|r| r["controller"] == true)).map(|r| text(&r["name"]));
        PodEvent {
            kind: text(&event["type"]),
            name: text(&obj["metadata"]["name"]),
            uid: text(&obj["metadata"]["uid"]),
            phase: text(&obj["status"]["phase"]),
            ready: is_ready(obj),
            deleting: !obj["metadata"]["deletionTimestamp"].is_null(),
            image: text(&obj["spec"]["containers"][0]["image"]),
            owner: owner.unwrap_or_default(),
        }
    }
}

/// `kubectl get pods -l <selector> -w --output-watch-events -o json` in the
/// background: its events come in the order of the writes in the datastore.
/// The kubectl process is killed (by PID) on drop.
pub struct PodWatch {
    child: Child,
    events: Arc<Mutex<Vec<PodEvent>>>,
}

impl PodWatch {
    pub fn start(server: &TestServer, selector: &str) -> PodWatch {
        let mut child = server
            .kubectl_command(&["get", "pods", "-l", selector, "-w", "--output-watch-events", "-o", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl watch");
        let stdout = child.stdout.take().unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&events);
        std::thread::spawn(move || {
            for event in serde_json::Deserializer::from_reader(BufReader::new(stdout)).into_iter::<Value>() {
                let Ok(event) = event else { break };
                sink.lock().unwrap().push(PodEvent::from_event(&event));
            }
        });
        PodWatch { child, events }
    }

    /// The events seen so far, oldest first.
    pub fn events(&self) -> Vec<PodEvent> {
        self.events.lock().unwrap().clone()
    }

    pub fn len(&self) -> usize {
        self.events.lock().unwrap().len()
    }
}

impl Drop for PodWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn succeeded(args: &[&str], out: Output) -> String {
    assert!(
        out.status.success(),
        "kubectl {:?} failed:\nstdout: {}\nstderr: {}",
        args,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn failed(args: &[&str], out: Output) -> String {
    assert!(!out.status.success(), "kubectl {:?} unexpectedly succeeded: {}", args, String::from_utf8_lossy(&out.stdout));
    String::from_utf8(out.stderr).unwrap()
}

fn wait_with_timeout(child: Child, timeout: Duration) -> Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => out.expect("collecting output"),
        Err(_) => {
            // Stop the stuck command by its PID.
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("command timed out after {timeout:?}");
        }
    }
}

/// Stops and removes every container and pod sandbox of the containerd on
/// `socket`. A create a killed agent left in flight may land after a first sweep,
/// so it sweeps until nothing is left (at most ten times).
pub async fn sweep_runtime(socket: &Path) {
    use skiff_agent::runtime::Runtime;
    let Ok(cri) = skiff_agent::runtime::cri::CriRuntime::connect(socket).await else { return };
    for _ in 0..10 {
        let containers = cri.list_containers(None).await.unwrap_or_default();
        let sandboxes = cri.list_sandboxes().await.unwrap_or_default();
        if containers.is_empty() && sandboxes.is_empty() {
            break;
        }
        for c in containers {
            let _ = cri.stop_container(&c.id, Duration::from_secs(0)).await;
            let _ = cri.remove_container(&c.id).await;
        }
        for s in sandboxes {
            let _ = cri.stop_sandbox(&s.id).await;
            let _ = cri.remove_sandbox(&s.id).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
