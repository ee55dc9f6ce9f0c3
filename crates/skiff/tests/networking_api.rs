//! The networking.k8s.io/v1 API end to end: Ingresses, IngressClasses and
//! NetworkPolicies as real kubectl creates, applies, prints and explains them, the
//! DefaultIngressClass admission plugin, the Ingress status subresource, and the
//! 422 an invalid Ingress gets. Only the API is exercised here; traffic through
//! Ingresses and policies is the concern of the networking tests.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::TestServer;

/// The cells of `kubectl get` output, cut at the header's column starts (so an
/// empty cell, such as an Ingress without an address, stays a column), keyed by
/// header, one map per row.
fn table(out: &str) -> Vec<Vec<(String, String)>> {
    let mut lines = out.lines();
    let header = lines.next().expect("a header line");
    let mut starts = Vec::new();
    let mut prev = ' ';
    for (i, c) in header.char_indices() {
        if c != ' ' && prev == ' ' {
            starts.push(i);
        }
        prev = c;
    }
    let cut = |line: &str, k: usize| -> String {
        let from = starts[k].min(line.len());
        let to = starts.get(k + 1).copied().unwrap_or(line.len()).min(line.len());
        line[from..to].trim().to_string()
    };
    let names: Vec<String> = (0..starts.len()).map(|k| cut(header, k)).collect();
    lines.filter(|l| !l.trim().is_empty()).map(|l| names.iter().enumerate().map(|(k, n)| (n.clone(), cut(l, k))).collect()).collect()
}

/// The row whose NAME is `name`.
fn row<'a>(rows: &'a [Vec<(String, String)>], name: &str) -> &'a [(String, String)] {
    rows.iter().find(|r| r[0].1 == name).unwrap_or_else(|| panic!("no row {name} in {rows:?}"))
}

fn cell<'a>(row: &'a [(String, String)], column: &str) -> &'a str {
    &row.iter().find(|(n, _)| n == column).unwrap_or_else(|| panic!("no column {column} in {row:?}")).1
}

fn header(out: &str) -> Vec<&str> {
    out.lines().next().unwrap_or("").split_whitespace().collect()
}

const DEFAULT_CLASS: &str = r#"apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: skiff-test
  annotations:
    ingressclass.kubernetes.io/is-default-class: "true"
spec:
  controller: skiff.io/gateway
  parameters:
    apiGroup: skiff.io
    kind: GatewayConfig
    name: default
"#;

const CLASSLESS_INGRESS: &str = r#"apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: shop
spec:
  rules:
  - host: shop.example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: shop
            port:
              number: 8080
"#;

const POLICY: &str = r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web
spec:
  podSelector:
    matchLabels:
      app: web
  ingress:
  - from:
    - podSelector:
        matchLabels:
          role: frontend
    - ipBlock:
        cidr: 10.244.0.0/16
        except:
        - 10.244.9.0/24
    ports:
    - port: 8080
    - protocol: UDP
      port: 5353
"#;

