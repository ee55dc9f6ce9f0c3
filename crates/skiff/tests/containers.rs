//! Real containers: a `skiff server`, a private containerd (its own config, state and
//! socket under a temp dir), and `skiff agent --runtime cri` running pods through
//! CRI, checked with kubectl as a user would.
//!
//! Each test gets its own cluster, bridge and pod CIDR (10.244.<n>.0/24, routed only
//! to that bridge), and tears all of it down: pods and sandboxes are removed through
//! CRI, containerd stopped, the bridge deleted. Tests run one at a time (they share
//! the machine's cgroups and CPU). They need root, containerd, runc, the CNI plugins
//! and the test images (`scripts/build-images.sh`), which `.ci/run` installs; where
//! any is missing the tests say so and pass without running.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::TestServer;

const BUSYBOX: &str = "skiff.local/busybox:1.35";
const PAUSE: &str = "skiff.local/pause:3.10";

static SERIAL: Mutex<()> = Mutex::new(());

/// Why these tests cannot run here, if they cannot.
fn missing_prerequisite() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if uid.as_deref() != Some("0") {
        return Some("not root".into());
    }
    for bin in ["/usr/bin/containerd", "/usr/sbin/runc", "/usr/lib/cni/bridge", "/usr/bin/umoci", "/usr/bin/skopeo", "/bin/busybox"] {
        if !Path::new(bin).exists() && !(bin == "/usr/sbin/runc" && Path::new("/usr/bin/runc").exists()) {
            return Some(format!("{bin} is missing (scripts/install-deps.sh installs it)"));
        }
    }
    None
}

