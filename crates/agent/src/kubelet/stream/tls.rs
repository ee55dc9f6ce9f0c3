//! The endpoint's TLS: a self-signed serving certificate the agent keeps, and
//! client certificates checked against the cluster CA.
//!
//! The API server does not verify the agent's certificate (as kube-apiserver does
//! not by default), so a self-signed one is enough; what matters is the other
//! direction: only a caller holding a certificate the cluster CA signed for
//! `skiff-apiserver` may read logs or run commands.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::CertificateDer;

/// The common name the API server's client certificate carries.
pub const APISERVER_CLIENT_CN: &str = "skiff-apiserver";

/// Loads the serving certificate from `<data_dir>/pki/kubelet.{crt,key}`, creating
/// a self-signed one on first start.
pub fn serving_certificate(data_dir: &Path) -> anyhow::Result<(String, String)> {
    let pki = data_dir.join("pki");
    let (crt, key) = (pki.join("kubelet.crt"), pki.join("kubelet.key"));
    if let (Ok(c), Ok(k)) = (std::fs::read_to_string(&crt), std::fs::read_to_string(&key)) {
        if !c.trim().is_empty() && !k.trim().is_empty() {
            return Ok((c, k));
        }
    }
    std::fs::create_dir_all(&pki).with_context(|| format!("creating {}", pki.display()))?;
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    if let Ok(host) = std::fs::read_to_string("/etc/hostname") {
        let host = host.trim();
        if !host.is_empty() {
            names.push(host.to_string());
        }
    }
    let key_pair = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(names)?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "skiff-agent");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    let cert = params.self_signed(&key_pair)?;
    let (c, k) = (cert.pem(), key_pair.serialize_pem());
    write_private(&key, &k)?;
    write_private(&crt, &c)?;
    Ok((c, k))
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

/// A server config that asks every caller for a client certificate signed by
/// `ca_pem`. A caller without one still completes the handshake, so that it gets an
/// HTTP 401 it can read rather than a TLS alert.
pub fn server_config(cert_pem: &str, key_pem: &str, ca_pem: &str) -> anyhow::Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(cert.context("reading the cluster CA")?).context("adding the cluster CA")?;
    }
    if roots.is_empty() {
        anyhow::bail!("the cluster CA holds no certificate");
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .context("building the client certificate verifier")?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())?.ok_or_else(|| anyhow::anyhow!("no private key in the serving key file"))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Who is calling, from the verified client certificate chain of the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No client certificate: 401.
    Anonymous,
    /// A certificate the CA signed, for someone else: 403.
    Other(String),
    /// The API server.
    ApiServer,
}

impl Caller {
    pub fn from_certificates(certs: Option<&[CertificateDer<'_>]>) -> Caller {
        match certs.and_then(|c| c.first()) {
            None => Caller::Anonymous,
            Some(leaf) => match common_name(leaf.as_ref()) {
                Some(cn) if cn == APISERVER_CLIENT_CN => Caller::ApiServer,
                Some(cn) => Caller::Other(cn),
                None => Caller::Other(String::new()),
            },
        }
    }
}

/// One DER element: its tag, its contents, and what follows it.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The subject common name of an X.509 certificate.
pub fn common_name(cert_der: &[u8]) -> Option<String> {
    const SEQUENCE: u8 = 0x30;
    const CN_OID: &[u8] = &[0x55, 0x04, 0x03];
    let (tag, cert, _) = der_element(cert_der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (_, mut tbs, _) = der_element(cert)?;
    // [0] version is optional.
    if tbs.first() == Some(&0xa0) {
        tbs = der_element(tbs)?.2;
    }
    // serialNumber, signature, issuer, validity; then subject.
    for _ in 0..4 {
        tbs = der_element(tbs)?.2;
    }
    let (_, mut subject, _) = der_element(tbs)?;
    while !subject.is_empty() {
        let (_, set, rest) = der_element(subject)?;
        subject = rest;
        let mut attrs = set;
        while !attrs.is_empty() {
            let (_, attr, rest) = der_element(attrs)?;
            attrs = rest;
            let (_, oid, value) = der_element(attr)?;
            if oid == CN_OID {
                let (_, text, _) = der_element(value)?;
                return String::from_utf8(text.to_vec()).ok();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_common_name_is_read_from_the_certificate_subject() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "system:masters");
        params.distinguished_name.push(rcgen::DnType::CommonName, "skiff-apiserver");
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(common_name(cert.der()).as_deref(), Some("skiff-apiserver"));
        assert_eq!(Caller::from_certificates(Some(std::slice::from_ref(cert.der()))), Caller::ApiServer);
        assert_eq!(Caller::from_certificates(None), Caller::Anonymous);
        assert_eq!(common_name(b"\x30\x03\x02\x01"), None);
    }

    #[test]
    fn the_serving_certificate_is_kept_across_starts() {
        let dir = tempfile::tempdir().unwrap();
        let first = serving_certificate(dir.path()).unwrap();
        let second = serving_certificate(dir.path()).unwrap();
        assert_eq!(first, second);
        assert!(first.0.contains("BEGIN CERTIFICATE"));
    }
}
