//! `skiff bench net`: the service datapath and the Ingress gateway, each figure next
//! to a baseline measured in the same run (machines here are noisy, so only ratios
//! travel).
//!
//! Everything runs on this host, inside network namespaces the benchmark creates
//! (`skbn-<pid>-…`) or on loopback: no traffic leaves those namespaces, and nothing in
//! the host's own namespace (its links, routes or nftables) is touched.
//!
//! - **sync**: the service proxy ([`Proxier`]) in a fresh namespace with 1,000 and
//!   10,000 ClusterIP Services of 2–3 endpoints each: the first full sync, then one
//!   endpoint added to one Service, and the size of each script. Baseline: `nft -f` of
//!   a one-rule script in the same namespace, the fixed cost of any transaction.
//! - **clusterip**: a "node" namespace with a bridge, backend "pods" serving a small
//!   static body with nginx, and a client pod running wrk: requests/s and p99 to a
//!   pod IP (the baseline) and to ClusterIPs in front of it (one endpoint, then every
//!   backend), the proxy programming the node namespace.
//! - **endpoints**: with 1,000 more Services in the proxy, one endpoint of a Service
//!   turned not ready, N times: from `apply_slice` to the kernel having it (the sync
//!   returned) and to new connections no longer reaching it. Then the whole path:
//!   an API server in this process, the slice patched through the API, an informer
//!   feeding the proxy, against the in-process path.
//! - **ingress**: the Ingress gateway on loopback routing a host and path to two
//!   backends, against haproxy and nginx doing the same routing to the same
//!   backends, and against one backend reached directly.
//!
//! wrk generates the load when installed (scripts/install-bench-deps.sh); without it
//! a built-in HTTP/1.1 generator (closed loop, keep-alive, same connection count)
//! stands in and every figure says which one ran. Without nginx, the backends are a
//! built-in static server. Every process is started by the benchmark and stopped by
//! its PID, and every namespace deleted, also after an error, `--timeout` or Ctrl-C.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use serde_json::{json, Value};
use skiff_apiserver::{Config, Server, Settings};
use skiff_client::{Api, Client, ClientConfig, Informer, InformerEvent, ListParams, PatchType};
use skiff_net::nft::{self, Nft, NftCli};
use skiff_net::proxy::{Proxier, ProxyConfig};
use skiff_store::SqliteStore;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;

#[derive(Args, Debug, Clone)]
pub struct NetArgs {
    /// Parts to run, in this order: sync, clusterip, endpoints, ingress.
    #[arg(long, value_delimiter = ',', default_value = "sync,clusterip,endpoints,ingress")]
    pub parts: Vec<Part>,
    /// How long each load runs.
    #[arg(long, default_value = "10s", value_parser = crate::server::parse_duration)]
    pub duration: Duration,
    /// Open connections of each load.
    #[arg(long, default_value_t = 50)]
    pub connections: usize,
    /// wrk threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Backend pods behind the Services (at least 2).
    #[arg(long, default_value_t = 2)]
    pub backends: usize,
    /// Services in the proxy for the sync figures.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    pub sync_sizes: Vec<usize>,
    /// Services in the proxy while endpoint changes are timed.
    #[arg(long, default_value_t = 1000)]
    pub services: usize,
    /// Endpoint changes timed (each one is undone, untimed, before the next).
    #[arg(long, default_value_t = 50)]
    pub changes: usize,
    /// Skip the endpoint changes through an API server.
    #[arg(long)]
    pub no_api: bool,
    /// Generate load with the built-in generator even when wrk is installed.
    #[arg(long)]
    pub builtin_load: bool,
    /// The whole run gives up after this long (tear-down comes on top).
    #[arg(long, default_value = "20m", value_parser = crate::server::parse_duration)]
    pub timeout: Duration,

    // The benchmark runs itself inside the client namespace for these.
    /// Internal: run the built-in load generator against this URL, print one JSON line.
    #[arg(long, hide = true)]
    pub internal_load: Option<String>,
    /// Internal: the Host header of the built-in load generator.
    #[arg(long, hide = true)]
    pub internal_host: Option<String>,
    /// Internal: answer one-request probes read from stdin (`ADDR HOST PATH` lines).
    #[arg(long, hide = true)]
    pub internal_probe: bool,
    /// Internal: serve a static body on this address (a backend without nginx).
    #[arg(long, hide = true)]
    pub internal_serve: Option<SocketAddr>,
    /// Internal: the body `--internal-serve` answers with.
    #[arg(long, hide = true, default_value = "ok\n")]
    pub internal_body: String,
}

/// A part of the benchmark.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Sync,
    Clusterip,
    Endpoints,
    Ingress,
}

/// The namespace of the benchmark's Services and EndpointSlices.
const NS: &str = "bench-net";
/// The node name the proxy is told, and that endpoints carry.
const NODE_NAME: &str = "bench-net-node";
/// The pods' subnet on the node's bridge: gateway .1, client .10, backends .11 on.
const POD_NET: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 0);
const CLUSTER_CIDR: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 244, 0, 0), 16);
/// The measured Services' cluster IPs (in the default service CIDR 10.96.0.0/12).
const WEB_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 100, 10);
const WEB_ONE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 100, 11);
/// Filler Services take cluster IPs from here on, and their endpoints addresses from
/// FILLER_ENDPOINTS on: rules only, no traffic ever goes to them.
const FILLER_CLUSTER_IPS: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 0);
const FILLER_ENDPOINTS: Ipv4Addr = Ipv4Addr::new(10, 244, 16, 0);
/// Host and path the Ingress, haproxy and nginx all route.
const INGRESS_HOST: &str = "bench.example";
const INGRESS_PATH: &str = "/app";
/// Consecutive probes on new connections that must avoid an endpoint before
/// traffic counts as moved (a false positive needs 1/2^8 luck with two endpoints).
const CLEAN_PROBES: usize = 8;
/// Bounds of one wait for the datapath (probes, syncs).
const SETTLE_LIMIT: Duration = Duration::from_secs(10);
const SETTLE_PROBES: usize = 2000;
/// Incremental syncs timed per size (the median is reported).
const INCREMENTAL_SYNCS: usize = 5;
/// One-rule `nft -f` runs timed for the fixed cost (after one warm-up).
const NFT_BASELINE_RUNS: usize = 10;

// === entry ===

pub async fn run(args: NetArgs) -> anyhow::Result<()> {
    if let Some(url) = &args.internal_load {
        return internal_load(url, args.internal_host.as_deref(), args.connections, args.duration).await;
    }
    if args.internal_probe {
        return internal_probe().await;
    }
    if let Some(addr) = args.internal_serve {
        return internal_serve(addr, &args.internal_body, args.timeout).await;
    }
    anyhow::ensure!(args.backends >= 2, "--backends must be at least 2");
    anyhow::ensure!(args.connections > 0 && args.threads > 0, "--connections and --threads must be positive");
    anyhow::ensure!(args.threads <= args.connections, "--threads must not exceed --connections (wrk's rule)");
    anyhow::ensure!(args.backends <= 50, "--backends is at most 50");
    for tool in ["ip", "nft"] {
        anyhow::ensure!(find_binary(tool).is_some(), "`{tool}` is not installed (scripts/install-deps.sh installs iproute2 and nftables)");
    }
    anyhow::ensure!(is_root(), "skiff bench net creates network namespaces: run it as root");

    let tmp = tempfile::Builder::new().prefix("skbn.").tempdir_in("/tmp")?;
    let ctx = Ctx {
        pid: std::process::id(),
        dir: tmp.path().to_path_buf(),
        exe: std::env::current_exe().context("finding this binary (the built-in load generator runs it)")?,
        wrk: if args.builtin_load { None } else { find_binary("wrk") },
        nginx: find_binary("nginx"),
        haproxy: find_binary("haproxy"),
        args: args.clone(),
    };
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!(
        "skiff bench net: {} cores; load {} ({} connections{}, {} s per run); backends {}; parts {}",
        cores,
        ctx.load_tool(),
        args.connections,
        if ctx.wrk.is_some() { format!(", {} threads", args.threads) } else { String::new() },
        args.duration.as_secs_f64(),
        ctx.nginx.as_ref().map_or("built-in static server (no nginx)".to_string(), |_| "nginx".to_string()),
        args.parts.iter().map(|p| format!("{p:?}").to_lowercase()).collect::<Vec<_>>().join(", ")
    );
    let stale = stale_namespaces().await;
    if !stale.is_empty() {
        eprintln!("  note: namespaces of an earlier run whose process is gone: {} (ip netns del NAME)", stale.join(", "));
    }

    let mut summary = Summary::default();
    let outcome = tokio::select! {
        r = tokio::time::timeout(args.timeout, measure(&ctx, &mut summary)) => match r {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!("the benchmark did not finish within {} s (--timeout)", args.timeout.as_secs())),
        },
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    // Whatever `measure` held (processes, namespaces) has been dropped, so torn down.
    summary.print();
    drop(tmp);
    outcome
}

/// What every part needs.
struct Ctx {
    pid: u32,
    /// The run's temporary directory (configuration files, logs).
    dir: PathBuf,
    /// This binary: the built-in load generator, prober and backend run it.
    exe: PathBuf,
    wrk: Option<PathBuf>,
    nginx: Option<PathBuf>,
    haproxy: Option<PathBuf>,
    args: NetArgs,
}

impl Ctx {
    fn load_tool(&self) -> &'static str {
        if self.wrk.is_some() {
            "wrk"
        } else {
            "built-in generator"
        }
    }

    /// A network namespace name of this run.
    fn netns(&self, what: &str) -> String {
        format!("skbn-{}-{what}", self.pid)
    }
}

/// Runs the chosen parts; a failed part is reported and the others still run.
async fn measure(ctx: &Ctx, summary: &mut Summary) -> anyhow::Result<()> {
    let parts = &ctx.args.parts;
    let mut failed = Vec::new();
    if parts.contains(&Part::Sync) {
        println!();
        println!("=== rule sync ===");
        if let Err(e) = sync_part(ctx, summary).await {
            println!("rule sync FAILED: {e:#}");
            failed.push("sync");
        }
    }
    if parts.contains(&Part::Clusterip) || parts.contains(&Part::Endpoints) {
        if let Err(e) = pod_parts(ctx, summary, &mut failed).await {
            println!("pod network FAILED: {e:#}");
            failed.push("pod network");
        }
    }
    if parts.contains(&Part::Ingress) {
        println!();
        println!("=== Ingress gateway ===");
        if let Err(e) = ingress_part(ctx, summary).await {
            println!("ingress FAILED: {e:#}");
            failed.push("ingress");
        }
    }
    if !failed.is_empty() {
        bail!("parts failed: {}", failed.join(", "));
    }
    Ok(())
}

// === summary ===

/// The figures of the run, printed as one table at the end.
#[derive(Default)]
struct Summary {
    rows: Vec<[String; 4]>,
}

impl Summary {
    fn add(&mut self, figure: impl Into<String>, skiff: impl Into<String>, baseline: impl Into<String>, ratio: impl Into<String>) {
        self.rows.push([figure.into(), skiff.into(), baseline.into(), ratio.into()]);
    }

    fn print(&self) {
        if self.rows.is_empty() {
            return;
        }
        println!();
        println!("=== summary ===");
        println!("{:<58} {:>14} {:>30} {:>9}", "figure", "skiff", "baseline", "ratio");
        for [figure, skiff, baseline, ratio] in &self.rows {
            println!("{figure:<58} {skiff:>14} {baseline:>30} {ratio:>9}");
        }
    }
}

