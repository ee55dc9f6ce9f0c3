//! First-start credentials: a cluster CA, the serving certificate, the admin token,
//! the node join token, and the admin kubeconfig.
//!
//! Everything lives under `DATA_DIR/pki/` (mode 0600 keys) except the two files
//! users and scripts reach for: `DATA_DIR/kubeconfig.yaml` and `DATA_DIR/node-token`.

use std::fs;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// The credentials a server runs with.
pub struct Credentials {
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    /// Bearer token of the `admin` user (group `system:masters`).
    pub admin_token: String,
    /// Bearer token that agents present to join the cluster.
    pub node_token: String,
    /// The client certificate (CN `skiff-apiserver`) the server presents to agents'
    /// streaming endpoints (logs, exec, attach, port-forward), and its key.
    pub kubelet_client_cert_pem: String,
    pub kubelet_client_key_pem: String,
}

const CA_CN: &str = "skiff-ca";

fn ca_params() -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_CN);
    dn.push(DnType::OrganizationName, "skiff");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    Ok(params)
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    Ok(())
}

fn random_token() -> String {
    use rand::Rng;
    let bytes: [u8; 24] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn read_or_create(path: &Path, make: impl FnOnce() -> Result<String>) -> Result<String> {
    match fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        _ => {
            let s = make()?;
            write_private(path, &s)?;
            Ok(s)
        }
    }
}

/// Loads the credentials in `data_dir`, creating whatever is missing. The serving
/// certificate is re-issued on every start so that it always names `listen`.
pub fn load_or_create(data_dir: &Path, listen: SocketAddr) -> Result<Credentials> {
    let pki = data_dir.join("pki");
    fs::create_dir_all(&pki).with_context(|| format!("creating {}", pki.display()))?;

    let ca_key_pem = read_or_create(&pki.join("ca.key"), || Ok(KeyPair::generate()?.serialize_pem()))?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).context("reading pki/ca.key")?;
    let ca_pem = read_or_create(&pki.join("ca.crt"), || Ok(ca_params()?.self_signed(&ca_key)?.pem()))?;
    let issuer = Issuer::new(ca_params()?, ca_key);

    let mut names: Vec<String> = vec![
        "localhost".into(),
        "kubernetes".into(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        "kubernetes.default.svc.cluster.local".into(),
        "127.0.0.1".into(),
        "::1".into(),
    ];
    if let Ok(host) = fs::read_to_string("/etc/hostname") {
        let host = host.trim();
        if !host.is_empty() {
            names.push(host.to_string());
        }
    }
    let ip = listen.ip();
    if !ip.is_unspecified() && !names.contains(&ip.to_string()) {
        names.push(ip.to_string());
    }
    for extra in extra_ips() {
        if !names.contains(&extra.to_string()) {
            names.push(extra.to_string());
        }
    }
    let server_key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names)?;
    params.distinguished_name.push(DnType::CommonName, "skiff-apiserver");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    let server_cert = params.signed_by(&server_key, &issuer)?;
    let server_cert_pem = server_cert.pem();
    let server_key_pem = server_key.serialize_pem();
    write_private(&pki.join("server.crt"), &server_cert_pem)?;
    write_private(&pki.join("server.key"), &server_key_pem)?;

    let admin_token = read_or_create(&pki.join("admin.token"), || Ok(random_token()))?;
    let node_token = read_or_create(&data_dir.join("node-token"), || Ok(format!("skiff-node::{}", random_token())))?;
    let (kubelet_client_cert_pem, kubelet_client_key_pem) = kubelet_client_certificate(&issuer)?;
    write_private(&pki.join("apiserver-kubelet-client.crt"), &kubelet_client_cert_pem)?;
    write_private(&pki.join("apiserver-kubelet-client.key"), &kubelet_client_key_pem)?;

    Ok(Credentials { ca_pem, server_cert_pem, server_key_pem, admin_token, node_token, kubelet_client_cert_pem, kubelet_client_key_pem })
}

/// The common name agents require of the client certificate that calls their
/// streaming endpoints.
pub const KUBELET_CLIENT_CN: &str = "skiff-apiserver";