/// The test images, built once per run into target/images.
fn images() -> PathBuf {
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(dir) = built.as_ref() {
        return dir.clone();
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = root.join("target/images");
    let out = Command::new("bash").arg(root.join("scripts/build-images.sh")).arg(&dir).output().expect("running scripts/build-images.sh");
    assert!(out.status.success(), "building the test images failed:\n{}", String::from_utf8_lossy(&out.stderr));
    *built = Some(dir.clone());
    dir
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One node of real containers.
struct Cluster {
    server: TestServer,
    rt: tokio::runtime::Runtime,
    containerd: Option<skiff_agent::runtime::containerd::Containerd>,
    agent: Option<Child>,
    agent_args: Vec<String>,
    /// Holds containerd's state and the agent's data; short, for the socket path.
    dir: tempfile::TempDir,
    bridge: String,
    pub cidr: String,
    _serial: MutexGuard<'static, ()>,
}

impl Cluster {
    /// None (after saying why) where real containers cannot run.
    fn start() -> Option<Cluster> {
        if let Some(why) = missing_prerequisite() {
            eprintln!("skipping: real containers need {why}");
            return None;
        }
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let images = images();
        // A subnet and bridge of this test alone.
        let n = (std::process::id() as usize * 7 + next_index()) % 200 + 20;
        let bridge = format!("skt{n}");
        let cidr = format!("10.244.{n}.0/24");
        let _ = Command::new("ip").args(["link", "del", &bridge]).stderr(Stdio::null()).status();

        let dir = tempfile::Builder::new().prefix("sk").tempdir_in("/tmp").unwrap();
        let server = TestServer::start_with(tempfile::tempdir().unwrap(), &[]);
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let agent_dir = dir.path().join("agent");
        let config = skiff_agent::runtime::containerd::ContainerdConfig {
            data_dir: dir.path().to_path_buf(),
            cni_bin_dir: PathBuf::from("/usr/lib/cni"),
            cni_conf_dir: agent_dir.join("cni/net.d"),
            sandbox_image: PAUSE.into(),
        };
        let containerd = rt.block_on(skiff_agent::runtime::containerd::Containerd::start(config)).expect("starting containerd");
        for archive in ["pause.tar", "busybox.tar"] {
            rt.block_on(skiff_agent::runtime::containerd::import_image(containerd.socket(), &images.join(archive))).expect("importing a test image");
        }
        let kubelet_port = free_port();
        let agent_args: Vec<String> = vec![
            "agent".into(),
            "--server".into(),
            server.url(),
            "--token-file".into(),
            server.dir.path().join("node-token").display().to_string(),
            "--node-name".into(),
            "node-1".into(),
            "--data-dir".into(),
            agent_dir.display().to_string(),
            "--runtime".into(),
            "cri".into(),
            "--containerd-socket".into(),
            containerd.socket().display().to_string(),
            "--node-ip".into(),
            "127.0.0.1".into(),
            "--kubelet-port".into(),
            kubelet_port.to_string(),
            "--cni-bridge".into(),
            bridge.clone(),
            "--pod-cidr".into(),
            cidr.clone(),
            // These tests run the node in the machine's own network namespace:
            // no service datapath, DNS server or gateway ports there (the
            // networking tests give every node a namespace of its own).
            "--no-service-proxy".into(),
            "--no-dns".into(),
            "--ingress-http-port=0".into(),
            "--ingress-https-port=0".into(),
        ];
        let mut c = Cluster {
            server,
            rt,
            containerd: Some(containerd),
            agent: None,
            agent_args,
            dir,
            bridge,
            cidr,
            _serial: serial,
        };
        c.start_agent();
        c.server.wait_for_ready_nodes(1, Duration::from_secs(60));
        Some(c)
    }

    fn start_agent(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(&self.agent_args)
            .env("SKIFF_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.path().join(format!("agent-{}.log", next_index()))).unwrap())
            .spawn()
            .expect("starting skiff agent");
        self.agent = Some(child);
    }

    /// kill -9 of the agent process.
    fn kill_agent(&mut self) {
        if let Some(mut a) = self.agent.take() {
            let _ = a.kill();
            let _ = a.wait();
        }
    }

    fn kubectl(&self) -> &TestServer {
        &self.server
    }

    /// Applies a manifest.
    fn apply(&self, yaml: &str) {
        self.server.ok_stdin(&["apply", "-f", "-"], yaml);
    }

    /// Waits for a pod to be Ready and returns it.
    fn ready_pod(&self, name: &str, timeout: Duration) -> Value {
        let mut last = Value::Null;
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(p) = self.server.get(&["pod", name]) {
                if support::is_ready(&p) {
                    return p;
                }
                last = p;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("pod {name} not ready after {timeout:?}: {}\n{}", last["status"], self.agent_log());
    }

    fn pods(&self, selector: &str) -> Vec<Value> {
        self.server.items(&["get", "pods", "-l", selector])
    }

    fn agent_log(&self) -> String {
        let mut out = String::new();
        if let Ok(entries) = std::fs::read_dir(self.dir.path()) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with("agent-") {
                    let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(40).collect();
                    out.push_str(&tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
                }
            }
        }
        out
    }
}

fn next_index() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_agent();
        // Every sandbox and container goes, through CRI, before containerd stops.
        if let Some(containerd) = self.containerd.take() {
            let socket = containerd.socket().to_path_buf();
            self.rt.block_on(async {
                support::sweep_runtime(&socket).await;
                containerd.stop().await;
            });
        }
        let _ = Command::new("ip").args(["link", "del", &self.bridge]).stderr(Stdio::null()).status();
        // Anything still mounted under the directory (a memory emptyDir of a pod that
        // never got torn down) is unmounted so that the directory can go.
        if let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") {
            let dir = self.dir.path().display().to_string();
            let mut targets: Vec<&str> = mounts.lines().filter_map(|l| l.split(' ').nth(1)).filter(|t| t.starts_with(&dir)).collect();
            targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
            for t in targets {
                let _ = Command::new("umount").arg("-l").arg(t).status();
            }
        }
    }
}

