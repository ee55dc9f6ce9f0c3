//! `kubectl logs`, `kubectl exec` and friends through the real API server to an
//! agent's streaming endpoint, which serves a pod of the process runtime (real
//! host processes, supervised by this binary's `process-shim`).

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use skiff_agent::kubelet::stream::{serve_on, PodLookup, PodTarget, StreamConfig};
use skiff_agent::runtime::process::ProcessRuntime;
use skiff_agent::runtime::{labels, ContainerConfig, Runtime, SandboxConfig};
use support::TestServer;

const NODE: &str = "stream-node";

/// An agent endpoint in this process, serving one running pod `default/p` whose
/// container `c` runs `script`.
struct Agent {
    port: u16,
    rt: tokio::runtime::Runtime,
    runtime: Arc<ProcessRuntime>,
    sandbox_id: String,
    _dir: tempfile::TempDir,
}

impl Drop for Agent {
    /// The pod's processes outlive this test otherwise (the shim is made to
    /// survive its agent): stop them.
    fn drop(&mut self) {
        let (runtime, sandbox_id) = (self.runtime.clone(), self.sandbox_id.clone());
        self.rt.block_on(async move {
            let _ = runtime.stop_sandbox(&sandbox_id).await;
            let _ = runtime.remove_sandbox(&sandbox_id).await;
        });
    }
}

struct OnePod(PodTarget);

impl PodLookup for OnePod {
    fn lookup(&self, namespace: &str, name: &str) -> Option<PodTarget> {
        (namespace == "default" && name == "p").then(|| self.0.clone())
    }
}

impl Agent {
    fn start(server: &TestServer, script: &str) -> Agent {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_pem = String::from_utf8(server.ca()).unwrap();
        let (port, runtime, sandbox_id) = rt.block_on(async {
            let runtime = Arc::new(ProcessRuntime::new(dir.path().join("state"), vec![env!("CARGO_BIN_EXE_skiff").to_string(), "process-shim".to_string()]).unwrap());
            let log_dir = dir.path().join("logs/default_p_uid-p");
            let sandbox = SandboxConfig {
                pod_name: "p".into(),
                pod_namespace: "default".into(),
                pod_uid: "uid-p".into(),
                hostname: "p".into(),
                log_directory: log_dir.clone(),
                labels: BTreeMap::from([(labels::POD_NAME.to_string(), "p".to_string()), (labels::POD_NAMESPACE.to_string(), "default".to_string())]),
                host_network: true,
                runtime_handler: "process".into(),
                ..SandboxConfig::default()
            };
            let sandbox_id = runtime.run_sandbox(&sandbox).await.unwrap();
            let container = ContainerConfig {
                name: "c".into(),
                image: "skiff.local/none:1".into(),
                command: vec!["sh".into(), "-c".into()],
                args: vec![script.to_string()],
                log_path: PathBuf::from("c/0.log"),
                labels: BTreeMap::from([(labels::CONTAINER_NAME.to_string(), "c".to_string())]),
                ..ContainerConfig::default()
            };
            let id = runtime.create_container(&sandbox_id, &container, &sandbox).await.unwrap();
            let kept = (runtime.clone(), sandbox_id.clone());
            runtime.start_container(&id).await.unwrap();
            let target = PodTarget {
                uid: "uid-p".into(),
                runtime: runtime.clone(),
                sandbox_id: Some(sandbox_id),
                log_dir,
                containers: BTreeMap::from([("c".to_string(), id)]),
            };
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let config = StreamConfig { listen: addr, ca_pem, data_dir: dir.path().join("agent") };
            tokio::spawn(serve_on(listener, config, Arc::new(OnePod(target))));
            (addr.port(), kept.0, kept.1)
        });
        Agent { port, rt, runtime, sandbox_id, _dir: dir }
    }
}

