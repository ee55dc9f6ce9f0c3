//! Service account tokens: JWTs that authenticate as
//! `system:serviceaccount:<namespace>:<name>`, issued through
//! `serviceaccounts/{name}/token` (TokenRequest) and mounted into pods by the
//! kubelet's projected `serviceAccountToken` volumes.
//!
//! The claims are upstream's (`iss`, `sub`, `aud`, `exp`, `iat`, `nbf`, `jti` and the
//! private `kubernetes.io` claim with the namespace, service account and bound pod),
//! so tools that read them work. The signature is HS256 under a key derived from the
//! cluster's shared credentials, so every server of an HA cluster verifies every
//! other server's tokens without sharing another secret; clients never verify
//! service account tokens themselves (only the issuing cluster does), which is what
//! makes a symmetric key acceptable here. A token stops authenticating when it
//! expires; binding to a deleted pod or service account is not checked yet.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::hmac;
use serde_json::{json, Value};

use crate::app::User;

/// The issuer, and the default audience, of every token.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Signs and verifies service account tokens.
pub struct Signer {
    key: hmac::Key,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

/// What a token is bound to.
#[derive(Debug, Clone, Default)]
pub struct Claims {
    pub namespace: String,
    pub service_account: String,
    pub service_account_uid: String,
    pub audiences: Vec<String>,
    /// Seconds since the epoch.
    pub issued_at: i64,
    pub expires_at: i64,
    /// A pod (name, uid) the token is bound to.
    pub pod: Option<(String, String)>,
}

impl Signer {
    /// A signer keyed by `secret` (the cluster's shared admin credential).
    pub fn new(secret: &str) -> Signer {
        let derived = ring::digest::digest(&ring::digest::SHA256, format!("skiff service account signing key\0{secret}").as_bytes());
        Signer { key: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()) }
    }

    pub fn issue(&self, c: &Claims) -> String {
        let header = json!({"alg": "HS256", "typ": "JWT"});
        let mut private = json!({
            "namespace": c.namespace,
            "serviceaccount": {"name": c.service_account, "uid": c.service_account_uid},
        });
        if let Some((name, uid)) = &c.pod {
            private["pod"] = json!({"name": name, "uid": uid});
        }
        let claims = json!({
            "aud": c.audiences,
            "exp": c.expires_at,
            "iat": c.issued_at,
            "nbf": c.issued_at,
            "iss": ISSUER,
            "jti": uuid::Uuid::new_v4().to_string(),
            "kubernetes.io": private,
            "sub": format!("system:serviceaccount:{}:{}", c.namespace, c.service_account),
        });
        let signing_input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let tag = hmac::sign(&self.key, signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// The user a token authenticates as, if it is one of ours, intact and not
    /// expired at `now` (seconds since the epoch).
    pub fn authenticate(&self, token: &str, now: i64) -> Option<User> {
        let mut parts = token.split('.');
        let (header, claims, sig) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        hmac::verify(&self.key, format!("{header}.{claims}").as_bytes(), &sig).ok()?;
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()?;
        if claims.get("iss").and_then(Value::as_str) != Some(ISSUER) {
            return None;
        }
        let exp = claims.get("exp").and_then(Value::as_i64)?;
        let nbf = claims.get("nbf").and_then(Value::as_i64).unwrap_or(0);
        // Upstream tolerates 60 s of clock skew on both ends.
        if now > exp + 60 || now + 60 < nbf {
            return None;
        }
        let sub = claims.get("sub").and_then(Value::as_str)?;
        let rest = sub.strip_prefix("system:serviceaccount:")?;
        let (namespace, _) = rest.split_once(':')?;
        Some(User {
            name: sub.to_string(),
            groups: vec!["system:serviceaccounts".into(), format!("system:serviceaccounts:{namespace}"), "system:authenticated".into()],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            namespace: "team-a".into(),
            service_account: "builder".into(),
            service_account_uid: "u-1".into(),
            audiences: vec![ISSUER.into()],
            issued_at: 1_000,
            expires_at: 4_600,
            pod: Some(("web-0".into(), "p-1".into())),
        }
    }

    #[test]
    fn an_issued_token_authenticates_as_its_service_account_until_it_expires() {
        let s = Signer::new("secret");
        let t = s.issue(&claims());
        let user = s.authenticate(&t, 2_000).expect("valid");
        assert_eq!(user.name, "system:serviceaccount:team-a:builder");
        assert!(user.groups.contains(&"system:serviceaccounts:team-a".to_string()));
        assert!(s.authenticate(&t, 4_600 + 61).is_none());
    }

    #[test]
    fn tokens_of_another_key_or_tampered_claims_are_refused() {
        let t = Signer::new("secret").issue(&claims());
        assert!(Signer::new("other").authenticate(&t, 2_000).is_none());
        let mut parts: Vec<String> = t.split('.').map(String::from).collect();
        let mut c: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
        c["sub"] = json!("system:serviceaccount:kube-system:admin");
        parts[1] = URL_SAFE_NO_PAD.encode(c.to_string());
        assert!(Signer::new("secret").authenticate(&parts.join("."), 2_000).is_none());
        assert!(Signer::new("secret").authenticate("not-a-jwt", 2_000).is_none());
    }

    #[test]
    fn claims_carry_the_upstream_private_claim() {
        let t = Signer::new("k").issue(&claims());
        let c: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(t.split('.').nth(1).unwrap()).unwrap()).unwrap();
        assert_eq!(c["kubernetes.io"]["pod"]["name"], "web-0");
        assert_eq!(c["kubernetes.io"]["serviceaccount"]["uid"], "u-1");
        assert_eq!(c["aud"], json!([ISSUER]));
    }
}