/// Percentiles by the nearest rank on sorted samples: index round((n-1)·p), the rule
/// the other benchmarks use.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p.clamp(0.0, 1.0)).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    percentile(&samples, 0.5)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn ratio(a: f64, b: f64) -> String {
    if b <= 0.0 || !a.is_finite() {
        return "-".to_string();
    }
    format!("{:.2}x", a / b)
}

fn dratio(a: Duration, b: Duration) -> String {
    ratio(a.as_secs_f64(), b.as_secs_f64())
}

/// One printed figure: who (`baseline`, `skiff`, `skipped`), what, and the numbers.
fn figure(who: &str, what: impl std::fmt::Display, numbers: impl std::fmt::Display) {
    println!("{who:<9} {:<52} {numbers}", what.to_string());
}

fn kib(bytes: usize) -> String {
    format!("{:.1} KiB", bytes as f64 / 1024.0)
}

// === processes and namespaces ===

/// A binary on PATH, or in the sbin directories (root's PATH may lack them).
fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Whether this process runs as root (namespaces, veths and nftables need it).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Uid:").map(|r| r.split_whitespace().nth(1).map(str::to_string))))
        .flatten()
        .is_some_and(|euid| euid == "0")
}

async fn ip(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("ip").args(args).stdin(Stdio::null()).kill_on_drop(true).output().await.context("running ip(8)")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Namespaces named like this benchmark's whose process no longer runs.
async fn stale_namespaces() -> Vec<String> {
    let list = ip(&["netns", "list"]).await.unwrap_or_default();
    list.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| {
            let Some(rest) = name.strip_prefix("skbn-") else { return false };
            let pid = rest.split('-').next().unwrap_or("");
            pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists()
        })
        .map(str::to_string)
        .collect()
}

/// A network namespace of this run, deleted on drop (with everything in it: links,
/// addresses, routes, the nftables table).
struct Netns {
    name: String,
}

impl Netns {
    async fn add(name: String) -> anyhow::Result<Netns> {
        ip(&["netns", "add", &name]).await?;
        let ns = Netns { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]).await?;
        Ok(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Synchronous: drop runs on every exit path, including a cancelled future.
        let status = std::process::Command::new("ip").args(["netns", "del", &self.name]).stdin(Stdio::null()).stderr(Stdio::null()).status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("  tear-down: could not delete network namespace {} (ip netns del {})", self.name, self.name);
        }
    }
}

/// A server process the benchmark started (nginx, haproxy, a built-in backend),
/// stopped by its PID on drop: SIGTERM, then SIGKILL after 3 s.
struct Daemon {
    what: String,
    child: std::process::Child,
    log: PathBuf,
}

impl Daemon {
    /// Starts `argv`, inside `netns` when given (`ip netns exec` execs the program,
    /// so the PID is the server's own); stdout and stderr go to `log`.
    fn spawn(what: &str, netns: Option<&str>, argv: &[String], log: PathBuf) -> anyhow::Result<Daemon> {
        let out = std::fs::File::create(&log)?;
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = std::process::Command::new("ip");
                c.args(["netns", "exec", ns]).args(argv);
                c
            }
            None => {
                let mut c = std::process::Command::new(&argv[0]);
                c.args(&argv[1..]);
                c
            }
        };
        let child = cmd.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out).spawn().with_context(|| format!("starting {what} ({})", argv[0]))?;
        Ok(Daemon { what: what.to_string(), child, log })
    }

    /// Fails with the end of its log if the process has exited.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect();
            bail!("{} exited ({status}): {}", self.what, tail.join(" | "));
        }
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let pid = self.child.id().to_string();
        let _ = std::process::Command::new("kill").args(["-TERM", &pid]).stderr(Stdio::null()).status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("  tear-down: {} (pid {pid}) ignored SIGTERM; killing it", self.what);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until something accepts TCP connections on `addr` (this namespace).
async fn wait_listening(daemon: &mut Daemon, addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        daemon.check_alive()?;
        if TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{} is not listening on {addr} after 10 s", daemon.what);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A port free on every address of `ips` at once (checked, then released).
fn free_port(ips: &[Ipv4Addr]) -> anyhow::Result<u16> {
    for _ in 0..50 {
        let first = std::net::TcpListener::bind((ips[0], 0))?;
        let port = first.local_addr()?.port();
        let others: Result<Vec<_>, _> = ips[1..].iter().map(|ip| std::net::TcpListener::bind((*ip, port))).collect();
        if others.is_ok() {
            return Ok(port);
        }
    }
    bail!("no port free on all of {ips:?}")
}

// === HTTP ===

/// Where requests go: an IPv4 address, the Host header and the path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    addr: SocketAddrV4,
    host: String,
    path: String,
}

impl Target {
    fn new(addr: SocketAddrV4, host: Option<&str>, path: &str) -> Target {
        Target { addr, host: host.map_or_else(|| addr.to_string(), str::to_string), path: path.to_string() }
    }

    /// Parses `http://A.B.C.D[:PORT][/PATH]`.
    fn parse(url: &str, host: Option<&str>) -> anyhow::Result<Target> {
        let rest = url.strip_prefix("http://").with_context(|| format!("{url}: only http:// URLs"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, "/"),
        };
        let addr = match authority.parse::<SocketAddrV4>() {
            Ok(a) => a,
            Err(_) => SocketAddrV4::new(authority.parse().with_context(|| format!("{url}: the host must be an IPv4 address"))?, 80),
        };
        Ok(Target::new(addr, host, path))
    }

    fn url(&self) -> String {
        format!("http://{}{}", self.addr, self.path)
    }

    fn request(&self, close: bool) -> Vec<u8> {
        let connection = if close { "Connection: close\r\n" } else { "" };
        format!("GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: skiff-bench\r\n{connection}\r\n", self.path, self.host).into_bytes()
    }
}

/// One HTTP/1.1 response.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Response {
    status: u16,
    body: Vec<u8>,
    /// The server closes the connection after it.
    close: bool,
}

/// Heads larger than this are refused (a misbehaving server).
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Reads one response from `stream`; `buf` carries bytes read past it to the next call.
async fn read_response<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> std::io::Result<Response> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(bad("response head too large"));
        }
        fill(stream, buf).await?;
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| bad("response head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad("no status code"))?;
    let mut length = None;
    let mut chunked = false;
    let mut close = status_line.starts_with("HTTP/1.0");
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().map_err(|_| bad("bad content-length"))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            let v = value.to_ascii_lowercase();
            close = v.contains("close") || (close && !v.contains("keep-alive"));
        }
    }
    buf.drain(..head_end);
    let no_body = status == 204 || status == 304 || (100..200).contains(&status);
    let body = if no_body {
        Vec::new()
    } else if chunked {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = find(buf, b"\r\n") {
                    break i;
                }
                fill(stream, buf).await?;
            };
            let size_text = std::str::from_utf8(&buf[..line_end]).map_err(|_| bad("bad chunk size"))?;
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16).map_err(|_| bad("bad chunk size"))?;
            buf.drain(..line_end + 2);
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    let end = loop {
                        if let Some(i) = find(buf, b"\r\n") {
                            break i;
                        }
                        fill(stream, buf).await?;
                    };
                    buf.drain(..end + 2);
                    if end == 0 {
                        break;
                    }
                }
                break body;
            }
            if body.len() + size > MAX_BODY {
                return Err(bad("response body too large"));
            }
            while buf.len() < size + 2 {
                fill(stream, buf).await?;
            }
            body.extend_from_slice(&buf[..size]);
            buf.drain(..size + 2);
        }
    } else if let Some(n) = length {
        if n > MAX_BODY {
            return Err(bad("response body too large"));
        }
        while buf.len() < n {
            fill(stream, buf).await?;
        }
        buf.drain(..n).collect()
    } else {
        // No length: the body runs to the end of the connection.
        loop {
            match stream.read_buf(buf).await? {
                0 => break,
                _ if buf.len() > MAX_BODY => return Err(bad("response body too large")),
                _ => {}
            }
        }
        close = true;
        std::mem::take(buf)
    };
    Ok(Response { status, body, close })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn fill<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> std::io::Result<()> {
    buf.reserve(4096);
    if stream.read_buf(buf).await? == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed mid-response"));
    }
    Ok(())
}

/// One request on a new connection.
async fn http_once(target: &Target, timeout: Duration) -> anyhow::Result<Response> {
    let exchange = async {
        let mut stream = TcpStream::connect(target.addr).await?;
        stream.set_nodelay(true)?;
        stream.write_all(&target.request(true)).await?;
        let mut buf = Vec::new();
        anyhow::Ok(read_response(&mut stream, &mut buf).await?)
    };
    tokio::time::timeout(timeout, exchange).await.with_context(|| format!("{} did not answer within {timeout:?}", target.url()))?
}

// === load ===

/// What one load run measured.
#[derive(Debug, Clone, PartialEq)]
struct LoadReport {
    tool: &'static str,
    requests: u64,
    seconds: f64,
    rps: f64,
    p50: Duration,
    p99: Duration,
    /// Connection, read, write and timeout errors.
    errors: u64,
    /// Responses other than 2xx and 3xx.
    non_2xx: u64,
}

impl LoadReport {
    fn line(&self) -> String {
        let mut s = format!("{:>9.0} req/s  p50 {:>9}  p99 {:>9}", self.rps, ms(self.p50), ms(self.p99));
        if self.errors > 0 || self.non_2xx > 0 {
            s.push_str(&format!("  ({} errors, {} non-2xx of {})", self.errors, self.non_2xx, self.requests));
        }
        s
    }

    fn rps_cell(&self) -> String {
        format!("{:.0} req/s", self.rps)
    }

    /// A run where more than 1% of the requests failed measures failures, not a proxy.
    fn check(&self, what: &str) -> anyhow::Result<()> {
        let bad = self.errors + self.non_2xx;
        anyhow::ensure!(self.requests > 0, "{what}: no request completed ({} errors)", self.errors);
        anyhow::ensure!(bad * 100 <= self.requests, "{what}: {} errors and {} non-2xx responses in {} requests", self.errors, self.non_2xx, self.requests);
        Ok(())
    }
}

/// Parses a wrk duration: `465.00us`, `1.23ms`, `2.00s`, `1.00m`.
fn parse_wrk_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "us" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

/// Reads `wrk --latency` output.
fn parse_wrk(out: &str) -> anyhow::Result<LoadReport> {
    let mut report = LoadReport { tool: "wrk", requests: 0, seconds: 0.0, rps: 0.0, p50: Duration::ZERO, p99: Duration::ZERO, errors: 0, non_2xx: 0 };
    let (mut rps, mut p50, mut p99, mut total) = (None, None, None, None);
    for line in out.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = v.trim().parse::<f64>().ok();
        } else if let Some(v) = line.strip_prefix("50%") {
            p50 = parse_wrk_duration(v);
        } else if let Some(v) = line.strip_prefix("99%") {
            p99 = parse_wrk_duration(v);
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            report.non_2xx = v.trim().parse().unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            report.errors = v.split(',').filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok()).sum();
        } else if line.contains(" requests in ") {
            // `224343 requests in 3.06s, 32.09MB read`
            let mut words = line.split_whitespace();
            let n = words.next().and_then(|w| w.parse::<u64>().ok());
            let secs = words.nth(2).and_then(|w| parse_wrk_duration(w.trim_end_matches(',')));
            if let (Some(n), Some(secs)) = (n, secs) {
                total = Some((n, secs.as_secs_f64()));
            }
        }
    }
    let (Some(rps), Some(p50), Some(p99), Some((requests, seconds))) = (rps, p50, p99, total) else {
        bail!("unexpected wrk output: {}", out.trim());
    };
    report.rps = rps;
    report.p50 = p50;
    report.p99 = p99;
    report.requests = requests;
    report.seconds = seconds;
    Ok(report)
}

