//! One run of a probe's handler (exec, httpGet, tcpSocket, grpc), judged the way
//! the kubelet's `pkg/probe` judges it, and the small helpers the handlers share:
//! port resolution, `$(VAR)` expansion of exec commands, and Go-shaped messages
//! (events and `kubectl describe` show the kubelet's wording, so we keep it).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{grpc, http};
use crate::runtime::{Runtime, RuntimeError};

/// How much of an exec probe's output (stdout then stderr) is kept, as upstream.
const MAX_EXEC_OUTPUT: usize = 10 * 1024;

/// What one probe attempt concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The container passed; the text is the handler's output (unused but logged).
    Success(String),
    /// Passed, with a warning worth an event (an HTTP redirect to another host).
    Warning(String),
    /// Failed; the text is the event's "… probe failed: <text>".
    Failure(String),
    /// The probe could not be run at all (a named port that does not exist, the
    /// runtime unreachable): the kubelet throws such a result away.
    Error(String),
}

/// Where and how long a probe runs.
pub(crate) struct Context<'a> {
    pub runtime: &'a dyn Runtime,
    pub container_id: &'a str,
    pub container: &'a Container,
    pub pod_ip: Option<IpAddr>,
    pub timeout: Duration,
}

/// The address probes go to: the pod's IP, or loopback for a pod in the host's
/// network (which has no IP of its own in the runtime's status).
pub(crate) fn pod_host(pod_ip: Option<IpAddr>) -> IpAddr {
    pod_ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// Runs the probe's handler once.
pub(crate) async fn run(probe: &Probe, ctx: &Context<'_>) -> Outcome {
    if let Some(exec) = &probe.exec {
        let command = expand_command(exec.command.as_deref().unwrap_or_default(), ctx.container);
        return exec_probe(ctx, &command).await;
    }
    if let Some(get) = &probe.http_get {
        let request = match http::Request::for_action(get, ctx.container, ctx.pod_ip, "probe") {
            Ok(request) => request,
            Err(err) => return Outcome::Error(err),
        };
        return http::probe(&request, ctx.timeout).await;
    }
    if let Some(tcp) = &probe.tcp_socket {
        let port = match resolve_port(&tcp.port, ctx.container) {
            Ok(port) => port,
            Err(err) => return Outcome::Error(err),
        };
        let host = match tcp.host.as_deref() {
            Some(host) if !host.is_empty() => host.to_string(),
            _ => pod_host(ctx.pod_ip).to_string(),
        };
        return tcp_probe(&host, port, ctx.timeout).await;
    }
    if let Some(g) = &probe.grpc {
        let Ok(port) = u16::try_from(g.port) else {
            return Outcome::Error(format!("invalid port number: {}", g.port));
        };
        return grpc::probe(pod_host(ctx.pod_ip), port, g.service.as_deref().unwrap_or(""), ctx.timeout).await;
    }
    Outcome::Error(format!("missing probe handler for container {:?}", ctx.container.name))
}

// === exec ===

/// Runs the command in the container: exit 0 passes, anything else fails with the
/// command's output as the message, and a command still running at the timeout
/// fails (ExecProbeTimeout, on since 1.20).
async fn exec_probe(ctx: &Context<'_>, command: &[String]) -> Outcome {
    match exec(ctx.runtime, ctx.container_id, command, ctx.timeout).await {
        Ok(output) => {
            let text = combined_output(&output.stdout, &output.stderr);
            if output.exit_code == 0 {
                Outcome::Success(text)
            } else {
                Outcome::Failure(text)
            }
        }
        Err(RuntimeError::Timeout(_)) => Outcome::Failure(exec_timeout_message(command)),
        Err(err) => Outcome::Error(err.to_string()),
    }
}

/// `exec_sync` with a safety net: a runtime that does not honour the timeout
/// still cannot hold the prober past it (plus a second for the runtime's own
/// reply), and that counts as the command timing out.
pub(crate) async fn exec(runtime: &dyn Runtime, container_id: &str, command: &[String], timeout: Duration) -> crate::runtime::Result<crate::runtime::ExecOutput> {
    if timeout.is_zero() {
        return runtime.exec_sync(container_id, command, timeout).await;
    }
    match tokio::time::timeout(timeout + Duration::from_secs(1), runtime.exec_sync(container_id, command, timeout)).await {
        Ok(result) => result,
        Err(_) => Err(RuntimeError::Timeout(exec_timeout_message(command))),
    }
}

/// The kubelet's wording for an exec past its deadline.
pub(crate) fn exec_timeout_message(command: &[String]) -> String {
    format!("command {:?} timed out", command.join(" "))
}

/// Stdout then stderr (CRI's ExecSync keeps them apart; the kubelet appends
/// them), cut at 10 KiB.
pub(crate) fn combined_output(stdout: &[u8], stderr: &[u8]) -> String {
    let mut data = Vec::with_capacity((stdout.len() + stderr.len()).min(MAX_EXEC_OUTPUT));
    data.extend_from_slice(stdout);
    data.extend_from_slice(stderr);
    data.truncate(MAX_EXEC_OUTPUT);
    String::from_utf8_lossy(&data).into_owned()
}

/// Expands `$(VAR)` in an exec probe's command with the container's literal `env`
/// values only (upstream's ExpandContainerCommandOnlyStatic: probes do not see
/// values from the downward API, secrets or config maps). `$$` is a literal `$`;
/// unknown references stay as written.
pub(crate) fn expand_command(command: &[String], container: &Container) -> Vec<String> {
    let env: Vec<(&str, &str)> = container
        .env
        .iter()
        .flatten()
        .filter(|var| var.value_from.is_none())
        .map(|var| (var.name.as_str(), var.value.as_deref().unwrap_or("")))
        .collect();
    let lookup = |name: &str| env.iter().rev().find(|(n, _)| *n == name).map(|(_, v)| *v);
    command.iter().map(|arg| expand(arg, &lookup)).collect()
}

fn expand<'a>(input: &str, lookup: &impl Fn(&str) -> Option<&'a str>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let name = &body[..end];
                    match lookup(name) {
                        Some(value) => out.push_str(value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

// === tcpSocket ===

/// Opens a TCP connection and closes it again: connecting is passing.
async fn tcp_probe(host: &str, port: u16, timeout: Duration) -> Outcome {
    match tokio::time::timeout(timeout, dial(host, port)).await {
        Ok(Ok(_stream)) => Outcome::Success(String::new()),
        Ok(Err(err)) => Outcome::Failure(err),
        Err(_) => Outcome::Failure(format!("dial tcp {}: i/o timeout", join_host_port(host, port))),
    }
}

/// Connects to `host:port` (an IP, or a name resolved first), with Go's `net.Dial`
/// wording on failure ("dial tcp 10.0.0.5:80: connect: connection refused").
pub(crate) async fn dial(host: &str, port: u16) -> Result<tokio::net::TcpStream, String> {
    let addrs: Vec<std::net::SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![(ip, port).into()],
        Err(_) => match tokio::net::lookup_host((host, port)).await {
            Ok(addrs) => addrs.collect(),
            Err(_) => return Err(format!("dial tcp: lookup {host}: no such host")),
        },
    };
    let mut last = format!("dial tcp: lookup {host}: no such host");
    for addr in addrs {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(err) => last = format!("dial tcp {addr}: connect: {}", errno_text(&err)),
        }
    }
    Err(last)
}

/// An I/O error as Go prints the errno behind it ("connection refused"), not as
/// Rust does ("Connection refused (os error 111)").
pub(crate) fn errno_text(err: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match err.kind() {
        ErrorKind::ConnectionRefused => "connection refused".into(),
        ErrorKind::ConnectionReset => "connection reset by peer".into(),
        ErrorKind::TimedOut => "i/o timeout".into(),
        ErrorKind::HostUnreachable => "no route to host".into(),
        ErrorKind::NetworkUnreachable => "network is unreachable".into(),
        ErrorKind::AddrNotAvailable => "cannot assign requested address".into(),
        _ => {
            let text = err.to_string();
            let text = match text.find(" (os error ") {
                Some(at) => text[..at].to_string(),
                None => text,
            };
            let mut chars = text.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => text,
            }
        }
    }
}

