//! A cluster of several real nodes on one machine, each node in a network
//! namespace of its own, for the service networking tests.
//!
//! Cluster number `n` (claimed by creating its bridge, so that concurrent runs never
//! share one) is laid out as:
//!
//! - in the root namespace, the bridge `skb<n>` with 10.250.<n>.1/24 and the API
//!   server listening on that address; kubectl runs from the root namespace;
//! - node `i`: the network namespace `skn<n>-<i>` with `lo` and `eth0`
//!   (10.250.<n>.<10+i>/24), whose veth peer `sk<n>v<i>` is a port of `skb<n>`. The
//!   node's private containerd and its agent run inside it, so the pods' network
//!   namespaces, the pod bridge `sk<n>br<i>`, the host-gw routes and the nftables
//!   table all belong to the node's namespace. The node namespaces have no default
//!   route: nothing a test does can leave the machine;
//! - cluster CIDR 10.<160+n>.0.0/16 and service CIDR 10.112.<4n>.0/22, so that two
//!   clusters never overlap.
//!
//! Only the network namespace is entered (`nsenter --net`), not the private mount
//! namespace `ip netns exec` makes: the agent mounts tmpfs volumes (secrets, service
//! account tokens) that the node's containerd must see, and one mount namespace
//! for both lets the tear-down unmount what a killed agent left behind.
//!
//! Dropping the [`Cluster`] tears all of it down, also when a test panics: agents
//! killed, every sandbox removed through CRI, containerd stopped, namespaces, veths
//! and the bridge deleted; then it asserts that nothing is left.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{self, TestServer};

pub const BUSYBOX: &str = "skiff.local/busybox:1.35";
pub const PAUSE: &str = "skiff.local/pause:3.10";

/// Clusters of real containers run one at a time: they share the machine's CPU
/// and cgroups, and pod start-up times out under contention.
static SERIAL: Mutex<()> = Mutex::new(());

/// Cluster numbers: 10.<160+n>.0.0/16 and 10.112.<4n>.0/22 must stay valid and
/// clear of the default service range 10.96.0.0/12.
const CLUSTER_NUMBERS: std::ops::RangeInclusive<u8> = 1..=60;

/// Port of every node's Ingress gateway (each node has its own namespace, so the
/// well-known ports are free).
pub const INGRESS_HTTP_PORT: u16 = 80;
pub const INGRESS_HTTPS_PORT: u16 = 443;

/// Why these tests cannot run here, if they cannot.
pub fn missing_prerequisite() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if uid.as_deref() != Some("0") {
        return Some("root".into());
    }
    for bin in ["ip", "nft", "nsenter", "containerd", "ctr"] {
        if !on_path(bin) {
            return Some(format!("the {bin} command"));
        }
    }
    for file in ["/usr/lib/cni/bridge", "/usr/lib/cni/host-local", "/usr/lib/cni/portmap", "/usr/bin/umoci", "/usr/bin/skopeo", "/bin/busybox"] {
        if !Path::new(file).exists() {
            return Some(format!("{file} (scripts/install-deps.sh installs it)"));
        }
    }
    if !Path::new("/usr/sbin/runc").exists() && !Path::new("/usr/bin/runc").exists() {
        return Some("runc".into());
    }
    None
}

fn on_path(name: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).chain(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from)).any(|d| d.join(name).is_file())
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

/// Runs a command, returns its output; never hangs for longer than `timeout`.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Output {
    let child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => out.expect("collecting output"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
    }
}

