//! Real kubectl against `skiff server --disable scheduler,controllers`: the API
//! server's own share of scheduling and workloads. PodDisruptionBudgets and
//! PriorityClasses, the admission plugins (Priority, LimitRanger, ResourceQuota,
//! ServiceAccount), eviction under a budget, binding, and cordon/drain. Nothing else
//! touches pods here, so every change seen is the API server's.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::TestServer;

fn server() -> TestServer {
    TestServer::start_with(tempfile::tempdir().unwrap(), &["--disable", "scheduler,controllers"])
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A pod with one container and the given `resources` (YAML flow map) and extra spec.
fn pod(name: &str, resources: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: web}}\nspec:\n  terminationGracePeriodSeconds: 0\n{extra}  containers:\n  - name: web\n    image: nginx\n    resources: {resources}\n"
    )
}

/// POSTs a JSON body to a raw API path with kubectl.
fn post_raw(s: &TestServer, path: &str, body: &str) -> std::process::Output {
    s.kubectl_stdin(&["create", "--raw", path, "-f", "-"], Some(body))
}

fn bind(s: &TestServer, pod: &str, node: &str) -> std::process::Output {
    let binding = format!(r#"{{"apiVersion":"v1","kind":"Binding","metadata":{{"name":"{pod}"}},"target":{{"apiVersion":"v1","kind":"Node","name":"{node}"}}}}"#);
    post_raw(s, &format!("/api/v1/namespaces/default/pods/{pod}/binding"), &binding)
}

fn evict(s: &TestServer, pod: &str, query: &str) -> std::process::Output {
    let eviction = format!(r#"{{"apiVersion":"policy/v1","kind":"Eviction","metadata":{{"name":"{pod}","namespace":"default"}}}}"#);
    post_raw(s, &format!("/api/v1/namespaces/default/pods/{pod}/eviction{query}"), &eviction)
}

fn node(s: &TestServer, name: &str) {
    s.ok_stdin(&["create", "-f", "-"], &format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n"));
}

/// Marks a pod running and ready, as its node would.
fn run(s: &TestServer, pod: &str) {
    let status = r#"{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True","lastTransitionTime":"2024-01-01T00:00:00Z"}]}}"#;
    s.ok(&["patch", "pod", pod, "--subresource=status", "--type=merge", "-p", status]);
}

/// Sets a budget's status, as the disruption controller would.
fn budget_status(s: &TestServer, name: &str, allowed: i64) {
    let status = format!(r#"{{"status":{{"observedGeneration":1,"disruptionsAllowed":{allowed},"currentHealthy":1,"desiredHealthy":1,"expectedPods":1}}}}"#);
    s.ok(&["patch", "pdb", name, "--subresource=status", "--type=merge", "-p", &status]);
}

#[test]
fn disruption_budgets_are_served_with_their_columns_and_schema() {
    let s = server();
    s.ok(&["create", "pdb", "web", "--selector=app=web", "--min-available=1"]);
    let table = s.ok(&["get", "pdb"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
    assert_eq!(header, ["NAME", "MIN AVAILABLE", "MAX UNAVAILABLE", "ALLOWED DISRUPTIONS", "AGE"]);
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row[..4], ["web", "1", "N/A", "0"]);

    let pdb = s.json(&["get", "poddisruptionbudget.policy", "web"]);
    assert_eq!(pdb["metadata"]["generation"], 1);
    assert_eq!(pdb["status"]["disruptionsAllowed"], 0);
    assert_eq!(pdb["spec"]["selector"]["matchLabels"]["app"], "web");

    let explain = s.ok(&["explain", "pdb.spec"]);
    assert!(explain.contains("KIND:       PodDisruptionBudget"), "{explain}");
    assert!(explain.contains("GROUP:      policy") && explain.contains("VERSION:    v1"), "{explain}");
    assert!(explain.contains("minAvailable"), "{explain}");

    let both = "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: both\nspec:\n  minAvailable: 1\n  maxUnavailable: 1\n  selector: {matchLabels: {app: web}}\n";
    let err = s.fails_stdin(&["create", "-f", "-"], both);
    assert!(err.contains("is invalid: spec: Invalid value: policy.PodDisruptionBudgetSpec{"), "{err}");
    assert!(err.contains("minAvailable and maxUnavailable cannot be both set"), "{err}");

    // A spec change moves the generation, which the disruption controller must catch up with.
    s.ok(&["patch", "pdb", "web", "--type=merge", "-p", r#"{"spec":{"minAvailable":"50%"}}"#]);
    assert_eq!(s.json(&["get", "pdb", "web"])["metadata"]["generation"], 2);
}

#[test]
fn priority_classes_include_the_built_ins_and_give_pods_their_priority() {
    let s = server();
    let table = s.ok(&["get", "pc"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"]);
    let node_critical = table.lines().find(|l| l.starts_with("system-node-critical")).expect("system-node-critical listed");
    let cells: Vec<&str> = node_critical.split_whitespace().collect();
    assert_eq!((cells[1], cells[2], cells[4]), ("2000001000", "false", "PreemptLowerPriority"));
    assert!(table.lines().any(|l| l.starts_with("system-cluster-critical") && l.contains("2000000000")), "{table}");

    s.ok(&["create", "priorityclass", "high", "--value=1000", "--description=for the web tier"]);
    s.ok_stdin(&["apply", "-f", "-"], &pod("classy", "{}", "  priorityClassName: high\n  automountServiceAccountToken: false\n"));
    let p = s.json(&["get", "pod", "classy"]);
    assert_eq!(p["spec"]["priority"], 1000);
    assert_eq!(p["spec"]["preemptionPolicy"], "PreemptLowerPriority");
    assert_eq!(p["spec"]["serviceAccountName"], "default");
    assert_eq!(p["spec"]["serviceAccount"], "default");

    s.ok_stdin(&["apply", "-f", "-"], &pod("plain", "{}", ""));
    let p = s.json(&["get", "pod", "plain"]);
    assert_eq!(p["spec"]["priority"], 0);
    assert!(p["spec"].get("priorityClassName").is_none());
    // DefaultTolerationSeconds: five minutes on an unready or unreachable node.
    let tolerations: Vec<String> = p["spec"]["tolerations"].as_array().unwrap().iter().map(|t| format!("{}:{}:{}", t["key"], t["effect"], t["tolerationSeconds"])).collect();
    assert_eq!(tolerations, ["\"node.kubernetes.io/not-ready\":\"NoExecute\":300", "\"node.kubernetes.io/unreachable\":\"NoExecute\":300"]);

    let err = s.fails_stdin(&["apply", "-f", "-"], &pod("lost", "{}", "  priorityClassName: foo\n"));
    assert!(err.contains("Error from server (Forbidden)"), "{err}");
    assert!(err.contains("pods \"lost\" is forbidden: no PriorityClass with name foo was found"), "{err}");
    let err = s.fails_stdin(&["apply", "-f", "-"], &pod("sneaky", "{}", "  priorityClassName: high\n  priority: 5\n"));
    assert!(err.contains("the integer value of priority (5) must not be provided in pod spec"), "{err}");

    // Users stay below the system classes, and a class keeps its value.
    let err = s.fails(&["create", "priorityclass", "huge", "--value=2000000000"]);
    assert!(err.contains("maximum allowed value of a user defined priority is 1000000000"), "{err}");
    let err = s.fails(&["create", "priorityclass", "system-mine", "--value=10"]);
    assert!(err.contains("reserved for system use only"), "{err}");
    let err = s.fails(&["patch", "pc", "high", "--type=merge", "-p", r#"{"value":2000}"#]);
    assert!(err.contains("value: Forbidden: may not be changed in an update."), "{err}");

    // One global default at most; pods without a class then take it.
    s.ok(&["create", "priorityclass", "normal", "--value=10", "--global-default"]);
    let err = s.fails(&["create", "priorityclass", "other", "--value=20", "--global-default"]);
    assert!(err.contains("PriorityClass normal is already marked as default. Only one default can exist"), "{err}");
    s.ok_stdin(&["apply", "-f", "-"], &pod("defaulted", "{}", ""));
    let p = s.json(&["get", "pod", "defaulted"]);
    assert_eq!((p["spec"]["priorityClassName"].as_str(), p["spec"]["priority"].as_i64()), (Some("normal"), Some(10)));

    // Replacing a pod from its manifest keeps the priority admission gave it.
    s.ok_stdin(&["replace", "-f", "-"], &pod("classy", "{}", "  priorityClassName: high\n  serviceAccountName: default\n  automountServiceAccountToken: false\n"));
    assert_eq!(s.json(&["get", "pod", "classy"])["spec"]["priority"], 1000);

    // The built-ins are created once, however often the server starts.
    let dir = s.kill();
    let s = TestServer::start_with(dir, &["--disable", "scheduler,controllers"]);
    let names = s.ok(&["get", "pc", "-o", "name"]);
    assert_eq!(names.lines().filter(|l| l.contains("system-node-critical")).count(), 1, "{names}");
    assert!(names.contains("priorityclass.scheduling.k8s.io/high"), "{names}");
}

#[test]
fn limit_range_defaults_show_up_on_created_pods() {
    let s = server();
    let limits = "apiVersion: v1\nkind: LimitRange\nmetadata:\n  name: limits\nspec:\n  limits:\n  - type: Container\n    default: {cpu: 500m, memory: 256Mi}\n    defaultRequest: {cpu: 100m}\n    max: {cpu: \"2\"}\n";
    s.ok_stdin(&["apply", "-f", "-"], limits);

    s.ok_stdin(&["apply", "-f", "-"], &pod("bare", "{}", ""));
    let p = s.json(&["get", "pod", "bare"]);
    let r = &p["spec"]["containers"][0]["resources"];
    assert_eq!(r["limits"], serde_json::json!({"cpu": "500m", "memory": "256Mi"}));
    assert_eq!(r["requests"], serde_json::json!({"cpu": "100m", "memory": "256Mi"}));
    assert_eq!(
        p["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu, memory request for container web; cpu, memory limit for container web"
    );
    assert_eq!(p["status"]["qosClass"], "Burstable");

    // A container's own limit is its request too, as pod defaulting has it.
    s.ok_stdin(&["apply", "-f", "-"], &pod("limited", "{limits: {cpu: \"1\"}}", ""));
    let r = s.json(&["get", "pod", "limited"])["spec"]["containers"][0]["resources"].clone();
    assert_eq!(r["requests"]["cpu"], "1");
    assert_eq!(r["limits"], serde_json::json!({"cpu": "1", "memory": "256Mi"}));

    let err = s.fails_stdin(&["apply", "-f", "-"], &pod("greedy", "{limits: {cpu: \"4\"}}", ""));
    assert!(err.contains("Error from server (Forbidden)"), "{err}");
    assert!(err.contains("pods \"greedy\" is forbidden: maximum cpu usage per Container is 2, but limit is 4"), "{err}");
}

#[test]
fn quotas_refuse_what_goes_over_their_hard_limits() {
    let s = server();
    s.ok(&["create", "quota", "compute", "--hard=cpu=2,pods=3"]);
    s.ok_stdin(&["apply", "-f", "-"], &pod("a", "{requests: {cpu: 1500m}}", ""));
    let err = s.fails_stdin(&["apply", "-f", "-"], &pod("b", "{requests: {cpu: 600m}}", ""));
    assert!(err.contains("Error from server (Forbidden)"), "{err}");
    assert!(err.contains("pods \"b\" is forbidden: exceeded quota: compute, requested: cpu=600m, used: cpu=1500m, limited: cpu=2"), "{err}");
    s.ok_stdin(&["apply", "-f", "-"], &pod("c", "{requests: {cpu: 500m}}", ""));

    let err = s.fails_stdin(&["apply", "-f", "-"], &pod("d", "{}", ""));
    assert!(err.contains("pods \"d\" is forbidden: failed quota: compute: must specify cpu for: web"), "{err}");

    // Finished pods free their share.
    let done = r#"{"status":{"phase":"Succeeded"}}"#;
    s.ok(&["patch", "pod", "a", "--subresource=status", "--type=merge", "-p", done]);
    s.ok_stdin(&["apply", "-f", "-"], &pod("e", "{requests: {cpu: 1}}", ""));
    s.ok_stdin(&["apply", "-f", "-"], &pod("f", "{requests: {cpu: 100m}}", ""));
    let err = s.fails_stdin(&["apply", "-f", "-"], &pod("g", "{requests: {cpu: 100m}}", ""));
    assert!(err.contains("pods \"g\" is forbidden: exceeded quota: compute, requested: pods=1, used: pods=3, limited: pods=3"), "{err}");

    // Object counts, for any kind.
    s.ok(&["create", "namespace", "counted"]);
    s.ok(&["create", "quota", "objects", "-n", "counted", "--hard=count/secrets=1"]);
    s.ok(&["create", "secret", "generic", "one", "-n", "counted"]);
    let err = s.fails(&["create", "secret", "generic", "two", "-n", "counted"]);
    assert!(
        err.contains("secrets \"two\" is forbidden: exceeded quota: objects, requested: count/secrets=1, used: count/secrets=1, limited: count/secrets=1"),
        "{err}"
    );
}

#[test]
fn eviction_waits_for_the_disruption_budget_to_allow_it() {
    let s = server();
    s.ok_stdin(&["apply", "-f", "-"], &pod("web", "{}", ""));
    run(&s, "web");
    s.ok(&["create", "pdb", "web", "--selector=app=web", "--min-available=1"]);

    // The controller has not looked at the budget yet: generation 1, observed 0.
    let out = evict(&s, "web", "");
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("Cannot evict pod as it would violate the pod's disruption budget."), "{}", stderr_of(&out));

    budget_status(&s, "web", 0);
    let out = evict(&s, "web", "");
    let err = stderr_of(&out);
    assert!(err.contains("Error from server (TooManyRequests)") && err.contains("violate the pod's disruption budget"), "{err}");
    s.ok(&["get", "pod", "web"]);

    budget_status(&s, "web", 1);
    // A dry run changes nothing.
    let out = evict(&s, "web", "?dryRun=All");
    assert!(out.status.success(), "{}", stderr_of(&out));
    s.ok(&["get", "pod", "web"]);
    assert_eq!(s.json(&["get", "pdb", "web"])["status"]["disruptionsAllowed"], 1);

    let out = evict(&s, "web", "");
    assert!(out.status.success(), "{}", stderr_of(&out));
    let out = s.kubectl(&["get", "pod", "web"]);
    assert!(stderr_of(&out).contains("NotFound"), "{}", stderr_of(&out));
    let pdb = s.json(&["get", "pdb", "web"]);
    assert_eq!(pdb["status"]["disruptionsAllowed"], 0);
    assert!(pdb["status"]["disruptedPods"]["web"].is_string(), "{pdb}");
    let allowed = pdb["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "DisruptionAllowed").cloned().unwrap();
    assert_eq!((allowed["status"].as_str(), allowed["reason"].as_str()), (Some("False"), Some("InsufficientPods")));
}

#[test]
fn eviction_refuses_pods_with_two_budgets_and_passes_pending_pods() {
    let s = server();
    s.ok_stdin(&["apply", "-f", "-"], &pod("web", "{}", ""));
    s.ok(&["create", "pdb", "one", "--selector=app=web", "--min-available=1"]);
    s.ok(&["create", "pdb", "two", "--selector=app=web", "--max-unavailable=0"]);
    // Not running yet: no budget is consulted.
    s.ok_stdin(&["apply", "-f", "-"], &pod("pending", "{}", ""));
    let out = evict(&s, "pending", "");
    assert!(out.status.success(), "{}", stderr_of(&out));

    run(&s, "web");
    let out = evict(&s, "web", "");
    let err = stderr_of(&out);
    assert!(err.contains("This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."), "{err}");
    s.ok(&["get", "pod", "web"]);
}

#[test]
fn binding_assigns_a_pod_once() {
    let s = server();
    node(&s, "n1");
    node(&s, "n2");
    s.ok_stdin(&["apply", "-f", "-"], &pod("web", "{}", ""));
    let out = bind(&s, "web", "n1");
    assert!(out.status.success(), "{}", stderr_of(&out));
    let p = s.json(&["get", "pod", "web"]);
    assert_eq!(p["spec"]["nodeName"], "n1");
    let scheduled = p["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "PodScheduled").cloned().unwrap();
    assert_eq!(scheduled["status"], "True");

    let out = bind(&s, "web", "n2");
    assert!(!out.status.success());
    let err = stderr_of(&out);
    assert!(err.contains("Error from server (Conflict)"), "{err}");
    assert!(err.contains("Operation cannot be fulfilled on pods/binding \"web\": pod web is already assigned to node \"n1\""), "{err}");
    assert_eq!(s.json(&["get", "pod", "web"])["spec"]["nodeName"], "n1");

    // A pod on its way out cannot be placed either.
    let held = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: held\n  finalizers: [example.com/hold]\nspec:\n  containers:\n  - {name: web, image: nginx}\n";
    s.ok_stdin(&["apply", "-f", "-"], held);
    s.ok(&["delete", "pod", "held", "--wait=false"]);
    let err = stderr_of(&bind(&s, "held", "n1"));
    assert!(err.contains("pod held is being deleted, cannot be assigned to a host"), "{err}");

    let listed = s.ok(&["get", "pods", "--field-selector", "spec.nodeName=n1", "-o", "name"]);
    assert_eq!(listed.trim(), "pod/web");
}

#[test]
fn cordon_and_drain_evict_what_runs_on_a_node() {
    let s = server();
    node(&s, "n1");
    node(&s, "n2");
    s.ok(&["cordon", "n1"]);
    assert_eq!(s.json(&["get", "node", "n1"])["spec"]["unschedulable"], true);
    s.ok(&["uncordon", "n1"]);
    assert!(s.json(&["get", "node", "n1"])["spec"].get("unschedulable").is_none_or(|u| u == false));

    // Owners that exist, so that neither drain nor the garbage collector objects.
    let owners = "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: web\nspec:\n  replicas: 0\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: web, image: nginx}]\n---\napiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: agent\nspec:\n  selector: {matchLabels: {app: agent}}\n  template:\n    metadata: {labels: {app: agent}}\n    spec:\n      containers: [{name: agent, image: busybox}]\n";
    s.ok_stdin(&["apply", "-f", "-"], owners);
    let rs_uid = s.json(&["get", "rs", "web"])["metadata"]["uid"].as_str().unwrap().to_string();
    let ds_uid = s.json(&["get", "ds", "agent"])["metadata"]["uid"].as_str().unwrap().to_string();
    let owned = |name: &str, kind: &str, owner: &str, uid: &str, app: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: {app}}}\n  ownerReferences:\n  - {{apiVersion: apps/v1, kind: {kind}, name: {owner}, uid: {uid}, controller: true}}\nspec:\n  terminationGracePeriodSeconds: 0\n  containers: [{{name: c, image: nginx, volumeMounts: [{{name: scratch, mountPath: /scratch}}]}}]\n  volumes: [{{name: scratch, emptyDir: {{}}}}]\n"
        )
    };
    s.ok_stdin(&["apply", "-f", "-"], &owned("web-1", "ReplicaSet", "web", &rs_uid, "web"));
    s.ok_stdin(&["apply", "-f", "-"], &owned("web-2", "ReplicaSet", "web", &rs_uid, "web"));
    s.ok_stdin(&["apply", "-f", "-"], &owned("agent-n1", "DaemonSet", "agent", &ds_uid, "agent"));
    for (p, n) in [("web-1", "n1"), ("web-2", "n2"), ("agent-n1", "n1")] {
        let out = bind(&s, p, n);
        assert!(out.status.success(), "{}", stderr_of(&out));
    }

    let out = s.ok(&["drain", "n1", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=60s"]);
    assert!(out.contains("node/n1 cordoned"), "{out}");
    assert!(out.contains("evicting pod default/web-1"), "{out}");
    assert!(out.contains("pod/web-1 evicted"), "{out}");
    assert!(out.contains("node/n1 drained"), "{out}");
    assert_eq!(s.json(&["get", "node", "n1"])["spec"]["unschedulable"], true);

    s.eventually("web-1 to be gone", Duration::from_secs(10), || !s.kubectl(&["get", "pod", "web-1"]).status.success());
    let on_n1 = s.ok(&["get", "pods", "--field-selector", "spec.nodeName=n1", "-o", "name"]);
    assert_eq!(on_n1.trim(), "pod/agent-n1");
    let all: Value = s.json(&["get", "pods"]);
    let names: Vec<&str> = all["items"].as_array().unwrap().iter().filter_map(|p| p["metadata"]["name"].as_str()).collect();
    assert_eq!(names, ["agent-n1", "web-2"]);
}

#[test]
fn service_account_tokens_authenticate_and_pods_mount_them() {
    let s = server();
    s.ok(&["create", "namespace", "team"]);
    // Every namespace gets the cluster CA for token volumes.
    s.eventually("kube-root-ca.crt in the new namespace", Duration::from_secs(10), || {
        s.kubectl(&["get", "configmap", "kube-root-ca.crt", "-n", "team", "-o", "jsonpath={.data.ca\\.crt}"]).stdout.starts_with(b"-----BEGIN CERTIFICATE-----")
    });

    // A TokenRequest token authenticates as the service account.
    s.ok(&["create", "serviceaccount", "builder", "-n", "team"]);
    let token = s.ok(&["create", "token", "builder", "-n", "team", "--duration=20m"]);
    let token = token.trim();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let listed = s.ok(&["--token", token, "get", "serviceaccounts", "-n", "team", "-o", "name"]);
    assert!(listed.contains("serviceaccount/builder"), "{listed}");
    let err = s.fails(&["--token", &format!("{token}x"), "get", "pods"]);
    assert!(err.contains("Unauthorized") || err.contains("provide credentials"), "{err}");
    let err = s.fails(&["create", "token", "builder", "-n", "team", "--duration=5m"]);
    assert!(err.contains("spec.expirationSeconds") && err.contains("less than 10 minutes"), "{err}");
    let err = s.fails(&["create", "token", "nobody", "-n", "team"]);
    assert!(err.contains("serviceaccounts \"nobody\" not found"), "{err}");

    // Pods get the projected token volume unless they opt out.
    s.ok_stdin(&["apply", "-n", "team", "-f", "-"], &pod("mounted", "{}", "  serviceAccountName: builder\n"));
    let p = s.json(&["get", "pod", "mounted", "-n", "team"]);
    let volume = p["spec"]["volumes"][0]["name"].as_str().unwrap_or_default().to_string();
    assert!(volume.starts_with("kube-api-access-"), "{p}");
    assert_eq!(p["spec"]["containers"][0]["volumeMounts"][0]["mountPath"], "/var/run/secrets/kubernetes.io/serviceaccount");
    assert_eq!(p["spec"]["containers"][0]["volumeMounts"][0]["name"], volume.as_str());
    s.ok_stdin(&["apply", "-n", "team", "-f", "-"], &pod("plain", "{}", "  automountServiceAccountToken: false\n"));
    assert!(s.json(&["get", "pod", "plain", "-n", "team"])["spec"].get("volumes").is_none());
}
