//! A container's environment: env (value, configMapKeyRef, secretKeyRef, fieldRef,
//! resourceFieldRef), envFrom, and the service links (`<SVC>_SERVICE_HOST`, …) of
//! the services that exist when the container starts.
//!
//! The work is split in two, as the kubelet's own tests would want it:
//! [`container_env`] reads what the environment refers to (Services, ConfigMaps,
//! Secrets) from the API, and [`resolve_env`] builds the environment from those
//! objects without any I/O. The pieces the volume manager shares (field paths of
//! the downward API, resource values, `$(VAR)` expansion) live here too, so there is
//! one implementation of each.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{ConfigMap, Container, ObjectFieldSelector, Pod, ResourceFieldSelector, Secret, Service};
use skiff_api::validation::quantity::Quantity;
use skiff_client::{Api, Client, ListParams};

/// The services every pod gets links to, whatever `enableServiceLinks` says
/// (upstream's "master services"), all in the `default` namespace.
const MASTER_SERVICES: &[&str] = &["kubernetes"];
const DEFAULT_NAMESPACE: &str = "default";

/// Facts of the running pod that field and resource references read.
#[derive(Debug, Clone, Default)]
pub struct EnvContext {
    pub host_ip: String,
    pub pod_ips: Vec<String>,
    /// The node's allocatable ("cpu" → "4", "memory" → "8Gi"): the value of a
    /// resourceFieldRef to a limit the container does not set.
    pub node_allocatable: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// A referenced ConfigMap/Secret or key is missing and the reference is not
    /// optional: the container cannot start (CreateContainerConfigError).
    #[error("{0}")]
    Config(String),
    /// The API could not be read; try again.
    #[error("{0}")]
    Api(String),
}

/// The container's environment, in the order the container sees it (service links
/// first, then envFrom, then env, later names replacing earlier ones; `$(VAR)`
/// references expanded as Kubernetes does).
pub async fn container_env(client: &Client, pod: &Pod, container: &Container, ctx: &EnvContext) -> Result<Vec<(String, String)>, EnvError> {
    let namespace = pod_namespace(pod);
    let links = pod.spec.as_ref().and_then(|s| s.enable_service_links).unwrap_or(true);
    let services = fetch_services(client, namespace, links).await?;
    let service_env = service_env(namespace, links, &services);
    let objects = EnvObjects::fetch(client, namespace, container).await?;
    resolve_env(pod, container, ctx, &service_env, &objects)
}

/// The Services whose links a pod in `namespace` may see: those of its namespace
/// when links are enabled, and the master services of `default` always.
async fn fetch_services(client: &Client, namespace: &str, links: bool) -> Result<Vec<Service>, EnvError> {
    let mut services = Vec::new();
    if links {
        let list = Api::<Service>::namespaced(client, namespace).list(&ListParams::default()).await.map_err(|e| EnvError::Api(format!("failed to list services when setting up env vars: {e}")))?;
        services.extend(list.items);
    }
    if !(links && namespace == DEFAULT_NAMESPACE) {
        let api = Api::<Service>::namespaced(client, DEFAULT_NAMESPACE);
        for name in MASTER_SERVICES {
            if let Some(svc) = api.get_opt(name).await.map_err(|e| EnvError::Api(format!("failed to get service {DEFAULT_NAMESPACE}/{name}: {e}")))? {
                services.push(svc);
            }
        }
    }
    Ok(services)
}

// === impl EnvObjects ===

/// The ConfigMaps and Secrets a container's environment refers to, as read from the
/// API: `None` (or no entry) for one that does not exist.
#[derive(Debug, Clone, Default)]
pub struct EnvObjects {
    pub config_maps: BTreeMap<String, Option<ConfigMap>>,
    pub secrets: BTreeMap<String, Option<Secret>>,
}

impl EnvObjects {
    /// Reads every ConfigMap and Secret `container` refers to (each once). A missing
    /// object is recorded as `None`; whether that is an error depends on the
    /// reference, which [`resolve_env`] decides.
    pub async fn fetch(client: &Client, namespace: &str, container: &Container) -> Result<EnvObjects, EnvError> {
        let (config_maps, secrets) = referenced_objects(container);
        let mut objects = EnvObjects::default();
        let cms = Api::<ConfigMap>::namespaced(client, namespace);
        for name in config_maps {
            let cm = cms.get_opt(&name).await.map_err(|e| EnvError::Api(format!("couldn't get configMap {namespace}/{name}: {e}")))?;
            objects.config_maps.insert(name, cm);
        }
        let secret_api = Api::<Secret>::namespaced(client, namespace);
        for name in secrets {
            let secret = secret_api.get_opt(&name).await.map_err(|e| EnvError::Api(format!("couldn't get secret {namespace}/{name}: {e}")))?;
            objects.secrets.insert(name, secret);
        }
        Ok(objects)
    }

    fn config_map(&self, name: &str) -> Option<&ConfigMap> {
        self.config_maps.get(name).and_then(Option::as_ref)
    }

    fn secret(&self, name: &str) -> Option<&Secret> {
        self.secrets.get(name).and_then(Option::as_ref)
    }
}

/// Names of the ConfigMaps and Secrets that envFrom and env refer to, in order of
/// first mention.
fn referenced_objects(container: &Container) -> (Vec<String>, Vec<String>) {
    let mut config_maps: Vec<String> = Vec::new();
    let mut secrets: Vec<String> = Vec::new();
    let add = |list: &mut Vec<String>, name: &str| {
        if !list.iter().any(|n| n == name) {
            list.push(name.to_string());
        }
    };
    for from in container.env_from.iter().flatten() {
        if let Some(r) = &from.config_map_ref {
            add(&mut config_maps, &r.name);
        } else if let Some(r) = &from.secret_ref {
            add(&mut secrets, &r.name);
        }
    }
    for var in container.env.iter().flatten() {
        if var.value.as_deref().is_some_and(|v| !v.is_empty()) {
            continue;
        }
        let Some(from) = &var.value_from else { continue };
        if let Some(r) = &from.config_map_key_ref {
            add(&mut config_maps, &r.name);
        } else if let Some(r) = &from.secret_key_ref {
            add(&mut secrets, &r.name);
        }
    }
    (config_maps, secrets)
}

// === resolve_env ===