/// `ip <args>`, quietly; whether it succeeded.
fn ip(args: &[&str]) -> bool {
    Command::new("ip").args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// `ip <args>`, which must succeed.
fn ip_ok(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

fn text(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd).args(args).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
}

/// Sends SIGTERM, waits up to `grace`, then SIGKILL; reaps the child.
fn stop_child(child: &mut Child, grace: Duration) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Whether the IPv4 address `ip` lies in `cidr`.
pub fn in_cidr(ip: &str, cidr: &str) -> bool {
    let Some((net, bits)) = cidr.split_once('/') else { return false };
    let (Ok(ip), Ok(net), Ok(bits)) = (ip.parse::<std::net::Ipv4Addr>(), net.parse::<std::net::Ipv4Addr>(), bits.parse::<u32>()) else { return false };
    let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
    u32::from(ip) & mask == u32::from(net) & mask
}

/// One node: a network namespace with its own containerd and agent.
pub struct Node {
    /// The Node's name, `node-<i>`.
    pub name: String,
    /// The network namespace, `skn<n>-<i>`.
    pub netns: String,
    /// The node's address on the cluster bridge, 10.250.<n>.<10+i>.
    pub ip: String,
    /// The agent's pod bridge inside the namespace, `sk<n>br<i>`.
    pub pod_bridge: String,
    /// The root-namespace end of the node's veth, `sk<n>v<i>`.
    veth: String,
    dir: PathBuf,
    socket: PathBuf,
    containerd: Option<Child>,
    agent: Option<Child>,
    agent_args: Vec<String>,
    agent_starts: usize,
}

impl Node {
    fn agent_log(&self) -> PathBuf {
        self.dir.join("agent.log")
    }

    fn containerd_log(&self) -> PathBuf {
        skiff_agent::runtime::containerd::ContainerdPaths::new(&self.dir).log
    }

    /// A command run in the node's network namespace (and no other).
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.netns)).arg("--").arg(program);
        cmd
    }
}

/// A multi-node cluster of real containers; see the module documentation.
pub struct Cluster {
    server: Option<TestServer>,
    /// The cluster number `n`.
    pub n: u8,
    pub nodes: Vec<Node>,
    pub cluster_cidr: String,
    pub service_cidr: String,
    /// The kube-dns Service's address: the tenth of the service CIDR.
    pub cluster_dns: String,
    /// The root-namespace bridge, `skb<n>`, once claimed.
    bridge: Option<String>,
    rt: tokio::runtime::Runtime,
    /// Short (unix socket paths are limited): holds every node's containerd and agent state.
    dir: tempfile::TempDir,
    _serial: MutexGuard<'static, ()>,
}

impl Cluster {
    /// A cluster of `nodes` nodes, every one Ready; None (after saying why) where
    /// real containers cannot run.
    pub fn start(nodes: usize) -> Option<Cluster> {
        Self::start_with(nodes, &[])
    }

    /// Like [`Cluster::start`], with extra flags for every agent.
    pub fn start_with(nodes: usize, agent_flags: &[&str]) -> Option<Cluster> {
        if let Some(why) = missing_prerequisite() {
            eprintln!("skipping: the networking tests need {why}");
            return None;
        }
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let images = images();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let dir = tempfile::Builder::new().prefix("sk").tempdir_in("/tmp").unwrap();
        let mut c = Cluster {
            server: None,
            n: 0,
            nodes: Vec::new(),
            cluster_cidr: String::new(),
            service_cidr: String::new(),
            cluster_dns: String::new(),
            bridge: None,
            rt,
            dir,
            _serial: serial,
        };
        c.claim_bridge();
        c.start_server();
        for i in 0..nodes {
            c.add_node(i, &images, agent_flags);
        }
        let want = nodes;
        c.wait_for(&format!("{want} Ready nodes"), Duration::from_secs(120), |c| {
            let nodes = c.kubectl().items(&["get", "nodes"]);
            nodes.len() == want && nodes.iter().all(support::is_ready)
        });
        Some(c)
    }