#[test]
fn kubectl_creates_ingresses_and_prints_their_class_hosts_address_and_ports() {
    let s = TestServer::start();
    s.ok(&["create", "ingress", "web", "--class=gw", "--rule=example.com/=web:80", "--rule=api.example.com/v1*=api:http,tls=api-tls"]);
    s.ok(&["create", "ingress", "fallback", "--class=gw", "--default-backend=web:80"]);

    let out = s.ok(&["get", "ingress"]);
    assert_eq!(header(&out), ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"], "{out}");
    let rows = table(&out);
    let web = row(&rows, "web");
    assert_eq!((cell(web, "CLASS"), cell(web, "HOSTS"), cell(web, "ADDRESS"), cell(web, "PORTS")), ("gw", "example.com,api.example.com", "", "80, 443"), "{out}");
    let fallback = row(&rows, "fallback");
    assert_eq!((cell(fallback, "HOSTS"), cell(fallback, "PORTS")), ("*", "80"), "{out}");
    assert!(s.ok(&["get", "ing", "web"]).contains("example.com"), "the short name works");

    // What kubectl's generator sent, as stored: path types, ports by number and by
    // name, the TLS entry, an empty load-balancer status and the first generation.
    let ing = s.json(&["get", "ingress", "web"]);
    let paths: Vec<&Value> = ing["spec"]["rules"].as_array().unwrap().iter().map(|r| &r["http"]["paths"][0]).collect();
    assert_eq!((paths[0]["path"].clone(), paths[0]["pathType"].clone()), (json!("/"), json!("Exact")));
    assert_eq!((paths[1]["path"].clone(), paths[1]["pathType"].clone()), (json!("/v1"), json!("Prefix")));
    assert_eq!(paths[0]["backend"]["service"], json!({"name": "web", "port": {"number": 80}}));
    assert_eq!(paths[1]["backend"]["service"], json!({"name": "api", "port": {"name": "http"}}));
    assert_eq!(ing["spec"]["tls"], json!([{"hosts": ["api.example.com"], "secretName": "api-tls"}]));
    assert_eq!(ing["status"], json!({"loadBalancer": {}}));
    assert_eq!(ing["metadata"]["generation"], 1);

    // Ingresses are not in the `all` category.
    let all = s.ok(&["get", "all"]);
    assert!(!all.contains("ingress"), "{all}");
}

#[test]
fn the_status_subresource_carries_the_address_and_nothing_else() {
    let s = TestServer::start();
    s.ok(&["create", "ingress", "web", "--class=gw", "--rule=example.com/=web:80"]);

    // A status write sets the address; the spec it carries is ignored.
    let status = r#"{"spec": {"ingressClassName": "other"}, "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.20"}, {"hostname": "lb.example.com"}, {"ip": "192.0.2.10"}]}}}"#;
    s.ok(&["patch", "ingress", "web", "--subresource=status", "--type=merge", "-p", status]);
    let ing = s.json(&["get", "ingress", "web"]);
    assert_eq!(ing["spec"]["ingressClassName"], "gw");
    assert_eq!(ing["metadata"]["generation"], 1);
    let out = s.ok(&["get", "ingress", "web"]);
    assert_eq!(cell(row(&table(&out), "web"), "ADDRESS"), "192.0.2.10,192.0.2.20,lb.example.com", "{out}");

    // A write of the main resource keeps the status and moves the generation.
    let main = r#"{"spec": {"rules": [{"host": "www.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}, "status": {"loadBalancer": {}}}"#;
    s.ok(&["patch", "ingress", "web", "--type=merge", "-p", main]);
    let ing = s.json(&["get", "ingress", "web"]);
    assert_eq!(ing["spec"]["rules"][0]["host"], "www.example.com");
    assert_eq!(ing["status"]["loadBalancer"]["ingress"].as_array().map(Vec::len), Some(3));
    assert_eq!(ing["metadata"]["generation"], 2);

    // A status address that is not an IP is refused.
    let bad = r#"{"status": {"loadBalancer": {"ingress": [{"ip": "not-an-ip"}]}}}"#;
    let err = s.fails(&["patch", "ingress", "web", "--subresource=status", "--type=merge", "-p", bad]);
    assert!(err.contains("status.loadBalancer.ingress[0].ip: Invalid value: \"not-an-ip\""), "{err}");
}

#[test]
fn an_ingress_without_a_class_gets_the_default_ingress_class() {
    let s = TestServer::start();
    s.ok_stdin(&["apply", "-f", "-"], DEFAULT_CLASS);
    let out = s.ok(&["get", "ingressclass"]);
    assert_eq!(header(&out), ["NAME", "CONTROLLER", "PARAMETERS", "AGE"], "{out}");
    let class = row(&table(&out), "skiff-test").to_vec();
    assert_eq!((cell(&class, "CONTROLLER"), cell(&class, "PARAMETERS")), ("skiff.io/gateway", "GatewayConfig.skiff.io/default"), "{out}");
    let ic = s.json(&["get", "ingressclass", "skiff-test"]);
    assert_eq!(ic["spec"]["parameters"]["scope"], "Cluster", "parameters are cluster-scoped by default");

    // The plugin reads the classes from the server's cache, which may trail the write.
    s.eventually("the default class to be admitted", Duration::from_secs(10), || {
        s.ok_stdin(&["apply", "-f", "-"], CLASSLESS_INGRESS);
        let got = s.json(&["get", "ingress", "shop"])["spec"]["ingressClassName"].clone();
        if got.is_null() {
            s.ok(&["delete", "ingress", "shop"]);
        }
        got == "skiff-test"
    });
    let out = s.ok(&["get", "ingress", "shop"]);
    assert_eq!(cell(row(&table(&out), "shop"), "CLASS"), "skiff-test", "{out}");

    // Applying again replaces the rules as a whole (they have no merge key) and keeps
    // the class that admission chose.
    s.ok_stdin(&["apply", "-f", "-"], &CLASSLESS_INGRESS.replace("path: /\n", "path: /shop\n"));
    let ing = s.json(&["get", "ingress", "shop"]);
    let paths: Vec<&str> = ing["spec"]["rules"][0]["http"]["paths"].as_array().unwrap().iter().filter_map(|p| p["path"].as_str()).collect();
    assert_eq!((paths, ing["spec"]["ingressClassName"].clone()), (vec!["/shop"], json!("skiff-test")));

    // A named class is kept, and so is the legacy annotation (without a class name).
    s.ok(&["create", "ingress", "named", "--class=nginx", "--rule=named.example.com/=web:80"]);
    assert_eq!(s.json(&["get", "ingress", "named"])["spec"]["ingressClassName"], "nginx");
    let legacy = CLASSLESS_INGRESS.replacen("name: shop\n", "name: legacy\n  annotations:\n    kubernetes.io/ingress.class: nginx\n", 1);
    s.ok_stdin(&["apply", "-f", "-"], &legacy);
    assert!(s.json(&["get", "ingress", "legacy"])["spec"].get("ingressClassName").is_none());

    // The controller of a class is fixed once it exists.
    let moved = DEFAULT_CLASS.replace("skiff.io/gateway", "k8s.io/ingress-nginx");
    let err = s.fails_stdin(&["apply", "-f", "-"], &moved);
    assert!(err.contains("spec.controller: Invalid value: \"k8s.io/ingress-nginx\": field is immutable"), "{err}");
}

#[test]
fn an_invalid_ingress_is_refused_with_422_naming_the_field() {
    let s = TestServer::start();
    let by_ip = CLASSLESS_INGRESS.replace("shop.example.com", "10.0.0.1");
    let err = s.fails_stdin(&["apply", "-f", "-"], &by_ip);
    assert!(
        err.contains("The Ingress \"shop\" is invalid: spec.rules[0].host: Invalid value: \"10.0.0.1\": must be a DNS name, not an IP address"),
        "{err}"
    );
    assert!(s.get(&["ingress", "shop"]).is_none());

    // The same through the API: a 422 Status whose causes name the fields.
    let body = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "bad"},
        "spec": {"rules": [{"host": "bad.example.com", "http": {"paths": [
            {"path": "api", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 70000}}}}
        ]}}]}
    });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (code, status) = rt.block_on(async {
        let r = s
            .https()
            .build()
            .unwrap()
            .post(format!("{}/apis/networking.k8s.io/v1/namespaces/default/ingresses", s.url()))
            .bearer_auth(s.token())
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    });
    assert_eq!(code, 422, "{status}");
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(status["details"]["kind"], "Ingress");
    let fields: Vec<&str> = status["details"]["causes"].as_array().unwrap().iter().filter_map(|c| c["field"].as_str()).collect();
    assert_eq!(fields, ["spec.rules[0].http.paths[0].path", "spec.rules[0].http.paths[0].backend.service.port.number"], "{status}");
}