/// Runs one load against `target` for `--duration`, from inside `netns` when given.
async fn load(ctx: &Ctx, netns: Option<&str>, target: &Target) -> anyhow::Result<LoadReport> {
    let args = &ctx.args;
    let secs = args.duration.as_secs().max(1);
    let mut argv: Vec<String> = Vec::new();
    if let Some(ns) = netns {
        argv.extend(["ip", "netns", "exec", ns].map(String::from));
    }
    match &ctx.wrk {
        Some(wrk) => {
            argv.push(wrk.display().to_string());
            argv.extend([
                "-t".into(),
                args.threads.to_string(),
                "-c".into(),
                args.connections.to_string(),
                "-d".into(),
                format!("{secs}s"),
                "--timeout".into(),
                "2s".into(),
                "--latency".into(),
                "-H".into(),
                format!("Host: {}", target.host),
                target.url(),
            ]);
        }
        None => {
            argv.push(ctx.exe.display().to_string());
            argv.extend([
                "bench".into(),
                "net".into(),
                "--internal-load".into(),
                target.url(),
                "--internal-host".into(),
                target.host.clone(),
                "--connections".into(),
                args.connections.to_string(),
                "--duration".into(),
                format!("{secs}s"),
            ]);
        }
    }
    let run = Command::new(&argv[0]).args(&argv[1..]).stdin(Stdio::null()).kill_on_drop(true).output();
    let out = tokio::time::timeout(Duration::from_secs(secs + 30), run)
        .await
        .with_context(|| format!("{} against {} did not end", ctx.load_tool(), target.url()))?
        .with_context(|| format!("running {}", argv[0]))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("{} against {} failed ({}): {} {}", ctx.load_tool(), target.url(), out.status, stdout.trim(), String::from_utf8_lossy(&out.stderr).trim());
    }
    match ctx.wrk {
        Some(_) => parse_wrk(&stdout),
        None => parse_builtin(&stdout),
    }
}

fn parse_builtin(out: &str) -> anyhow::Result<LoadReport> {
    let line = out.lines().rev().find(|l| l.trim_start().starts_with('{')).with_context(|| format!("no result from the built-in generator: {out}"))?;
    let v: Value = serde_json::from_str(line)?;
    let u = |k: &str| v[k].as_u64().unwrap_or(0);
    Ok(LoadReport {
        tool: "built-in",
        requests: u("requests"),
        seconds: v["seconds"].as_f64().unwrap_or(0.0),
        rps: v["rps"].as_f64().unwrap_or(0.0),
        p50: Duration::from_micros(u("p50_us")),
        p99: Duration::from_micros(u("p99_us")),
        errors: u("errors"),
        non_2xx: u("non_2xx"),
    })
}

/// The built-in generator: `connections` keep-alive connections, each sending its next
/// request when the last response is in (closed loop, as wrk), for `duration`.
async fn builtin_load(target: &Target, connections: usize, duration: Duration) -> LoadReport {
    // Bounded memory: at most this many latency samples in all.
    const MAX_SAMPLES: usize = 20_000_000;
    let per_conn = (MAX_SAMPLES / connections.max(1)).max(1);
    let started = Instant::now();
    let deadline = started + duration;
    let request: Arc<[u8]> = target.request(false).into();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (target, request) = (target.clone(), request.clone());
        tasks.spawn(async move {
            let mut lat = Vec::new();
            let (mut errors, mut non_2xx) = (0u64, 0u64);
            'connect: while Instant::now() < deadline && lat.len() < per_conn {
                let stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(target.addr)).await;
                let mut stream = match stream {
                    Ok(Ok(s)) => s,
                    _ => {
                        errors += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let mut buf = Vec::with_capacity(8192);
                while Instant::now() < deadline && lat.len() < per_conn {
                    let t = Instant::now();
                    let exchange = async {
                        stream.write_all(&request).await?;
                        read_response(&mut stream, &mut buf).await
                    };
                    match tokio::time::timeout(Duration::from_secs(2), exchange).await {
                        Ok(Ok(resp)) => {
                            lat.push(t.elapsed());
                            if !(200..400).contains(&resp.status) {
                                non_2xx += 1;
                            }
                            if resp.close {
                                continue 'connect;
                            }
                        }
                        _ => {
                            errors += 1;
                            continue 'connect;
                        }
                    }
                }
            }
            (lat, errors, non_2xx)
        });
    }
    let mut all = Vec::new();
    let (mut errors, mut non_2xx) = (0, 0);
    while let Some(done) = tasks.join_next().await {
        if let Ok((lat, e, n)) = done {
            all.extend(lat);
            errors += e;
            non_2xx += n;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    all.sort();
    LoadReport {
        tool: "built-in",
        requests: all.len() as u64,
        seconds,
        rps: all.len() as f64 / seconds.max(1e-9),
        p50: percentile(&all, 0.5),
        p99: percentile(&all, 0.99),
        errors,
        non_2xx,
    }
}

/// `--internal-load`: one load run, printed as one JSON line.
async fn internal_load(url: &str, host: Option<&str>, connections: usize, duration: Duration) -> anyhow::Result<()> {
    let target = Target::parse(url, host)?;
    let r = builtin_load(&target, connections.max(1), duration).await;
    println!(
        "{}",
        json!({"requests": r.requests, "seconds": r.seconds, "rps": r.rps, "p50_us": r.p50.as_micros() as u64,
               "p99_us": r.p99.as_micros() as u64, "errors": r.errors, "non_2xx": r.non_2xx})
    );
    Ok(())
}

/// `--internal-probe`: for each `ADDR HOST PATH` line on stdin, one GET on a new
/// connection; prints `STATUS BODY` (the body's first line) or `ERR message`.
/// Ends with its stdin.
async fn internal_probe() -> anyhow::Result<()> {
    use std::io::{BufRead, Write};
    // A thread reads stdin (blocking) and hands the lines over.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = rx.recv().await {
        let mut words = line.split_whitespace();
        let (Some(addr), Some(host), Some(path)) = (words.next(), words.next(), words.next()) else { continue };
        let answer = match addr.parse::<SocketAddrV4>() {
            Ok(addr) => match http_once(&Target::new(addr, Some(host), path), Duration::from_secs(2)).await {
                Ok(r) => format!("{} {}", r.status, String::from_utf8_lossy(&r.body).lines().next().unwrap_or("").trim()),
                Err(e) => format!("ERR {e:#}"),
            },
            Err(e) => format!("ERR {addr}: {e}"),
        };
        // A few bytes to a pipe the benchmark is reading: blocking is harmless.
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", answer.replace('\n', " "))?;
        out.flush()?;
    }
    Ok(())
}

/// `--internal-serve`: a static HTTP/1.1 server (keep-alive, GET only), the backend
/// when nginx is not installed. Ends by itself after `lifetime`.
async fn internal_serve(addr: SocketAddr, body: &str, lifetime: Duration) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let response: Arc<[u8]> = format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes().into();
    match tokio::time::timeout(lifetime, accept_loop(listener, response)).await {
        Ok(r) => Ok(r?),
        Err(_) => Ok(()),
    }
}

/// Serves every connection `listener` accepts with `response` for each request head.
async fn accept_loop(listener: tokio::net::TcpListener, response: Arc<[u8]>) -> std::io::Result<()> {
    loop {
        let (mut stream, _) = listener.accept().await?;
        let response = response.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let mut buf = Vec::with_capacity(4096);
            loop {
                while let Some(end) = find(&buf, b"\r\n\r\n") {
                    let close = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase().contains("connection: close");
                    buf.drain(..end + 4);
                    if stream.write_all(&response).await.is_err() || close {
                        return;
                    }
                }
                if buf.len() > MAX_HEAD || fill(&mut stream, &mut buf).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// The prober: this binary inside the client namespace, answering one request at a
/// time on a new connection each, so that every probe meets the NAT rules afresh.
struct Prober {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Prober {
    fn start(ctx: &Ctx, netns: &str) -> anyhow::Result<Prober> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", netns])
            .arg(&ctx.exe)
            .args(["bench", "net", "--internal-probe"])
            .env("SKIFF_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting the prober")?;
        let stdin = child.stdin.take().context("prober stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("prober stdout")?).lines();
        Ok(Prober { child, stdin, stdout })
    }

    /// GETs `/` from `addr`; returns the body's first line of a 200 answer.
    async fn get(&mut self, addr: SocketAddrV4) -> anyhow::Result<String> {
        self.stdin.write_all(format!("{addr} {addr} /\n").as_bytes()).await?;
        self.stdin.flush().await?;
        let line = tokio::time::timeout(Duration::from_secs(5), self.stdout.next_line())
            .await
            .context("the prober did not answer within 5 s")??
            .with_context(|| format!("the prober ended ({:?})", self.child.try_wait()))?;
        match line.split_once(' ') {
            Some(("200", body)) => Ok(body.to_string()),
            _ => bail!("GET http://{addr}/: {line}"),
        }
    }

    /// Probes until `addr` answers (a backend starting, rules landing), bounded.
    async fn wait_answer(&mut self, addr: SocketAddrV4) -> anyhow::Result<String> {
        let deadline = Instant::now() + SETTLE_LIMIT;
        loop {
            match self.get(addr).await {
                Ok(body) => return Ok(body),
                Err(e) if Instant::now() >= deadline => return Err(e.context(format!("http://{addr}/ did not answer within {SETTLE_LIMIT:?}"))),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Probes `addr` until `CLEAN_PROBES` answers in a row come from other backends
    /// than `avoid`; returns when the first of them was sent.
    async fn wait_avoided(&mut self, addr: SocketAddrV4, avoid: &str) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + SETTLE_LIMIT;
        let mut run: Option<(Instant, usize)> = None;
        for _ in 0..SETTLE_PROBES {
            let sent = Instant::now();
            // A failed probe breaks a run: the endpoint is not "avoided" by failing.
            match self.get(addr).await {
                Ok(body) if body != avoid => {
                    let (start, n) = run.get_or_insert((sent, 0));
                    *n += 1;
                    if *n >= CLEAN_PROBES {
                        return Ok(*start);
                    }
                }
                _ => run = None,
            }
            anyhow::ensure!(Instant::now() < deadline, "traffic to {addr} still reached {avoid} after {SETTLE_LIMIT:?}");
        }
        bail!("traffic to {addr} still reached {avoid} after {SETTLE_PROBES} probes")
    }

    /// Probes `addr` until `want` answers (new connections reach it again), bounded.
    async fn wait_reached(&mut self, addr: SocketAddrV4, want: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + SETTLE_LIMIT;
        for _ in 0..SETTLE_PROBES {
            if self.get(addr).await.is_ok_and(|b| b == want) {
                return Ok(());
            }
            anyhow::ensure!(Instant::now() < deadline, "traffic to {addr} did not reach {want} within {SETTLE_LIMIT:?}");
        }
        bail!("traffic to {addr} did not reach {want} in {SETTLE_PROBES} probes")
    }
}

// === Services and EndpointSlices ===

fn service(name: &str, cluster_ip: Option<Ipv4Addr>, port: u16, target_port: Value) -> Service {
    let mut spec = json!({
        "type": "ClusterIP",
        "ports": [{"name": "http", "protocol": "TCP", "port": port, "targetPort": target_port}],
    });
    if let Some(ip) = cluster_ip {
        spec["clusterIP"] = json!(ip.to_string());
        spec["clusterIPs"] = json!([ip.to_string()]);
    }
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS}, "spec": spec}))
        .expect("a Service literal")
}

/// The endpoints of a slice: address and whether it is ready (and serving).
fn slice_json(name: &str, service: &str, endpoints: &[(Ipv4Addr, bool)], port: u16) -> Value {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(
            |(ip, ready)| json!({"addresses": [ip.to_string()], "conditions": {"ready": ready, "serving": ready, "terminating": false}, "nodeName": NODE_NAME}),
        )
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": NS, "labels": {
            "kubernetes.io/service-name": service, "endpointslice.kubernetes.io/managed-by": "bench-net.skiff.io"}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "protocol": "TCP", "port": port}],
    })
}

