//! `skiff up`: a one-node cluster in one process — the API server on SQLite with
//! the scheduler and controllers, and this host as its node.
//!
//! The container runtime is chosen as k3s does: when containerd is installed, a
//! private one is started and supervised under `DATA_DIR/containerd`, with the
//! CNI directories and sandbox image the agent needs (its pause and busybox images
//! are imported from `DATA_DIR/images`, built there first when missing). A
//! system containerd is used only when asked for (`--containerd-socket`), or when
//! it answers on the system socket and no containerd binary can be found: its own
//! configuration (Debian's default pulls registry.k8s.io/pause and looks for CNI
//! plugins in /opt/cni/bin) cannot run Skiff's pods unchanged. Without containerd,
//! pods run as host processes. RuntimeClass `process` is created so a pod can ask
//! for host processes either way.
//!
//! Start-up is timed step by step; the goal is a Ready node within a second of
//! starting, not counting the time containerd itself takes to start.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};
use skiff_agent::runtime::containerd::{self, Containerd, ContainerdConfig};
use skiff_agent::runtime::cri::CriRuntime;
use skiff_agent::runtime::Runtime;
use skiff_apiserver::{Config, Server, Settings};
use skiff_client::{Client, ClientConfig};

use crate::agent::{self, NodeOptions, Runtimes};
use skiff_agent::network::NetworkConfig;
use crate::images::{self, BUSYBOX_ARCHIVE, BUSYBOX_IMAGE, PAUSE_ARCHIVE, PAUSE_IMAGE};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UpRuntime {
    /// containerd if installed (a private one, started here), else host processes.
    Auto,
    /// containerd; fail if it is not installed or does not start.
    Cri,
    /// Host processes for every pod (no images, no isolation).
    Process,
}

#[derive(Args, Debug, Clone)]
pub struct UpArgs {
    /// Where the datastore, certificates, kubeconfig and the node's state live.
    #[arg(long, default_value = "/var/lib/skiff")]
    pub data_dir: PathBuf,
    /// Address to serve the HTTPS API on. Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// What runs the pods.
    #[arg(long, value_enum, default_value = "auto")]
    pub runtime: UpRuntime,
    /// The node's name. Default: this host's name.
    #[arg(long)]
    pub node_name: Option<String>,
    /// The node's address. Default: the address of the interface holding the
    /// default route.
    #[arg(long)]
    pub node_ip: Option<IpAddr>,
    /// Use the containerd on this socket instead of starting one. Its config must
    /// name skiff.local/pause:3.10 as the sandbox image and DATA_DIR/agent/cni/net.d
    /// and /usr/lib/cni as its CNI directories.
    #[arg(long)]
    pub containerd_socket: Option<PathBuf>,
    /// Port of the agent's HTTPS endpoint (logs, exec, attach, port-forward).
    #[arg(long, default_value_t = agent::DEFAULT_KUBELET_PORT)]
    pub kubelet_port: u16,
    /// Service cluster IP range (IPv4 CIDR).
    #[arg(long, default_value = "10.96.0.0/12")]
    pub service_cidr: String,
    /// Nameservers for pods with dnsPolicy ClusterFirst, comma-separated. Empty:
    /// the host's resolv.conf.
    #[arg(long, value_delimiter = ',')]
    pub cluster_dns: Vec<String>,
    #[arg(long, default_value = agent::DEFAULT_CLUSTER_DOMAIN)]
    pub cluster_domain: String,
    #[arg(long, default_value_t = agent::DEFAULT_MAX_PODS)]
    pub max_pods: u32,
    #[command(flatten)]
    pub network: agent::NetworkArgs,
}

