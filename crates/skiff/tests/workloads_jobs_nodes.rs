//! Jobs, CronJobs, disruption budgets and node failure end to end: a real
//! `skiff server` (scheduler and controllers), simulated nodes from
//! `skiff agent --runtime sim`, and real kubectl.
//!
//! The servers here run with a short node monitor grace period
//! (`SKIFF_NODE_MONITOR_GRACE_PERIOD`), so a node whose agent is killed turns
//! unreachable within seconds rather than the upstream 50.

mod support;

use std::collections::HashMap;
use std::sync::Once;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{condition, is_ready, PodEvent, PodWatch, SimAgent, TestServer};

const WAIT: Duration = Duration::from_secs(90);

// === helpers ===

/// A `skiff agent --runtime sim` with `nodes` nodes named after `name`,
/// heartbeating every second.
fn agent(s: &TestServer, name: &str, nodes: usize) -> SimAgent {
    SimAgent::start(s, name, &["--nodes", &nodes.to_string(), "--heartbeat", "1s"])
}

/// A server whose node lifecycle controller notices a silent node after 6 s
/// (checking every second). The variables reach the server through the
/// environment it inherits; every test of this file wants the same values.
fn server() -> TestServer {
    static ENV: Once = Once::new();
    ENV.call_once(|| {
        std::env::set_var("SKIFF_NODE_MONITOR_GRACE_PERIOD", "6s");
        std::env::set_var("SKIFF_NODE_MONITOR_PERIOD", "1s");
    });
    TestServer::start()
}

/// A server with `nodes` simulated nodes in one agent, all ready.
fn cluster(nodes: usize) -> (TestServer, SimAgent) {
    let s = server();
    let agent = agent(&s, "sim", nodes);
    s.wait_for_ready_nodes(nodes, WAIT);
    (s, agent)
}

fn taints(s: &TestServer, node: &str) -> Vec<String> {
    let n = s.json(&["get", "node", node]);
    n["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| format!("{}:{}", t["key"].as_str().unwrap_or_default(), t["effect"].as_str().unwrap_or_default()))
        .collect()
}

/// Seconds since the epoch of an RFC 3339 time in UTC (`2025-01-02T03:04:05Z`).
fn unix_seconds(rfc3339: &str) -> i64 {
    let n = |r: std::ops::Range<usize>| rfc3339[r].parse::<i64>().unwrap();
    assert!(rfc3339.ends_with('Z') && rfc3339.len() == 20, "{rfc3339}");
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)
}

/// The most pods active at once (neither finished nor being deleted) after
/// any one of the watch `events`, and which they were.
fn max_active(events: &[PodEvent]) -> (usize, Vec<String>) {
    let mut active: HashMap<String, bool> = HashMap::new();
    let mut max = (0usize, Vec::new());
    for e in events {
        let is_active = e.kind != "DELETED" && e.phase != "Succeeded" && e.phase != "Failed" && !e.deleting;
        active.insert(e.name.clone(), is_active);
        let now: Vec<String> = active.iter().filter(|(_, a)| **a).map(|(n, _)| n.clone()).collect();
        if now.len() > max.0 {
            max = (now.len(), now);
        }
    }
    max
}

// === jobs ===

const JOB: &str = r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: pi
spec:
  completions: 5
  parallelism: 2
  template:
    metadata:
      annotations:
        sim.skiff.io/run-for: 1s
    spec:
      restartPolicy: Never
      containers:
      - name: pi
        image: perl:5.34
"#;