/// A GET through a plain TCP connection; the response's body.
fn http_get(addr: &str, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr.parse().map_err(std::io::Error::other)?, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn container_status<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["status"]["containerStatuses"].as_array().and_then(|cs| cs.iter().find(|c| c["name"] == name)).unwrap_or(&Value::Null)
}

fn eventually_pod(c: &Cluster, name: &str, what: &str, timeout: Duration, mut f: impl FnMut(&Value) -> bool) -> Value {
    let start = Instant::now();
    let mut last = Value::Null;
    while start.elapsed() < timeout {
        if let Some(p) = c.server.get(&["pod", name]) {
            if f(&p) {
                return p;
            }
            last = p;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("pod {name}: {what} did not happen in {timeout:?}; last status: {}\nagent log:\n{}", last["status"], c.agent_log());
}

/// Runs a streaming command (`logs -f`, `attach`) until its output satisfies
/// `done` (or 20 s pass, or it ends), then stops it; what it printed.
fn stream_until(mut command: Command, done: impl Fn(&str) -> bool) -> String {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut buf = vec![0u8; 4096];
    let mut seen = String::new();
    let start = Instant::now();
    while !done(&seen) && start.elapsed() < Duration::from_secs(20) {
        let n = out.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let _ = child.kill();
    let _ = child.wait();
    seen
}

fn httpd_deployment(name: &str, replicas: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: httpd
        image: {BUSYBOX}
        imagePullPolicy: Never
        command: ["sh", "-c", "mkdir -p /www && echo hello from $(hostname) > /www/index.html && exec httpd -f -p 8080 -h /www"]
        ports:
        - containerPort: 8080
        readinessProbe:
          httpGet: {{path: /index.html, port: 8080}}
          periodSeconds: 1
"#
    )
}

#[test]
fn a_deployment_of_busybox_httpd_serves_on_every_pod_ip() {
    let Some(c) = Cluster::start() else { return };
    c.apply(&httpd_deployment("web", 3));
    c.kubectl().eventually("3 ready web pods", Duration::from_secs(120), || c.pods("app=web").iter().filter(|p| support::is_ready(p)).count() == 3);
    let pods = c.pods("app=web");
    let mut ips = Vec::new();
    for p in &pods {
        let ip = p["status"]["podIP"].as_str().expect("podIP").to_string();
        assert!(ip.starts_with(&c.cidr[..c.cidr.len() - 4]), "{ip} is not in {}", c.cidr);
        assert_eq!(p["status"]["hostIP"], "127.0.0.1");
        assert_eq!(p["status"]["qosClass"], "BestEffort");
        let cs = container_status(p, "httpd");
        assert!(cs["containerID"].as_str().unwrap_or_default().starts_with("containerd://"), "{cs}");
        assert!(cs["imageID"].as_str().unwrap_or_default().contains("sha256:"), "{cs}");
        let body = http_get(&format!("{ip}:8080"), "/index.html").expect("GET from the pod");
        assert!(body.starts_with("HTTP/1.") && body.contains(" 200 "), "{body}");
        let name = p["metadata"]["name"].as_str().unwrap();
        assert!(body.contains(&format!("hello from {name}")), "the pod's hostname is its name: {body}");
        ips.push(ip);
    }
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 3, "every pod has its own address");
    let table = c.kubectl().ok(&["get", "pods", "-l", "app=web", "-o", "wide"]);
    assert_eq!(table.matches("Running").count(), 3, "{table}");
    assert_eq!(table.matches("1/1").count(), 3, "{table}");
}

#[test]
fn probes_restart_unhealthy_containers_and_keep_unready_ones_out() {
    let Some(c) = Cluster::start() else { return };
    c.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: sick
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {BUSYBOX}
    imagePullPolicy: Never
    command: ["sh", "-c", "touch /tmp/healthy; sleep 3; rm /tmp/healthy; sleep 600"]
    livenessProbe:
      exec: {{command: ["cat", "/tmp/healthy"]}}
      periodSeconds: 1
      failureThreshold: 2
---
apiVersion: v1
kind: Pod
metadata:
  name: unready
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {BUSYBOX}
    imagePullPolicy: Never
    command: ["sh", "-c", "mkdir -p /www && exec httpd -f -p 8081 -h /www"]
    readinessProbe:
      httpGet: {{path: /missing, port: 8081}}
      periodSeconds: 1
"#
    ));
    let p = eventually_pod(&c, "sick", "a liveness restart", Duration::from_secs(90), |p| container_status(p, "app")["restartCount"].as_i64().unwrap_or(0) >= 1);
    let cs = container_status(&p, "app");
    assert!(cs["lastState"]["terminated"].is_object(), "the killed instance is in lastState: {cs}");
    let events = c.kubectl().event_messages("sick");
    assert!(events.iter().any(|m| m.contains("Liveness probe failed")), "{events:?}");
    assert!(events.iter().any(|m| m.contains("failed liveness probe, will be restarted")), "{events:?}");

    let p = eventually_pod(&c, "unready", "running", Duration::from_secs(60), |p| container_status(p, "app")["state"]["running"].is_object());
    std::thread::sleep(Duration::from_secs(4));
    let p2 = c.kubectl().json(&["get", "pod", "unready"]);
    assert!(!support::is_ready(&p2), "a failing readiness probe keeps the pod unready: {}", p2["status"]);
    assert_eq!(container_status(&p2, "app")["ready"], false);
    assert_eq!(container_status(&p2, "app")["restartCount"], 0, "readiness failures do not restart: {}", p["status"]);
    let ready = support::condition(&p2, "ContainersReady").cloned().unwrap_or_default();
    assert_eq!(ready["status"], "False", "{ready}");
}

