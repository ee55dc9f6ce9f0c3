//! Where the servers are and how to authenticate: a kubeconfig, or explicit values.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde::Deserialize;

/// The extension name under a kubeconfig cluster that lists every server URL.
pub const SERVERS_EXTENSION: &str = "skiff.dev/servers";

/// The request deadline [`ClientConfig::new`] and [`ClientConfig::from_kubeconfig`]
/// use. Short enough that a server that accepts connections but never answers
/// costs a failover, not a stall; long enough for a large list.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// `https://host:port` URLs, tried in order (the first that answers is kept).
    pub servers: Vec<String>,
    /// Bearer token.
    pub token: String,
    /// PEM CA bundle that signed the servers' certificates.
    pub ca_pem: String,
    /// Deadline of each request (not of watches).
    pub timeout: Duration,
}

/// Leaves the token out, so a config can be logged.
impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("servers", &self.servers)
            .field("token", &"<redacted>")
            .field("ca_pem", &format_args!("<{} bytes>", self.ca_pem.len()))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl ClientConfig {
    /// Explicit values, with [`DEFAULT_TIMEOUT`]; what agents use when they are
    /// handed a server list and a join token rather than a kubeconfig.
    pub fn new(servers: Vec<String>, token: impl Into<String>, ca_pem: impl Into<String>) -> ClientConfig {
        ClientConfig { servers: dedup_servers(servers), token: token.into(), ca_pem: ca_pem.into(), timeout: DEFAULT_TIMEOUT }
    }

    /// Reads the current context of a kubeconfig: the cluster's `server` first, then
    /// the URLs in its `skiff.dev/servers` extension; the user's `token`; the
    /// cluster's `certificate-authority-data` (or `certificate-authority` file).
    pub fn from_kubeconfig(path: &Path) -> anyhow::Result<ClientConfig> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading kubeconfig {}", path.display()))?;
        // Relative file references resolve against the kubeconfig's own directory,
        // as kubectl resolves them.
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        parse_kubeconfig(&text, &base).with_context(|| format!("kubeconfig {}", path.display()))
    }
}

// === kubeconfig ===

/// The parts of a kubeconfig this client reads; everything else is ignored.
#[derive(Debug, Deserialize)]
struct Kubeconfig {
    #[serde(rename = "current-context", default)]
    current_context: Option<String>,
    #[serde(default)]
    clusters: Option<Vec<NamedCluster>>,
    #[serde(default)]
    contexts: Option<Vec<NamedContext>>,
    #[serde(default)]
    users: Option<Vec<NamedUser>>,
}

#[derive(Debug, Deserialize)]
struct NamedCluster {
    name: String,
    #[serde(default)]
    cluster: Option<Cluster>,
}

#[derive(Debug, Deserialize)]
struct Cluster {
    #[serde(default)]
    server: Option<String>,
    #[serde(rename = "certificate-authority-data", default)]
    certificate_authority_data: Option<String>,
    #[serde(rename = "certificate-authority", default)]
    certificate_authority: Option<String>,
    #[serde(default)]
    extensions: Option<Vec<NamedExtension>>,
}

#[derive(Debug, Deserialize)]
struct NamedExtension {
    name: String,
    #[serde(default)]
    extension: Option<serde_yaml::Value>,
}