fn slice(name: &str, service: &str, endpoints: &[(Ipv4Addr, bool)], port: u16) -> EndpointSlice {
    serde_json::from_value(slice_json(name, service, endpoints, port)).expect("an EndpointSlice literal")
}

fn offset(base: Ipv4Addr, n: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(base) + n as u32)
}

/// Filler Service `i`: its own cluster IP, 2 or 3 endpoints (alternately) that no
/// traffic ever goes to.
fn filler(i: usize) -> (Service, EndpointSlice) {
    let name = format!("svc-{i:05}");
    let endpoints: Vec<(Ipv4Addr, bool)> = (0..2 + i % 2).map(|k| (offset(FILLER_ENDPOINTS, 3 * i + k), true)).collect();
    (service(&name, Some(offset(FILLER_CLUSTER_IPS, i)), 80, json!(8080)), slice(&format!("{name}-abcde"), &name, &endpoints, 8080))
}

fn proxy_config(bridge: Option<String>, node_ip: Ipv4Addr) -> ProxyConfig {
    ProxyConfig { node_name: NODE_NAME.to_string(), node_ips: vec![node_ip], cluster_cidr: Some(CLUSTER_CIDR), masquerade_outside: false, pod_bridge: bridge }
}

/// A fresh proxy on `nft`: the table reset, as the agent does at start.
async fn new_proxier(cfg: ProxyConfig, nft: Arc<NftCli>) -> anyhow::Result<Proxier> {
    nft::reset_table(nft.as_ref()).await.context("creating the nftables table")?;
    let mut proxier = Proxier::new(cfg, nft);
    proxier.init().await.context("initialising the proxy")?;
    Ok(proxier)
}

/// Median time of `nft -f` applying a one-rule script in `netns`: the fixed cost of
/// one transaction (process start, entering the namespace, parse, commit).
async fn nft_fixed_cost(netns: &str) -> anyhow::Result<Duration> {
    let nft = NftCli::in_netns(netns);
    let script = "add table ip skbn_base\nadd chain ip skbn_base c\nflush chain ip skbn_base c\nadd rule ip skbn_base c counter\n";
    nft.apply(script).await.context("nft -f of a one-rule script")?;
    let mut times = Vec::with_capacity(NFT_BASELINE_RUNS);
    for _ in 0..NFT_BASELINE_RUNS {
        let t = Instant::now();
        nft.apply(script).await?;
        times.push(t.elapsed());
    }
    nft.apply("delete table ip skbn_base\n").await?;
    Ok(median(times))
}

// === part: rule sync ===

async fn sync_part(ctx: &Ctx, summary: &mut Summary) -> anyhow::Result<()> {
    for &size in &ctx.args.sync_sizes {
        anyhow::ensure!(size > 0 && size <= 60_000, "--sync-sizes: {size} is out of range (1 to 60000)");
        let ns = Netns::add(ctx.netns(&format!("s{size}"))).await?;
        let fixed = nft_fixed_cost(&ns.name).await?;
        figure("baseline", "nft -f of a one-rule script, empty namespace", ms(fixed));

        let nft = Arc::new(NftCli::in_netns(&ns.name));
        let mut proxier = new_proxier(proxy_config(None, Ipv4Addr::new(10, 244, 0, 1)), nft.clone()).await?;
        let objects: Vec<(Service, EndpointSlice)> = (0..size).map(filler).collect();
        let t = Instant::now();
        for (svc, slice) in &objects {
            proxier.apply_service(svc);
            proxier.apply_slice(slice);
        }
        let applied = t.elapsed();
        let t = Instant::now();
        let first = proxier.sync().await.context("first sync")?;
        let first_took = t.elapsed();
        if size <= 2000 {
            // Proof that the rules are there: the table mentions the first cluster IP.
            let table = nft.list_table().await?;
            anyhow::ensure!(
                table.contains(&offset(FILLER_CLUSTER_IPS, 0).to_string()),
                "after the first sync the table has no rule for {} ({} lines in it)",
                offset(FILLER_CLUSTER_IPS, 0),
                table.lines().count()
            );
        }
        figure(
            "skiff",
            format!("first sync of {size} services"),
            format_args!(
                "{}  (script {}, {} services changed; applying them in memory took {})   ratio to nft fixed cost {}",
                ms(first_took),
                kib(first.script_bytes),
                first.services_changed,
                ms(applied),
                dratio(first_took, fixed)
            ),
        );

        // Every `nft` run reads the kernel's whole ruleset into its cache first, so a
        // transaction's fixed cost grows with what is loaded: measured again here.
        let loaded = nft_fixed_cost(&ns.name).await?;
        figure("baseline", format!("nft -f of a one-rule script, {size} services loaded"), ms(loaded));

        let mut times = Vec::new();
        let mut bytes = Vec::new();
        for k in 0..INCREMENTAL_SYNCS {
            let i = (size / 2 + k * 7) % size;
            let (_, s) = filler(i);
            let mut v = serde_json::to_value(&s)?;
            let extra = offset(FILLER_ENDPOINTS, 3 * size + k);
            v["endpoints"]
                .as_array_mut()
                .context("slice endpoints")?
                .push(json!({"addresses": [extra.to_string()], "conditions": {"ready": true, "serving": true, "terminating": false}}));
            let grown: EndpointSlice = serde_json::from_value(v)?;
            let t = Instant::now();
            proxier.apply_slice(&grown);
            let stats = proxier.sync().await.context("incremental sync")?;
            times.push(t.elapsed());
            bytes.push(stats.script_bytes);
        }
        let incremental = median(times);
        bytes.sort();
        let inc_bytes = bytes[bytes.len() / 2];
        figure(
            "skiff",
            format!("one endpoint added at {size} services"),
            format_args!(
                "{}  (median of {INCREMENTAL_SYNCS}, script {})   ratio to nft fixed cost: loaded {}, empty {}",
                ms(incremental),
                kib(inc_bytes),
                dratio(incremental, loaded),
                dratio(incremental, fixed)
            ),
        );
        summary.add(
            format!("first sync, {size} services ({})", kib(first.script_bytes)),
            ms(first_took),
            format!("nft 1 rule {}", ms(fixed)),
            dratio(first_took, fixed),
        );
        summary.add(
            format!("one endpoint added at {size} services ({})", kib(inc_bytes)),
            ms(incremental),
            format!("nft 1 rule, loaded {}", ms(loaded)),
            dratio(incremental, loaded),
        );
        drop(proxier);
        drop(ns);
    }
    Ok(())
}

// === the pod network ===

/// The benchmark's node: a namespace with a bridge (the pods' gateway), a client pod
/// and backend pods, each a namespace with a veth on the bridge. Dropping it stops
/// the servers and the prober first, then deletes the namespaces.
struct PodNetwork {
    servers: Vec<Daemon>,
    prober: Option<Prober>,
    node: Netns,
    client: Netns,
    pods: Vec<Netns>,
    bridge: String,
    gateway: Ipv4Addr,
    backend_ips: Vec<Ipv4Addr>,
}

/// Link names of this run: at most 15 bytes ("skbn" + pid + kind + index).
fn link_name(pid: u32, kind: char, index: usize) -> String {
    format!("skbn{pid}{kind}{index}")
}

impl PodNetwork {
    async fn create(ctx: &Ctx) -> anyhow::Result<PodNetwork> {
        let gateway = offset(POD_NET, 1);
        let node = Netns::add(ctx.netns("node")).await?;
        let client = Netns::add(ctx.netns("client")).await?;
        let mut net = PodNetwork {
            servers: Vec::new(),
            prober: None,
            node,
            client,
            pods: Vec::new(),
            bridge: link_name(ctx.pid, 'b', 0),
            gateway,
            backend_ips: Vec::new(),
        };
        for i in 0..ctx.args.backends {
            net.pods.push(Netns::add(ctx.netns(&format!("b{i}"))).await?);
        }
        let node = net.node.name.clone();
        for sysctl in ["net.ipv4.ip_forward=1", "net.bridge.bridge-nf-call-iptables=1"] {
            let out = Command::new("ip").args(["netns", "exec", &node, "sysctl", "-qw", sysctl]).stdin(Stdio::null()).output().await?;
            if !out.status.success() {
                eprintln!("  note: sysctl {sysctl} in {node}: {}", String::from_utf8_lossy(&out.stderr).trim());
            }
        }
        ip(&["-n", &node, "link", "add", &net.bridge, "type", "bridge"]).await?;
        ip(&["-n", &node, "addr", "add", &format!("{gateway}/24"), "dev", &net.bridge]).await?;
        ip(&["-n", &node, "link", "set", &net.bridge, "up"]).await?;
        let mut pods: Vec<(String, Ipv4Addr)> = vec![(net.client.name.clone(), offset(POD_NET, 10))];
        for (i, pod) in net.pods.iter().enumerate() {
            let addr = offset(POD_NET, 11 + i);
            net.backend_ips.push(addr);
            pods.push((pod.name.clone(), addr));
        }
        for (i, (pod, addr)) in pods.iter().enumerate() {
            let (host_end, pod_end) = (link_name(ctx.pid, 'v', i), link_name(ctx.pid, 'e', i));
            ip(&["-n", &node, "link", "add", &host_end, "type", "veth", "peer", "name", &pod_end, "netns", pod]).await?;
            ip(&["-n", &node, "link", "set", &host_end, "master", &net.bridge, "up"]).await?;
            ip(&["-n", pod, "addr", "add", &format!("{addr}/24"), "dev", &pod_end]).await?;
            ip(&["-n", pod, "link", "set", &pod_end, "up"]).await?;
            ip(&["-n", pod, "route", "add", "default", "via", &gateway.to_string()]).await?;
        }
        for (i, addr) in net.backend_ips.clone().into_iter().enumerate() {
            let pod = net.pods[i].name.clone();
            let daemon = start_backend(ctx, Some(&pod), &format!("b{i}"), SocketAddr::from((addr, 80)))?;
            net.servers.push(daemon);
        }
        net.prober = Some(Prober::start(ctx, &net.client.name)?);
        for i in 0..net.backend_ips.len() {
            let addr = SocketAddrV4::new(net.backend_ips[i], 80);
            let body = net.prober().wait_answer(addr).await.map_err(|e| {
                let alive = net.servers[i].check_alive();
                e.context(format!("backend b{i}: {alive:?}"))
            })?;
            anyhow::ensure!(body == format!("b{i}"), "backend b{i} at {addr} answered {body:?}");
        }
        Ok(net)
    }

