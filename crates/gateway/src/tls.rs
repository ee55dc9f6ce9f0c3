//! TLS: certificates from Secrets, chosen per connection by SNI.
//!
//! The resolver asks the current routing table for the SNI name's server, so a
//! new or renewed Secret serves the next handshake. Names without a certificate
//! (and clients sending no SNI) get a self-signed fallback made at start, as
//! ingress-nginx serves its "Fake Certificate".

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::routes::Routes;

/// The Secret keys holding the certificate chain and its key (type `kubernetes.io/tls`).
pub(crate) const CERT_KEY: &str = "tls.crt";
pub(crate) const PRIVATE_KEY: &str = "tls.key";

/// Why a Secret's certificate cannot serve.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CertificateError {
    #[error("tls.crt holds no PEM certificate")]
    NoCertificate,
    #[error("tls.key holds no PEM private key")]
    NoKey,
    #[error("reading PEM: {0}")]
    Pem(#[from] std::io::Error),
    #[error("unusable key or certificate: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The certificate and key of a Secret, if it has `tls.crt` and `tls.key`
/// (whatever its type, as ingress-nginx accepts). `None`: not a TLS Secret.
pub(crate) fn from_secret(secret: &Secret) -> Option<Result<Arc<CertifiedKey>, CertificateError>> {
    let value = |k: &str| -> Option<Vec<u8>> {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(k))
            .map(|b| b.0.clone())
            .or_else(|| secret.string_data.as_ref().and_then(|d| d.get(k)).map(|s| s.clone().into_bytes()))
    };
    let (crt, key) = (value(CERT_KEY)?, value(PRIVATE_KEY)?);
    Some(certified_key(&crt, &key))
}

/// Parses a PEM chain and PEM key into a key rustls can serve with.
pub(crate) fn certified_key(crt_pem: &[u8], key_pem: &[u8]) -> Result<Arc<CertifiedKey>, CertificateError> {
    let chain = rustls_pemfile::certs(&mut &crt_pem[..]).collect::<Result<Vec<CertificateDer<'static>>, _>>()?;
    if chain.is_empty() {
        return Err(CertificateError::NoCertificate);
    }
    let key = rustls_pemfile::private_key(&mut &key_pem[..])?.ok_or(CertificateError::NoKey)?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match()?;
    Ok(Arc::new(ck))
}

/// Whether the certificate's names (SANs) cover `host`, wildcards included.
pub(crate) fn valid_for(cert: &CertifiedKey, host: &str) -> bool {
    let Some(leaf) = cert.end_entity_cert().ok() else { return false };
    let (Ok(parsed), Ok(name)) = (ParsedCertificate::try_from(leaf), ServerName::try_from(host)) else {
        return false;
    };
    rustls::client::verify_server_name(&parsed, &name).is_ok()
}

/// The self-signed certificate for names no Secret covers.
pub(crate) fn fallback() -> Result<Arc<CertifiedKey>, crate::GatewayError> {
    let key_pair = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(vec!["ingress.local".to_string()])?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "Skiff Ingress Gateway Fallback Certificate");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.self_signed(&key_pair)?;
    certified_key(cert.pem().as_bytes(), key_pair.serialize_pem().as_bytes())
        .map_err(|e| crate::GatewayError::Tls(rustls::Error::General(e.to_string())))
}

/// Picks the certificate for each handshake from the live routes.
#[derive(Debug)]
pub(crate) struct CertResolver {
    routes: Routes,
    fallback: Arc<CertifiedKey>,
}

impl CertResolver {
    pub(crate) fn new(routes: Routes, fallback: Arc<CertifiedKey>) -> CertResolver {
        CertResolver { routes, fallback }
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let found = hello.server_name().and_then(|sni| self.routes.table().certificate(sni));
        Some(found.unwrap_or_else(|| self.fallback.clone()))
    }
}

/// The server side of every HTTPS connection: HTTP/2 or HTTP/1.1 by ALPN.
pub(crate) fn server_config(resolver: CertResolver) -> Result<rustls::ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    #[test]
    fn a_certificate_covers_its_names_and_wildcards_one_label_deep() {
        let (crt, key) = self_signed(&["www.example.com", "*.apps.example.com"]);
        let ck = certified_key(crt.as_bytes(), key.as_bytes()).unwrap();
        assert!(valid_for(&ck, "www.example.com"));
        assert!(valid_for(&ck, "foo.apps.example.com"));
        assert!(!valid_for(&ck, "a.b.apps.example.com"));
        assert!(!valid_for(&ck, "example.com"));
    }

    #[test]
    fn a_key_that_does_not_match_the_certificate_is_rejected() {
        let (crt, _) = self_signed(&["a.test"]);
        let (_, other_key) = self_signed(&["a.test"]);
        assert!(certified_key(crt.as_bytes(), other_key.as_bytes()).is_err());
        assert!(matches!(certified_key(b"", other_key.as_bytes()), Err(CertificateError::NoCertificate)));
    }

    #[test]
    fn only_secrets_with_a_certificate_and_a_key_are_tls_secrets() {
        let (crt, key) = self_signed(&["a.test"]);
        let mut secret = Secret::default();
        assert!(from_secret(&secret).is_none());
        secret.data = Some(
            [
                (CERT_KEY.to_string(), k8s_openapi::ByteString(crt.into_bytes())),
                (PRIVATE_KEY.to_string(), k8s_openapi::ByteString(key.into_bytes())),
            ]
            .into(),
        );
        assert!(from_secret(&secret).unwrap().is_ok());
    }

    #[test]
    fn the_fallback_certificate_is_usable() {
        let ck = fallback().unwrap();
        assert!(valid_for(&ck, "ingress.local"));
    }
}