#[test]
fn a_job_runs_its_completions_never_more_than_parallelism_at_once() {
    let (s, _agent) = cluster(3);
    let watch = PodWatch::start(&s, "batch.kubernetes.io/job-name=pi");
    // Let the watch start before the first pod exists.
    std::thread::sleep(Duration::from_millis(500));
    s.ok_stdin(&["apply", "-f", "-"], JOB);
    s.ok(&["wait", "--for=condition=complete", "job/pi", "--timeout=90s"]);

    let job = s.json(&["get", "job", "pi"]);
    let status = &job["status"];
    assert_eq!(status["succeeded"], 5, "{status}");
    assert!(status["failed"].is_null() || status["failed"] == 0, "{status}");
    assert_eq!(status["active"].as_i64().unwrap_or(0), 0, "{status}");
    assert_eq!(status["ready"], 0);
    assert_eq!(status["terminating"], 0);
    assert!(status["startTime"].is_string() && status["completionTime"].is_string(), "{status}");
    assert_eq!(status["uncountedTerminatedPods"], serde_json::json!({}), "{status}");
    let criteria = condition(&job, "SuccessCriteriaMet").expect("SuccessCriteriaMet before Complete");
    assert_eq!(criteria["reason"], "CompletionsReached");
    let complete = condition(&job, "Complete").unwrap();
    assert_eq!((complete["status"].as_str(), complete["reason"].as_str()), (Some("True"), Some("CompletionsReached")));
    assert_eq!(complete["message"], "Reached expected number of succeeded pods");

    // The selector and the pods' labels are generated from the Job's uid.
    let uid = job["metadata"]["uid"].as_str().unwrap();
    assert_eq!(job["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"], uid);
    let pods = s.items(&["get", "pods", "-l", &format!("controller-uid={uid}")]);
    assert_eq!(pods.len(), 5, "one pod per completion, none failed");
    for p in &pods {
        let labels = &p["metadata"]["labels"];
        assert_eq!((labels["job-name"].as_str(), labels["batch.kubernetes.io/job-name"].as_str()), (Some("pi"), Some("pi")));
        assert_eq!(labels["batch.kubernetes.io/controller-uid"], uid);
        assert_eq!(p["status"]["phase"], "Succeeded");
        let finalizers = p["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
        assert!(!finalizers.iter().any(|f| f == "batch.kubernetes.io/job-tracking"), "counted pods lose the tracking finalizer: {}", p["metadata"]);
        let owner = &p["metadata"]["ownerReferences"][0];
        assert_eq!((owner["kind"].as_str(), owner["name"].as_str(), owner["controller"].as_bool()), (Some("Job"), Some("pi"), Some(true)));
        assert!(p["metadata"]["name"].as_str().unwrap().starts_with("pi-"));
    }

    let (max, at_once) = max_active(&watch.events());
    assert!(max >= 1 && max <= 2, "at most parallelism pods at once, saw {max}: {at_once:?}");

    let evs = s.event_messages("pi");
    assert_eq!(evs.iter().filter(|e| e.starts_with("SuccessfulCreate Created pod: pi-")).count(), 5, "{evs:?}");
    assert!(evs.iter().any(|e| e == "Completed Job completed"), "{evs:?}");
    let table = s.ok(&["get", "job", "pi"]);
    assert!(table.contains("Complete") && table.contains("5/5"), "{table}");
}

#[test]
fn an_indexed_job_gives_each_pod_its_completion_index() {
    let (s, _agent) = cluster(2);
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: indexed
spec:
  completions: 3
  parallelism: 3
  completionMode: Indexed
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: busybox
"#,
    );
    s.ok(&["wait", "--for=condition=complete", "job/indexed", "--timeout=90s"]);
    let job = s.json(&["get", "job", "indexed"]);
    assert_eq!(job["status"]["completedIndexes"], "0-2");
    assert_eq!(job["status"]["succeeded"], 3);
    let mut seen: Vec<(String, String, String)> = s.items(&["get", "pods", "-l", "batch.kubernetes.io/job-name=indexed"])
        .iter()
        .map(|p| {
            let index = p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"].as_str().unwrap().to_string();
            assert_eq!(p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"], index.as_str());
            let env = &p["spec"]["containers"][0]["env"][0];
            assert_eq!(env["name"], "JOB_COMPLETION_INDEX");
            assert_eq!(env["valueFrom"]["fieldRef"]["fieldPath"], "metadata.labels['batch.kubernetes.io/job-completion-index']");
            assert!(p["metadata"]["name"].as_str().unwrap().starts_with(&format!("indexed-{index}-")), "{}", p["metadata"]["name"]);
            (index, p["spec"]["hostname"].as_str().unwrap_or_default().to_string(), p["status"]["phase"].as_str().unwrap_or_default().to_string())
        })
        .collect();
    seen.sort();
    let want: Vec<(String, String, String)> = (0..3).map(|i| (i.to_string(), format!("indexed-{i}"), "Succeeded".to_string())).collect();
    assert_eq!(seen, want);
}

#[test]
fn a_failing_job_stops_at_its_backoff_limit() {
    let (s, _agent) = cluster(2);
    let started = Instant::now();
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: doomed
spec:
  backoffLimit: 2
  template:
    metadata:
      annotations:
        sim.skiff.io/exit-code: "1"
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox
"#,
    );
    // Three pods fail: the second after the 10 s back-off, the third after 20 s.
    s.ok(&["wait", "--for=condition=failed", "job/doomed", "--timeout=120s"]);
    let elapsed = started.elapsed();
    let job = s.json(&["get", "job", "doomed"]);
    let failed = condition(&job, "Failed").unwrap();
    assert_eq!(failed["status"], "True");
    assert_eq!(failed["reason"], "BackoffLimitExceeded");
    assert_eq!(failed["message"], "Job has reached the specified backoff limit");
    let target = condition(&job, "FailureTarget").expect("FailureTarget is set first");
    assert_eq!(target["reason"], "BackoffLimitExceeded");
    assert_eq!(job["status"]["failed"], 3, "{}", job["status"]);
    assert!(job["status"]["completionTime"].is_null());
    let pods = s.items(&["get", "pods", "-l", "job-name=doomed"]);
    assert_eq!(pods.len(), 3);
    for p in &pods {
        assert_eq!(p["status"]["phase"], "Failed");
        assert_eq!(p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"], 1);
    }
    assert!(elapsed >= Duration::from_secs(28), "replacements wait out the 10 s and 20 s back-off, took {elapsed:?}");
    let evs = s.event_messages("doomed");
    assert!(evs.iter().any(|e| e == "BackoffLimitExceeded Job has reached the specified backoff limit"), "{evs:?}");
}

#[test]
fn a_fail_job_rule_fails_the_job_at_the_first_matching_exit_code() {
    let (s, _agent) = cluster(1);
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: strict
spec:
  backoffLimit: 6
  podFailurePolicy:
    rules:
    - action: FailJob
      onExitCodes:
        containerName: main
        operator: In
        values: [42]
  template:
    metadata:
      annotations:
        sim.skiff.io/exit-code: "42"
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox
"#,
    );
    s.ok(&["wait", "--for=condition=failed", "job/strict", "--timeout=60s"]);
    let job = s.json(&["get", "job", "strict"]);
    let failed = condition(&job, "Failed").unwrap();
    assert_eq!(failed["reason"], "PodFailurePolicy");
    let pods = s.items(&["get", "pods", "-l", "job-name=strict"]);
    assert_eq!(pods.len(), 1, "no retries after a FailJob rule matched");
    let pod = pods[0]["metadata"]["name"].as_str().unwrap();
    assert_eq!(failed["message"].as_str().unwrap(), format!("Container main for pod default/{pod} failed with exit code 42 matching FailJob rule at index 0"));
}