#[test]
fn network_policies_are_defaulted_and_printed_with_their_pod_selector() {
    let s = TestServer::start();
    s.ok_stdin(&["apply", "-f", "-"], POLICY);
    let out = s.ok(&["get", "netpol"]);
    assert_eq!(header(&out), ["NAME", "POD-SELECTOR", "AGE"], "{out}");
    assert_eq!(cell(row(&table(&out), "web"), "POD-SELECTOR"), "app=web", "{out}");

    let np = s.json(&["get", "networkpolicy", "web"]);
    assert_eq!(np["spec"]["policyTypes"], json!(["Ingress"]));
    assert_eq!(np["spec"]["ingress"][0]["ports"], json!([{"port": 8080, "protocol": "TCP"}, {"port": 5353, "protocol": "UDP"}]));
    assert_eq!(np["metadata"]["generation"], 1);

    // Egress rules make it an egress policy too; an empty selector prints as <none>.
    let deny = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: deny-all\nspec:\n  podSelector: {}\n  egress:\n  - to:\n    - namespaceSelector: {}\n";
    s.ok_stdin(&["apply", "-f", "-"], deny);
    assert_eq!(s.json(&["get", "netpol", "deny-all"])["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(cell(row(&table(&s.ok(&["get", "netpol"])), "deny-all"), "POD-SELECTOR"), "<none>");

    // Server-side apply owns the rules as atomic lists: a new list replaces the old.
    let narrowed = POLICY.replace("    - protocol: UDP\n      port: 5353\n", "");
    s.ok_stdin(&["apply", "--server-side", "--force-conflicts", "-f", "-"], &narrowed);
    assert_eq!(s.json(&["get", "netpol", "web"])["spec"]["ingress"][0]["ports"], json!([{"port": 8080, "protocol": "TCP"}]));
    s.ok_stdin(&["apply", "--server-side", "--force-conflicts", "-f", "-"], POLICY);

    let described = s.ok(&["describe", "netpol", "web"]);
    assert!(described.contains("app=web") && described.contains("10.244.0.0/16"), "{described}");

    // An except outside the block is refused.
    let outside = POLICY.replace("10.244.9.0/24", "10.245.0.0/24");
    let err = s.fails_stdin(&["apply", "-f", "-"], &outside);
    assert!(err.contains("spec.ingress[0].from[1].ipBlock.except[0]: Invalid value: \"10.245.0.0/24\": must be a strict subset of `cidr`"), "{err}");
}

#[test]
fn discovery_lists_the_networking_group_and_explain_reads_its_schema() {
    let s = TestServer::start();
    let out = s.ok(&["api-resources", "--api-group=networking.k8s.io"]);
    assert_eq!(header(&out), ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"], "{out}");
    let rows = table(&out);
    let expect = [
        ("ingressclasses", "", "false", "IngressClass"),
        ("ingresses", "ing", "true", "Ingress"),
        ("networkpolicies", "netpol", "true", "NetworkPolicy"),
    ];
    for (name, short, namespaced, kind) in expect {
        let r = row(&rows, name);
        assert_eq!(
            (cell(r, "SHORTNAMES"), cell(r, "APIVERSION"), cell(r, "NAMESPACED"), cell(r, "KIND")),
            (short, "networking.k8s.io/v1", namespaced, kind),
            "{out}"
        );
    }
    assert_eq!(rows.len(), expect.len(), "{out}");

    let explained = s.ok(&["explain", "ingress.spec.rules"]);
    assert!(explained.contains("KIND:       Ingress"), "{explained}");
    assert!(explained.contains("FIELD: rules <[]IngressRule>"), "{explained}");
    for field in ["host", "http"] {
        assert!(explained.lines().any(|l| l.trim_start().starts_with(field)), "no {field} in:\n{explained}");
    }
    let paths = s.ok(&["explain", "ingress.spec.rules.http.paths.pathType"]);
    assert!(paths.contains("FIELD: pathType <string>"), "{paths}");
}