#[derive(Debug, Deserialize)]
struct ServersExtension {
    #[serde(default)]
    servers: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct NamedContext {
    name: String,
    #[serde(default)]
    context: Option<KubeContext>,
}

#[derive(Debug, Deserialize)]
struct KubeContext {
    #[serde(default)]
    cluster: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

#[derive(Debug, Deserialize)]
struct NamedUser {
    name: String,
    #[serde(default)]
    user: Option<User>,
}

#[derive(Debug, Deserialize)]
struct User {
    #[serde(default)]
    token: Option<String>,
    #[serde(rename = "tokenFile", default)]
    token_file: Option<String>,
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn resolve(base: &Path, file: &str) -> PathBuf {
    let p = Path::new(file);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn parse_kubeconfig(text: &str, base: &Path) -> anyhow::Result<ClientConfig> {
    let kc: Kubeconfig = serde_yaml::from_str(text).context("not a valid kubeconfig")?;
    let current = non_empty(&kc.current_context).ok_or_else(|| anyhow!("no current-context is set"))?;
    let context = kc
        .contexts
        .iter()
        .flatten()
        .find(|c| c.name == current)
        .ok_or_else(|| anyhow!("current-context {current:?} is not among the contexts"))?
        .context
        .as_ref()
        .ok_or_else(|| anyhow!("context {current:?} is empty"))?;
    let cluster_name = non_empty(&context.cluster).ok_or_else(|| anyhow!("context {current:?} names no cluster"))?;
    let user_name = non_empty(&context.user).ok_or_else(|| anyhow!("context {current:?} names no user"))?;

    let cluster = kc
        .clusters
        .iter()
        .flatten()
        .find(|c| c.name == cluster_name)
        .ok_or_else(|| anyhow!("cluster {cluster_name:?} (of context {current:?}) is not among the clusters"))?
        .cluster
        .as_ref()
        .ok_or_else(|| anyhow!("cluster {cluster_name:?} is empty"))?;
    let server = non_empty(&cluster.server).ok_or_else(|| anyhow!("cluster {cluster_name:?} has no server"))?;
    let mut servers = vec![server.to_string()];
    for ext in cluster.extensions.iter().flatten().filter(|e| e.name == SERVERS_EXTENSION) {
        let Some(value) = &ext.extension else { continue };
        let listed: ServersExtension = serde_yaml::from_value(value.clone())
            .with_context(|| format!("cluster {cluster_name:?}: extension {SERVERS_EXTENSION} should hold `servers: [url, ...]`"))?;
        servers.extend(listed.servers);
    }

    let ca_pem = if let Some(data) = non_empty(&cluster.certificate_authority_data) {
        use base64::Engine;
        // Kubeconfigs written by hand sometimes wrap the base64 text.
        let compact: String = data.chars().filter(|c| !c.is_whitespace()).collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(compact)
            .with_context(|| format!("cluster {cluster_name:?}: certificate-authority-data is not base64"))?;
        String::from_utf8(bytes).with_context(|| format!("cluster {cluster_name:?}: certificate-authority-data is not PEM text"))?
    } else if let Some(file) = non_empty(&cluster.certificate_authority) {
        let path = resolve(base, file);
        std::fs::read_to_string(&path).with_context(|| format!("cluster {cluster_name:?}: reading certificate-authority {}", path.display()))?
    } else {
        bail!("cluster {cluster_name:?} has neither certificate-authority-data nor certificate-authority");
    };
    if !ca_pem.contains("-----BEGIN CERTIFICATE-----") {
        bail!("cluster {cluster_name:?}: the certificate authority holds no PEM certificate");
    }

    let user = kc
        .users
        .iter()
        .flatten()
        .find(|u| u.name == user_name)
        .ok_or_else(|| anyhow!("user {user_name:?} (of context {current:?}) is not among the users"))?
        .user
        .as_ref()
        .ok_or_else(|| anyhow!("user {user_name:?} is empty"))?;
    let token = if let Some(token) = non_empty(&user.token) {
        token.to_string()
    } else if let Some(file) = non_empty(&user.token_file) {
        let path = resolve(base, file);
        let token = std::fs::read_to_string(&path).with_context(|| format!("user {user_name:?}: reading tokenFile {}", path.display()))?;
        let token = token.trim();
        if token.is_empty() {
            bail!("user {user_name:?}: tokenFile {} is empty", path.display());
        }
        token.to_string()
    } else {
        bail!("user {user_name:?} has neither token nor tokenFile (client certificates are not supported)");
    };

    Ok(ClientConfig { servers: dedup_servers(servers), token, ca_pem, timeout: DEFAULT_TIMEOUT })
}

/// Keeps the first occurrence of each URL (a trailing `/` does not make a URL different).
fn dedup_servers(servers: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(servers.len());
    for s in servers {
        let s = s.trim().trim_end_matches('/').to_string();
        if !s.is_empty() && !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    fn b64(s: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn servers_come_from_the_cluster_and_its_extension_without_duplicates() {
        let yaml = format!(
            "current-context: c\ncontexts:\n- name: c\n  context: {{cluster: k, user: u}}\nclusters:\n- name: other\n  cluster: {{server: https://elsewhere}}\n- name: k\n  cluster:\n    server: https://127.0.0.1:6444\n    certificate-authority-data: {}\n    extensions:\n    - name: something.else\n      extension: {{servers: [https://nope]}}\n    - name: skiff.dev/servers\n      extension:\n        servers: [https://127.0.0.1:6443, https://127.0.0.1:6444/, https://127.0.0.1:6445]\nusers:\n- name: u\n  user: {{token: abc}}\n",
            b64(CA)
        );
        let c = parse_kubeconfig(&yaml, Path::new("/")).unwrap();
        assert_eq!(c.servers, vec!["https://127.0.0.1:6444", "https://127.0.0.1:6443", "https://127.0.0.1:6445"]);
        assert_eq!(c.token, "abc");
        assert_eq!(c.ca_pem, CA);
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
    }

    #[test]
    fn token_file_and_ca_file_resolve_against_the_kubeconfig_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.crt"), CA).unwrap();
        std::fs::write(dir.path().join("token"), "  secret\n").unwrap();
        let yaml = "current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\nclusters: [{name: k, cluster: {server: 'https://h:1', certificate-authority: ca.crt}}]\nusers: [{name: u, user: {tokenFile: token}}]\n";
        let c = parse_kubeconfig(yaml, dir.path()).unwrap();
        assert_eq!(c.ca_pem, CA);
        assert_eq!(c.token, "secret");
        assert_eq!(c.servers, vec!["https://h:1"]);
        assert!(!format!("{c:?}").contains("secret"), "the token stays out of logs");
    }

    #[test]
    fn errors_name_what_is_missing() {
        let err = |yaml: &str| format!("{:#}", parse_kubeconfig(yaml, Path::new("/nonexistent")).unwrap_err());
        assert!(err("clusters: []\n").contains("no current-context"));
        assert!(err("current-context: c\n").contains("\"c\" is not among the contexts"));
        let base = "current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n";
        assert!(err(base).contains("cluster \"k\""));
        let no_server = format!("{base}clusters: [{{name: k, cluster: {{certificate-authority-data: {}}}}}]\n", b64(CA));
        assert!(err(&no_server).contains("has no server"));
        let no_ca = format!("{base}clusters: [{{name: k, cluster: {{server: 'https://h'}}}}]\n");
        assert!(err(&no_ca).contains("neither certificate-authority-data nor certificate-authority"));
        let missing_ca_file = format!("{base}clusters: [{{name: k, cluster: {{server: 'https://h', certificate-authority: ca.crt}}}}]\n");
        assert!(err(&missing_ca_file).contains("/nonexistent/ca.crt"));
        let ok_cluster = format!("{base}clusters: [{{name: k, cluster: {{server: 'https://h', certificate-authority-data: {}}}}}]\n", b64(CA));
        assert!(err(&ok_cluster).contains("user \"u\""));
        let no_token = format!("{ok_cluster}users: [{{name: u, user: {{username: x}}}}]\n");
        assert!(err(&no_token).contains("neither token nor tokenFile"));
    }
}