#[test]
fn configmap_volumes_update_in_place_and_env_comes_from_the_api() {
    let Some(c) = Cluster::start() else { return };
    c.kubectl().ok(&["create", "configmap", "settings", "--from-literal=greeting=hello", "--from-literal=color=blue"]);
    c.kubectl().ok(&["create", "service", "clusterip", "backend", "--tcp=80:8080"]);
    c.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: reader
  labels: {{team: a}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {BUSYBOX}
    imagePullPolicy: Never
    command: ["sleep", "600"]
    env:
    - name: COLOR
      valueFrom: {{configMapKeyRef: {{name: settings, key: color}}}}
    - name: MY_POD
      valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
    - name: SHOUT
      value: "$(COLOR)!"
    volumeMounts:
    - name: settings
      mountPath: /etc/settings
  volumes:
  - name: settings
    configMap: {{name: settings}}
"#
    ));
    c.ready_pod("reader", Duration::from_secs(60));
    let env = c.kubectl().ok(&["exec", "reader", "--", "env"]);
    for want in ["COLOR=blue", "MY_POD=reader", "SHOUT=blue!", "BACKEND_SERVICE_HOST=", "BACKEND_SERVICE_PORT=80", "KUBERNETES_SERVICE_HOST="] {
        assert!(env.contains(want), "{want} missing from:\n{env}");
    }
    assert_eq!(c.kubectl().ok(&["exec", "reader", "--", "cat", "/etc/settings/greeting"]), "hello");
    // The service account token is mounted too.
    let token = c.kubectl().ok(&["exec", "reader", "--", "cat", "/var/run/secrets/kubernetes.io/serviceaccount/token"]);
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");

    c.kubectl().ok_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  greeting: bonjour\n  color: blue\n");
    c.kubectl().eventually("the mounted file follows the ConfigMap", Duration::from_secs(60), || {
        c.kubectl().kubectl(&["exec", "reader", "--", "cat", "/etc/settings/greeting"]).stdout == b"bonjour"
    });
}

