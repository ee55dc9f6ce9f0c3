//! Images as the kubelet handles them: the default tag, the pull policy, and the
//! registry credentials of a pod's imagePullSecrets (a docker config keyring matched
//! against the image's registry, as upstream's credential provider matches).

use base64::Engine;
use k8s_openapi::api::core::v1::{Container, Secret};
use serde_json::Value;

use crate::runtime::RegistryAuth;

/// The image with `:latest` when it names neither a tag nor a digest.
pub fn with_default_tag(image: &str) -> String {
    if image.contains('@') {
        return image.to_string();
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

/// The container's imagePullPolicy, defaulted as the API defaults it (Always for
/// `:latest` or no tag, IfNotPresent otherwise).
pub fn pull_policy(c: &Container) -> &str {
    match c.image_pull_policy.as_deref() {
        Some(p @ ("Always" | "IfNotPresent" | "Never")) => p,
        _ => {
            let image = c.image.as_deref().unwrap_or("");
            if image.contains('@') || !with_default_tag(image).ends_with(":latest") {
                "IfNotPresent"
            } else {
                "Always"
            }
        }
    }
}

/// Whether to pull, given the policy and whether the image is present.
pub fn should_pull(policy: &str, present: bool) -> bool {
    match policy {
        "Never" => false,
        "IfNotPresent" => !present,
        _ => true,
    }
}

/// Credentials for registries, from imagePullSecrets.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    /// Keys (host with an optional path, wildcards allowed), longest first.
    entries: Vec<(String, RegistryAuth)>,
}

const DEFAULT_REGISTRY_HOST: &str = "index.docker.io";

impl Keyring {
    /// Adds the entries of a `kubernetes.io/dockerconfigjson` or
    /// `kubernetes.io/dockercfg` secret; other secrets add nothing.
    pub fn add_secret(&mut self, secret: &Secret) {
        let data = secret.data.clone().unwrap_or_default();
        let parsed = |key: &str| data.get(key).and_then(|b| serde_json::from_slice::<Value>(&b.0).ok());
        let entries = if let Some(v) = parsed(".dockerconfigjson") {
            v.get("auths").cloned().unwrap_or(Value::Null)
        } else if let Some(v) = parsed(".dockercfg") {
            v
        } else {
            return;
        };
        let Value::Object(map) = entries else { return };
        for (location, entry) in map {
            self.add(&location, &entry);
        }
        self.entries.sort_by(|a, b| b.0.cmp(&a.0));
    }

    fn add(&mut self, location: &str, entry: &Value) {
        let field = |k: &str| entry.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let mut auth = RegistryAuth {
            username: field("username"),
            password: field("password"),
            auth: field("auth"),
            server_address: location.to_string(),
            identity_token: field("identitytoken"),
            registry_token: field("registrytoken"),
        };
        if !auth.auth.is_empty() {
            // `auth` is base64 of `user:password` and wins over the separate fields.
            if let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(auth.auth.trim()) {
                if let Some((user, pass)) = String::from_utf8_lossy(&decoded).split_once(':') {
                    auth.username = user.to_string();
                    auth.password = pass.trim_matches('\0').to_string();
                }
            }
        }
        let schemeless = location.strip_prefix("https://").or_else(|| location.strip_prefix("http://")).unwrap_or(location);
        let (host, path) = match schemeless.split_once('/') {
            Some((h, p)) => (h, format!("/{p}")),
            None => (schemeless, String::new()),
        };
        // `/v1/` and `/v2/` mean the registry itself, as for the docker client.
        let path = path.strip_prefix("/v1").or_else(|| path.strip_prefix("/v2")).filter(|p| p.starts_with('/')).map(String::from).unwrap_or(path);
        let key = if path.is_empty() || path == "/" { host.to_string() } else { format!("{host}{path}") };
        self.entries.push((key, auth));
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The credentials that apply to `image`, most specific first.
    pub fn lookup(&self, image: &str) -> Vec<RegistryAuth> {
        let found: Vec<RegistryAuth> = self.entries.iter().filter(|(k, _)| urls_match(k, image)).map(|(_, a)| a.clone()).collect();
        if !found.is_empty() {
            return found;
        }
        if is_default_registry(image) {
            return self.entries.iter().filter(|(k, _)| k == DEFAULT_REGISTRY_HOST).map(|(_, a)| a.clone()).collect();
        }
        Vec::new()
    }
}

/// Whether the image comes from Docker Hub (no registry host in its name).
fn is_default_registry(image: &str) -> bool {
    let mut parts = image.splitn(2, '/');
    let first = parts.next().unwrap_or("");
    if first.is_empty() {
        return false;
    }
    match parts.next() {
        None => true,
        Some(_) => first == "docker.io" || first == DEFAULT_REGISTRY_HOST || !first.contains(['.', ':']),
    }
}

fn split_host(s: &str) -> (&str, &str) {
    match s.split_once('/') {
        Some((host, _)) => (host, &s[host.len()..]),
        None => (s, ""),
    }
}

/// Upstream's `URLsMatchStr`: the key's host matches label by label (with `*`
/// globs), the ports are equal, and the key's path is a prefix of the image's.
fn urls_match(key: &str, image: &str) -> bool {
    let (key_host, key_path) = split_host(key);
    let (image_host, image_path) = split_host(image);
    let port = |h: &str| h.rsplit_once(':').map(|(h, p)| (h.to_string(), p.to_string())).unwrap_or((h.to_string(), String::new()));
    let (kh, kp) = port(key_host);
    let (ih, ip) = port(image_host);
    if kp != ip || !image_path.starts_with(key_path) {
        return false;
    }
    let kparts: Vec<&str> = kh.split('.').collect();
    let iparts: Vec<&str> = ih.split('.').collect();
    kparts.len() == iparts.len() && kparts.iter().zip(&iparts).all(|(k, i)| glob(k, i))
}

/// `filepath.Match` for one host label: `*` matches any run, `?` one character.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use serde_json::json;

    fn secret(key: &str, value: Value) -> Secret {
        Secret { data: Some([(key.to_string(), ByteString(serde_json::to_vec(&value).unwrap()))].into()), ..Default::default() }
    }

    #[test]
    fn images_get_the_latest_tag_and_its_pull_policy() {
        assert_eq!(with_default_tag("busybox"), "busybox:latest");
        assert_eq!(with_default_tag("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(with_default_tag("skiff.local/pause:3.10"), "skiff.local/pause:3.10");
        assert_eq!(with_default_tag("x@sha256:abc"), "x@sha256:abc");
        let c = |image: &str, policy: Option<&str>| Container { name: "c".into(), image: Some(image.into()), image_pull_policy: policy.map(String::from), ..Default::default() };
        assert_eq!(pull_policy(&c("busybox", None)), "Always");
        assert_eq!(pull_policy(&c("busybox:1.35", None)), "IfNotPresent");
        assert_eq!(pull_policy(&c("busybox", Some("Never"))), "Never");
        assert!(should_pull("Always", true) && !should_pull("IfNotPresent", true) && should_pull("IfNotPresent", false) && !should_pull("Never", false));
    }

    #[test]
    fn pull_secrets_match_the_registry_of_the_image() {
        let mut k = Keyring::default();
        k.add_secret(&secret(
            ".dockerconfigjson",
            json!({"auths": {
                "registry.example.com": {"auth": base64::engine::general_purpose::STANDARD.encode("alice:s3cret")},
                "registry.example.com/team": {"username": "team", "password": "t"},
                "*.corp.example:5000": {"username": "corp", "password": "c"},
                "https://index.docker.io/v1/": {"username": "hub", "password": "h"}
            }}),
        ));
        let users = |image: &str| k.lookup(image).into_iter().map(|a| a.username).collect::<Vec<_>>();
        assert_eq!(users("registry.example.com/team/app:1"), ["team", "alice"], "most specific first");
        assert_eq!(users("registry.example.com/other/app"), ["alice"]);
        assert_eq!(k.lookup("registry.example.com/other/app")[0].password, "s3cret");
        assert_eq!(users("build.corp.example:5000/x"), ["corp"]);
        assert!(users("build.corp.example/x").is_empty(), "the port must match");
        assert_eq!(users("busybox"), ["hub"]);
        assert_eq!(users("library/busybox:1.35"), ["hub"]);
        assert!(users("quay.io/x/y").is_empty());

        let mut old = Keyring::default();
        old.add_secret(&secret(".dockercfg", json!({"quay.io": {"username": "q", "password": "p"}})));
        assert_eq!(old.lookup("quay.io/x/y")[0].username, "q");
        let mut none = Keyring::default();
        none.add_secret(&Secret::default());
        assert!(none.is_empty());
    }
}