/// Builds the container's environment from objects already read: the kubelet's
/// `makeEnvironmentVariables`.
///
/// envFrom is applied first (keys that can never be variable names, such as ones
/// holding `=`, are skipped), then env in declaration order; a value's `$(VAR)`
/// references see envFrom, the env entries before it, and the service links. A
/// missing optional reference leaves the variable unset (not empty). The result
/// lists the service links that nothing overrides, then every other variable at
/// the position it was last set.
///
/// Upstream dropped the strict C-identifier check on envFrom keys when relaxed
/// variable names became the rule (1.30+), so `index.html` or `1st` come through as
/// they do there.
pub fn resolve_env(pod: &Pod, container: &Container, ctx: &EnvContext, service_env: &[(String, String)], objects: &EnvObjects) -> Result<Vec<(String, String)>, EnvError> {
    let namespace = pod_namespace(pod);
    let mut env = OrderedEnv::default();

    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or("");
        if let Some(r) = &from.config_map_ref {
            let Some(cm) = objects.config_map(&r.name) else {
                if r.optional.unwrap_or(false) {
                    continue;
                }
                return Err(not_found("configmap", &r.name));
            };
            for (key, value) in cm.data.iter().flatten() {
                let name = format!("{prefix}{key}");
                if is_relaxed_env_var_name(&name) {
                    env.set(name, value.clone());
                }
            }
        } else if let Some(r) = &from.secret_ref {
            let Some(secret) = objects.secret(&r.name) else {
                if r.optional.unwrap_or(false) {
                    continue;
                }
                return Err(not_found("secret", &r.name));
            };
            for (key, value) in secret.data.iter().flatten() {
                let name = format!("{prefix}{key}");
                if is_relaxed_env_var_name(&name) {
                    env.set(name, String::from_utf8_lossy(&value.0).into_owned());
                }
            }
        }
    }

    // Later service variables of the same name win, as in upstream's map.
    let services: HashMap<&str, &str> = service_env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    for var in container.env.iter().flatten() {
        let literal = var.value.as_deref().unwrap_or("");
        let value = if !literal.is_empty() {
            expand(literal, |name| env.get(name).or_else(|| services.get(name).copied()).map(str::to_string))
        } else if let Some(from) = &var.value_from {
            if let Some(selector) = &from.field_ref {
                field_ref_value(pod, selector, ctx)?
            } else if let Some(selector) = &from.resource_field_ref {
                resource_field_ref_value(pod, container, selector, &ctx.node_allocatable)?
            } else if let Some(r) = &from.config_map_key_ref {
                let optional = r.optional.unwrap_or(false);
                let Some(cm) = objects.config_map(&r.name) else {
                    if optional {
                        continue;
                    }
                    return Err(not_found("configmap", &r.name));
                };
                match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                    Some(v) => v.clone(),
                    None if optional => continue,
                    None => return Err(EnvError::Config(format!("couldn't find key {} in ConfigMap {namespace}/{}", r.key, r.name))),
                }
            } else if let Some(r) = &from.secret_key_ref {
                let optional = r.optional.unwrap_or(false);
                let Some(secret) = objects.secret(&r.name) else {
                    if optional {
                        continue;
                    }
                    return Err(not_found("secret", &r.name));
                };
                match secret.data.as_ref().and_then(|d| d.get(&r.key)) {
                    Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                    None if optional => continue,
                    None => return Err(EnvError::Config(format!("couldn't find key {} in Secret {namespace}/{}", r.key, r.name))),
                }
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        env.set(var.name.clone(), value);
    }

    let mut links = OrderedEnv::default();
    for (name, value) in service_env {
        links.set(name.clone(), value.clone());
    }
    let mut out: Vec<(String, String)> = links.vars.into_iter().filter(|(name, _)| env.get(name).is_none()).collect();
    out.extend(env.vars);
    Ok(out)
}

/// The message the kubelet's object caches give for a missing object (the singular
/// resource name, unlike the API server's `configmaps "x" not found`).
fn not_found(resource: &str, name: &str) -> EnvError {
    EnvError::Config(format!("{resource} {name:?} not found"))
}

/// Variables in the order they were last set.
#[derive(Debug, Default)]
struct OrderedEnv {
    vars: Vec<(String, String)>,
}

impl OrderedEnv {
    fn set(&mut self, name: String, value: String) {
        self.vars.retain(|(n, _)| *n != name);
        self.vars.push((name, value));
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.vars.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// `IsRelaxedEnvVarName`: printable ASCII other than `=`.
fn is_relaxed_env_var_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'=')
}

fn pod_namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or(DEFAULT_NAMESPACE)
}

// === expansion ===

/// Expands `$(VAR)` references in `input` as Kubernetes does for env values,
/// command, args and subPathExpr: `mapping` gives a variable's value, and a
/// reference it does not know stays as written; `$$` is an escaped `$`; a `$`
/// before anything else, or an unclosed `$(`, is kept literally.
pub fn expand(input: &str, mut mapping: impl FnMut(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.push_str(&input[checkpoint..cursor]);
            let rest = &input[cursor + 1..];
            let advance = match rest.as_bytes()[0] {
                // `$$`: an escaped operator.
                b'$' => {
                    out.push('$');
                    1
                }
                b'(' => match rest.find(')') {
                    Some(close) => {
                        let name = &rest[1..close];
                        match mapping(name) {
                            Some(value) => out.push_str(&value),
                            None => {
                                out.push_str("$(");
                                out.push_str(name);
                                out.push(')');
                            }
                        }
                        close + 1
                    }
                    // An unclosed reference: keep `$(` and go on after it.
                    None => {
                        out.push_str("$(");
                        1
                    }
                },
                // Not an expression: the `$` stays, and what follows is read as usual.
                _ => {
                    out.push('$');
                    0
                }
            };
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    out.push_str(&input[checkpoint..]);
    out
}

// === service links ===

/// The service link variables of a pod in `namespace`: the master services of
/// `default` always, and with `links` every service of the pod's namespace (one of
/// the same name there replaces a master service). Services without a cluster IP
/// (headless, ExternalName) have no links. Ordered by service name.
pub fn service_env(namespace: &str, links: bool, services: &[Service]) -> Vec<(String, String)> {
    let mut chosen: BTreeMap<&str, &Service> = BTreeMap::new();
    for svc in services {
        if cluster_ip(svc).is_none() {
            continue;
        }
        let name = svc.metadata.name.as_deref().unwrap_or("");
        let ns = svc.metadata.namespace.as_deref().unwrap_or("");
        if ns == DEFAULT_NAMESPACE && MASTER_SERVICES.contains(&name) {
            chosen.entry(name).or_insert(svc);
        } else if ns == namespace && links {
            chosen.insert(name, svc);
        }
    }
    chosen.values().flat_map(|svc| service_link_vars(svc)).collect()
}

/// The variables of one service (`envvars.FromServices`): `<NAME>_SERVICE_HOST`,
/// `<NAME>_SERVICE_PORT` (first port), `<NAME>_SERVICE_PORT_<PORT_NAME>` per named
/// port, and the Docker link variables.
pub fn service_link_vars(svc: &Service) -> Vec<(String, String)> {
    let Some(ip) = cluster_ip(svc) else { return Vec::new() };
    let prefix = env_var_name(svc.metadata.name.as_deref().unwrap_or(""));
    let ports = svc.spec.as_ref().and_then(|s| s.ports.as_deref()).unwrap_or(&[]);
    let mut vars = vec![(format!("{prefix}_SERVICE_HOST"), ip.to_string())];
    let Some(first) = ports.first() else { return vars };
    let port_var = format!("{prefix}_SERVICE_PORT");
    vars.push((port_var.clone(), first.port.to_string()));
    for port in ports {
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            vars.push((format!("{port_var}_{}", env_var_name(name)), port.port.to_string()));
        }
    }
    // Docker-compatible link variables; Docker special-cases the first port.
    for (i, port) in ports.iter().enumerate() {
        let protocol = port.protocol.as_deref().filter(|p| !p.is_empty()).unwrap_or("TCP");
        let lower = protocol.to_lowercase();
        let address = format!("{lower}://{}", join_host_port(ip, port.port));
        if i == 0 {
            vars.push((format!("{prefix}_PORT"), address.clone()));
        }
        let port_prefix = format!("{prefix}_PORT_{}_{}", port.port, protocol.to_uppercase());
        vars.push((port_prefix.clone(), address));
        vars.push((format!("{port_prefix}_PROTO"), lower));
        vars.push((format!("{port_prefix}_PORT"), port.port.to_string()));
        vars.push((format!("{port_prefix}_ADDR"), ip.to_string()));
    }
    vars
}