/// A client certificate for calling agents, signed by the cluster CA (minted on
/// every start, like the serving certificate; agents trust the CA, not the file).
fn kubelet_client_certificate(issuer: &Issuer<'_, KeyPair>) -> Result<(String, String)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::OrganizationName, "system:masters");
    params.distinguished_name.push(DnType::CommonName, KUBELET_CLIENT_CN);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The service CIDR's first address, which the `kubernetes` Service uses.
fn extra_ips() -> Vec<IpAddr> {
    vec!["10.96.0.1".parse().expect("valid ip")]
}

/// The datastore key that holds the cluster's shared credentials.
pub const SHARED_CREDENTIALS_KEY: &str = "/bootstrap/credentials";

/// What every server of one cluster must share: the CA (so each server's serving
/// certificate is trusted by the same kubeconfig) and the two tokens.
#[derive(serde::Serialize, serde::Deserialize, PartialEq, Eq)]
struct Shared {
    ca_crt: String,
    ca_key: String,
    admin_token: String,
    node_token: String,
}

impl Shared {
    fn read_local(data_dir: &Path) -> Result<Shared> {
        let read = |p: PathBuf| fs::read_to_string(&p).map(|s| s.trim().to_string()).with_context(|| format!("reading {}", p.display()));
        Ok(Shared {
            ca_crt: read(data_dir.join("pki/ca.crt"))?,
            ca_key: read(data_dir.join("pki/ca.key"))?,
            admin_token: read(data_dir.join("pki/admin.token"))?,
            node_token: read(data_dir.join("node-token"))?,
        })
    }

    fn write_local(&self, data_dir: &Path) -> Result<()> {
        let pki = data_dir.join("pki");
        fs::create_dir_all(&pki).with_context(|| format!("creating {}", pki.display()))?;
        // PEM files end with a newline, as rcgen writes them.
        write_private(&pki.join("ca.crt"), &format!("{}\n", self.ca_crt))?;
        write_private(&pki.join("ca.key"), &format!("{}\n", self.ca_key))?;
        write_private(&pki.join("admin.token"), &self.admin_token)?;
        write_private(&data_dir.join("node-token"), &self.node_token)
    }
}

/// Like [`load_or_create`], but the CA and tokens are shared through the datastore,
/// so every server on one datastore (an HA control plane on etcd, or a cluster
/// migrated from SQLite) serves with the same CA and accepts the same tokens.
///
/// The first server to start stores its credentials (a create, so racing servers
/// agree on one set); later servers adopt them, replacing their local files. The
/// datastore therefore holds the CA key: protect it as you protect Secrets.
pub async fn load_or_create_shared(data_dir: &Path, listen: SocketAddr, store: &dyn skiff_store::Store) -> Result<Credentials> {
    for _ in 0..3 {
        if let Some(kv) = store.get(SHARED_CREDENTIALS_KEY).await.context("reading the cluster credentials from the datastore")? {
            let shared: Shared = serde_json::from_slice(&kv.value).context("the cluster credentials in the datastore are not readable")?;
            let local = Shared::read_local(data_dir).ok();
            if local.as_ref() != Some(&shared) {
                if local.is_some() {
                    tracing::info!(dir = %data_dir.display(), "adopting the cluster's CA and tokens from the datastore");
                }
                shared.write_local(data_dir)?;
            }
            return load_or_create(data_dir, listen);
        }
        let creds = load_or_create(data_dir, listen)?;
        let shared = Shared::read_local(data_dir)?;
        let value = bytes::Bytes::from(serde_json::to_vec(&shared)?);
        match store.create(SHARED_CREDENTIALS_KEY, value).await {
            Ok(_) => return Ok(creds),
            Err(skiff_store::StoreError::AlreadyExists { .. }) => continue,
            Err(e) => return Err(e).context("storing the cluster credentials in the datastore"),
        }
    }
    anyhow::bail!("could not agree on the cluster credentials with the other servers; try again")
}

/// Writes `DATA_DIR/kubeconfig.yaml` for the admin user. The cluster's `server` is
/// the first URL; with several, all are listed in the `skiff.dev/servers` cluster
/// extension (kubectl ignores it; Skiff's own clients fail over through it).
pub fn write_kubeconfig(data_dir: &Path, creds: &Credentials, servers: &[String]) -> Result<PathBuf> {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(creds.ca_pem.as_bytes());
    let server = servers.first().cloned().unwrap_or_default();
    let extension = if servers.len() > 1 {
        let list: String = servers.iter().map(|s| format!("        - {s}\n")).collect();
        format!("    extensions:\n    - name: skiff.dev/servers\n      extension:\n        servers:\n{list}")
    } else {
        String::new()
    };
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: skiff\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\n{extension}users:\n- name: admin\n  user:\n    token: {token}\ncontexts:\n- name: skiff\n  context:\n    cluster: skiff\n    user: admin\n    namespace: default\ncurrent-context: skiff\npreferences: {{}}\n",
        token = creds.admin_token
    );
    let path = data_dir.join("kubeconfig.yaml");
    write_private(&path, &yaml)?;
    Ok(path)
}