#[test]
fn logs_exec_and_port_forward_reach_the_container() {
    let Some(c) = Cluster::start() else { return };
    c.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: chatty
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {BUSYBOX}
    imagePullPolicy: Never
    command: ["sh", "-c", "mkdir -p /www && echo served > /www/index.html && httpd -p 8080 -h /www && i=0; while true; do i=$((i+1)); echo line $i; sleep 0.2; done"]
"#
    ));
    c.ready_pod("chatty", Duration::from_secs(60));
    c.kubectl().eventually("log lines", Duration::from_secs(20), || c.kubectl().ok(&["logs", "chatty", "--tail=2"]).lines().count() == 2);
    let logs = c.kubectl().ok(&["logs", "chatty", "--timestamps", "--tail=1"]);
    assert!(logs.contains("Z line "), "a timestamp then the line: {logs}");

    // -f keeps streaming new lines.
    let seen = stream_until(c.kubectl().kubectl_command(&["logs", "-f", "chatty", "--tail=1"]), |seen| seen.lines().count() >= 4);
    assert!(seen.lines().count() >= 4, "logs -f streamed: {seen:?}");

    // exec with a shell and an exit code.
    assert_eq!(c.kubectl().ok(&["exec", "chatty", "--", "sh", "-c", "echo out; echo err >&2; echo $((6*7))"]).trim(), "out\n42");
    let out = c.kubectl().kubectl(&["exec", "chatty", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    // stdin.
    let got = c.kubectl().kubectl_stdin(&["exec", "-i", "chatty", "--", "sh", "-c", "tr a-z A-Z"], Some("quiet words\n"));
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "QUIET WORDS");

    // cp (tar through exec), both ways.
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("note.txt");
    std::fs::write(&src, "copied in\n").unwrap();
    c.kubectl().ok(&["cp", src.to_str().unwrap(), "chatty:/tmp/note.txt"]);
    assert_eq!(c.kubectl().ok(&["exec", "chatty", "--", "cat", "/tmp/note.txt"]), "copied in\n");
    let back = local.path().join("back.txt");
    c.kubectl().ok(&["cp", "chatty:/tmp/note.txt", back.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "copied in\n");

    // attach streams the running container's output.
    let seen = stream_until(c.kubectl().kubectl_command(&["attach", "chatty"]), |seen| seen.contains("line "));
    assert!(seen.contains("line "), "attach streamed: {seen:?}");

    // port-forward, then a request through it.
    let port = free_port();
    let mut pf = c
        .kubectl()
        .kubectl_command(&["port-forward", "pod/chatty", &format!("{port}:8080"), "--address", "127.0.0.1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut body = String::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if let Ok(b) = http_get(&format!("127.0.0.1:{port}"), "/index.html") {
            body = b;
            if body.contains("served") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let _ = pf.kill();
    let _ = pf.wait();
    assert!(body.contains("served"), "through port-forward: {body:?}");
}

#[test]
fn a_memory_limit_is_enforced_by_the_kernel() {
    let Some(c) = Cluster::start() else { return };
    c.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: hog
spec:
  restartPolicy: Never
  containers:
  - name: app
    image: {BUSYBOX}
    imagePullPolicy: Never
    command: ["sh", "-c", "x=$(head -c 64000000 /dev/zero | tr '\\0' a); echo survived ${{#x}}"]
    resources:
      limits: {{memory: 24Mi}}
"#
    ));
    let p = eventually_pod(&c, "hog", "termination", Duration::from_secs(90), |p| container_status(p, "app")["state"]["terminated"].is_object());
    let t = &container_status(&p, "app")["state"]["terminated"];
    assert_eq!(t["reason"], "OOMKilled", "{t}");
    assert_eq!(t["exitCode"], 137, "{t}");
    assert_eq!(p["status"]["phase"], "Failed");
    assert_eq!(p["status"]["qosClass"], "Burstable");
}

#[test]
fn data_on_a_local_path_claim_outlives_its_pod() {
    let Some(c) = Cluster::start() else { return };
    let pod = |cmd: &str| {
        format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: keeper
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {BUSYBOX}
    imagePullPolicy: Never
    command: ["sh", "-c", "{cmd}"]
    volumeMounts:
    - {{name: data, mountPath: /data}}
  volumes:
  - name: data
    persistentVolumeClaim: {{claimName: data}}
"#
        )
    };
    c.apply("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: data\nspec:\n  accessModes: [ReadWriteOnce]\n  resources:\n    requests: {storage: 64Mi}\n");
    c.apply(&pod("echo first-life > /data/note; sleep 600"));
    c.ready_pod("keeper", Duration::from_secs(90));
    let claim = c.kubectl().json(&["get", "pvc", "data"]);
    assert_eq!(claim["status"]["phase"], "Bound", "{claim}");
    assert_eq!(claim["spec"]["storageClassName"], "local-path");
    c.kubectl().ok(&["delete", "pod", "keeper", "--wait=true"]);
    c.apply(&pod("sleep 600"));
    c.ready_pod("keeper", Duration::from_secs(90));
    assert_eq!(c.kubectl().ok(&["exec", "keeper", "--", "cat", "/data/note"]).trim(), "first-life");
}