/// The cluster IP, unless unset or `None`.
fn cluster_ip(svc: &Service) -> Option<&str> {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()).filter(|ip| !ip.is_empty() && *ip != "None")
}

/// A service or port name as a variable name: upper case, `-` as `_`.
fn env_var_name(name: &str) -> String {
    name.replace('-', "_").to_uppercase()
}

/// `net.JoinHostPort`: IPv6 addresses in brackets.
fn join_host_port(host: &str, port: i32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

// === field references ===

/// The value of an env fieldRef (`podFieldSelectorRuntimeValue`): pod metadata,
/// `spec.nodeName`, `spec.serviceAccountName`, and the host's and pod's addresses
/// (from `ctx`, falling back to the pod's status).
pub fn field_ref_value(pod: &Pod, selector: &ObjectFieldSelector, ctx: &EnvContext) -> Result<String, EnvError> {
    let version = selector.api_version.as_deref().filter(|v| !v.is_empty()).unwrap_or("v1");
    let path = convert_field_label(version, &selector.field_path).map_err(EnvError::Config)?;
    let spec = pod.spec.as_ref();
    match path.as_str() {
        "spec.nodeName" => Ok(spec.and_then(|s| s.node_name.clone()).unwrap_or_default()),
        "spec.serviceAccountName" => Ok(spec.and_then(|s| s.service_account_name.clone()).unwrap_or_default()),
        "status.hostIP" => Ok(host_ips(pod, ctx).into_iter().next().unwrap_or_default()),
        "status.hostIPs" => Ok(host_ips(pod, ctx).join(",")),
        "status.podIP" => Ok(pod_ips(pod, ctx).into_iter().next().unwrap_or_default()),
        "status.podIPs" => Ok(pod_ips(pod, ctx).join(",")),
        _ => extract_field_path(pod, &path).map_err(EnvError::Config),
    }
}

/// `ConvertDownwardAPIFieldLabel`: the field paths a pod's downward API may name.
fn convert_field_label(version: &str, label: &str) -> Result<String, String> {
    if version != "v1" {
        return Err(format!("unsupported pod version: {version}"));
    }
    if let Some((path, _)) = split_subscript(label) {
        return match path {
            "metadata.annotations" | "metadata.labels" => Ok(label.to_string()),
            _ => Err(format!("field label does not support subscript: {label}")),
        };
    }
    match label {
        "metadata.annotations" | "metadata.labels" | "metadata.name" | "metadata.namespace" | "metadata.uid" | "spec.nodeName" | "spec.restartPolicy"
        | "spec.serviceAccountName" | "spec.schedulerName" | "status.phase" | "status.hostIP" | "status.hostIPs" | "status.podIP" | "status.podIPs" => {
            Ok(label.to_string())
        }
        // Old v1 clients sent spec.host.
        "spec.host" => Ok("spec.nodeName".to_string()),
        _ => Err(format!("field label not supported: {label}")),
    }
}

fn host_ips(pod: &Pod, ctx: &EnvContext) -> Vec<String> {
    if !ctx.host_ip.is_empty() {
        return vec![ctx.host_ip.clone()];
    }
    let status = pod.status.as_ref();
    let listed: Vec<String> = status.and_then(|s| s.host_ips.as_ref()).into_iter().flatten().map(|h| h.ip.clone()).filter(|ip| !ip.is_empty()).collect();
    if !listed.is_empty() {
        return listed;
    }
    status.and_then(|s| s.host_ip.clone()).filter(|ip| !ip.is_empty()).into_iter().collect()
}

/// The pod's addresses, those of the host's family first (upstream orders them by
/// the node's IP family preference).
fn pod_ips(pod: &Pod, ctx: &EnvContext) -> Vec<String> {
    let mut ips = if !ctx.pod_ips.is_empty() {
        ctx.pod_ips.clone()
    } else {
        let status = pod.status.as_ref();
        let listed: Vec<String> = status.and_then(|s| s.pod_ips.as_ref()).into_iter().flatten().map(|p| p.ip.clone()).filter(|ip| !ip.is_empty()).collect();
        if listed.is_empty() {
            status.and_then(|s| s.pod_ip.clone()).filter(|ip| !ip.is_empty()).into_iter().collect()
        } else {
            listed
        }
    };
    if let Some(host) = host_ips(pod, ctx).first().and_then(|h| h.parse::<IpAddr>().ok()) {
        let same_family = |ip: &String| ip.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv6() == host.is_ipv6());
        ips.sort_by_key(|ip| !same_family(ip));
    }
    ips
}

