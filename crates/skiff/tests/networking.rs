//! Service networking across real nodes: pod-to-pod traffic between nodes
//! (host-gw routes), Services as virtual IPs (the nftables proxy), cluster DNS,
//! NodePorts and load balancers, masquerading towards the API server, the Ingress
//! gateway and NetworkPolicy, checked from pods with `kubectl exec` and from
//! outside the nodes.
//!
//! Each test gets a fresh cluster of two nodes, each node a network namespace with
//! its own containerd and agent (see `support/netns.rs`), and tears it down. Tests
//! run one at a time. They need root, containerd, runc, the CNI plugins, nft and
//! the test images (`scripts/build-images.sh`); where any is missing the tests say
//! so and pass without running.

mod support;

#[path = "support/netns.rs"]
mod netns;

use std::collections::BTreeSet;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use netns::{Cluster, BUSYBOX};
use serde_json::Value;

const POD_START: Duration = Duration::from_secs(120);

// === fixtures ===

/// A busybox httpd pod on `node` that answers `hello from <pod name>`.
fn httpd_pod(name: &str, node: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: {name}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: {BUSYBOX}
    imagePullPolicy: Never
    command: ["sh", "-c", "mkdir -p /www && echo hello from $(hostname) > /www/index.html && exec httpd -f -p 8080 -h /www"]
    ports:
    - containerPort: 8080
    readinessProbe:
      httpGet: {{path: /index.html, port: 8080}}
      periodSeconds: 1
"#
    )
}

/// A busybox pod on `node` that only sleeps: where requests are sent from.
fn client_pod(name: &str, node: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: client
    image: {BUSYBOX}
    imagePullPolicy: Never
    command: ["sleep", "3600"]
"#
    )
}

/// A Deployment of busybox httpd pods and a Service of the same name in front of
/// it (port `http` 80 to 8080). Every pod answers `<greeting> from <pod name>` at
/// `/` and at `/<name>/`, and is ready while `/www/ready` exists. Rolling updates
/// surge one pod and never go below the replica count.
#[derive(Clone)]
struct Web {
    name: String,
    replicas: u32,
    greeting: String,
    service_type: String,
    node: Option<String>,
    one_per_node: bool,
    linger: u32,
}

impl Web {
    fn new(name: &str) -> Web {
        Web { name: name.into(), replicas: 1, greeting: "hello".into(), service_type: "ClusterIP".into(), node: None, one_per_node: false, linger: 0 }
    }

    fn replicas(mut self, n: u32) -> Web {
        self.replicas = n;
        self
    }

    fn greeting(mut self, greeting: &str) -> Web {
        self.greeting = greeting.into();
        self
    }

    fn service_type(mut self, type_: &str) -> Web {
        self.service_type = type_.into();
        self
    }

    /// Every pod on `node` (spec.nodeName).
    fn on_node(mut self, node: &str) -> Web {
        self.node = Some(node.into());
        self
    }

    /// At most one pod per node: a required anti-affinity on the node's name.
    fn one_per_node(mut self) -> Web {
        self.one_per_node = true;
        self
    }

    /// Before stopping, a pod keeps serving for `seconds` (a preStop sleep), as
    /// upstream recommends, so that every proxy has dropped it first.
    fn linger(mut self, seconds: u32) -> Web {
        self.linger = seconds;
        self
    }