// === shared helpers ===

/// Stops a spawned connection task when the exchange is over or abandoned.
pub(crate) struct AbortOnDrop(pub tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A probe's port: a number, or the name of one of the container's ports (or,
/// as a last resort, a number written as a string), within 1..=65535.
pub(crate) fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    let number: i64 = match port {
        IntOrString::Int(n) => i64::from(*n),
        IntOrString::String(name) => {
            let named = container.ports.iter().flatten().find(|p| p.name.as_deref() == Some(name.as_str()));
            match named {
                Some(p) => i64::from(p.container_port),
                None => name.parse::<i64>().map_err(|_| format!("strconv.Atoi: parsing {name:?}: invalid syntax"))?,
            }
        }
    };
    match u16::try_from(number) {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("invalid port number: {number}")),
    }
}

/// `host:port`, with brackets around an IPv6 address (Go's net.JoinHostPort).
pub(crate) fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A duration as Go's `time.Duration.String()` writes it ("1s", "500ms", "1m30s"),
/// since upstream messages embed it.
pub(crate) fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", trim_fraction(nanos, 1_000));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", trim_fraction(nanos, 1_000_000));
    }
    let total_secs = d.as_secs();
    let hours = total_secs / 3600;
    let minutes = (total_secs % 3600) / 60;
    let seconds = trim_fraction(nanos % 60_000_000_000, 1_000_000_000);
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&format!("{seconds}s"));
    out
}