/// The RuntimeClass (and handler) of pods that run as host processes.
const PROCESS_RUNTIME_CLASS: &str = "process";
/// How long the node may take to turn Ready before `skiff up` gives up.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const HEARTBEAT: Duration = Duration::from_secs(10);

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let started_at = Timestamp::now();
    let data_dir = absolute(&args.data_dir)?;

    // 1. The datastore.
    let step = Instant::now();
    let store = crate::server::open_store("sqlite", &data_dir, &crate::server::EtcdTlsArgs::default()).await?;
    eprintln!("[1/4] datastore ready: {} ({} ms)", data_dir.join("state.db").display(), step.elapsed().as_millis());

    // 2. The API server, scheduler and controllers.
    let step = Instant::now();
    let settings = Settings { service_cidr: crate::server::parse_cidr(&args.service_cidr)?, ..Settings::default() };
    let server = Server::start(Config::new(data_dir.clone(), args.listen, settings), store).await?;
    let ca_pem = read(&data_dir.join("pki/ca.crt"))?;
    let admin = client(&server, read(&data_dir.join("pki/admin.token"))?, &ca_pem)?;
    let mut control_plane = tokio::task::JoinSet::new();
    control_plane.spawn(skiff_scheduler::run(admin.clone(), skiff_scheduler::SchedulerConfig::default()));
    control_plane.spawn(skiff_controllers::run(admin.clone(), skiff_controllers::ControllersConfig {
        service_cidr: crate::server::parse_cidr(&args.service_cidr).ok(),
        cluster_cidr: skiff_net::Cidr::parse(&args.network.cluster_cidr).map(|c| (c.addr, c.prefix)),
        ..Default::default()
    }));
    ensure_process_runtime_class(&admin).await?;
    eprintln!("[2/4] API server listening on {} ({} ms)", server.url(), step.elapsed().as_millis());
    // Machine-readable line for scripts and tests.
    println!("listening {}", server.addr);

    // 3. The container runtime.
    let step = Instant::now();
    let agent_dir = data_dir.join("agent");
    std::fs::create_dir_all(&agent_dir).with_context(|| format!("creating {}", agent_dir.display()))?;
    let chosen = choose_runtime(&args, &data_dir, &agent_dir).await?;
    let runtime_ms = step.elapsed().as_millis();
    eprintln!("[3/4] {} ({runtime_ms} ms)", chosen.description);

    // 4. The node.
    let step = Instant::now();
    let node_name = args.node_name.clone().unwrap_or_else(agent::hostname);
    let node = NodeOptions {
        name: node_name.clone(),
        node_ip: args.node_ip,
        labels: BTreeMap::new(),
        taints: Vec::new(),
        kubelet_port: args.kubelet_port,
        heartbeat: HEARTBEAT,
        max_pods: args.max_pods,
        cluster_dns: args.cluster_dns.clone(),
        cluster_domain: args.cluster_domain.clone(),
        cni_bridge: skiff_agent::kubelet::POD_BRIDGE.to_string(),
        pod_cidr: None,
        // A single machine's pods reach the outside through it unless told
        // otherwise, as on any laptop cluster.
        network: Some(NetworkConfig {
            masquerade_outside: args.network.masquerade_outside.unwrap_or(true),
            ..args.network.config(skiff_agent::kubelet::POD_BRIDGE, &args.cluster_domain)?
        }),
    };
    let config = agent::kubelet_config(&node, &agent_dir, &ca_pem, chosen.runtimes);
    let node_client = client(&server, read(&data_dir.join("node-token"))?, &ca_pem)?;
    let mut kubelet = tokio::spawn(skiff_agent::kubelet::run(node_client, config));
    tokio::select! {
        ready = wait_until_ready(&admin, &node_name, started_at) => ready?,
        ended = &mut kubelet => {
            let error = match ended {
                Ok(Ok(())) => anyhow::anyhow!("the kubelet stopped"),
                Ok(Err(e)) => e,
                Err(e) => anyhow::anyhow!("the kubelet panicked: {e}"),
            };
            return Err(error.context(format!("node {node_name} did not become Ready")));
        }
    }
    let total = started.elapsed();
    eprintln!("[4/4] node {node_name} Ready ({} ms)", step.elapsed().as_millis());
    let without_runtime = total.saturating_sub(Duration::from_millis(runtime_ms as u64));
    if chosen.containerd.is_some() {
        eprintln!("skiff is up in {} ms ({} ms without the container runtime's start)", total.as_millis(), without_runtime.as_millis());
    } else {
        eprintln!("skiff is up in {} ms", total.as_millis());
    }
    eprint!("{}", next_steps(&server.kubeconfig, chosen.process_only));
    println!("ready {node_name}");

    tokio::select! {
        _ = shutdown_signal() => eprintln!("skiff up: shutting down (pods keep running; they are adopted on the next start)"),
        ended = &mut kubelet => match ended {
            Ok(Err(e)) => eprintln!("skiff up: the kubelet stopped: {e:#}"),
            _ => eprintln!("skiff up: the kubelet stopped"),
        },
    }
    kubelet.abort();
    control_plane.abort_all();
    if let Some(containerd) = chosen.containerd {
        containerd.stop().await;
    }
    drop(server);
    Ok(())
}

/// What runs the pods, and how it was chosen.
struct ChosenRuntime {
    runtimes: Runtimes,
    /// The private containerd, when one was started.
    containerd: Option<Containerd>,
    process_only: bool,
    description: String,
}