    fn prober(&mut self) -> &mut Prober {
        self.prober.as_mut().expect("the prober starts with the network")
    }

    fn backend(&self, i: usize) -> (Ipv4Addr, bool) {
        (self.backend_ips[i], true)
    }
}

/// Backend `name` on `addr`: nginx (one worker, the body from memory), or the
/// built-in static server without nginx. Both answer `NAME\n` to every path.
fn start_backend(ctx: &Ctx, netns: Option<&str>, name: &str, addr: SocketAddr) -> anyhow::Result<Daemon> {
    let log = ctx.dir.join(format!("{name}.log"));
    match &ctx.nginx {
        Some(nginx) => {
            let dir = ctx.dir.join(format!("nginx-{name}"));
            std::fs::create_dir_all(dir.join("tmp"))?;
            let conf = dir.join("nginx.conf");
            std::fs::write(&conf, backend_nginx_conf(&dir, name, addr))?;
            let argv = [
                nginx.display().to_string(),
                "-p".into(),
                dir.display().to_string(),
                "-c".into(),
                conf.display().to_string(),
                "-e".into(),
                log.display().to_string(),
            ];
            Daemon::spawn(&format!("nginx backend {name}"), netns, &argv, ctx.dir.join(format!("{name}.out")))
        }
        None => {
            let argv = [
                ctx.exe.display().to_string(),
                "bench".into(),
                "net".into(),
                "--internal-serve".into(),
                addr.to_string(),
                "--internal-body".into(),
                format!("{name}\n"),
                "--timeout".into(),
                format!("{}s", ctx.args.timeout.as_secs() + 60),
            ];
            Daemon::spawn(&format!("backend {name}"), netns, &argv, log)
        }
    }
}

/// Common nginx settings: foreground, files under `dir`, no access log.
fn nginx_preamble(dir: &Path, workers: &str) -> String {
    let d = dir.display();
    format!(
        "worker_processes {workers};\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\nevents {{ worker_connections 4096; }}\n"
    ) + &format!(
        "http {{\n  access_log off;\n  keepalive_requests 1000000;\n  client_body_temp_path {d}/tmp;\n  proxy_temp_path {d}/tmp;\n  fastcgi_temp_path {d}/tmp;\n  uwsgi_temp_path {d}/tmp;\n  scgi_temp_path {d}/tmp;\n"
    )
}

fn backend_nginx_conf(dir: &Path, name: &str, addr: SocketAddr) -> String {
    // One process (no master): one worker's worth of CPU, stopped by its own PID.
    format!(
        "master_process off;\n{}  server {{\n    listen {addr};\n    default_type text/plain;\n    location / {{ return 200 \"{name}\\n\"; }}\n  }}\n}}\n",
        nginx_preamble(dir, "1")
    )
}

// === parts: ClusterIP and endpoint changes ===

async fn pod_parts(ctx: &Ctx, summary: &mut Summary, failed: &mut Vec<&'static str>) -> anyhow::Result<()> {
    let t = Instant::now();
    let mut net = PodNetwork::create(ctx).await?;
    eprintln!(
        "  pod network ready in {} ms: node {} (bridge {}, {}/24), client {}, {} backends ({})",
        t.elapsed().as_millis(),
        net.node.name,
        net.bridge,
        POD_NET,
        net.client.name,
        net.pods.len(),
        if ctx.nginx.is_some() { "nginx" } else { "built-in server" }
    );
    let nft = Arc::new(NftCli::in_netns(&net.node.name));
    let mut proxier = new_proxier(proxy_config(Some(net.bridge.clone()), net.gateway), nft.clone()).await?;
    let all: Vec<(Ipv4Addr, bool)> = (0..net.backend_ips.len()).map(|i| net.backend(i)).collect();
    proxier.apply_service(&service("web", Some(WEB_IP), 80, json!(80)));
    proxier.apply_slice(&slice("web-abcde", "web", &all, 80));
    proxier.apply_service(&service("web-one", Some(WEB_ONE_IP), 80, json!(80)));
    proxier.apply_slice(&slice("web-one-abcde", "web-one", &[net.backend(0)], 80));
    proxier.sync().await.context("syncing the measured Services")?;

    if ctx.args.parts.contains(&Part::Clusterip) {
        println!();
        println!("=== ClusterIP vs pod IP ({}, {} connections, {} s) ===", ctx.load_tool(), ctx.args.connections, ctx.args.duration.as_secs());
        if let Err(e) = clusterip_part(ctx, &mut net, summary).await {
            println!("clusterip FAILED: {e:#}");
            failed.push("clusterip");
        }
    }
    if ctx.args.parts.contains(&Part::Endpoints) {
        println!();
        println!("=== endpoint change to datapath ({} services, {} changes) ===", ctx.args.services, ctx.args.changes);
        match endpoints_part(ctx, &mut net, &mut proxier, summary).await {
            Ok(in_process) => {
                if !ctx.args.no_api {
                    drop(proxier);
                    if let Err(e) = endpoints_through_api(ctx, &mut net, nft, in_process, summary).await {
                        println!("endpoints through the API FAILED: {e:#}");
                        failed.push("endpoints (API)");
                    }
                }
            }
            Err(e) => {
                println!("endpoints FAILED: {e:#}");
                failed.push("endpoints");
            }
        }
    }
    Ok(())
}

async fn clusterip_part(ctx: &Ctx, net: &mut PodNetwork, summary: &mut Summary) -> anyhow::Result<()> {
    let pod = SocketAddrV4::new(net.backend_ips[0], 80);
    let one = SocketAddrV4::new(WEB_ONE_IP, 80);
    let web = SocketAddrV4::new(WEB_IP, 80);
    // The rules work before anything is timed: one endpoint answers through its
    // ClusterIP, and the Service of every backend reaches them all.
    let body = net.prober().wait_answer(one).await.context("the ClusterIP of web-one")?;
    anyhow::ensure!(body == "b0", "web-one ({one}) answered {body:?}, not b0");
    for i in 0..net.backend_ips.len() {
        net.prober().wait_reached(web, &format!("b{i}")).await.context("the ClusterIP of web")?;
    }
    let client = net.client.name.clone();
    let base = load(ctx, Some(&client), &Target::new(pod, None, "/")).await?;
    base.check("pod IP")?;
    figure("baseline", format!("pod IP {pod} (b0)"), base.line());
    let single = load(ctx, Some(&client), &Target::new(one, None, "/")).await?;
    single.check("ClusterIP, 1 endpoint")?;
    figure(
        "skiff",
        format!("ClusterIP {one} → b0"),
        format_args!("{}   ratio to pod IP: req/s {}, p99 {}", single.line(), ratio(single.rps, base.rps), dratio(single.p99, base.p99)),
    );
    let spread = load(ctx, Some(&client), &Target::new(web, None, "/")).await?;
    spread.check("ClusterIP, every endpoint")?;
    figure(
        "skiff",
        format!("ClusterIP {web} → {} backends", net.backend_ips.len()),
        format_args!("{}   ratio to pod IP: req/s {}, p99 {}", spread.line(), ratio(spread.rps, base.rps), dratio(spread.p99, base.p99)),
    );
    let tool = base.tool;
    summary.add(format!("ClusterIP (1 endpoint) vs pod IP, req/s [{tool}]"), single.rps_cell(), base.rps_cell(), ratio(single.rps, base.rps));
    summary.add(format!("ClusterIP (1 endpoint) vs pod IP, p99 [{tool}]"), ms(single.p99), ms(base.p99), dratio(single.p99, base.p99));
    summary.add(
        format!("ClusterIP ({} endpoints) vs pod IP, req/s [{tool}]", net.backend_ips.len()),
        spread.rps_cell(),
        base.rps_cell(),
        ratio(spread.rps, base.rps),
    );
    summary.add(format!("ClusterIP ({} endpoints) vs pod IP, p99 [{tool}]", net.backend_ips.len()), ms(spread.p99), ms(base.p99), dratio(spread.p99, base.p99));
    Ok(())
}

/// Latencies of the endpoint changes: to the kernel, and to traffic.
struct ChangeTimes {
    kernel: Vec<Duration>,
    traffic: Vec<Duration>,
}

impl ChangeTimes {
    fn sorted(mut self) -> ChangeTimes {
        self.kernel.sort();
        self.traffic.sort();
        self
    }

    fn line(v: &[Duration]) -> String {
        format!("p50 {:>9}  p99 {:>9}  max {:>9}  (n={})", ms(percentile(v, 0.5)), ms(percentile(v, 0.99)), ms(v.last().copied().unwrap_or_default()), v.len())
    }
}

/// The measured Service's endpoints with the last backend ready or not.
fn web_endpoints(net: &PodNetwork, last_ready: bool) -> Vec<(Ipv4Addr, bool)> {
    let n = net.backend_ips.len();
    (0..n).map(|i| (net.backend_ips[i], i + 1 < n || last_ready)).collect()
}

async fn endpoints_part(ctx: &Ctx, net: &mut PodNetwork, proxier: &mut Proxier, summary: &mut Summary) -> anyhow::Result<ChangeTimes> {
    for i in 0..ctx.args.services {
        let (svc, slice) = filler(i);
        proxier.apply_service(&svc);
        proxier.apply_slice(&slice);
    }
    let t = Instant::now();
    let stats = proxier.sync().await.context("syncing the filler Services")?;
    eprintln!("  {} filler services synced in {} ({})", ctx.args.services, ms(t.elapsed()), kib(stats.script_bytes));
    // The fixed cost of a transaction with this many Services loaded (`nft` reads
    // the whole ruleset first).
    let fixed = nft_fixed_cost(&net.node.name).await?;
    figure("baseline", format!("nft -f of a one-rule script, {} services loaded", ctx.args.services), ms(fixed));

    let web = SocketAddrV4::new(WEB_IP, 80);
    let last = format!("b{}", net.backend_ips.len() - 1);
    net.prober().wait_reached(web, &last).await?;
    let mut times = ChangeTimes { kernel: Vec::new(), traffic: Vec::new() };
    for _ in 0..ctx.args.changes {
        let not_ready = slice("web-abcde", "web", &web_endpoints(net, false), 80);
        let t0 = Instant::now();
        proxier.apply_slice(&not_ready);
        // Probing runs alongside the sync, so traffic moving is seen when it happens
        // (`nft` commits before it exits), not only once the sync has returned.
        let prober = net.prober();
        let (synced, moved) = tokio::join!(async { proxier.sync().await.map(|_| t0.elapsed()) }, prober.wait_avoided(web, &last));
        times.kernel.push(synced.context("syncing an endpoint change")?);
        times.traffic.push(moved?.saturating_duration_since(t0));
        // Undone, untimed: the next change starts from traffic reaching it again.
        proxier.apply_slice(&slice("web-abcde", "web", &web_endpoints(net, true), 80));
        proxier.sync().await.context("syncing an endpoint back")?;
        net.prober().wait_reached(web, &last).await?;
    }
    let times = times.sorted();
    let (k50, k99) = (percentile(&times.kernel, 0.5), percentile(&times.kernel, 0.99));
    figure(
        "skiff",
        "apply_slice → kernel (sync returned)",
        format_args!("{}   ratio to nft fixed cost (p50) {}", ChangeTimes::line(&times.kernel), dratio(k50, fixed)),
    );
    figure("skiff", "apply_slice → new connections avoid it", ChangeTimes::line(&times.traffic));
    summary.add(
        format!("endpoint not ready → kernel, p50 ({} svcs)", ctx.args.services),
        ms(k50),
        format!("nft 1 rule, loaded {}", ms(fixed)),
        dratio(k50, fixed),
    );
    summary.add(
        format!("endpoint not ready → kernel, p99 ({} svcs)", ctx.args.services),
        ms(k99),
        format!("nft 1 rule, loaded {}", ms(fixed)),
        dratio(k99, fixed),
    );
    let (t50, t99) = (percentile(&times.traffic, 0.5), percentile(&times.traffic, 0.99));
    summary.add("endpoint not ready → traffic moved, p50", ms(t50), format!("nft 1 rule, loaded {}", ms(fixed)), dratio(t50, fixed));
    summary.add("endpoint not ready → traffic moved, p99", ms(t99), format!("nft 1 rule, loaded {}", ms(fixed)), dratio(t99, fixed));
    Ok(times)
}