/// `fieldpath.ExtractFieldPathAsString` for a pod: metadata fields, whole label
/// and annotation maps (`key="value"` lines, sorted), or one key of them.
pub(crate) fn extract_field_path(pod: &Pod, path: &str) -> Result<String, String> {
    let meta = &pod.metadata;
    if let Some((field, key)) = split_subscript(path) {
        let (map, check) = match field {
            "metadata.annotations" => (&meta.annotations, key.to_lowercase()),
            "metadata.labels" => (&meta.labels, key.to_string()),
            _ => return Err(format!("fieldPath {path:?} does not support subscript")),
        };
        if let Err(e) = check_qualified_name(&check) {
            return Err(format!("invalid key subscript in {path}: {e}"));
        }
        return Ok(map.as_ref().and_then(|m| m.get(key)).cloned().unwrap_or_default());
    }
    match path {
        "metadata.annotations" => Ok(format_map(meta.annotations.as_ref())),
        "metadata.labels" => Ok(format_map(meta.labels.as_ref())),
        "metadata.name" => Ok(meta.name.clone().unwrap_or_default()),
        "metadata.namespace" => Ok(meta.namespace.clone().unwrap_or_default()),
        "metadata.uid" => Ok(meta.uid.clone().unwrap_or_default()),
        _ => Err(format!("unsupported fieldPath: {path}")),
    }
}

/// `metadata.labels['app']` → (`metadata.labels`, `app`).
fn split_subscript(path: &str) -> Option<(&str, &str)> {
    let inner = path.strip_suffix("']")?;
    let (field, key) = inner.split_once("['")?;
    (!field.is_empty()).then_some((field, key))
}

/// `IsQualifiedName`: an optional DNS subdomain prefix and `/`, then a name of at
/// most 63 alphanumerics, `-`, `_` or `.`, starting and ending alphanumeric.
fn check_qualified_name(value: &str) -> Result<(), String> {
    let (prefix, name) = match value.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, value),
    };
    if let Some(prefix) = prefix {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if prefix.is_empty() || prefix.len() > 253 || !prefix.split('.').all(label_ok) {
            return Err("prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character".into());
        }
    }
    let alnum = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    if name.is_empty() || name.len() > 63 {
        return Err("name part must be non-empty and no more than 63 characters".into());
    }
    if !alnum(name.bytes().next()) || !alnum(name.bytes().last()) || !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        return Err("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character".into());
    }
    Ok(())
}

/// `fieldpath.FormatMap`: `key="value"` lines in key order, values quoted as Go's
/// `%q` quotes them.
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter().flatten().map(|(k, v)| format!("{k}={}", skiff_api::selector::go_quote(v))).collect::<Vec<_>>().join("\n")
}

// === resource references ===

/// The value of a resourceFieldRef (`containerResourceRuntimeValue`): a request or
/// limit of `container` (or of the container the selector names), divided by the
/// divisor and rounded up. Limits the container does not set read as the node's
/// allocatable, as the kubelet defaults them for the downward API.
pub fn resource_field_ref_value(pod: &Pod, container: &Container, selector: &ResourceFieldSelector, allocatable: &BTreeMap<String, String>) -> Result<String, EnvError> {
    let target = match selector.container_name.as_deref().filter(|n| !n.is_empty()) {
        None => container,
        Some(name) => find_container(pod, name).ok_or_else(|| EnvError::Config(format!("container {name} not found")))?,
    };
    container_resource_value(target, selector, allocatable).map_err(EnvError::Config)
}

/// A container of the pod by name: regular containers first, then init containers.
pub(crate) fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers.iter().chain(spec.init_containers.iter().flatten()).find(|c| c.name == name)
}

/// Resources whose unset limits default to the node's allocatable.
const DEFAULTED_LIMITS: &[&str] = &["cpu", "memory", "ephemeral-storage"];

/// `ExtractContainerResourceValue` over a container whose limits are defaulted.
pub(crate) fn container_resource_value(container: &Container, selector: &ResourceFieldSelector, allocatable: &BTreeMap<String, String>) -> Result<String, String> {
    let unsupported = || format!("unsupported container resource : {}", selector.resource);
    let divisor = match &selector.divisor {
        Some(q) => Quantity::parse(&q.0).map_err(|e| format!("invalid divisor {:?}: {e}", q.0))?,
        None => Quantity::zero(),
    };
    let divisor = if divisor == Quantity::zero() { Quantity::parse("1").expect("1 is a quantity") } else { divisor };
    let (kind, resource) = selector.resource.split_once('.').ok_or_else(unsupported)?;
    let resources = container.resources.as_ref();
    let list = match kind {
        "limits" => resources.and_then(|r| r.limits.as_ref()),
        "requests" => resources.and_then(|r| r.requests.as_ref()),
        _ => return Err(unsupported()),
    };
    if !DEFAULTED_LIMITS.contains(&resource) && !resource.starts_with("hugepages-") {
        return Err(unsupported());
    }
    let mut amount = match list.and_then(|l| l.get(resource)) {
        Some(q) => Quantity::parse(&q.0).map_err(|e| format!("invalid quantity {:?} for {resource}: {e}", q.0))?,
        None => Quantity::zero(),
    };
    if kind == "limits" && amount == Quantity::zero() && DEFAULTED_LIMITS.contains(&resource) {
        if let Some(cap) = allocatable.get(resource).and_then(|a| Quantity::parse(a).ok()) {
            amount = cap;
        }
    }
    let value = if resource == "cpu" { div_ceil(amount.milli_value(), divisor.milli_value()) } else { div_ceil(amount.value(), divisor.value()) };
    Ok(value.to_string())
}