async fn choose_runtime(args: &UpArgs, data_dir: &Path, agent_dir: &Path) -> anyhow::Result<ChosenRuntime> {
    let process = agent::process_runtime(agent_dir)?;
    let process_only = |description: String| ChosenRuntime { runtimes: Runtimes::process(process.clone()), containerd: None, process_only: true, description };
    if args.runtime == UpRuntime::Process {
        return Ok(process_only("pods run as host processes (--runtime process)".into()));
    }
    if let Some(socket) = &args.containerd_socket {
        let cri = CriRuntime::connect(socket).await.with_context(|| format!("containerd does not answer on {}", socket.display()))?;
        return Ok(existing_containerd(cri, socket, data_dir, process, "").await);
    }
    let Some(binary) = containerd::find_binary() else {
        let system = Path::new(agent::DEFAULT_CONTAINERD_SOCKET);
        if let Ok(cri) = CriRuntime::connect(system).await {
            let warning = "; its own config decides the sandbox image and CNI directories";
            return Ok(existing_containerd(cri, system, data_dir, process, warning).await);
        }
        if args.runtime == UpRuntime::Cri {
            bail!("containerd is not installed: apt-get install containerd runc containernetworking-plugins (or scripts/install-deps.sh)");
        }
        eprintln!("      containerd is not installed; for containers: apt-get install containerd runc containernetworking-plugins");
        return Ok(process_only("pods run as host processes (containerd is not installed)".into()));
    };
    let config = ContainerdConfig {
        data_dir: data_dir.to_path_buf(),
        cni_bin_dir: PathBuf::from("/usr/lib/cni"),
        cni_conf_dir: agent_dir.join("cni/net.d"),
        sandbox_image: PAUSE_IMAGE.to_string(),
    };
    let started = match Containerd::start(config).await {
        Ok(c) => c,
        Err(e) if args.runtime == UpRuntime::Auto => {
            eprintln!("      starting {} failed: {e:#}", binary.display());
            return Ok(process_only("pods run as host processes (containerd did not start)".into()));
        }
        Err(e) => return Err(e.context("starting containerd")),
    };
    let socket = started.socket().to_path_buf();
    let cri = CriRuntime::connect(&socket).await.with_context(|| format!("containerd started but does not answer on {}", socket.display()))?;
    let version = cri.version().await.unwrap_or_default();
    let cri: Arc<dyn Runtime> = Arc::new(cri);
    let notes = ensure_images(cri.as_ref(), &socket, data_dir).await;
    let description = format!("container runtime: containerd ({version}) started on {}, log {}{notes}", socket.display(), started.log_path().display());
    Ok(ChosenRuntime { runtimes: Runtimes::cri(cri, process), containerd: Some(started), process_only: false, description })
}

/// A containerd this process did not start, with the local images imported.
async fn existing_containerd(cri: CriRuntime, socket: &Path, data_dir: &Path, process: Arc<dyn Runtime>, note: &str) -> ChosenRuntime {
    let version = cri.version().await.unwrap_or_default();
    let cri: Arc<dyn Runtime> = Arc::new(cri);
    let imported = ensure_images(cri.as_ref(), socket, data_dir).await;
    ChosenRuntime {
        runtimes: Runtimes::cri(cri, process),
        containerd: None,
        process_only: false,
        description: format!("container runtime: the running containerd at {} ({version}){imported}{note}", socket.display()),
    }
}

/// Imports the pause and busybox images into containerd when it lacks them, from
/// `DATA_DIR/images` (built there first if the archives are missing). Problems are
/// reported, not fatal: the node still runs pods of images containerd has.
/// Returns a note for the progress line.
async fn ensure_images(cri: &dyn Runtime, socket: &Path, data_dir: &Path) -> String {
    let dir = images::images_dir(data_dir);
    let mut imported = Vec::new();
    let mut built = false;
    for (image, archive) in [(PAUSE_IMAGE, PAUSE_ARCHIVE), (BUSYBOX_IMAGE, BUSYBOX_ARCHIVE)] {
        if matches!(cri.image_status(image).await, Ok(Some(_))) {
            continue;
        }
        let file = dir.join(archive);
        if !file.exists() && !built {
            built = true;
            eprintln!("      building the local images into {}", dir.display());
            if let Err(e) = images::build(&dir).await {
                eprintln!("      building the images failed: {e:#}");
            }
        }
        if !file.exists() {
            eprintln!("      {image} is missing: run `skiff images build --data-dir {}`; pods cannot start without {PAUSE_IMAGE}", data_dir.display());
            continue;
        }
        match containerd::import_image(socket, &file).await {
            Ok(_) => imported.push(image),
            Err(e) => eprintln!("      importing {} failed: {e:#}", file.display()),
        }
    }
    if imported.is_empty() {
        String::new()
    } else {
        format!("; imported {}", imported.join(", "))
    }
}