    fn yaml(&self) -> String {
        let Web { name, replicas, greeting, service_type, .. } = self;
        let grace = self.linger + 2;
        let mut extra = String::new();
        if let Some(node) = &self.node {
            extra.push_str(&format!("\n      nodeName: {node}"));
        }
        if self.one_per_node {
            extra.push_str(&format!(
                "\n      affinity:\n        podAntiAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution:\n          - labelSelector: {{matchLabels: {{app: {name}}}}}\n            topologyKey: kubernetes.io/hostname"
            ));
        }
        let pre_stop = match self.linger {
            0 => String::new(),
            s => format!("\n        lifecycle:\n          preStop:\n            exec: {{command: [\"sleep\", \"{s}\"]}}"),
        };
        format!(
            r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  strategy:
    type: RollingUpdate
    rollingUpdate: {{maxUnavailable: 0, maxSurge: 1}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      terminationGracePeriodSeconds: {grace}{extra}
      containers:
      - name: httpd
        image: {BUSYBOX}
        imagePullPolicy: Never
        command: ["sh", "-c", "mkdir -p /www/{name} && echo {greeting} from $(hostname) | tee /www/index.html /www/{name}/index.html > /www/ready && exec httpd -f -p 8080 -h /www"]
        ports:
        - containerPort: 8080
        readinessProbe:
          httpGet: {{path: /ready, port: 8080}}
          periodSeconds: 1
          failureThreshold: 1{pre_stop}
---
apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  type: {service_type}
  selector: {{app: {name}}}
  ports:
  - name: http
    port: 80
    targetPort: 8080
"#
        )
    }
}

// === helpers ===

fn pod_ip(pod: &Value) -> String {
    pod["status"]["podIP"].as_str().expect("the pod has an address").to_string()
}

fn name(obj: &Value) -> String {
    obj["metadata"]["name"].as_str().unwrap_or_default().to_string()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `wget` of `url` from inside `pod` (busybox's own `-T` timeout crashes it, so
/// `timeout` bounds it instead), retried until it answers (the datapath of a
/// new pod or Service is programmed a moment after the API says it exists); the body.
fn wget_from(c: &Cluster, pod: &str, url: &str) -> String {
    c.wait_for_value(&format!("GET {url} from pod {pod}"), Duration::from_secs(60), |c| {
        let out = c.exec_in_pod("default", pod, &["timeout", "5", "wget", "-qO-", url]);
        if out.status.success() {
            Ok(stdout(&out))
        } else {
            Err(format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr)))
        }
    })
}

/// `tries` GETs of `url` from `pod`, one connection each: the pod names in the
/// `<greeting> from <name>` answers, and how many answered.
fn batch(c: &Cluster, pod: &str, url: &str, tries: usize) -> (BTreeSet<String>, usize) {
    let script = format!("for i in $(seq {tries}); do timeout 5 wget -qO- {url}; done");
    let out = c.exec_in_pod("default", pod, &["sh", "-c", &script]);
    let text = stdout(&out);
    let names = text.lines().filter_map(|l| l.split(" from ").nth(1)).map(str::to_string).collect();
    (names, text.lines().count())
}

/// A GET from the root namespace with this Host header; the whole response.
fn get_with_host(addr: &str, host: &str, path: &str) -> Result<String, String> {
    netns::http_get(addr, host, path).map_err(|e| e.to_string())
}

// === tests ===

#[test]
fn pods_on_different_nodes_reach_each_other_by_pod_ip() {
    let Some(c) = Cluster::start(2) else { return };
    c.apply(&httpd_pod("web-0", "node-0"));
    c.apply(&httpd_pod("web-1", "node-1"));
    let pods = [c.ready_pod("web-0", POD_START), c.ready_pod("web-1", POD_START)];

    let mut ips = Vec::new();
    for (i, pod) in pods.iter().enumerate() {
        let ip = pod_ip(pod);
        let cidr = c.pod_cidr(i);
        assert!(netns::in_cidr(&ip, &cidr), "{}'s address {ip} is in its node's pod CIDR {cidr:?}", name(pod));
        assert!(netns::in_cidr(&ip, &c.cluster_cidr), "{ip} is in the cluster CIDR {}", c.cluster_cidr);
        assert_eq!(pod["status"]["hostIP"], c.nodes[i].ip.as_str());
        ips.push(ip);
    }
    assert_ne!(c.pod_cidr(0), c.pod_cidr(1), "every node has a pod CIDR of its own");

    // Each pod reaches the other across the nodes, and sees its real address
    // (no masquerading between pods).
    let body = wget_from(&c, "web-0", &format!("http://{}:8080/", ips[1]));
    assert_eq!(body.trim(), "hello from web-1");
    let body = wget_from(&c, "web-1", &format!("http://{}:8080/", ips[0]));
    assert_eq!(body.trim(), "hello from web-0");

    // A node reaches a pod on the other node too (the kubelet's probes and
    // host-network pods need that).
    let out = c.node_exec(0, &["curl", "-sS", "-m", "5", &format!("http://{}:8080/", ips[1])]);
    assert!(out.status.success(), "node-0 to web-1: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout(&out).trim(), "hello from web-1");
}

#[test]
fn a_cluster_ip_and_its_dns_name_reach_every_backend() {
    let Some(c) = Cluster::start(2) else { return };
    c.apply(&Web::new("web").replicas(2).one_per_node().yaml());
    c.apply(&client_pod("client", "node-0"));
    let backends = c.ready_pods("app=web", 2, POD_START);
    let nodes: BTreeSet<&str> = backends.iter().map(|p| p["spec"]["nodeName"].as_str().unwrap()).collect();
    assert_eq!(nodes.len(), 2, "one backend per node");
    c.ready_pod("client", POD_START);

    let svc = c.kubectl().json(&["get", "service", "web"]);
    let cluster_ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();
    assert!(netns::in_cidr(&cluster_ip, &c.service_cidr), "{cluster_ip} is in {}", c.service_cidr);

    // The virtual IP answers, and spreads requests over both backends (the one on
    // the client's node and the one across).
    let body = wget_from(&c, "client", &format!("http://{cluster_ip}:80/"));
    assert!(body.starts_with("hello from web-"), "{body}");
    let want: BTreeSet<String> = backends.iter().map(name).collect();
    let mut seen = BTreeSet::new();
    for _ in 0..5 {
        seen.extend(batch(&c, "client", &format!("http://{cluster_ip}:80/"), 20).0);
        if seen == want {
            break;
        }
    }
    assert_eq!(seen, want, "requests to {cluster_ip} reach every backend");

    // The pod resolves through the cluster DNS: its resolv.conf names it, and the
    // Service's names resolve to its ClusterIP.
    let resolv = stdout(&c.exec_in_pod("default", "client", &["cat", "/etc/resolv.conf"]));
    assert!(resolv.contains(&format!("nameserver {}", c.cluster_dns)), "{resolv}");
    assert!(resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local"), "{resolv}");
    let answer = c.wait_for_value("nslookup web.default.svc.cluster.local", Duration::from_secs(60), |c| {
        let out = c.exec_in_pod("default", "client", &["nslookup", "web.default.svc.cluster.local"]);
        let text = stdout(&out);
        if out.status.success() && text.contains(&cluster_ip) {
            Ok(text)
        } else {
            Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
        }
    });
    assert!(answer.contains(&format!("Address: {cluster_ip}")), "{answer}");

    let body = wget_from(&c, "client", "http://web.default.svc.cluster.local:80/");
    assert!(body.starts_with("hello from web-"), "{body}");
    // The short name, through the search path.
    let body = wget_from(&c, "client", "http://web/");
    assert!(body.starts_with("hello from web-"), "{body}");
    let (seen, _) = batch(&c, "client", "http://web.default.svc.cluster.local/", 20);
    assert!(!seen.is_empty() && seen.is_subset(&want), "{seen:?}");

    // A StatefulSet behind a headless Service: its pods have stable names, on the
    // other node here, and the Service's name lists their addresses.
    c.apply(&format!(
        r#"apiVersion: v1
kind: Service
metadata:
  name: db
spec:
  clusterIP: None
  selector: {{app: db}}
  ports:
  - name: peer
    port: 7000
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
spec:
  serviceName: db
  replicas: 1
  selector:
    matchLabels: {{app: db}}
  template:
    metadata:
      labels: {{app: db}}
    spec:
      nodeName: node-1
      terminationGracePeriodSeconds: 1
      containers:
      - name: db
        image: {BUSYBOX}
        imagePullPolicy: Never
        command: ["sleep", "3600"]
"#
    ));
    let db0 = c.ready_pod("db-0", POD_START);
    let db0_ip = pod_ip(&db0);
    for fqdn in ["db-0.db.default.svc.cluster.local", "db.default.svc.cluster.local"] {
        let answer = c.wait_for_value(&format!("nslookup {fqdn}"), Duration::from_secs(60), |c| {
            let out = c.exec_in_pod("default", "client", &["nslookup", fqdn]);
            let text = stdout(&out);
            if out.status.success() && text.contains(&db0_ip) {
                Ok(text)
            } else {
                Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
            }
        });
        assert!(answer.contains(&format!("Address: {db0_ip}")), "{fqdn}: {answer}");
    }
}

#[test]
fn a_node_port_answers_on_every_node_address_from_outside_the_cluster() {
    let Some(c) = Cluster::start(2) else { return };
    // One backend, on node-1: a request to node-0's port must cross to it.
    c.apply(&Web::new("edge").service_type("NodePort").on_node("node-1").yaml());
    let backend = name(&c.ready_pods("app=edge", 1, POD_START)[0]);
    let svc = c.kubectl().json(&["get", "service", "edge"]);
    let node_port = svc["spec"]["ports"][0]["nodePort"].as_u64().expect("a node port was allocated");
    assert!((30000..=32767).contains(&node_port), "{node_port}");

    // From the root namespace, outside every node, to each node's address.
    for node in &c.nodes {
        let addr = format!("{}:{node_port}", node.ip);
        let response = c.wait_for_value(&format!("GET http://{addr}/"), Duration::from_secs(60), |_| {
            netns::http_get(&addr, "edge", "/").map_err(|e| e.to_string()).and_then(|r| match netns::status_code(&r) {
                Some(200) => Ok(r),
                _ => Err(r),
            })
        });
        assert!(response.ends_with(&format!("hello from {backend}\n")), "{addr}: {response}");
    }
}

#[test]
fn an_ingress_routes_by_host_and_path_on_every_node() {
    let Some(c) = Cluster::start(2) else { return };
    c.apply(&Web::new("shop").greeting("shop").on_node("node-0").yaml());
    c.apply(&Web::new("api").greeting("api").on_node("node-1").yaml());
    c.apply(
        r#"apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: skiff
spec:
  controller: skiff.io/ingress
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: front
spec:
  ingressClassName: skiff
  rules:
  - host: shop.example
    http:
      paths:
      - path: /api
        pathType: Prefix
        backend: {service: {name: api, port: {name: http}}}
      - path: /
        pathType: Prefix
        backend: {service: {name: shop, port: {number: 80}}}
  - host: "*.blog.example"
    http:
      paths:
      - path: /api/index.html
        pathType: Exact
        backend: {service: {name: api, port: {number: 80}}}
"#,
    );
    let shop = name(&c.ready_pods("app=shop", 1, POD_START)[0]);
    let api = name(&c.ready_pods("app=api", 1, POD_START)[0]);

    // The gateway nodes are labelled, and the Ingress's status lists their addresses.
    for node in &c.nodes {
        let labels = c.kubectl().json(&["get", "node", &node.name])["metadata"]["labels"].clone();
        assert_eq!(labels["ingress.skiff.io/gateway"], "true", "{}: {labels}", node.name);
    }
    let want: BTreeSet<String> = c.nodes.iter().map(|n| n.ip.clone()).collect();
    c.wait_for_value("the Ingress's status to list every gateway node", Duration::from_secs(60), |c| {
        let ing = c.kubectl().json(&["get", "ingress", "front"]);
        let ips: BTreeSet<String> =
            ing["status"]["loadBalancer"]["ingress"].as_array().into_iter().flatten().filter_map(|i| i["ip"].as_str()).map(str::to_string).collect();
        if ips == want {
            Ok(())
        } else {
            Err(ing["status"].to_string())
        }
    });

    // Every node's gateway serves every rule, whichever node the backend runs on.
    let cases = [
        ("shop.example", "/", 200, Some(format!("shop from {shop}"))),
        ("shop.example", "/api/", 200, Some(format!("api from {api}"))),
        ("shop.example", "/index.html", 200, Some(format!("shop from {shop}"))),
        ("shop.example:80", "/api/index.html", 200, Some(format!("api from {api}"))),
        ("www.blog.example", "/api/index.html", 200, Some(format!("api from {api}"))),
        ("www.blog.example", "/api/", 404, None),
        ("blog.example", "/api/index.html", 404, None),
        ("elsewhere.example", "/", 404, None),
    ];
    for node in &c.nodes {
        let addr = format!("{}:{}", node.ip, netns::INGRESS_HTTP_PORT);
        for (host, path, status, body) in &cases {
            let response = c.wait_for_value(&format!("{status} for http://{host}{path} at {addr}"), Duration::from_secs(60), |_| {
                let r = get_with_host(&addr, host, path)?;
                if netns::status_code(&r) == Some(*status) {
                    Ok(r)
                } else {
                    Err(r)
                }
            });
            if let Some(body) = body {
                assert!(response.ends_with(&format!("{body}\n")), "{host}{path} at {addr}: {response}");
            }
        }
    }

    // A changed rule is served without a restart.
    c.ok(&["patch", "ingress", "front", "--type=json", "-p", r#"[{"op":"replace","path":"/spec/rules/0/host","value":"store.example"}]"#]);
    let addr = format!("{}:{}", c.nodes[0].ip, netns::INGRESS_HTTP_PORT);
    c.wait_for_value("the renamed host to be served and the old one not", Duration::from_secs(30), |_| {
        let new = get_with_host(&addr, "store.example", "/")?;
        let old = get_with_host(&addr, "shop.example", "/")?;
        if netns::status_code(&new) == Some(200) && new.ends_with(&format!("shop from {shop}\n")) && netns::status_code(&old) == Some(404) {
            Ok(())
        } else {
            Err(format!("{new}\n---\n{old}"))
        }
    });
}

#[test]
fn an_unready_pod_leaves_the_service_rotation_and_comes_back() {
    let Some(c) = Cluster::start(2) else { return };
    c.apply(&Web::new("web").replicas(2).one_per_node().yaml());
    c.apply(&client_pod("client", "node-0"));
    let pods: Vec<String> = c.ready_pods("app=web", 2, POD_START).iter().map(name).collect();
    c.ready_pod("client", POD_START);
    let url = "http://web.default.svc.cluster.local/";
    let all: BTreeSet<String> = pods.iter().cloned().collect();
    c.wait_for_value("both backends in rotation", Duration::from_secs(60), |c| {
        let (seen, _) = batch(c, "client", url, 20);
        if seen == all {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    });

    // The readiness probe fails from now on: the pod must stop getting requests,
    // without being restarted.
    let sick = &pods[0];
    let start = Instant::now();
    c.ok(&["exec", sick, "--", "rm", "/www/ready"]);
    let left = c.wait_for_value(&format!("{sick} to leave the rotation"), Duration::from_secs(30), |c| {
        let (seen, answered) = batch(c, "client", url, 10);
        if !seen.contains(sick) && answered == 10 {
            Ok(start.elapsed())
        } else {
            Err(format!("{answered} answers from {seen:?}"))
        }
    });
    eprintln!("an unready pod left the rotation {} ms after its readiness file went", left.as_millis());
    assert!(left < Duration::from_secs(10), "leaving took {left:?}");
    // Stays out.
    for _ in 0..3 {
        let (seen, answered) = batch(&c, "client", url, 10);
        assert_eq!(answered, 10, "every request is answered");
        assert!(!seen.contains(sick), "{sick} is out: {seen:?}");
    }
    let pod = c.kubectl().json(&["get", "pod", sick]);
    assert!(!support::is_ready(&pod), "{}", pod["status"]);
    assert_eq!(pod["status"]["containerStatuses"][0]["restartCount"], 0);
    let slices = c.kubectl().items(&["get", "endpointslices", "-l", "kubernetes.io/service-name=web"]);
    let endpoint = slices.iter().flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default()).find(|e| e["targetRef"]["name"] == sick.as_str());
    assert_eq!(endpoint.map(|e| e["conditions"]["ready"].clone()), Some(Value::Bool(false)));

    // Ready again: back in rotation.
    c.ok(&["exec", sick, "--", "touch", "/www/ready"]);
    c.wait_for_value(&format!("{sick} to return to the rotation"), Duration::from_secs(30), |c| {
        let (seen, _) = batch(c, "client", url, 20);
        if seen == all {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    });
}

#[test]
fn a_rolling_update_under_load_drops_no_request() {
    let Some(c) = Cluster::start(2) else { return };
    let web = Web::new("web").replicas(3).greeting("v1").linger(3);
    c.apply(&web.yaml());
    c.apply(&client_pod("client", "node-0"));
    c.ready_pods("app=web", 3, POD_START);
    c.ready_pod("client", POD_START);
    let url = "http://web.default.svc.cluster.local/";
    wget_from(&c, "client", url);

    // Requests one after another until /tmp/stop appears, each counted.
    let script = format!(
        "ok=0; fail=0; while [ ! -f /tmp/stop ]; do if out=$(timeout 5 wget -qO- {url}); then ok=$((ok+1)); echo \"$out\" >> /tmp/seen; else fail=$((fail+1)); date >> /tmp/failures; fi; done; echo ok=$ok fail=$fail; sort /tmp/seen | cut -d' ' -f1 | uniq -c"
    );
    let mut load = c
        .kubectl()
        .kubectl_command(&["exec", "client", "--", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl exec");
    std::thread::sleep(Duration::from_secs(2));

    c.apply(&web.greeting("v2").yaml());
    let rollout = c.kubectl().kubectl(&["rollout", "status", "deployment/web", "--timeout=50s"]);
    assert!(rollout.status.success(), "{}", String::from_utf8_lossy(&rollout.stderr));
    // The last old pods are still lingering: keep the load on until they are gone.
    c.wait_for("the old pods to be gone", Duration::from_secs(60), |c| c.pods("app=web").len() == 3);
    std::thread::sleep(Duration::from_secs(2));
    c.ok(&["exec", "client", "--", "touch", "/tmp/stop"]);

    let deadline = Instant::now() + Duration::from_secs(30);
    while load.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the request loop did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut report = String::new();
    std::io::Read::read_to_string(load.stdout.as_mut().unwrap(), &mut report).unwrap();
    eprintln!("request loop: {report}");
    let first = report.lines().next().unwrap_or_default().to_string();
    let counts: Vec<u64> = first.split(' ').filter_map(|kv| kv.split_once('=')?.1.parse().ok()).collect();
    assert_eq!(counts.len(), 2, "{report}");
    assert!(counts[0] >= 20, "enough requests were made: {report}");
    assert_eq!(counts[1], 0, "no request failed during the rollout: {report}");
    assert!(report.contains(" v1") && report.contains(" v2"), "both versions answered: {report}");
}

#[test]
fn a_network_policy_admits_only_the_selected_peers() {
    let Some(c) = Cluster::start(2) else { return };
    c.ok(&["create", "namespace", "other"]);
    c.ok(&["label", "namespace", "other", "team=friends"]);
    c.apply(&httpd_pod("db", "node-1"));
    c.ok(&["expose", "pod", "db", "--port=80", "--target-port=8080"]);
    let labelled = |name: &str, ns: &str, node: &str, labels: &str| {
        client_pod(name, node).replacen("metadata:\n", &format!("metadata:\n  namespace: {ns}\n  labels: {{{labels}}}\n"), 1)
    };
    c.apply(&labelled("api", "default", "node-0", "role: api"));
    c.apply(&labelled("stranger", "default", "node-0", "role: other"));
    c.apply(&labelled("neighbour", "default", "node-1", "role: other"));
    c.apply(&labelled("visitor", "other", "node-0", "role: api"));
    let db = pod_ip(&c.ready_pod("db", POD_START));
    for pod in ["api", "stranger", "neighbour"] {
        c.ready_pod(pod, POD_START);
    }
    c.wait_for("pod other/visitor to be ready", POD_START, |c| c.kubectl().get(&["pod", "-n", "other", "visitor"]).is_some_and(|p| support::is_ready(&p)));

    let direct = format!("http://{db}:8080/");
    let service = "http://db.default.svc.cluster.local/";
    let reaches = |ns: &str, pod: &str, url: &str| c.exec_in_pod(ns, pod, &["timeout", "3", "wget", "-qO-", url]).status.success();
    let everyone = [("default", "api"), ("default", "stranger"), ("default", "neighbour"), ("other", "visitor")];

    // No policy: everyone gets in.
    for (ns, pod) in everyone {
        c.wait_for(&format!("{ns}/{pod} to reach db"), Duration::from_secs(60), |_| reaches(ns, pod, &direct));
    }

    // Only pods labelled role=api in this namespace, and pods of namespaces
    // labelled team=friends whose label is role=api, on 8080.
    c.apply(
        r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: db
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - podSelector: {matchLabels: {role: api}}
    ports:
    - {protocol: TCP, port: 8080}
"#,
    );
    c.wait_for("the stranger to be shut out", Duration::from_secs(30), |_| !reaches("default", "stranger", &direct));
    for url in [direct.as_str(), service] {
        assert!(reaches("default", "api", url), "api reaches {url}");
        assert!(!reaches("default", "stranger", url), "stranger is denied {url}");
        assert!(!reaches("default", "neighbour", url), "a pod on db's own node is denied {url}");
        assert!(!reaches("other", "visitor", url), "a podSelector alone admits no other namespace: {url}");
    }

    // A namespaceSelector and podSelector together admit role=api of team=friends.
    c.ok(&[
        "patch",
        "networkpolicy",
        "db",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/spec/ingress/0/from/-","value":{"namespaceSelector":{"matchLabels":{"team":"friends"}},"podSelector":{"matchLabels":{"role":"api"}}}}]"#,
    ]);
    c.wait_for("the visitor to be admitted", Duration::from_secs(30), |_| reaches("other", "visitor", &direct));
    assert!(!reaches("default", "stranger", &direct), "the stranger is still denied");

    // Policy gone: open again.
    c.ok(&["delete", "networkpolicy", "db"]);
    c.wait_for("the stranger to be admitted again", Duration::from_secs(30), |_| reaches("default", "stranger", &direct));
    assert!(reaches("default", "neighbour", service));
}

#[test]
fn a_load_balancer_service_answers_on_the_node_addresses_it_lists() {
    let Some(c) = Cluster::start(2) else { return };
    // Port 80 of the node addresses is the Ingress gateway's: the load balancer
    // takes another one.
    let yaml = Web::new("lb").service_type("LoadBalancer").on_node("node-0").yaml().replace("    port: 80\n", "    port: 8088\n");
    c.apply(&yaml);
    let backend = name(&c.ready_pods("app=lb", 1, POD_START)[0]);
    let want: BTreeSet<String> = c.nodes.iter().map(|n| n.ip.clone()).collect();
    let ips = c.wait_for_value("the Service's status to list every node", Duration::from_secs(60), |c| {
        let svc = c.kubectl().json(&["get", "service", "lb"]);
        let ips: BTreeSet<String> =
            svc["status"]["loadBalancer"]["ingress"].as_array().into_iter().flatten().filter_map(|i| i["ip"].as_str()).map(str::to_string).collect();
        if ips == want {
            Ok(ips)
        } else {
            Err(svc["status"].to_string())
        }
    });
    for ip in ips {
        let addr = format!("{ip}:8088");
        let response = c.wait_for_value(&format!("GET http://{addr}/"), Duration::from_secs(60), |_| {
            get_with_host(&addr, "lb", "/").and_then(|r| if netns::status_code(&r) == Some(200) { Ok(r) } else { Err(r) })
        });
        assert!(response.ends_with(&format!("hello from {backend}\n")), "{addr}: {response}");
    }
}

#[test]
fn with_masquerade_outside_pods_reach_the_api_server_through_the_kubernetes_service() {
    // The API server runs outside every node, in the root namespace, which has no
    // route to the pods: its replies find a pod only because the pod's request
    // left its node behind the node's address.
    let Some(c) = Cluster::start_with(2, &["--masquerade-outside"]) else { return };
    c.apply(&client_pod("client", "node-1"));
    c.ready_pod("client", POD_START);
    let env = stdout(&c.exec_in_pod("default", "client", &["env"]));
    assert!(env.contains("KUBERNETES_SERVICE_HOST="), "{env}");
    // busybox's TLS client gets a handshake_failure alert from the server, so the
    // check is a TCP connection: it completes only when the server's answer comes back.
    let host = "kubernetes.default.svc.cluster.local";
    c.wait_for_value(&format!("a connection to {host}:443 from the pod"), Duration::from_secs(60), |c| {
        let out = c.exec_in_pod("default", "client", &["sh", "-c", &format!("timeout 5 nc -w 3 {host} 443 < /dev/null && echo connected")]);
        if stdout(&out).contains("connected") {
            Ok(())
        } else {
            Err(format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr)))
        }
    });
    // Through the Service's address from the environment too.
    let out = c.exec_in_pod("default", "client", &["sh", "-c", "timeout 5 nc -w 3 $KUBERNETES_SERVICE_HOST $KUBERNETES_SERVICE_PORT < /dev/null && echo connected"]);
    assert!(stdout(&out).contains("connected"), "{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
}