/// What the datapath task has applied: the newest resourceVersion of the measured
/// slice that a finished sync contains, and when that sync returned.
#[derive(Debug, Clone, Copy, Default)]
struct SyncMark {
    web_rv: u64,
    at: Option<Instant>,
}

enum Change {
    Service(InformerEvent<Service>),
    Slice(InformerEvent<EndpointSlice>),
}

fn clone_event<K>(ev: &InformerEvent<K>) -> InformerEvent<K> {
    match ev {
        InformerEvent::Applied { old, new } => InformerEvent::Applied { old: old.clone(), new: new.clone() },
        InformerEvent::Deleted(o) => InformerEvent::Deleted(o.clone()),
    }
}

fn meta_name(m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> (&str, &str) {
    (m.namespace.as_deref().unwrap_or(""), m.name.as_deref().unwrap_or(""))
}

/// Applies one informer event to the proxy, noting the measured slice's newest
/// resourceVersion.
fn apply_change(proxier: &mut Proxier, change: Change, web_rv: &mut u64) {
    match change {
        Change::Service(InformerEvent::Applied { new, .. }) => proxier.apply_service(&new),
        Change::Service(InformerEvent::Deleted(o)) => {
            let (ns, name) = meta_name(&o.metadata);
            proxier.delete_service(ns, name)
        }
        Change::Slice(InformerEvent::Applied { new, .. }) => {
            if new.metadata.name.as_deref() == Some("web-abcde") {
                if let Some(rv) = new.metadata.resource_version.as_deref().and_then(|v| v.parse().ok()) {
                    *web_rv = rv;
                }
            }
            proxier.apply_slice(&new)
        }
        Change::Slice(InformerEvent::Deleted(o)) => {
            let (ns, name) = meta_name(&o.metadata);
            proxier.delete_slice(ns, name)
        }
    }
}

/// The proxy fed by informers, as the node agent runs it: everything queued while a
/// sync ran goes into the next one, and each finished sync is published.
async fn datapath(
    mut proxier: Proxier,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Change>,
    marks: tokio::sync::watch::Sender<SyncMark>,
) -> anyhow::Result<()> {
    let mut web_rv = 0;
    while let Some(change) = rx.recv().await {
        apply_change(&mut proxier, change, &mut web_rv);
        while let Ok(change) = rx.try_recv() {
            apply_change(&mut proxier, change, &mut web_rv);
        }
        if proxier.dirty() {
            proxier.sync().await.context("the datapath's sync")?;
        }
        marks.send_replace(SyncMark { web_rv, at: Some(Instant::now()) });
    }
    Ok(())
}

/// Waits for a finished sync holding the measured slice at `rv` or newer; returns
/// when that sync returned.
async fn wait_mark(
    marks: &mut tokio::sync::watch::Receiver<SyncMark>,
    rv: u64,
    limit: Duration,
    tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<Instant> {
    let waited = tokio::time::timeout(limit, marks.wait_for(|m| m.web_rv >= rv && m.at.is_some())).await;
    match waited {
        Ok(Ok(mark)) => Ok(mark.at.expect("checked above")),
        Ok(Err(_)) => {
            // The datapath task ended: say why.
            while let Some(done) = tasks.try_join_next() {
                if let Ok(Err(e)) = done {
                    return Err(e);
                }
            }
            bail!("the datapath task ended")
        }
        Err(_) => bail!("no sync applied resourceVersion {rv} of the slice within {limit:?}"),
    }
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn resource_version(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> anyhow::Result<u64> {
    meta.resource_version.as_deref().and_then(|v| v.parse().ok()).context("the API returned no numeric resourceVersion")
}

async fn endpoints_through_api(ctx: &Ctx, net: &mut PodNetwork, nft: Arc<NftCli>, in_process: ChangeTimes, summary: &mut Summary) -> anyhow::Result<()> {
    let dir = ctx.dir.join("server");
    std::fs::create_dir_all(&dir)?;
    let store = Arc::new(SqliteStore::open(&dir.join("state.db"))?);
    let server = Server::start(Config::new(dir.clone(), "127.0.0.1:0".parse()?, Settings::default()), store).await?;
    let client = Client::new(ClientConfig {
        servers: vec![server.url()],
        token: read(&dir.join("pki/admin.token"))?.trim().to_string(),
        ca_pem: read(&dir.join("pki/ca.crt"))?,
        timeout: Duration::from_secs(30),
    })
    .map_err(|e| anyhow::anyhow!("building the in-process API client: {e}"))?;
    client
        .create("/api/v1/namespaces", &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}))
        .await
        .map_err(|e| anyhow::anyhow!("creating namespace {NS}: {e}"))?;
    let services: Api<Service> = Api::namespaced(&client, NS);
    let slices: Api<EndpointSlice> = Api::namespaced(&client, NS);

    let t = Instant::now();
    let created: Vec<anyhow::Result<()>> = futures::stream::iter(0..ctx.args.services)
        .map(|i| {
            let (services, slices) = (services.clone(), slices.clone());
            async move {
                let (svc, sl) = filler(i);
                services.create(&svc).await.map_err(|e| anyhow::anyhow!("creating a filler Service: {e}"))?;
                slices.create(&sl).await.map_err(|e| anyhow::anyhow!("creating a filler EndpointSlice: {e}"))?;
                Ok(())
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    created.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    services.create(&service("web", Some(WEB_IP), 80, json!(80))).await.map_err(|e| anyhow::anyhow!("creating Service web: {e}"))?;
    let web_slice =
        slices.create(&slice("web-abcde", "web", &web_endpoints(net, true), 80)).await.map_err(|e| anyhow::anyhow!("creating EndpointSlice web-abcde: {e}"))?;
    eprintln!("  API server on {}: {} services and slices created in {} ms", server.url(), ctx.args.services + 1, t.elapsed().as_millis());

    // A fresh table: the in-process proxy's rules go, the informer-fed proxy's come.
    let proxier = new_proxier(proxy_config(Some(net.bridge.clone()), net.gateway), nft).await?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let service_informer: Informer<Service> = Informer::new(Api::namespaced(&client, NS), ListParams::default());
    let slice_informer: Informer<EndpointSlice> = Informer::new(Api::namespaced(&client, NS), ListParams::default());
    let t1 = tx.clone();
    service_informer.on_event(Arc::new(move |ev: &InformerEvent<Service>| {
        let _ = t1.send(Change::Service(clone_event(ev)));
    }));
    slice_informer.on_event(Arc::new(move |ev: &InformerEvent<EndpointSlice>| {
        let _ = tx.send(Change::Slice(clone_event(ev)));
    }));
    let (marks_tx, mut marks) = tokio::sync::watch::channel(SyncMark::default());
    // Dropped before the server (declared after it): the watches end first.
    let mut tasks: tokio::task::JoinSet<anyhow::Result<()>> = tokio::task::JoinSet::new();
    tasks.spawn(async move {
        service_informer.run().await;
        Ok(())
    });
    tasks.spawn(async move {
        slice_informer.run().await;
        Ok(())
    });
    tasks.spawn(datapath(proxier, rx, marks_tx));
    let t = Instant::now();
    wait_mark(&mut marks, resource_version(&web_slice.metadata)?, Duration::from_secs(120), &mut tasks).await?;
    eprintln!("  informers listed and the proxy synced {} services in {} ms", ctx.args.services + 1, t.elapsed().as_millis());

    let web = SocketAddrV4::new(WEB_IP, 80);
    let last = format!("b{}", net.backend_ips.len() - 1);
    net.prober().wait_reached(web, &last).await?;
    let endpoints_patch = |ready: bool| json!({"endpoints": slice_json("web-abcde", "web", &web_endpoints(net, ready), 80)["endpoints"]});
    let (not_ready, ready) = (endpoints_patch(false), endpoints_patch(true));
    let mut acks = Vec::new();
    let mut times = ChangeTimes { kernel: Vec::new(), traffic: Vec::new() };
    for _ in 0..ctx.args.changes {
        let t0 = Instant::now();
        let change = async {
            let updated = slices.patch("web-abcde", PatchType::Merge, &not_ready).await.map_err(|e| anyhow::anyhow!("patching the slice: {e}"))?;
            let ack = t0.elapsed();
            let at = wait_mark(&mut marks, resource_version(&updated.metadata)?, SETTLE_LIMIT, &mut tasks).await?;
            anyhow::Ok((ack, at.saturating_duration_since(t0)))
        };
        let prober = net.prober.as_mut().context("the prober starts with the network")?;
        let (change, moved) = tokio::join!(change, prober.wait_avoided(web, &last));
        let (ack, kernel) = change?;
        acks.push(ack);
        times.kernel.push(kernel);
        times.traffic.push(moved?.saturating_duration_since(t0));
        let updated = slices.patch("web-abcde", PatchType::Merge, &ready).await.map_err(|e| anyhow::anyhow!("patching the slice back: {e}"))?;
        wait_mark(&mut marks, resource_version(&updated.metadata)?, SETTLE_LIMIT, &mut tasks).await?;
        net.prober().wait_reached(web, &last).await?;
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    drop(server);

    acks.sort();
    let times = times.sorted();
    let (k50, k99) = (percentile(&times.kernel, 0.5), percentile(&times.kernel, 0.99));
    let (i50, i99) = (percentile(&in_process.kernel, 0.5), percentile(&in_process.kernel, 0.99));
    figure("skiff", "API patch acknowledged", ChangeTimes::line(&acks));
    figure(
        "skiff",
        "API patch → kernel (watch, sync)",
        format_args!("{}   ratio to apply_slice → kernel: p50 {}, p99 {}", ChangeTimes::line(&times.kernel), dratio(k50, i50), dratio(k99, i99)),
    );
    figure("skiff", "API patch → new connections avoid it", ChangeTimes::line(&times.traffic));
    summary.add("API patch → kernel, p50 (vs apply_slice → kernel)", ms(k50), ms(i50), dratio(k50, i50));
    summary.add("API patch → kernel, p99 (vs apply_slice → kernel)", ms(k99), ms(i99), dratio(k99, i99));
    summary.add(
        "API patch → traffic moved, p99",
        ms(percentile(&times.traffic, 0.99)),
        ms(percentile(&in_process.traffic, 0.99)),
        dratio(percentile(&times.traffic, 0.99), percentile(&in_process.traffic, 0.99)),
    );
    Ok(())
}

// === part: Ingress gateway against haproxy and nginx ===

fn ingress_class() -> IngressClass {
    serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": "skiff"}, "spec": {"controller": "skiff.io/ingress"},
    }))
    .expect("an IngressClass literal")
}

/// The gateway on an ephemeral loopback port, routing the benchmark's Ingress to
/// `backends` at `port`; with its address.
async fn start_gateway(backends: &[Ipv4Addr; 2], port: u16) -> anyhow::Result<(skiff_gateway::Gateway, SocketAddrV4)> {
    let cfg = skiff_gateway::GatewayConfig {
        http: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))),
        https: None,
        class_name: "skiff".into(),
        controller: "skiff.io/ingress".into(),
    };
    let routes = skiff_gateway::Routes::new(&cfg);
    routes.apply_ingress_class(&ingress_class());
    routes.apply_service(&service("web", Some(WEB_IP), 80, json!("http")));
    routes.apply_slice(&slice("web-abcde", "web", &backends.map(|ip| (ip, true)), port));
    routes.apply_ingress(&ingress());
    let gateway = skiff_gateway::Gateway::start(cfg, routes).await.map_err(|e| anyhow::anyhow!("starting the gateway: {e}"))?;
    match gateway.http_addr().context("the gateway has no HTTP listener")? {
        SocketAddr::V4(a) => Ok((gateway, a)),
        SocketAddr::V6(a) => bail!("the gateway listens on {a}, not IPv4 loopback"),
    }
}