#[test]
fn a_killed_agent_leaves_containers_running_and_adopts_them() {
    let Some(mut c) = Cluster::start() else { return };
    c.apply(&httpd_deployment("steady", 2));
    c.kubectl().eventually("2 ready pods", Duration::from_secs(90), || c.pods("app=steady").iter().filter(|p| support::is_ready(p)).count() == 2);
    let before: Vec<(String, String, String)> = c
        .pods("app=steady")
        .iter()
        .map(|p| {
            let cs = container_status(p, "httpd");
            (p["metadata"]["name"].as_str().unwrap().to_string(), cs["containerID"].as_str().unwrap().to_string(), p["status"]["podIP"].as_str().unwrap().to_string())
        })
        .collect();

    c.kill_agent();
    // The containers keep serving with no agent.
    for (_, _, ip) in &before {
        let body = http_get(&format!("{ip}:8080"), "/index.html").expect("the pod serves without its agent");
        assert!(body.contains(" 200 "), "{body}");
    }
    // A pod deleted while the agent is away is cleaned up when it returns.
    c.kubectl().ok(&["scale", "deployment", "steady", "--replicas=1"]);
    std::thread::sleep(Duration::from_secs(1));
    c.start_agent();
    c.kubectl().eventually("one pod left, ready", Duration::from_secs(90), || {
        let pods = c.pods("app=steady");
        pods.len() == 1 && support::is_ready(&pods[0])
    });
    let after = c.pods("app=steady");
    let name = after[0]["metadata"]["name"].as_str().unwrap();
    let kept = before.iter().find(|(n, _, _)| n == name).expect("the remaining pod is one of the originals");
    let cs = container_status(&after[0], "httpd");
    assert_eq!(cs["containerID"].as_str().unwrap(), kept.1, "the same container, adopted");
    assert_eq!(cs["restartCount"], 0, "not restarted");
    // The scaled-away pod's containers are gone from the runtime too.
    let socket = c.containerd.as_ref().unwrap().socket().to_path_buf();
    let running: Vec<String> = c.rt.block_on(async {
        use skiff_agent::runtime::Runtime;
        let cri = skiff_agent::runtime::cri::CriRuntime::connect(&socket).await.unwrap();
        cri.list_containers(None)
            .await
            .unwrap()
            .into_iter()
            .filter(|s| s.state == skiff_agent::runtime::ContainerState::Running)
            .map(|s| s.id)
            .collect()
    });
    assert_eq!(running.len(), 1, "only the remaining pod's container runs: {running:?}");
    assert_eq!(format!("containerd://{}", running[0]), kept.1);
}