    /// Takes the first free cluster number, creating its bridge (which fails if
    /// another run holds it).
    fn claim_bridge(&mut self) {
        let span = (*CLUSTER_NUMBERS.end() - *CLUSTER_NUMBERS.start() + 1) as usize;
        let offset = std::process::id() as usize % span;
        for k in 0..span {
            let n = *CLUSTER_NUMBERS.start() + ((offset + k) % span) as u8;
            let bridge = format!("skb{n}");
            if !ip(&["link", "add", &bridge, "type", "bridge"]) {
                continue;
            }
            self.n = n;
            self.bridge = Some(bridge.clone());
            ip_ok(&["addr", "add", &format!("10.250.{n}.1/24"), "dev", &bridge]);
            ip_ok(&["link", "set", &bridge, "up"]);
            self.cluster_cidr = format!("10.{}.0.0/16", 160 + n as u16);
            self.service_cidr = format!("10.112.{}.0/22", 4 * n as u16);
            self.cluster_dns = format!("10.112.{}.10", 4 * n as u16);
            return;
        }
        panic!("every cluster bridge skb{}..skb{} is taken", CLUSTER_NUMBERS.start(), CLUSTER_NUMBERS.end());
    }

    fn start_server(&mut self) {
        let data = tempfile::tempdir().expect("tempdir");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_skiff"));
        cmd.args(["server", "--data-dir"])
            .arg(data.path())
            .args(["--listen", &format!("10.250.{}.1:0", self.n)])
            .args(["--service-cidr", &self.service_cidr, "--cluster-cidr", &self.cluster_cidr]);
        let log = std::fs::File::create(self.dir.path().join("server.log")).unwrap();
        let mut child = cmd.env("SKIFF_LOG", "warn").stdout(Stdio::piped()).stderr(log).spawn().expect("starting skiff server");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            match lines.next() {
                Some(Ok(l)) if l.starts_with("listening ") => break l["listening ".len()..].trim().to_string(),
                Some(Ok(_)) => continue,
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("skiff server exited before listening:\n{}", tail(&self.dir.path().join("server.log"), 30));
                }
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        self.server = Some(TestServer { child, addr, dir: data });
    }