fn ingress() -> Ingress {
    serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {"ingressClassName": "skiff", "rules": [{"host": INGRESS_HOST, "http": {"paths": [
            {"path": INGRESS_PATH, "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]},
    }))
    .expect("an Ingress literal")
}

/// haproxy doing what the Ingress says: host and path prefix (`/app`, `/app/…`) to
/// the backends round-robin, keep-alive both sides, 404 for anything else.
fn haproxy_conf(listen: SocketAddr, backends: &[SocketAddr]) -> String {
    let mut s = format!(
        "global\n    maxconn 4096\n\ndefaults\n    mode http\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n    option http-keep-alive\n    http-reuse always\n\n\
         frontend bench\n    bind {listen}\n    acl bench_host req.hdr(host),field(1,:) -i {INGRESS_HOST}\n    acl bench_path path {INGRESS_PATH}\n    acl bench_path path_beg {INGRESS_PATH}/\n    use_backend web if bench_host bench_path\n    default_backend unmatched\n\n\
         backend web\n    balance roundrobin\n"
    );
    for (i, b) in backends.iter().enumerate() {
        s.push_str(&format!("    server l{i} {b}\n"));
    }
    s.push_str("\nbackend unmatched\n    http-request return status 404\n");
    s
}

/// nginx doing what the Ingress says, as ingress-nginx renders a Prefix path:
/// `= /app` and `/app/`, upstream keep-alive, 404 for anything else.
fn nginx_proxy_conf(dir: &Path, listen: SocketAddr, backends: &[SocketAddr]) -> String {
    let servers: String = backends.iter().map(|b| format!("    server {b};\n")).collect();
    let proxy = "proxy_pass http://web; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_set_header Host $host;";
    format!(
        "{}  upstream web {{\n{servers}    keepalive 64;\n  }}\n  server {{\n    listen {listen};\n    server_name {INGRESS_HOST};\n    \
         location = {INGRESS_PATH} {{ {proxy} }}\n    location {INGRESS_PATH}/ {{ {proxy} }}\n    location / {{ return 404; }}\n  }}\n  \
         server {{\n    listen {listen} default_server;\n    server_name _;\n    return 404;\n  }}\n}}\n",
        nginx_preamble(dir, "auto")
    )
}

/// Checks that a proxy routes like the Ingress: the host and path reach a backend,
/// another host does not.
async fn check_routing(what: &str, addr: SocketAddrV4, bodies: &[String]) -> anyhow::Result<()> {
    let routed = http_once(&Target::new(addr, Some(INGRESS_HOST), &format!("{INGRESS_PATH}/")), Duration::from_secs(5)).await?;
    let body = String::from_utf8_lossy(&routed.body).trim().to_string();
    anyhow::ensure!(routed.status == 200 && bodies.contains(&body), "{what}: {INGRESS_HOST}{INGRESS_PATH}/ answered {} {body:?}", routed.status);
    let other = http_once(&Target::new(addr, Some("other.example"), &format!("{INGRESS_PATH}/")), Duration::from_secs(5)).await?;
    if other.status != 404 {
        eprintln!("  note: {what} answers {} (not 404) for a host no rule names", other.status);
    }
    Ok(())
}

async fn ingress_part(ctx: &Ctx, summary: &mut Summary) -> anyhow::Result<()> {
    let loopbacks = [Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3)];
    let port = free_port(&loopbacks)?;
    let direct_addr = SocketAddrV4::new(loopbacks[0], port);
    let backends: Vec<SocketAddr> = loopbacks.iter().map(|ip| SocketAddr::from((*ip, port))).collect();
    let bodies: Vec<String> = (0..backends.len()).map(|i| format!("l{i}")).collect();
    // Declared first, dropped last: the proxies stop before their backends.
    let mut servers = Vec::new();
    for (i, addr) in backends.iter().enumerate() {
        servers.push(start_backend(ctx, None, &bodies[i], *addr)?);
        wait_listening(servers.last_mut().expect("just pushed"), *addr).await?;
    }

    let (gateway, gateway_addr) = start_gateway(&loopbacks, port).await?;
    check_routing("the gateway", gateway_addr, &bodies).await?;

    let mut proxies: Vec<(&str, SocketAddrV4)> = Vec::new();
    let mut references = Vec::new();
    match &ctx.haproxy {
        Some(haproxy) => {
            let listen = SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_port(&[Ipv4Addr::LOCALHOST])?);
            let conf = ctx.dir.join("haproxy.cfg");
            std::fs::write(&conf, haproxy_conf(listen.into(), &backends))?;
            let argv = [haproxy.display().to_string(), "-f".into(), conf.display().to_string(), "-db".into()];
            let mut d = Daemon::spawn("haproxy", None, &argv, ctx.dir.join("haproxy.log"))?;
            wait_listening(&mut d, listen.into()).await?;
            references.push(d);
            check_routing("haproxy", listen, &bodies).await?;
            proxies.push(("haproxy", listen));
        }
        None => figure("skipped", "haproxy", "not installed (scripts/install-bench-deps.sh)"),
    }
    match &ctx.nginx {
        Some(nginx) => {
            let listen = SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_port(&[Ipv4Addr::LOCALHOST])?);
            let dir = ctx.dir.join("nginx-proxy");
            std::fs::create_dir_all(dir.join("tmp"))?;
            let conf = dir.join("nginx.conf");
            std::fs::write(&conf, nginx_proxy_conf(&dir, listen.into(), &backends))?;
            let argv = [
                nginx.display().to_string(),
                "-p".into(),
                dir.display().to_string(),
                "-c".into(),
                conf.display().to_string(),
                "-e".into(),
                dir.join("error.log").display().to_string(),
            ];
            let mut d = Daemon::spawn("nginx proxy", None, &argv, ctx.dir.join("nginx-proxy.log"))?;
            wait_listening(&mut d, listen.into()).await?;
            references.push(d);
            check_routing("nginx", listen, &bodies).await?;
            proxies.push(("nginx", listen));
        }
        None => figure("skipped", "nginx", "not installed (scripts/install-bench-deps.sh)"),
    }

    let path = format!("{INGRESS_PATH}/");
    let direct = load(ctx, None, &Target::new(direct_addr, Some(INGRESS_HOST), &path)).await?;
    direct.check("backend l0 directly")?;
    figure("baseline", format!("backend l0 {direct_addr} directly"), direct.line());
    let gw = load(ctx, None, &Target::new(gateway_addr, Some(INGRESS_HOST), &path)).await?;
    gw.check("the gateway")?;
    figure(
        "skiff",
        format!("gateway {gateway_addr} → 2 backends"),
        format_args!("{}   ratio to the backend alone: req/s {}", gw.line(), ratio(gw.rps, direct.rps)),
    );
    let tool = gw.tool;
    summary.add(format!("gateway vs backend alone, req/s [{tool}]"), gw.rps_cell(), direct.rps_cell(), ratio(gw.rps, direct.rps));
    for (name, addr) in proxies {
        let r = load(ctx, None, &Target::new(addr, Some(INGRESS_HOST), &path)).await?;
        r.check(name)?;
        figure(
            "baseline",
            format!("{name} {addr} → 2 backends"),
            format_args!("{}   gateway/{name}: req/s {}, p99 {}", r.line(), ratio(gw.rps, r.rps), dratio(gw.p99, r.p99)),
        );
        summary.add(format!("gateway vs {name}, req/s [{tool}]"), gw.rps_cell(), r.rps_cell(), ratio(gw.rps, r.rps));
        summary.add(format!("gateway vs {name}, p99 [{tool}]"), ms(gw.p99), ms(r.p99), dratio(gw.p99, r.p99));
    }
    drop(references);
    drop(gateway);
    drop(servers);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK_OUTPUT: &str = "Running 3s test @ http://10.244.1.11/
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.40ms    2.66ms  39.60ms   90.75%
    Req/Sec    37.27k    11.88k   77.44k    70.00%
  Latency Distribution
     50%  465.00us
     75%    1.17ms
     90%    3.88ms
     99%   12.22ms
  224343 requests in 3.06s, 32.09MB read
  Socket errors: connect 1, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:  73373.24
Transfer/sec:     10.50MB
";

    #[test]
    fn wrk_output_gives_the_rate_percentiles_and_failures() {
        let r = parse_wrk(WRK_OUTPUT).unwrap();
        assert_eq!(r.tool, "wrk");
        assert_eq!(r.requests, 224_343);
        assert!((r.seconds - 3.06).abs() < 1e-9);
        assert!((r.rps - 73_373.24).abs() < 1e-6);
        assert_eq!(r.p50, Duration::from_micros(465));
        assert_eq!(r.p99, Duration::from_micros(12_220));
        assert_eq!((r.errors, r.non_2xx), (6, 7));
        assert!(parse_wrk("unable to connect to 10.244.1.11:80 Connection refused").is_err());
    }

    #[test]
    fn wrk_durations_carry_their_units() {
        assert_eq!(parse_wrk_duration("465.00us"), Some(Duration::from_micros(465)));
        assert_eq!(parse_wrk_duration(" 1.50ms"), Some(Duration::from_micros(1500)));
        assert_eq!(parse_wrk_duration("2.00s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_wrk_duration("1.00m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_wrk_duration("12"), None);
        assert_eq!(parse_wrk_duration("3parsecs"), None);
    }

    #[test]
    fn the_builtin_generators_line_is_read_back() {
        let out = "starting\n{\"requests\":10,\"seconds\":1.0,\"rps\":10.0,\"p50_us\":1500,\"p99_us\":9000,\"errors\":1,\"non_2xx\":2}\n";
        let r = parse_builtin(out).unwrap();
        assert_eq!((r.tool, r.requests, r.errors, r.non_2xx), ("built-in", 10, 1, 2));
        assert_eq!((r.p50, r.p99), (Duration::from_micros(1500), Duration::from_micros(9000)));
        assert!(parse_builtin("no json here\n").is_err());
    }

    #[test]
    fn a_load_with_more_than_one_percent_failures_is_refused() {
        let mut r = parse_wrk(WRK_OUTPUT).unwrap();
        assert!(r.check("ok").is_ok());
        r.non_2xx = r.requests / 50;
        assert!(r.check("failing").is_err());
        r.requests = 0;
        r.non_2xx = 0;
        assert!(r.check("nothing").is_err());
    }

    #[tokio::test]
    async fn responses_are_read_by_length_by_chunks_or_to_the_end() {
        // Two pipelined responses: the second one's bytes stay in the buffer.
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nb0\nHTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nConnection: close\r\n\r\n";
        let mut stream = &wire[..];
        let mut buf = Vec::new();
        let first = read_response(&mut stream, &mut buf).await.unwrap();
        assert_eq!(first, Response { status: 200, body: b"b0\n".to_vec(), close: false });
        let second = read_response(&mut stream, &mut buf).await.unwrap();
        assert_eq!(second, Response { status: 404, body: Vec::new(), close: true });
        assert!(buf.is_empty());

        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nb1\n\r\n2;x=y\r\nok\r\n0\r\nTrailer: t\r\n\r\n";
        let mut stream = &chunked[..];
        let mut buf = Vec::new();
        let r = read_response(&mut stream, &mut buf).await.unwrap();
        assert_eq!((r.status, r.body.as_slice(), r.close), (200, &b"b1\nok"[..], false));

        let unframed = b"HTTP/1.0 200 OK\r\n\r\nuntil the end";
        let mut stream = &unframed[..];
        let r = read_response(&mut stream, &mut Vec::new()).await.unwrap();
        assert_eq!((r.body.as_slice(), r.close), (&b"until the end"[..], true));

        let cut = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort";
        let mut stream = &cut[..];
        assert!(read_response(&mut stream, &mut Vec::new()).await.is_err());
    }

    #[tokio::test]
    async fn the_builtin_server_answers_the_builtin_generator_on_loopback() {
        let port = free_port(&[Ipv4Addr::LOCALHOST]).unwrap();
        let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
        let server = tokio::spawn(async move { internal_serve(addr.into(), "b7\n", Duration::from_secs(20)).await });
        let target = Target::new(addr, Some(INGRESS_HOST), "/app/");
        let deadline = Instant::now() + Duration::from_secs(5);
        let first = loop {
            match http_once(&target, Duration::from_secs(1)).await {
                Ok(r) => break r,
                Err(e) if Instant::now() >= deadline => panic!("the server did not answer: {e:#}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        assert_eq!((first.status, first.body.as_slice()), (200, &b"b7\n"[..]));

        let r = builtin_load(&target, 4, Duration::from_millis(300)).await;
        server.abort();
        assert!(r.requests > 10, "only {} requests in 300 ms", r.requests);
        assert_eq!((r.errors, r.non_2xx), (0, 0));
        assert!(r.p50 <= r.p99 && r.p99 > Duration::ZERO);
        assert!(r.rps > 0.0 && r.seconds >= 0.3);
    }

    #[test]
    fn urls_name_an_ipv4_address_a_port_and_a_path() {
        let t = Target::parse("http://10.96.100.10:8080/app/x", None).unwrap();
        assert_eq!(t, Target { addr: "10.96.100.10:8080".parse().unwrap(), host: "10.96.100.10:8080".into(), path: "/app/x".into() });
        let t = Target::parse("http://127.0.0.1", Some(INGRESS_HOST)).unwrap();
        assert_eq!((t.addr.port(), t.host.as_str(), t.path.as_str()), (80, INGRESS_HOST, "/"));
        assert_eq!(t.url(), "http://127.0.0.1:80/");
        assert!(Target::parse("https://127.0.0.1/", None).is_err());
        assert!(Target::parse("http://localhost/", None).is_err());
        let req = String::from_utf8(t.request(true)).unwrap();
        assert!(req.starts_with("GET / HTTP/1.1\r\nHost: bench.example\r\n") && req.contains("Connection: close\r\n") && req.ends_with("\r\n\r\n"));
    }

    #[test]
    fn link_names_fit_the_kernels_limit() {
        // The largest PID Linux hands out, and the largest index the flags allow.
        for kind in ['b', 'v', 'e'] {
            let name = link_name(4_194_304, kind, 50);
            assert!(name.len() <= 15 && name.starts_with("sk"), "{name}");
        }
    }

    #[test]
    fn percentiles_take_nearest_ranks() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 0.5), Duration::from_millis(51));
        assert_eq!(percentile(&v, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
        assert_eq!(median(vec![Duration::from_millis(3), Duration::from_millis(1), Duration::from_millis(2)]), Duration::from_millis(2));
        assert_eq!(ratio(3.0, 2.0), "1.50x");
        assert_eq!(ratio(1.0, 0.0), "-");
    }

    #[test]
    fn filler_services_have_their_own_addresses_away_from_the_pods() {
        let mut cluster_ips = std::collections::HashSet::new();
        let mut endpoints = std::collections::HashSet::new();
        let service_cidr = (u32::from(Ipv4Addr::new(10, 96, 0, 0)), 12);
        let in_cidr = |ip: Ipv4Addr, (net, bits): (u32, u32)| u32::from(ip) >> (32 - bits) == net >> (32 - bits);
        for i in 0..10_000 {
            let (svc, slice) = filler(i);
            let spec = svc.spec.unwrap();
            let ip: Ipv4Addr = spec.cluster_ip.unwrap().parse().unwrap();
            assert!(in_cidr(ip, service_cidr), "{ip} is outside the service CIDR");
            assert!(ip != WEB_IP && ip != WEB_ONE_IP);
            assert!(cluster_ips.insert(ip), "{ip} twice");
            assert_eq!(slice.metadata.labels.unwrap()["kubernetes.io/service-name"], format!("svc-{i:05}"));
            assert!((2..=3).contains(&slice.endpoints.len()));
            for e in slice.endpoints {
                let a: Ipv4Addr = e.addresses[0].parse().unwrap();
                assert!(in_cidr(a, (u32::from(CLUSTER_CIDR.0), 16)) && !in_cidr(a, (u32::from(POD_NET), 24)), "{a}");
                assert!(endpoints.insert(a), "{a} twice");
            }
        }
    }

    #[test]
    fn slices_mark_not_ready_endpoints_not_serving() {
        let s = slice("web-abcde", "web", &[(Ipv4Addr::new(10, 244, 1, 11), true), (Ipv4Addr::new(10, 244, 1, 12), false)], 80);
        let conditions: Vec<(Option<bool>, Option<bool>)> =
            s.endpoints.iter().map(|e| e.conditions.as_ref().map_or((None, None), |c| (c.ready, c.serving))).collect();
        assert_eq!(conditions, vec![(Some(true), Some(true)), (Some(false), Some(false))]);
        assert_eq!(s.address_type, "IPv4");
        assert_eq!(s.ports.unwrap()[0].port, Some(80));
        let svc = service("web", None, 80, json!("http"));
        assert!(svc.spec.unwrap().cluster_ip.is_none());
    }

    /// Runs `argv` and returns whether it succeeded, or None (with a note) when the
    /// binary is missing.
    fn validate(argv: &[&str]) -> Option<std::process::Output> {
        let Some(bin) = find_binary(argv[0]) else {
            eprintln!("skipping: {} is not installed (scripts/install-bench-deps.sh)", argv[0]);
            return None;
        };
        Some(std::process::Command::new(bin).args(&argv[1..]).output().unwrap())
    }

    #[test]
    fn the_reference_proxies_route_the_ingress_host_and_path() {
        let backends: Vec<SocketAddr> = vec!["127.0.0.2:18080".parse().unwrap(), "127.0.0.3:18080".parse().unwrap()];
        let listen: SocketAddr = "127.0.0.1:18081".parse().unwrap();
        let haproxy = haproxy_conf(listen, &backends);
        for needle in [
            "bind 127.0.0.1:18081",
            "-i bench.example",
            "path /app\n",
            "path_beg /app/\n",
            "server l0 127.0.0.2:18080",
            "server l1 127.0.0.3:18080",
            "status 404",
        ] {
            assert!(haproxy.contains(needle), "haproxy.cfg lacks {needle:?}:\n{haproxy}");
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
        let nginx = nginx_proxy_conf(dir.path(), listen, &backends);
        for needle in [
            "listen 127.0.0.1:18081;",
            "server_name bench.example;",
            "location = /app {",
            "location /app/ {",
            "server 127.0.0.2:18080;",
            "keepalive 64;",
            "return 404;",
        ] {
            assert!(nginx.contains(needle), "nginx.conf lacks {needle:?}:\n{nginx}");
        }
        let backend = backend_nginx_conf(dir.path(), "b3", backends[0]);
        assert!(backend.contains("listen 127.0.0.2:18080;") && backend.contains("return 200 \"b3\\n\";") && backend.starts_with("master_process off;"));

        // The real programs accept them (syntax only: nothing is started).
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg, &haproxy).unwrap();
        if let Some(out) = validate(&["haproxy", "-c", "-q", "-f", cfg.to_str().unwrap()]) {
            assert!(out.status.success(), "haproxy -c: {}", String::from_utf8_lossy(&out.stderr));
        }
        for (name, conf) in [("proxy.conf", &nginx), ("backend.conf", &backend)] {
            let path = dir.path().join(name);
            std::fs::write(&path, conf).unwrap();
            let (prefix, err) = (dir.path().to_str().unwrap(), dir.path().join("error.log"));
            if let Some(out) = validate(&["nginx", "-t", "-q", "-p", prefix, "-e", err.to_str().unwrap(), "-c", path.to_str().unwrap()]) {
                assert!(out.status.success(), "nginx -t {name}: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
    }

    #[tokio::test]
    async fn the_gateway_routes_the_benchmarks_ingress_to_both_backends() {
        let loopbacks = [Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3)];
        let port = free_port(&loopbacks).unwrap();
        let servers: Vec<_> = loopbacks
            .iter()
            .enumerate()
            .map(|(i, ip)| {
                let addr = SocketAddr::from((*ip, port));
                tokio::spawn(async move { internal_serve(addr, &format!("l{i}\n"), Duration::from_secs(20)).await })
            })
            .collect();
        let (gateway, addr) = start_gateway(&loopbacks, port).await.unwrap();
        let bodies = vec!["l0".to_string(), "l1".to_string()];
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(loopbacks[1].to_string() + ":" + &port.to_string()).await.is_err() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        check_routing("the gateway", addr, &bodies).await.unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..20 {
            let r = http_once(&Target::new(addr, Some(INGRESS_HOST), "/app/x"), Duration::from_secs(2)).await.unwrap();
            seen.insert(String::from_utf8_lossy(&r.body).trim().to_string());
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), bodies);
        let elsewhere = http_once(&Target::new(addr, Some(INGRESS_HOST), "/application"), Duration::from_secs(2)).await.unwrap();
        assert_eq!(elsewhere.status, 404);
        drop(gateway);
        for s in servers {
            s.abort();
        }
    }
}