/// `value / unit` in decimal with the fraction's trailing zeros dropped.
fn trim_fraction(value: u128, unit: u128) -> String {
    let whole = value / unit;
    let fraction = value % unit;
    if fraction == 0 {
        return whole.to_string();
    }
    let width = unit.ilog10() as usize;
    let digits = format!("{fraction:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerPort, EnvVar, EnvVarSource, ObjectFieldSelector};

    fn container_with_ports() -> Container {
        Container {
            name: "app".into(),
            ports: Some(vec![ContainerPort { name: Some("http".into()), container_port: 8080, ..Default::default() }]),
            ..Default::default()
        }
    }

    #[test]
    fn ports_resolve_by_number_by_name_and_by_numeric_string() {
        let c = container_with_ports();
        assert_eq!(resolve_port(&IntOrString::Int(80), &c), Ok(80));
        assert_eq!(resolve_port(&IntOrString::String("http".into()), &c), Ok(8080));
        assert_eq!(resolve_port(&IntOrString::String("9090".into()), &c), Ok(9090));
    }

    #[test]
    fn unknown_port_names_and_out_of_range_numbers_are_errors() {
        let c = container_with_ports();
        assert_eq!(resolve_port(&IntOrString::String("grpc".into()), &c), Err("strconv.Atoi: parsing \"grpc\": invalid syntax".into()));
        assert_eq!(resolve_port(&IntOrString::Int(0), &c), Err("invalid port number: 0".into()));
        assert_eq!(resolve_port(&IntOrString::Int(70000), &c), Err("invalid port number: 70000".into()));
    }

    #[test]
    fn exec_commands_expand_only_literal_env_values() {
        let c = Container {
            env: Some(vec![
                EnvVar { name: "FILE".into(), value: Some("/tmp/healthy".into()), ..Default::default() },
                EnvVar {
                    name: "POD".into(),
                    value_from: Some(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector { field_path: "metadata.name".into(), ..Default::default() }),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let command = ["cat".to_string(), "$(FILE)".into(), "$(POD)".into(), "$$(FILE)".into(), "a$b".into(), "$(UNCLOSED".into()];
        assert_eq!(expand_command(&command, &c), vec!["cat", "/tmp/healthy", "$(POD)", "$(FILE)", "a$b", "$(UNCLOSED"]);
    }

    #[test]
    fn durations_print_as_go_prints_them() {
        assert_eq!(go_duration(Duration::from_secs(1)), "1s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn exec_output_is_stdout_then_stderr_cut_at_ten_kibibytes() {
        assert_eq!(combined_output(b"out\n", b"err\n"), "out\nerr\n");
        assert_eq!(combined_output(&[b'x'; 20_000], b"tail").len(), MAX_EXEC_OUTPUT);
    }

    #[tokio::test]
    async fn tcp_probes_pass_on_an_open_port_and_fail_on_a_closed_one() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(tcp_probe("127.0.0.1", port, Duration::from_secs(1)).await, Outcome::Success(String::new()));
        drop(listener);
        assert_eq!(
            tcp_probe("127.0.0.1", port, Duration::from_secs(1)).await,
            Outcome::Failure(format!("dial tcp 127.0.0.1:{port}: connect: connection refused"))
        );
    }

    #[test]
    fn ipv6_hosts_get_brackets() {
        assert_eq!(join_host_port("::1", 80), "[::1]:80");
        assert_eq!(join_host_port("10.0.0.1", 80), "10.0.0.1:80");
    }
}