#[test]
fn finished_jobs_with_a_ttl_are_deleted_with_their_pods() {
    let (s, _agent) = cluster(1);
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: ephemeral
spec:
  ttlSecondsAfterFinished: 2
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox
"#,
    );
    s.ok(&["wait", "--for=condition=complete", "job/ephemeral", "--timeout=60s"]);
    s.eventually("the Job to be deleted after its TTL", WAIT, || !s.kubectl(&["get", "job", "ephemeral"]).status.success());
    s.eventually("its pods to be collected", WAIT, || s.items(&["get", "pods", "-l", "job-name=ephemeral"]).is_empty());
}

// === cron jobs ===

#[test]
fn a_cron_job_starts_jobs_on_schedule_and_records_them() {
    let (s, _agent) = cluster(2);
    // `@every 3s` fires within seconds; names are per scheduled minute, so at
    // most one Job a minute results (as upstream's names make it).
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: batch/v1
kind: CronJob
metadata:
  name: tick
spec:
  schedule: "@every 3s"
  concurrencyPolicy: Forbid
  jobTemplate:
    metadata:
      labels:
        team: infra
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers:
          - name: tick
            image: busybox
"#,
    );
    let cj = s.json(&["get", "cronjob", "tick"]);
    let cj_uid = cj["metadata"]["uid"].as_str().unwrap().to_string();
    let mut job = Value::Null;
    s.eventually("a Job of the CronJob", WAIT, || {
        let jobs = s.items(&["get", "jobs"]);
        match jobs.into_iter().find(|j| j["metadata"]["ownerReferences"][0]["uid"] == cj_uid.as_str()) {
            Some(j) => {
                job = j;
                true
            }
            None => false,
        }
    });
    // No further runs: the status checks below then see this one only. A
    // suspended CronJob still follows the Jobs it has.
    s.ok(&["patch", "cronjob", "tick", "-p", r#"{"spec":{"suspend":true}}"#]);
    let name = job["metadata"]["name"].as_str().unwrap().to_string();
    let scheduled = job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"].as_str().expect("scheduled time annotation").to_string();
    let minutes = unix_seconds(&scheduled) / 60;
    assert_eq!(name, format!("tick-{minutes}"));
    assert_eq!(job["metadata"]["labels"]["team"], "infra");
    assert_eq!(job["metadata"]["ownerReferences"][0]["controller"], true);

    s.ok(&["wait", "--for=condition=complete", &format!("job/{name}"), "--timeout=60s"]);
    s.eventually("the CronJob to see its Job finish", WAIT, || {
        let cj = s.json(&["get", "cronjob", "tick"]);
        let st = &cj["status"];
        st["lastSuccessfulTime"].is_string() && st["active"].as_array().is_none_or(|a| a.is_empty()) && st["lastScheduleTime"].as_str() == Some(scheduled.as_str())
    });
    let evs = s.event_messages("tick");
    assert!(evs.iter().any(|e| e == &format!("SuccessfulCreate Created job {name}")), "{evs:?}");
    assert!(evs.iter().any(|e| e == &format!("SawCompletedJob Saw completed job: {name}, condition: Complete")), "{evs:?}");

    // kubectl's manual run is made client-side from the template.
    s.ok(&["create", "job", "manual", "--from=cronjob/tick"]);
    s.ok(&["wait", "--for=condition=complete", "job/manual", "--timeout=60s"]);
    let manual = s.json(&["get", "job", "manual"]);
    assert_eq!(manual["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"], "manual");

    let table = s.ok(&["get", "cronjob", "tick"]);
    assert!(table.contains("@every 3s") && table.contains("True"), "{table}");
}

// === disruption budgets and drain ===

const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 0
      containers:
      - name: web
        image: nginx
"#;

fn budget(min_available: &str) -> String {
    format!("apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: web\nspec:\n  minAvailable: {min_available}\n  selector:\n    matchLabels: {{app: web}}\n")
}

fn ready_web_pods(s: &TestServer) -> Vec<Value> {
    s.items(&["get", "pods", "-l", "app=web"])
        .into_iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null() && is_ready(p))
        .collect()
}