/// `ceil(a / b)` as upstream computes it in floating point, exactly.
fn div_ceil(a: i128, b: i128) -> i128 {
    if b == 0 {
        return a;
    }
    let q = a / b;
    if a % b != 0 && ((a < 0) == (b < 0)) {
        q + 1
    } else {
        q
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn pod(spec: Value) -> Pod {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "web-0", "namespace": "shop", "uid": "1234-5678",
                "labels": {"app": "web", "tier": "front"},
                "annotations": {"note": "say \"hi\"\n", "example.com/owner": "team-a"}
            },
            "spec": spec,
        }))
        .expect("a pod")
    }

    fn container(value: Value) -> Container {
        serde_json::from_value(value).expect("a container")
    }

    fn service(ns: &str, name: &str, ip: &str, ports: Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "ports": ports}
        }))
        .expect("a service")
    }

    fn config_map(name: &str, data: Value) -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "shop"}, "data": data})).expect("a configmap")
    }

    fn secret(name: &str, data: Value) -> Secret {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "shop"}, "data": data})).expect("a secret")
    }

    fn lookup<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
        env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn names(env: &[(String, String)]) -> Vec<&str> {
        env.iter().map(|(n, _)| n.as_str()).collect()
    }

    fn resolve(c: Value, objects: &EnvObjects) -> Result<Vec<(String, String)>, EnvError> {
        let c = container(c);
        let p = pod(json!({"containers": [c.clone()]}));
        resolve_env(&p, &c, &EnvContext::default(), &[], objects)
    }

    // === expansion ===

    #[test]
    fn expansion_follows_the_upstream_table() {
        let vars: BTreeMap<&str, &str> = [("VAR_A", "A"), ("VAR_B", "B"), ("VAR_C", "C"), ("VAR_REF", "$(VAR_A)"), ("VAR_EMPTY", "")].into_iter().collect();
        let cases = [
            ("$(VAR_A)", "A"),
            ("___$(VAR_B)___", "___B___"),
            ("$(VAR_A)-$(VAR_A)", "A-A"),
            ("$(VAR_A)-1", "A-1"),
            ("$(VAR_A)_$(VAR_B)_$(VAR_C)", "A_B_C"),
            ("$$(VAR_B)_$(VAR_A)", "$(VAR_B)_A"),
            ("$$(VAR_A)$$(VAR_B)", "$(VAR_A)$(VAR_B)"),
            ("f000-$$VAR_A", "f000-$VAR_A"),
            ("foo\\$(VAR_C)bar", "foo\\Cbar"),
            ("foo\\\\$(VAR_C)bar", "foo\\\\Cbar"),
            ("$(VAR_EMPTY)", ""),
            ("foo$(VAR_EMPTY)bar", "foobar"),
            ("$(VAR_REF)", "$(VAR_A)"),
            ("$(VAR_DNE)", "$(VAR_DNE)"),
            ("$(VAR_A", "$(VAR_A"),
            ("$(VAR_A$(VAR_B))", "$(VAR_A$(VAR_B))"),
            ("$(VAR_A$(VAR_B)", "$(VAR_A$(VAR_B)"),
            ("$()", "$()"),
            ("foo$()bar", "foo$()bar"),
            ("$", "$"),
            ("$$", "$"),
            ("$$$", "$$"),
            ("$$$$", "$$"),
            ("$VAR_A", "$VAR_A"),
            ("foo$", "foo$"),
            ("$(", "$("),
            ("$(VAR_A)$", "A$"),
            ("$é$(VAR_A)", "$éA"),
            ("(VAR_A)", "(VAR_A)"),
            ("no references", "no references"),
        ];
        for (input, want) in cases {
            let got = expand(input, |name| vars.get(name).map(|v| v.to_string()));
            assert_eq!(got, want, "expanding {input:?}");
        }
    }

    // === service links ===

    #[test]
    fn service_links_name_every_port_and_the_docker_link_variables() {
        let svc = service("shop", "my-db", "10.0.0.7", json!([
            {"name": "sql", "port": 5432, "protocol": "TCP"},
            {"name": "stats-udp", "port": 8125, "protocol": "UDP"}
        ]));
        let vars = service_link_vars(&svc);
        let want = [
            ("MY_DB_SERVICE_HOST", "10.0.0.7"),
            ("MY_DB_SERVICE_PORT", "5432"),
            ("MY_DB_SERVICE_PORT_SQL", "5432"),
            ("MY_DB_SERVICE_PORT_STATS_UDP", "8125"),
            ("MY_DB_PORT", "tcp://10.0.0.7:5432"),
            ("MY_DB_PORT_5432_TCP", "tcp://10.0.0.7:5432"),
            ("MY_DB_PORT_5432_TCP_PROTO", "tcp"),
            ("MY_DB_PORT_5432_TCP_PORT", "5432"),
            ("MY_DB_PORT_5432_TCP_ADDR", "10.0.0.7"),
            ("MY_DB_PORT_8125_UDP", "udp://10.0.0.7:8125"),
            ("MY_DB_PORT_8125_UDP_PROTO", "udp"),
            ("MY_DB_PORT_8125_UDP_PORT", "8125"),
            ("MY_DB_PORT_8125_UDP_ADDR", "10.0.0.7"),
        ];
        let want: Vec<(String, String)> = want.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(vars, want);
    }

    #[test]
    fn an_unnamed_port_without_protocol_is_tcp_and_ipv6_addresses_are_bracketed() {
        let svc = service("shop", "api", "fd00::10", json!([{"port": 80}]));
        let vars = service_link_vars(&svc);
        assert_eq!(lookup(&vars, "API_SERVICE_PORT"), Some("80"));
        assert_eq!(lookup(&vars, "API_PORT"), Some("tcp://[fd00::10]:80"));
        assert_eq!(lookup(&vars, "API_PORT_80_TCP_ADDR"), Some("fd00::10"));
        assert!(!names(&vars).iter().any(|n| n.starts_with("API_SERVICE_PORT_")));
    }

    #[test]
    fn headless_and_external_name_services_have_no_links() {
        let headless = service("shop", "db", "None", json!([{"port": 1}]));
        let external: Service = serde_json::from_value(json!({"metadata": {"name": "ext", "namespace": "shop"}, "spec": {"type": "ExternalName", "externalName": "example.com"}})).unwrap();
        assert!(service_env("shop", true, &[headless, external]).is_empty());
    }

    #[test]
    fn links_cover_the_pod_namespace_and_always_the_kubernetes_service() {
        let services = [
            service("default", "kubernetes", "10.0.0.1", json!([{"name": "https", "port": 443}])),
            service("default", "other", "10.0.0.2", json!([{"port": 80}])),
            service("shop", "cart", "10.0.0.3", json!([{"port": 8080}])),
            service("elsewhere", "cart2", "10.0.0.4", json!([{"port": 8080}])),
        ];
        let env = service_env("shop", true, &services);
        assert_eq!(lookup(&env, "KUBERNETES_SERVICE_HOST"), Some("10.0.0.1"));
        assert_eq!(lookup(&env, "KUBERNETES_SERVICE_PORT_HTTPS"), Some("443"));
        assert_eq!(lookup(&env, "CART_SERVICE_HOST"), Some("10.0.0.3"));
        assert_eq!(lookup(&env, "OTHER_SERVICE_HOST"), None);
        assert_eq!(lookup(&env, "CART2_SERVICE_HOST"), None);

        let disabled = service_env("shop", false, &services);
        assert_eq!(lookup(&disabled, "KUBERNETES_SERVICE_HOST"), Some("10.0.0.1"));
        assert_eq!(lookup(&disabled, "CART_SERVICE_HOST"), None);

        // A pod in `default` sees the other default services too.
        let in_default = service_env("default", true, &services);
        assert_eq!(lookup(&in_default, "OTHER_SERVICE_HOST"), Some("10.0.0.2"));
    }

    #[test]
    fn a_kubernetes_service_in_the_pod_namespace_replaces_the_master_one() {
        for order in [false, true] {
            let mut services = vec![
                service("default", "kubernetes", "10.0.0.1", json!([{"port": 443}])),
                service("shop", "kubernetes", "10.0.0.9", json!([{"port": 8443}])),
            ];
            if order {
                services.reverse();
            }
            let env = service_env("shop", true, &services);
            assert_eq!(lookup(&env, "KUBERNETES_SERVICE_HOST"), Some("10.0.0.9"));
            assert_eq!(lookup(&env, "KUBERNETES_SERVICE_PORT"), Some("8443"));
        }
    }

    // === env and envFrom ===

    #[test]
    fn env_from_applies_prefixes_and_env_overrides_it() {
        let mut objects = EnvObjects::default();
        objects.config_maps.insert("cfg".into(), Some(config_map("cfg", json!({"MODE": "fast", "LEVEL": "3", "index.html": "<p>", "1st": "x"}))));
        objects.secrets.insert("creds".into(), Some(secret("creds", json!({"USER": "YWRtaW4=", "PASS": "czNjcjN0"}))));
        let env = resolve(
            json!({
                "name": "app", "image": "busybox",
                "envFrom": [{"configMapRef": {"name": "cfg"}}, {"secretRef": {"name": "creds"}, "prefix": "DB_"}],
                "env": [{"name": "MODE", "value": "slow"}, {"name": "GREETING", "value": "hello $(DB_USER) at level $(LEVEL)"}]
            }),
            &objects,
        )
        .expect("env");
        assert_eq!(lookup(&env, "MODE"), Some("slow"));
        assert_eq!(lookup(&env, "LEVEL"), Some("3"));
        assert_eq!(lookup(&env, "DB_USER"), Some("admin"));
        assert_eq!(lookup(&env, "DB_PASS"), Some("s3cr3t"));
        assert_eq!(lookup(&env, "GREETING"), Some("hello admin at level 3"));
        // Relaxed names come through, as upstream passes them since 1.30.
        assert_eq!(lookup(&env, "index.html"), Some("<p>"));
        assert_eq!(lookup(&env, "1st"), Some("x"));
        // envFrom keys in order, then env in declaration order; MODE moved to where
        // env set it last.
        assert_eq!(names(&env), ["1st", "LEVEL", "index.html", "DB_PASS", "DB_USER", "MODE", "GREETING"]);
    }

    #[test]
    fn keys_that_can_never_be_variable_names_are_skipped() {
        let mut objects = EnvObjects::default();
        objects.config_maps.insert("cfg".into(), Some(config_map("cfg", json!({"GOOD": "1", "a=b": "2", "tab\tkey": "3"}))));
        let env = resolve(json!({"name": "app", "envFrom": [{"configMapRef": {"name": "cfg"}}]}), &objects).expect("env");
        assert_eq!(names(&env), ["GOOD"]);
    }

    #[test]
    fn expansion_sees_earlier_variables_only_and_leaves_unknown_ones() {
        let env = resolve(
            json!({"name": "app", "env": [
                {"name": "A", "value": "$(B)-a"},
                {"name": "B", "value": "b"},
                {"name": "C", "value": "$(B)-$(A)-$$(B)"},
                {"name": "EMPTY", "value": ""},
                {"name": "D", "value": "[$(EMPTY)]"}
            ]}),
            &EnvObjects::default(),
        )
        .expect("env");
        assert_eq!(lookup(&env, "A"), Some("$(B)-a"));
        assert_eq!(lookup(&env, "C"), Some("b-$(B)-a-$(B)"));
        assert_eq!(lookup(&env, "EMPTY"), Some(""));
        assert_eq!(lookup(&env, "D"), Some("[]"));
    }

    #[test]
    fn service_links_come_first_and_are_overridden_by_the_container() {
        let c = container(json!({"name": "app", "env": [
            {"name": "CART_SERVICE_HOST", "value": "override"},
            {"name": "URL", "value": "http://$(CART_SERVICE_HOST):$(CART_SERVICE_PORT)"}
        ]}));
        let p = pod(json!({"containers": [c.clone()]}));
        let links = service_env("shop", true, &[service("shop", "cart", "10.0.0.3", json!([{"port": 8080}]))]);
        let env = resolve_env(&p, &c, &EnvContext::default(), &links, &EnvObjects::default()).expect("env");
        assert_eq!(env[0], ("CART_SERVICE_PORT".to_string(), "8080".to_string()));
        assert_eq!(lookup(&env, "CART_SERVICE_HOST"), Some("override"));
        assert_eq!(env.iter().filter(|(n, _)| n == "CART_SERVICE_HOST").count(), 1);
        assert_eq!(lookup(&env, "URL"), Some("http://override:8080"));
        assert_eq!(names(&env).last(), Some(&"URL"));
    }

    #[test]
    fn key_references_read_configmaps_and_secrets() {
        let mut objects = EnvObjects::default();
        objects.config_maps.insert("cfg".into(), Some(config_map("cfg", json!({"mode": "fast"}))));
        objects.secrets.insert("creds".into(), Some(secret("creds", json!({"token": "dG9r"}))));
        let env = resolve(
            json!({"name": "app", "env": [
                {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}
            ]}),
            &objects,
        )
        .expect("env");
        assert_eq!(lookup(&env, "MODE"), Some("fast"));
        assert_eq!(lookup(&env, "TOKEN"), Some("tok"));
    }

    #[test]
    fn missing_objects_and_keys_fail_with_the_kubelet_messages() {
        let mut objects = EnvObjects::default();
        objects.config_maps.insert("cfg".into(), Some(config_map("cfg", json!({"mode": "fast"}))));
        objects.config_maps.insert("gone".into(), None);
        objects.secrets.insert("creds".into(), Some(secret("creds", json!({}))));
        let cases = [
            (json!({"name": "app", "envFrom": [{"configMapRef": {"name": "gone"}}]}), "configmap \"gone\" not found"),
            (json!({"name": "app", "envFrom": [{"secretRef": {"name": "nope"}}]}), "secret \"nope\" not found"),
            (json!({"name": "app", "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "x", "key": "k"}}}]}), "configmap \"x\" not found"),
            (json!({"name": "app", "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}}]}), "couldn't find key k in ConfigMap shop/cfg"),
            (json!({"name": "app", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}), "secret \"s\" not found"),
            (json!({"name": "app", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "k"}}}]}), "couldn't find key k in Secret shop/creds"),
        ];
        for (c, want) in cases {
            match resolve(c.clone(), &objects) {
                Err(EnvError::Config(msg)) => assert_eq!(msg, want, "for {c}"),
                other => panic!("expected a config error for {c}, got {other:?}"),
            }
        }
    }

    #[test]
    fn optional_references_to_missing_things_leave_the_variable_unset() {
        let mut objects = EnvObjects::default();
        objects.config_maps.insert("cfg".into(), Some(config_map("cfg", json!({"X": "from-envfrom"}))));
        let env = resolve(
            json!({"name": "app",
                "envFrom": [{"configMapRef": {"name": "cfg"}}, {"configMapRef": {"name": "absent", "optional": true}}, {"secretRef": {"name": "absent", "optional": true}}],
                "env": [
                    {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "missing", "optional": true}}},
                    {"name": "Y", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "k", "optional": true}}},
                    {"name": "Z", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": true}}}
                ]}),
            &objects,
        )
        .expect("env");
        assert_eq!(env, vec![("X".to_string(), "from-envfrom".to_string())]);
    }

    #[test]
    fn referenced_objects_are_named_once_each() {
        let c = container(json!({"name": "app",
            "envFrom": [{"configMapRef": {"name": "a"}}, {"secretRef": {"name": "s"}}],
            "env": [
                {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "a", "key": "k"}}},
                {"name": "Y", "valueFrom": {"configMapKeyRef": {"name": "b", "key": "k"}}},
                {"name": "Z", "valueFrom": {"secretKeyRef": {"name": "t", "key": "k"}}}
            ]}));
        assert_eq!(referenced_objects(&c), (vec!["a".to_string(), "b".to_string()], vec!["s".to_string(), "t".to_string()]));
    }

    // === field references ===

    fn field(pod: &Pod, path: &str, ctx: &EnvContext) -> Result<String, EnvError> {
        field_ref_value(pod, &ObjectFieldSelector { api_version: Some("v1".into()), field_path: path.into() }, ctx)
    }

    #[test]
    fn field_references_read_the_pod_and_the_context() {
        let p = pod(json!({"containers": [{"name": "app"}], "nodeName": "node-1", "serviceAccountName": "builder"}));
        let ctx = EnvContext { host_ip: "192.168.1.10".into(), pod_ips: vec!["fd00::5".into(), "10.42.0.5".into()], node_allocatable: BTreeMap::new() };
        let cases = [
            ("metadata.name", "web-0"),
            ("metadata.namespace", "shop"),
            ("metadata.uid", "1234-5678"),
            ("metadata.labels['app']", "web"),
            ("metadata.labels['missing']", ""),
            ("metadata.annotations['example.com/owner']", "team-a"),
            ("spec.nodeName", "node-1"),
            ("spec.host", "node-1"),
            ("spec.serviceAccountName", "builder"),
            ("status.hostIP", "192.168.1.10"),
            ("status.hostIPs", "192.168.1.10"),
            // The host's family first.
            ("status.podIP", "10.42.0.5"),
            ("status.podIPs", "10.42.0.5,fd00::5"),
        ];
        for (path, want) in cases {
            assert_eq!(field(&p, path, &ctx).expect(path), want, "{path}");
        }
    }

    #[test]
    fn addresses_fall_back_to_the_pod_status() {
        let mut p = pod(json!({"containers": [{"name": "app"}]}));
        p.status = Some(serde_json::from_value(json!({"hostIP": "10.1.1.1", "podIP": "10.42.0.9", "podIPs": [{"ip": "10.42.0.9"}]})).unwrap());
        let ctx = EnvContext::default();
        assert_eq!(field(&p, "status.hostIP", &ctx).unwrap(), "10.1.1.1");
        assert_eq!(field(&p, "status.podIP", &ctx).unwrap(), "10.42.0.9");
        assert_eq!(field(&p, "status.podIPs", &ctx).unwrap(), "10.42.0.9");
    }

    #[test]
    fn whole_label_and_annotation_maps_are_quoted_lines() {
        let p = pod(json!({"containers": [{"name": "app"}]}));
        assert_eq!(extract_field_path(&p, "metadata.labels").unwrap(), "app=\"web\"\ntier=\"front\"");
        assert_eq!(extract_field_path(&p, "metadata.annotations").unwrap(), "example.com/owner=\"team-a\"\nnote=\"say \\\"hi\\\"\\n\"");
        assert_eq!(skiff_api::selector::go_quote("tab\there\u{1}é\u{a0}"), "\"tab\\there\\x01é\\u00a0\"");
    }

    #[test]
    fn unsupported_field_references_are_config_errors() {
        let p = pod(json!({"containers": [{"name": "app"}]}));
        let ctx = EnvContext::default();
        let msg = |r: Result<String, EnvError>| match r {
            Err(EnvError::Config(m)) => m,
            other => panic!("expected a config error, got {other:?}"),
        };
        assert_eq!(msg(field(&p, "spec.containers", &ctx)), "field label not supported: spec.containers");
        assert_eq!(msg(field(&p, "status.phase", &ctx)), "unsupported fieldPath: status.phase");
        assert_eq!(msg(field(&p, "metadata.name['x']", &ctx)), "field label does not support subscript: metadata.name['x']");
        assert!(msg(field(&p, "metadata.labels['-bad-']", &ctx)).starts_with("invalid key subscript in metadata.labels['-bad-']"));
        let v2 = ObjectFieldSelector { api_version: Some("v2".into()), field_path: "metadata.name".into() };
        assert_eq!(msg(field_ref_value(&p, &v2, &ctx)), "unsupported pod version: v2");
    }

    // === resource references ===

    fn resource(pod: &Pod, container: &Container, resource: &str, divisor: Option<&str>, allocatable: &[(&str, &str)]) -> String {
        let selector = ResourceFieldSelector {
            container_name: None,
            divisor: divisor.map(|d| k8s_openapi::apimachinery::pkg::api::resource::Quantity(d.into())),
            resource: resource.into(),
        };
        let allocatable = allocatable.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        resource_field_ref_value(pod, container, &selector, &allocatable).expect(resource)
    }

    #[test]
    fn resource_references_divide_and_round_up() {
        let c = container(json!({"name": "app", "resources": {
            "requests": {"cpu": "250m", "memory": "100Mi", "ephemeral-storage": "1Gi", "hugepages-2Mi": "4Mi"},
            "limits": {"cpu": "1500m", "memory": "129M"}
        }}));
        let p = pod(json!({"containers": [c.clone()]}));
        assert_eq!(resource(&p, &c, "requests.cpu", None, &[]), "1");
        assert_eq!(resource(&p, &c, "requests.cpu", Some("1m"), &[]), "250");
        assert_eq!(resource(&p, &c, "requests.cpu", Some("0"), &[]), "1");
        assert_eq!(resource(&p, &c, "limits.cpu", None, &[]), "2");
        assert_eq!(resource(&p, &c, "limits.cpu", Some("100m"), &[]), "15");
        assert_eq!(resource(&p, &c, "requests.memory", None, &[]), "104857600");
        assert_eq!(resource(&p, &c, "requests.memory", Some("1Mi"), &[]), "100");
        assert_eq!(resource(&p, &c, "limits.memory", Some("1Mi"), &[]), "124");
        assert_eq!(resource(&p, &c, "requests.ephemeral-storage", Some("1Mi"), &[]), "1024");
        assert_eq!(resource(&p, &c, "requests.hugepages-2Mi", Some("1Mi"), &[]), "4");
    }

    #[test]
    fn unset_limits_read_as_the_node_allocatable_and_unset_requests_as_zero() {
        let c = container(json!({"name": "app"}));
        let p = pod(json!({"containers": [c.clone()]}));
        let alloc = [("cpu", "4"), ("memory", "8Gi"), ("ephemeral-storage", "100Gi")];
        assert_eq!(resource(&p, &c, "limits.cpu", None, &alloc), "4");
        assert_eq!(resource(&p, &c, "limits.cpu", Some("1m"), &alloc), "4000");
        assert_eq!(resource(&p, &c, "limits.memory", Some("1Gi"), &alloc), "8");
        assert_eq!(resource(&p, &c, "limits.ephemeral-storage", Some("1Gi"), &alloc), "100");
        assert_eq!(resource(&p, &c, "requests.cpu", None, &alloc), "0");
        assert_eq!(resource(&p, &c, "limits.cpu", None, &[]), "0");
    }

    #[test]
    fn a_resource_reference_may_name_another_container() {
        let app = container(json!({"name": "app"}));
        let side = container(json!({"name": "side", "resources": {"limits": {"memory": "64Mi"}}}));
        let p = pod(json!({"containers": [app.clone(), side]}));
        let selector = ResourceFieldSelector {
            container_name: Some("side".into()),
            divisor: Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity("1Mi".into())),
            resource: "limits.memory".into(),
        };
        assert_eq!(resource_field_ref_value(&p, &app, &selector, &BTreeMap::new()).unwrap(), "64");
        let missing = ResourceFieldSelector { container_name: Some("nope".into()), ..selector.clone() };
        assert!(matches!(resource_field_ref_value(&p, &app, &missing, &BTreeMap::new()), Err(EnvError::Config(m)) if m == "container nope not found"));
        let bad = ResourceFieldSelector { container_name: None, resource: "limits.gpu".into(), ..selector };
        assert!(matches!(resource_field_ref_value(&p, &app, &bad, &BTreeMap::new()), Err(EnvError::Config(m)) if m == "unsupported container resource : limits.gpu"));
    }

    // === against an API server ===

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_environment_is_read_from_a_real_api_server() {
        use crate::kubelet::volumes::test_server::TestServer;
        let ts = TestServer::start().await;
        let client = ts.client();
        client.create("/api/v1/namespaces", &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})).await.expect("namespace");
        ts.create(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "shop"}, "data": {"MODE": "fast"}})).await;
        ts.create(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": "shop"}, "stringData": {"pass": "s3cr3t"}})).await;
        ts.create(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "cart-api", "namespace": "shop"}, "spec": {"ports": [{"name": "http", "port": 80}]}})).await;
        ts.create(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "headless", "namespace": "shop"}, "spec": {"clusterIP": "None", "ports": [{"port": 80}]}})).await;

        let c = container(json!({"name": "app", "image": "busybox",
            "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
            "env": [
                {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "pass"}}},
                {"name": "API", "value": "$(CART_API_SERVICE_HOST):$(CART_API_SERVICE_PORT_HTTP)"},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
            ]}));
        let p = pod(json!({"containers": [c.clone()]}));
        let env = container_env(&client, &p, &c, &EnvContext::default()).await.expect("env");
        let kube_ip = lookup(&env, "KUBERNETES_SERVICE_HOST").expect("the kubernetes service link");
        assert!(kube_ip.parse::<IpAddr>().is_ok(), "{kube_ip}");
        assert_eq!(lookup(&env, "KUBERNETES_SERVICE_PORT"), Some("443"));
        let cart_ip = lookup(&env, "CART_API_SERVICE_HOST").expect("the cart-api link").to_string();
        assert_eq!(lookup(&env, "CART_API_PORT_80_TCP").map(str::to_string), Some(format!("tcp://{cart_ip}:80")));
        assert_eq!(lookup(&env, "API").map(str::to_string), Some(format!("{cart_ip}:80")));
        assert!(lookup(&env, "HEADLESS_SERVICE_HOST").is_none());
        assert_eq!(lookup(&env, "CFG_MODE"), Some("fast"));
        assert_eq!(lookup(&env, "PASS"), Some("s3cr3t"));
        assert_eq!(lookup(&env, "POD"), Some("web-0"));

        // Without service links only the kubernetes service remains.
        let mut quiet = p.clone();
        quiet.spec.as_mut().unwrap().enable_service_links = Some(false);
        let env = container_env(&client, &quiet, &c, &EnvContext::default()).await.expect("env");
        assert!(lookup(&env, "KUBERNETES_SERVICE_HOST").is_some());
        assert!(lookup(&env, "CART_API_SERVICE_HOST").is_none());

        // A missing ConfigMap is a config error with the kubelet's message.
        let broken = container(json!({"name": "app", "envFrom": [{"configMapRef": {"name": "nope"}}]}));
        match container_env(&client, &p, &broken, &EnvContext::default()).await {
            Err(EnvError::Config(m)) => assert_eq!(m, "configmap \"nope\" not found"),
            other => panic!("expected a config error, got {other:?}"),
        }
    }
}