/// Creates RuntimeClass `process` (handler `process`) unless it exists.
async fn ensure_process_runtime_class(client: &Client) -> anyhow::Result<()> {
    let body = json!({
        "apiVersion": "node.k8s.io/v1",
        "kind": "RuntimeClass",
        "metadata": {"name": PROCESS_RUNTIME_CLASS},
        "handler": skiff_agent::runtime::process::HANDLER,
    });
    match client.create("/apis/node.k8s.io/v1/runtimeclasses", &body).await {
        Ok(_) => Ok(()),
        Err(e) if e.reason() == Some("AlreadyExists") => Ok(()),
        Err(e) => Err(anyhow::anyhow!("creating RuntimeClass {PROCESS_RUNTIME_CLASS}: {e}")),
    }
}

/// Polls the Node until this run's kubelet reports it Ready (a Node left Ready by
/// an earlier run does not count).
async fn wait_until_ready(client: &Client, name: &str, since: Timestamp) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let path = format!("/api/v1/nodes/{name}");
    loop {
        if let Ok(node) = client.get(&path).await {
            if is_ready(&node, since) {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            bail!("node {name} is not Ready after {READY_TIMEOUT:?} (kubectl describe node {name} says why)");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether the Ready condition is True with a heartbeat at or after `since`
/// (conditions carry whole seconds, so the second `since` falls in counts).
fn is_ready(node: &Value, since: Timestamp) -> bool {
    let since = Timestamp::from_second(since.as_second()).unwrap_or(since);
    node.pointer("/status/conditions").and_then(Value::as_array).is_some_and(|cs| {
        cs.iter().any(|c| {
            let heartbeat = c["lastHeartbeatTime"].as_str().and_then(|t| t.parse::<Timestamp>().ok());
            c["type"] == "Ready" && c["status"] == "True" && heartbeat.is_some_and(|h| h >= since)
        })
    })
}

/// What to do next, for a person at a terminal.
fn next_steps(kubeconfig: &Path, process_only: bool) -> String {
    // The same demo works on both runtimes: busybox is the image's, and on the
    // host (busybox-static) for the process runtime, which ignores the image.
    let script = "mkdir -p /tmp/web && echo hello from skiff > /tmp/web/index.html && exec busybox httpd -f -p 8080 -h /tmp/web";
    let runtime_note = if process_only { "\n(pods run as host processes on this node: no images, no isolation)\n" } else { "" };
    format!(
        "\nkubeconfig: {kc}\n{runtime_note}\nnext:\n  export KUBECONFIG={kc}\n  kubectl get nodes\n  kubectl create deployment web --image={BUSYBOX_IMAGE} -- sh -c '{script}'\n  kubectl rollout status deployment/web\n  kubectl port-forward deployment/web 8080:8080 &\n  curl http://127.0.0.1:8080/\n",
        kc = kubeconfig.display(),
    )
}

fn client(server: &Server, token: String, ca_pem: &str) -> anyhow::Result<Client> {
    Client::new(ClientConfig { servers: vec![server.url()], token: token.trim().to_string(), ca_pem: ca_pem.to_string(), timeout: Duration::from_secs(30) })
        .map_err(|e| anyhow::anyhow!("building the in-process API client: {e}"))
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// The data directory as an absolute path: it is written into the Node (the
/// storage annotation) and containerd's config, which outlive our working directory.
fn absolute(dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    dir.canonicalize().with_context(|| format!("resolving {}", dir.display()))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_steps_name_the_kubeconfig_and_a_demo() {
        let text = next_steps(Path::new("/var/lib/skiff/kubeconfig.yaml"), false);
        assert!(text.contains("export KUBECONFIG=/var/lib/skiff/kubeconfig.yaml\n"), "{text}");
        assert!(text.contains("kubectl get nodes"));
        assert!(text.contains("kubectl port-forward deployment/web 8080:8080"));
        assert!(!text.contains("host processes"));
        assert!(next_steps(Path::new("/k"), true).contains("host processes"));
    }

    #[test]
    fn a_node_is_ready_when_this_run_reported_it_ready() {
        let since: Timestamp = "2025-01-01T00:00:10.5Z".parse().unwrap();
        let node = |status: &str, heartbeat: &str| {
            json!({"status": {"conditions": [
                {"type": "MemoryPressure", "status": "False", "lastHeartbeatTime": heartbeat},
                {"type": "Ready", "status": status, "lastHeartbeatTime": heartbeat},
            ]}})
        };
        assert!(is_ready(&node("True", "2025-01-01T00:00:11Z"), since));
        assert!(is_ready(&node("True", "2025-01-01T00:00:10Z"), since), "the same second counts");
        assert!(!is_ready(&node("True", "2025-01-01T00:00:09Z"), since), "left Ready by an earlier run");
        assert!(!is_ready(&node("False", "2025-01-01T00:00:11Z"), since));
        assert!(!is_ready(&json!({"metadata": {"name": "n"}}), since));
    }
}