#[test]
fn drain_respects_the_disruption_budget_and_cordon_is_a_taint() {
    let (s, _agent) = cluster(3);
    s.ok_stdin(&["apply", "-f", "-"], WEB);
    s.ok_stdin(&["apply", "-f", "-"], &budget("2"));
    s.eventually("two ready web pods", WAIT, || ready_web_pods(&s).len() == 2);
    s.eventually("the budget's status", WAIT, || {
        let pdb = s.json(&["get", "pdb", "web"]);
        let st = &pdb["status"];
        st["currentHealthy"] == 2 && st["desiredHealthy"] == 2 && st["expectedPods"] == 2 && st["observedGeneration"] == pdb["metadata"]["generation"]
    });
    let pdb = s.json(&["get", "pdb", "web"]);
    assert_eq!(pdb["status"]["disruptionsAllowed"], 0);
    let c = condition(&pdb, "DisruptionAllowed").unwrap();
    assert_eq!((c["status"].as_str(), c["reason"].as_str()), (Some("False"), Some("InsufficientPods")));

    let victim = ready_web_pods(&s)[0]["spec"]["nodeName"].as_str().unwrap().to_string();
    let out = s.kubectl(&["drain", &victim, "--ignore-daemonsets", "--timeout=5s"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "drain must not get past the budget");
    assert!(stderr.contains("Cannot evict pod as it would violate the pod's disruption budget"), "{stderr}");
    // Draining cordoned the node, and the cordon shows as a taint.
    let node = s.json(&["get", "node", &victim]);
    assert_eq!(node["spec"]["unschedulable"], true);
    s.eventually("the unschedulable taint", WAIT, || taints(&s, &victim).contains(&"node.kubernetes.io/unschedulable:NoSchedule".to_string()));
    assert_eq!(ready_web_pods(&s).len(), 2, "nothing was evicted");

    s.ok_stdin(&["apply", "-f", "-"], &budget("1"));
    s.eventually("one disruption allowed", WAIT, || {
        let pdb = s.json(&["get", "pdb", "web"]);
        pdb["status"]["disruptionsAllowed"] == 1 && condition(&pdb, "DisruptionAllowed").is_some_and(|c| c["reason"] == "SufficientPods" && c["status"] == "True")
    });
    let out = s.ok(&["drain", &victim, "--ignore-daemonsets", "--timeout=60s"]);
    assert!(out.contains("drained"), "{out}");
    s.eventually("two ready web pods off the drained node", WAIT, || {
        let pods = ready_web_pods(&s);
        pods.len() == 2 && pods.iter().all(|p| p["spec"]["nodeName"] != victim.as_str())
    });

    s.ok(&["uncordon", &victim]);
    s.eventually("the unschedulable taint to go", WAIT, || !taints(&s, &victim).iter().any(|t| t.starts_with("node.kubernetes.io/unschedulable")));
}

#[test]
fn percentages_need_a_scalable_controller() {
    let (s, _agent) = cluster(1);
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: busy
spec:
  template:
    metadata:
      labels: {app: busy}
      annotations:
        sim.skiff.io/run-for: 10m
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: busy
spec:
  maxUnavailable: 50%
  selector:
    matchLabels: {app: busy}
"#,
    );
    s.eventually("the budget to fail safe", WAIT, || {
        let pdb = s.json(&["get", "pdb", "busy"]);
        condition(&pdb, "DisruptionAllowed").is_some_and(|c| c["reason"] == "SyncFailed" && c["message"] == "jobs.batch does not implement the scale subresource")
            && pdb["status"]["disruptionsAllowed"] == 0
    });
}