    /// Creates node `i`'s namespace and veth, starts its containerd (with the test
    /// images) and its agent.
    fn add_node(&mut self, i: usize, images: &Path, agent_flags: &[&str]) {
        let n = self.n;
        let netns = format!("skn{n}-{i}");
        let veth = format!("sk{n}v{i}");
        let node_ip = format!("10.250.{n}.{}", 10 + i);
        let dir = self.dir.path().join(format!("n{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        // A namespace of this number is left from a run that died before its
        // tear-down (the bridge is this run's now).
        ip(&["netns", "del", &netns]);
        ip_ok(&["netns", "add", &netns]);
        let socket = skiff_agent::runtime::containerd::ContainerdPaths::new(&dir).socket;
        let node = Node {
            name: format!("node-{i}"),
            netns: netns.clone(),
            ip: node_ip.clone(),
            pod_bridge: format!("sk{n}br{i}"),
            veth: veth.clone(),
            dir,
            socket,
            containerd: None,
            agent: None,
            agent_args: Vec::new(),
            agent_starts: 0,
        };
        self.nodes.push(node);
        ip_ok(&["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &netns]);
        ip_ok(&["link", "set", &veth, "master", self.bridge.as_deref().unwrap(), "up"]);
        ip_ok(&["-n", &netns, "addr", "add", &format!("{node_ip}/24"), "dev", "eth0"]);
        ip_ok(&["-n", &netns, "link", "set", "lo", "up"]);
        ip_ok(&["-n", &netns, "link", "set", "eth0", "up"]);

        self.start_containerd(i);
        for archive in ["pause.tar", "busybox.tar"] {
            let socket = self.nodes[i].socket.clone();
            self.rt.block_on(skiff_agent::runtime::containerd::import_image(&socket, &images.join(archive))).expect("importing a test image");
        }

        let server = self.kubectl();
        let mut args: Vec<String> = [
            "agent",
            "--server",
            &server.url(),
            "--token-file",
            &server.data_dir().join("node-token").display().to_string(),
            "--node-name",
            &format!("node-{i}"),
            "--data-dir",
            &self.nodes[i].dir.join("agent").display().to_string(),
            "--runtime",
            "cri",
            "--containerd-socket",
            &self.nodes[i].socket.display().to_string(),
            "--node-ip",
            &node_ip,
            "--cni-bridge",
            &self.nodes[i].pod_bridge,
            "--cluster-dns",
            &self.cluster_dns,
            "--cluster-cidr",
            &self.cluster_cidr,
            "--dns-upstream",
            "none",
            "--ingress-http-port",
            &INGRESS_HTTP_PORT.to_string(),
            "--ingress-https-port",
            &INGRESS_HTTPS_PORT.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(agent_flags.iter().map(|s| s.to_string()));
        self.nodes[i].agent_args = args;
        self.start_agent(i);
    }

    /// Starts node `i`'s containerd inside its namespace, with its config written
    /// by the agent crate, and waits until it answers CRI.
    fn start_containerd(&mut self, i: usize) {
        use skiff_agent::runtime::containerd::{config_toml, ContainerdConfig, ContainerdPaths};
        let node = &mut self.nodes[i];
        let config = ContainerdConfig {
            data_dir: node.dir.clone(),
            cni_bin_dir: PathBuf::from("/usr/lib/cni"),
            cni_conf_dir: node.dir.join("agent/cni/net.d"),
            sandbox_image: PAUSE.into(),
        };
        let paths = ContainerdPaths::new(&node.dir);
        for d in [&paths.dir, &paths.root, &paths.state, &config.cni_conf_dir] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(&paths.config, config_toml(&config, &paths)).unwrap();
        let log = std::fs::File::create(&paths.log).unwrap();
        let mut cmd = node.command("containerd");
        cmd.arg("--config").arg(&paths.config).stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log);
        // Its own process group: a Ctrl-C of the test run must not stop it before
        // the tear-down has removed its pods.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        node.containerd = Some(cmd.spawn().expect("starting containerd"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = node.containerd.as_mut().unwrap().try_wait() {
                panic!("containerd of {} exited ({status}):\n{}", node.name, tail(&paths.log, 20));
            }
            if self.rt.block_on(skiff_agent::runtime::cri::CriRuntime::connect(&paths.socket)).is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "containerd of {} does not answer:\n{}", node.name, tail(&paths.log, 20));
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts node `i`'s agent inside its namespace.
    pub fn start_agent(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.agent_starts += 1;
        let mut log = std::fs::OpenOptions::new().create(true).append(true).open(node.agent_log()).unwrap();
        let _ = writeln!(log, "=== agent start {} ===", node.agent_starts);
        let mut cmd = node.command(env!("CARGO_BIN_EXE_skiff"));
        cmd.args(&node.agent_args).env("SKIFF_LOG", "info").stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        node.agent = Some(cmd.spawn().expect("starting skiff agent"));
    }

    /// SIGKILL of node `i`'s agent, as a crash would.
    pub fn kill_agent(&mut self, i: usize) {
        if let Some(mut agent) = self.nodes[i].agent.take() {
            let _ = agent.kill();
            let _ = agent.wait();
        }
    }

    // === helpers for tests ===

    /// The API server, for its kubectl helpers (`ok`, `json`, `items`, …).
    pub fn kubectl(&self) -> &TestServer {
        self.server.as_ref().expect("the API server runs")
    }

    /// Runs kubectl, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.kubectl().ok(args)
    }

    /// Applies a manifest.
    pub fn apply(&self, yaml: &str) {
        self.kubectl().ok_stdin(&["apply", "-f", "-"], yaml);
    }

    /// `kubectl exec -n <ns> <pod> -- <cmd>`; its output, whatever the exit code.
    pub fn exec_in_pod(&self, ns: &str, pod: &str, cmd: &[&str]) -> Output {
        let mut args = vec!["exec", "-n", ns, pod, "--"];
        args.extend_from_slice(cmd);
        self.kubectl().kubectl(&args)
    }

    /// Runs `cmd` in node `i`'s network namespace (its addresses, routes and
    /// nftables rules), as `ip netns exec` would; its output, whatever the exit code.
    pub fn node_exec(&self, i: usize, cmd: &[&str]) -> Output {
        let mut command = self.nodes[i].command(cmd[0]);
        command.args(&cmd[1..]);
        run_with_timeout(command, Duration::from_secs(60))
    }

    /// Polls `f` (every 250 ms) until it holds; on timeout, panics with the agents' logs.
    pub fn wait_for(&self, what: &str, timeout: Duration, mut f: impl FnMut(&Cluster) -> bool) {
        let start = Instant::now();
        loop {
            if f(self) {
                return;
            }
            if start.elapsed() > timeout {
                panic!("timed out after {timeout:?} waiting for {what}\n{}", self.diagnostics());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Polls `f` (every 250 ms) until it returns `Ok`, and returns that value; on
    /// timeout, panics with the last `Err` (what `f` last saw) and the agents' logs.
    pub fn wait_for_value<T>(&self, what: &str, timeout: Duration, mut f: impl FnMut(&Cluster) -> Result<T, String>) -> T {
        let start = Instant::now();
        loop {
            match f(self) {
                Ok(v) => return v,
                Err(last) if start.elapsed() > timeout => {
                    panic!("timed out after {timeout:?} waiting for {what}; last: {last}\n{}", self.diagnostics())
                }
                Err(_) => std::thread::sleep(Duration::from_millis(250)),
            }
        }
    }

    /// Pods in the default namespace matching `selector`.
    pub fn pods(&self, selector: &str) -> Vec<Value> {
        self.kubectl().items(&["get", "pods", "-l", selector])
    }

    /// Waits until exactly `count` pods match `selector`, all Ready; returns them.
    pub fn ready_pods(&self, selector: &str, count: usize, timeout: Duration) -> Vec<Value> {
        self.wait_for_value(&format!("{count} ready pods {selector}"), timeout, |c| {
            let pods = c.pods(selector);
            if pods.len() == count && pods.iter().all(support::is_ready) {
                Ok(pods)
            } else {
                Err(pods.iter().map(|p| format!("{} {}", p["metadata"]["name"], p["status"])).collect::<Vec<_>>().join("\n"))
            }
        })
    }

    /// Waits until the pod `name` (default namespace) is Ready; returns it.
    pub fn ready_pod(&self, name: &str, timeout: Duration) -> Value {
        self.wait_for_value(&format!("pod {name} to be ready"), timeout, |c| match c.kubectl().get(&["pod", name]) {
            Some(p) if support::is_ready(&p) => Ok(p),
            Some(p) => Err(p["status"].to_string()),
            None => Err("not found".into()),
        })
    }

    /// The pod CIDR the cluster gave node `i` (`spec.podCIDR`).
    pub fn pod_cidr(&self, i: usize) -> String {
        let node = self.kubectl().json(&["get", "node", &self.nodes[i].name]);
        node["spec"]["podCIDR"].as_str().unwrap_or_default().to_string()
    }

    /// The last lines of every agent's and containerd's log, and each node's
    /// routes and nftables ruleset: what a failed test needs to be understood.
    pub fn diagnostics(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            out.push_str(&format!("--- {} agent log ---\n{}\n", node.name, tail(&node.agent_log(), 60)));
            out.push_str(&format!("--- {} containerd log ---\n{}\n", node.name, tail(&node.containerd_log(), 10)));
            let ns = format!("/run/netns/{}", node.netns);
            if Path::new(&ns).exists() {
                out.push_str(&format!("--- {} addresses and routes ---\n{}{}\n", node.name, text("ip", &["-n", &node.netns, "-br", "addr"]), text("ip", &["-n", &node.netns, "route"])));
                out.push_str(&format!("--- {} nftables ---\n{}\n", node.name, text("nsenter", &[&format!("--net={ns}"), "--", "nft", "list", "ruleset"])));
            }
        }
        out.push_str(&format!("--- server log ---\n{}\n", tail(&self.dir.path().join("server.log"), 30)));
        out
    }

    // === tear-down ===

    /// Removes every container and sandbox of node `i` through CRI (sweeping
    /// until none is left: a create a killed agent left in flight may land after
    /// a first sweep), then stops its containerd.
    fn stop_node_runtime(&mut self, i: usize) {
        let socket = self.nodes[i].socket.clone();
        if let Some(mut containerd) = self.nodes[i].containerd.take() {
            if matches!(containerd.try_wait(), Ok(None)) {
                self.rt.block_on(crate::support::sweep_runtime(&socket));
            }
            stop_child(&mut containerd, Duration::from_secs(10));
        }
    }

    /// Kills what still runs in node `i`'s namespace (shims of containers the
    /// sweep could not remove): all of it was started by this cluster's containerd.
    fn kill_namespace_processes(&self, i: usize) -> Vec<String> {
        let pids: Vec<String> = text("ip", &["netns", "pids", &self.nodes[i].netns]).split_whitespace().map(str::to_string).collect();
        for pid in &pids {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
        pids
    }

    fn teardown(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        for i in 0..self.nodes.len() {
            self.kill_agent(i);
        }
        for i in 0..self.nodes.len() {
            self.stop_node_runtime(i);
            let pids = self.kill_namespace_processes(i);
            if !pids.is_empty() {
                problems.push(format!("processes left in {}: {}", self.nodes[i].netns, pids.join(" ")));
            }
        }
        // Anything still mounted under the directory (a tmpfs volume of a pod that
        // never got torn down) is unmounted so that the directory can go.
        if let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") {
            let dir = self.dir.path().display().to_string();
            let mut targets: Vec<&str> = mounts.lines().filter_map(|l| l.split(' ').nth(1)).filter(|t| t.starts_with(&dir)).collect();
            targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
            for t in targets {
                let _ = Command::new("umount").arg("-l").arg(t).status();
            }
        }
        for node in &self.nodes {
            ip(&["netns", "del", &node.netns]);
            ip(&["link", "del", &node.veth]);
        }
        if let Some(bridge) = &self.bridge {
            ip(&["link", "del", bridge]);
        }
        if let Some(mut server) = self.server.take() {
            let _ = server.child.kill();
            let _ = server.child.wait();
        }
        problems.extend(self.leftovers());
        problems
    }

    /// What of this cluster still exists in the root namespace: namespaces,
    /// links, routes or nftables rules naming its addresses.
    pub fn leftovers(&self) -> Vec<String> {
        let n = self.n;
        let mut left = Vec::new();
        if self.bridge.is_none() {
            return left;
        }
        for line in text("ip", &["netns", "list"]).lines() {
            if line.split_whitespace().next().is_some_and(|name| name.starts_with(&format!("skn{n}-"))) {
                left.push(format!("network namespace {line}"));
            }
        }
        for line in text("ip", &["-o", "link", "show"]).lines() {
            let name = line.split(": ").nth(1).unwrap_or_default().split('@').next().unwrap_or_default();
            if name == format!("skb{n}") || self.nodes.iter().any(|node| name == node.veth) {
                left.push(format!("link {name}"));
            }
        }
        let ours = [format!("10.{}.", 160 + n as u16), format!("10.112.{}.", 4 * n as u16), format!("10.250.{n}.")];
        for line in text("ip", &["-4", "route", "show", "table", "all"]).lines() {
            if ours.iter().any(|o| line.contains(o.as_str())) || line.contains(&format!("skb{n} ")) {
                left.push(format!("route {line}"));
            }
        }
        for line in text("nft", &["list", "ruleset"]).lines() {
            if ours.iter().any(|o| line.contains(o.as_str())) {
                left.push(format!("nftables rule {}", line.trim()));
            }
        }
        left
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.diagnostics());
        }
        let problems = self.teardown();
        if !problems.is_empty() && !std::thread::panicking() {
            panic!("the cluster's tear-down left:\n{}", problems.join("\n"));
        } else if !problems.is_empty() {
            eprintln!("the cluster's tear-down left:\n{}", problems.join("\n"));
        }
    }
}

// === plain HTTP from the test process ===

/// A GET through a plain TCP connection from the root namespace; the whole
/// response (status line, headers and body).
pub fn http_get(addr: &str, host: &str, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr.parse().map_err(std::io::Error::other)?, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// The status code of an HTTP response.
pub fn status_code(response: &str) -> Option<u16> {
    response.split_whitespace().nth(1)?.parse().ok()
}