/// Registers `node` with its agent at 127.0.0.1:`port` and creates `default/p`
/// (container `c`) bound to it.
fn register(server: &TestServer, node: &str, port: u16) {
    server.ok_stdin(&["apply", "-f", "-"], &format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: {node}\n"));
    let status = format!(
        r#"{{"status":{{"addresses":[{{"type":"InternalIP","address":"127.0.0.1"}},{{"type":"Hostname","address":"{node}"}}],"daemonEndpoints":{{"kubeletEndpoint":{{"Port":{port}}}}}}}}}"#
    );
    server.ok(&["patch", "node", node, "--subresource=status", "--type=merge", "-p", &status]);
    let pod = format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  nodeName: {node}\n  containers:\n  - name: c\n    image: busybox\n");
    server.ok_stdin(&["apply", "-f", "-"], &pod);
}

/// Waits until the container's log has `text`, as `kubectl logs` shows it.
fn wait_for_log(server: &TestServer, text: &str) -> String {
    let mut last = String::new();
    server.eventually("the container's log", Duration::from_secs(20), || {
        let out = server.kubectl(&["logs", "p"]);
        last = String::from_utf8_lossy(&out.stdout).into_owned();
        last.contains(text)
    });
    last
}

#[test]
fn kubectl_logs_reads_the_container_log_through_the_agent() {
    let server = TestServer::start();
    let agent = Agent::start(&server, "echo hello; sleep 0.5; echo oops >&2; sleep 600");
    register(&server, NODE, agent.port);

    assert_eq!(wait_for_log(&server, "oops"), "hello\noops\n");
    assert_eq!(server.ok(&["logs", "p", "--tail=1"]), "oops\n");
    assert_eq!(server.ok(&["logs", "p", "-c", "c", "--limit-bytes=3"]), "hel");
    let stamped = server.ok(&["logs", "p", "--timestamps"]);
    let first = stamped.lines().next().unwrap();
    let (time, rest) = first.split_once(' ').unwrap();
    assert!(time.starts_with("20") && time.contains('T') && rest == "hello", "{stamped}");

    let err = server.fails(&["logs", "p", "--previous"]);
    assert!(err.contains("previous terminated container \"c\" in pod \"p\" not found"), "{err}");
    let err = server.fails(&["logs", "p", "-c", "nope"]);
    assert!(err.contains("container nope is not valid for pod p"), "{err}");

    // A followed log streams: the lines arrive while the container still runs.
    let mut follow = server.kubectl_command(&["logs", "-f", "p"]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "hello");
    assert_eq!(lines.next().unwrap().unwrap(), "oops");
    let _ = follow.kill();
    let _ = follow.wait();
}

#[test]
fn kubectl_exec_runs_commands_with_their_output_stdin_and_exit_code() {
    let server = TestServer::start();
    let agent = Agent::start(&server, "sleep 600");
    register(&server, NODE, agent.port);

    let out = server.kubectl(&["exec", "p", "--", "sh", "-c", "echo hi; echo err >&2; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("err"));

    assert_eq!(server.ok(&["exec", "p", "-c", "c", "--", "echo", "ok"]), "ok\n");
    // stdin reaches the command, and its end ends the command.
    assert_eq!(server.ok_stdin(&["exec", "-i", "p", "--", "sh", "-c", "cat; echo done"], "line one\nline two\n"), "line one\nline two\ndone\n");
}

#[test]
fn streaming_requests_fail_clearly_when_the_pod_or_its_agent_cannot_serve_them() {
    let server = TestServer::start();
    // Nothing listens on this port any more.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    register(&server, "gone-node", closed);

    let err = server.fails(&["logs", "p"]);
    assert!(err.contains("gone-node"), "the error names the node: {err}");
    let err = server.fails(&["exec", "p", "--", "true"]);
    assert!(err.contains("gone-node"), "{err}");

    let two = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: two\nspec:\n  nodeName: gone-node\n  containers:\n  - name: a\n    image: busybox\n  - name: b\n    image: busybox\n";
    server.ok_stdin(&["apply", "-f", "-"], two);
    let out = server.https().build().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (code, body): (u16, serde_json::Value) = rt.block_on(async {
        let resp = out.get(format!("{}/api/v1/namespaces/default/pods/two/log", server.url())).bearer_auth(server.token()).send().await.unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    });
    assert_eq!(code, 400);
    assert_eq!(body["message"], "a container name must be specified for pod two, choose one of: [a b]");

    let pending = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: pending\nspec:\n  schedulerName: nobody\n  containers:\n  - name: c\n    image: busybox\n";
    server.ok_stdin(&["apply", "-f", "-"], pending);
    let err = server.fails(&["exec", "pending", "--", "true"]);
    assert!(err.contains("pod pending does not have a host assigned"), "{err}");
}