// === node failure ===

const FRAGILE: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: fragile
spec:
  replicas: 2
  selector:
    matchLabels: {app: fragile}
  template:
    metadata:
      labels: {app: fragile}
    spec:
      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}
      - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 2}
      containers:
      - name: app
        image: nginx
"#;

#[test]
fn pods_leave_a_node_that_stops_heartbeating() {
    let s = server();
    let _others = agent(&s, "sim", 2);
    s.wait_for_ready_nodes(2, WAIT);
    // Only the lone node takes pods at first.
    s.ok(&["cordon", "sim-0", "sim-1"]);
    let mut lone = agent(&s, "lone", 1);
    s.wait_for_ready_nodes(3, WAIT);
    s.ok_stdin(&["apply", "-f", "-"], FRAGILE);
    // A pod with only the default tolerations (five minutes).
    s.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: patient\nspec:\n  nodeName: lone\n  containers:\n  - name: app\n    image: nginx\n",
    );
    let on_lone = |s: &TestServer| {
        s.items(&["get", "pods", "-l", "app=fragile"])
            .into_iter()
            .filter(|p| p["spec"]["nodeName"] == "lone" && is_ready(p))
            .count()
    };
    s.eventually("both fragile pods running on the lone node", WAIT, || on_lone(&s) == 2);
    let patient = s.json(&["get", "pod", "patient"]);
    let defaults: Vec<(String, i64)> = patient["spec"]["tolerations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["key"].as_str().unwrap().to_string(), t["tolerationSeconds"].as_i64().unwrap()))
        .collect();
    assert_eq!(defaults, [("node.kubernetes.io/not-ready".to_string(), 300), ("node.kubernetes.io/unreachable".to_string(), 300)]);
    let doomed: Vec<String> = s.items(&["get", "pods", "-l", "app=fragile"]).iter().map(|p| p["metadata"]["name"].as_str().unwrap().to_string()).collect();
    s.ok(&["uncordon", "sim-0", "sim-1"]);

    lone.kill();
    s.eventually("the lone node to turn Unknown", WAIT, || {
        let node = s.json(&["get", "node", "lone"]);
        condition(&node, "Ready").is_some_and(|c| c["status"] == "Unknown" && c["reason"] == "NodeStatusUnknown" && c["message"] == "Kubelet stopped posting node status.")
    });
    s.eventually("the unreachable taints", WAIT, || {
        let t = taints(&s, "lone");
        t.contains(&"node.kubernetes.io/unreachable:NoExecute".to_string()) && t.contains(&"node.kubernetes.io/unreachable:NoSchedule".to_string())
    });
    s.eventually("two fragile pods ready elsewhere", WAIT, || {
        s.items(&["get", "pods", "-l", "app=fragile"])
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .filter(|p| p["spec"]["nodeName"] != "lone" && is_ready(p))
            .count()
            == 2
    });
    for name in &doomed {
        // The agent is gone, so the evicted pods stay terminating, as upstream.
        let pod = s.json(&["get", "pod", name]);
        assert!(pod["metadata"]["deletionTimestamp"].is_string(), "{name} was deleted");
        let target = condition(&pod, "DisruptionTarget").expect("DisruptionTarget before deletion");
        assert_eq!((target["status"].as_str(), target["reason"].as_str()), (Some("True"), Some("DeletionByTaintManager")));
        assert_eq!(target["message"], "Taint manager: deleting due to NoExecute taint");
        let evs = s.event_messages(name);
        assert!(evs.iter().any(|e| e == &format!("TaintManagerEviction Marking for deletion Pod default/{name}")), "{evs:?}");
        assert!(condition(&pod, "Ready").is_some_and(|c| c["status"] == "False"), "pods of a lost node are not ready");
    }
    // Five minutes of tolerance have not passed for the patient pod.
    let patient = s.json(&["get", "pod", "patient"]);
    assert!(patient["metadata"]["deletionTimestamp"].is_null());
    let node_events = s.event_messages("lone");
    assert!(node_events.iter().any(|e| e == "NodeNotReady Node lone status is now: NodeNotReady"), "{node_events:?}");
}
