//! `skiff up`: a one-node cluster from one command, checked with real kubectl.
//! The process runtime is forced so the test needs neither root nor containerd.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running `skiff up`, killed on drop; its stderr is collected.
struct Up {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Up {
    /// Starts `skiff up` and waits for its `ready <node>` line.
    fn start(dir: &Path, api_port: u16, kubelet_port: u16, node: &str) -> Up {
        let mut child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(["up", "--runtime", "process", "--node-name", node, "--data-dir"])
            .arg(dir)
            .args(["--listen", &format!("127.0.0.1:{api_port}"), "--kubelet-port", &kubelet_port.to_string(), "--node-ip", "127.0.0.1"])
            .env("SKIFF_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting skiff up");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                eprintln!("skiff up: {line}");
                sink.lock().unwrap().push(line);
            }
        });
        let (tx, rx) = mpsc::channel();
        let out = BufReader::new(child.stdout.take().unwrap()).lines();
        std::thread::spawn(move || {
            for line in out.map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut up = Up { child, stderr };
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line == format!("ready {node}") => break,
                Ok(_) => continue,
                Err(_) => {
                    let status = up.child.try_wait().ok().flatten();
                    panic!("skiff up was not ready in time (exit: {status:?}); stderr:\n{}", up.stderr().join("\n"));
                }
            }
        }
        up
    }

    fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    let out = Command::new("kubectl").arg("--kubeconfig").arg(kubeconfig).args(args).output().expect("running kubectl");
    assert!(out.status.success(), "kubectl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn ready(node: &Value) -> Option<&str> {
    node["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "Ready")?["status"].as_str()
}

#[test]
fn skiff_up_brings_a_ready_node_and_says_how_to_reach_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().canonicalize().unwrap();
    let kubeconfig = data.join("kubeconfig.yaml");
    let (api_port, kubelet_port) = (free_port(), free_port());
    let up = Up::start(&data, api_port, kubelet_port, "up-node");

    let node: Value = serde_json::from_str(&kubectl(&kubeconfig, &["get", "node", "up-node", "-o", "json"])).unwrap();
    assert_eq!(ready(&node), Some("True"), "{node:#}");
    assert_eq!(node["metadata"]["labels"]["kubernetes.io/os"], "linux");
    assert_eq!(node["metadata"]["annotations"]["storage.skiff.io/local-path"], data.join("agent/storage").display().to_string());
    assert!(node["spec"]["podCIDR"].as_str().is_some_and(|c| c.starts_with("10.244.")), "{node:#}");
    assert_eq!(node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"], kubelet_port);
    let table = kubectl(&kubeconfig, &["get", "nodes"]);
    assert!(table.lines().any(|l| l.starts_with("up-node") && l.contains(" Ready ")), "{table}");
    assert_eq!(kubectl(&kubeconfig, &["get", "runtimeclass", "process", "-o", "jsonpath={.handler}"]), "process");

    let stderr = up.stderr().join("\n");
    for step in ["[1/4] datastore ready", "[2/4] API server listening", "[3/4] pods run as host processes", "[4/4] node up-node Ready"] {
        assert!(stderr.contains(step), "missing {step:?} in:\n{stderr}");
    }
    assert!(stderr.contains("skiff is up in "), "{stderr}");
    assert!(stderr.contains(&format!("export KUBECONFIG={}", kubeconfig.display())), "the next steps name the kubeconfig:\n{stderr}");
    assert!(stderr.contains("kubectl get nodes"), "{stderr}");

    // A restart on the same data directory adopts the node it registered.
    let uid = node["metadata"]["uid"].clone();
    drop(up);
    let _up = Up::start(&data, api_port, kubelet_port, "up-node");
    let node: Value = serde_json::from_str(&kubectl(&kubeconfig, &["get", "node", "up-node", "-o", "json"])).unwrap();
    assert_eq!(node["metadata"]["uid"], uid, "the same Node object");
    assert_eq!(ready(&node), Some("True"));
}
