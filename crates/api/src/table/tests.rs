use serde_json::json;

use super::*;
use crate::resources::lookup;

fn now() -> jiff::Timestamp {
    "2024-05-01T12:00:00Z".parse().unwrap()
}

/// The cells of `obj` keyed by column name.
fn row(group: &str, plural: &str, obj: Value) -> Vec<(&'static str, Value)> {
    let res = lookup(group, "v1", plural).unwrap();
    columns(res).iter().map(|c| c.name).zip(cells(res, &obj, now())).collect()
}

fn cell(row: &[(&'static str, Value)], name: &str) -> Value {
    row.iter().find(|(n, _)| *n == name).unwrap_or_else(|| panic!("no column {name}")).1.clone()
}

#[test]
fn every_resource_has_a_name_column_and_a_cell_per_column_even_for_empty_objects() {
    for res in crate::RESOURCES {
        let cols = columns(res);
        let name_at = cols.iter().position(|c| c.name == "Name" && c.format == "name");
        let events = res.kind == "Event";
        assert!(name_at.is_some(), "{} has no Name column", res.plural);
        if !events {
            assert_eq!(cols[0].name, "Name", "{}", res.plural);
        }
        for obj in [json!({}), json!({"metadata": null, "spec": 5, "status": []})] {
            assert_eq!(cells(res, &obj, now()).len(), cols.len(), "{}", res.plural);
        }
        assert!(cols.iter().all(|c| c.priority <= 1 && !c.type_.is_empty() && !c.description.is_empty()), "{}", res.plural);
    }
}

#[test]
fn cells_survive_fields_of_the_wrong_type_and_extreme_values() {
    let odd = [
        json!({"metadata": {"name": 5, "creationTimestamp": "yesterday", "labels": [1], "ownerReferences": {}}}),
        json!({"metadata": {"creationTimestamp": "9000-01-01T00:00:00Z", "deletionTimestamp": 1}, "spec": [], "status": "x"}),
        json!({"spec": {"containers": "x", "initContainers": [5], "ports": [5, null, {"port": "x", "nodePort": -1}],
                        "selector": "x", "replicas": "3", "completions": -1, "capacity": {"storage": 7}},
               "status": {"containerStatuses": [{"restartCount": i64::MAX}, {"restartCount": i64::MAX}],
                          "initContainerStatuses": [{"state": {"terminated": null}}, 3],
                          "conditions": "x", "addresses": [{}], "hard": {"a/b~c": "1"}, "used": []},
               "subsets": [{"addresses": [{}], "ports": [{}]}, 1], "endpoints": [{"addresses": [1]}],
               "series": {}, "involvedObject": [], "regarding": "x"}),
    ];
    for res in crate::RESOURCES {
        for obj in &odd {
            assert_eq!(cells(res, obj, now()).len(), columns(res).len(), "{}", res.plural);
        }
    }
    let far_past = jiff::Timestamp::MIN;
    let pod = json!({"metadata": {"creationTimestamp": "9000-01-01T00:00:00Z"}});
    let pods = lookup("", "v1", "pods").unwrap();
    assert_eq!(cells(pods, &pod, far_past)[4], "<invalid>");
    assert_eq!(cells(pods, &pod, "9000-01-01T00:00:00Z".parse().unwrap())[4], "0s");
}

#[test]
fn a_running_pod_prints_ready_status_restarts_and_wide_cells() {
    let r = row(
        "",
        "pods",
        json!({
            "metadata": {"name": "web", "creationTimestamp": "2024-05-01T11:57:40Z"},
            "spec": {"nodeName": "n1", "containers": [{"name": "a"}, {"name": "b"}]},
            "status": {
                "phase": "Running",
                "podIPs": [{"ip": "10.1.0.5"}],
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [
                    {"name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}},
                    {"name": "b", "ready": true, "restartCount": 2, "state": {"running": {}},
                     "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:55:00Z"}}},
                ],
            },
        }),
    );
    assert_eq!(cell(&r, "Name"), "web");
    assert_eq!(cell(&r, "Ready"), "2/2");
    assert_eq!(cell(&r, "Status"), "Running");
    assert_eq!(cell(&r, "Restarts"), "2 (5m ago)");
    assert_eq!(cell(&r, "Age"), "2m20s");
    assert_eq!(cell(&r, "IP"), "10.1.0.5");
    assert_eq!(cell(&r, "Node"), "n1");
    assert_eq!(cell(&r, "Nominated Node"), "<none>");
    assert_eq!(cell(&r, "Readiness Gates"), "<none>");
}

#[test]
fn a_pod_waiting_on_init_containers_shows_init_progress() {
    let pod = |init_state: Value| {
        json!({
            "metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "setup"}, {"name": "migrate"}], "containers": [{"name": "app"}]},
            "status": {
                "phase": "Pending",
                "initContainerStatuses": [
                    {"name": "setup", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                    {"name": "migrate", "state": init_state},
                ],
                "containerStatuses": [{"name": "app", "state": {"waiting": {"reason": "PodInitializing"}}}],
            },
        })
    };
    let r = row("", "pods", pod(json!({"running": {}})));
    assert_eq!(cell(&r, "Status"), "Init:1/2");
    assert_eq!(cell(&r, "Ready"), "0/1");
    let r = row("", "pods", pod(json!({"waiting": {"reason": "ImagePullBackOff"}})));
    assert_eq!(cell(&r, "Status"), "Init:ImagePullBackOff");
    let r = row("", "pods", pod(json!({"terminated": {"exitCode": 3}})));
    assert_eq!(cell(&r, "Status"), "Init:ExitCode:3");
    let r = row(
        "",
        "pods",
        json!({
            "spec": {"initContainers": [{"name": "i"}], "containers": [{"name": "c"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [{"name": "i", "state": {"waiting": {"reason": "PodInitializing"}}}]},
        }),
    );
    assert_eq!(cell(&r, "Status"), "Init:0/1");
}

#[test]
fn a_deleted_pod_is_terminating_unless_it_already_finished() {
    let pod = |phase: &str, reason: &str| {
        json!({
            "metadata": {"name": "p", "deletionTimestamp": "2024-05-01T11:59:00Z"},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": phase, "reason": reason,
                       "containerStatuses": [{"name": "c", "ready": true, "state": {"running": {}}}]},
        })
    };
    assert_eq!(cell(&row("", "pods", pod("Running", "")), "Status"), "Terminating");
    assert_eq!(cell(&row("", "pods", pod("Running", "NodeLost")), "Status"), "Unknown");
    let done = json!({"metadata": {"deletionTimestamp": "2024-05-01T11:59:00Z"}, "status": {"phase": "Succeeded"}});
    assert_eq!(cell(&row("", "pods", done), "Status"), "Succeeded");
}

#[test]
fn container_states_set_the_pod_status() {
    let pod = |states: Value, conditions: Value| {
        json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]},
               "status": {"phase": "Running", "conditions": conditions, "containerStatuses": states}})
    };
    let crash = pod(json!([{"name": "a", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]), json!([]));
    assert_eq!(cell(&row("", "pods", crash), "Status"), "CrashLoopBackOff");
    let one_done = pod(
        json!([
            {"name": "a", "ready": true, "state": {"running": {}}},
            {"name": "b", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
        ]),
        json!([{"type": "Ready", "status": "False"}]),
    );
    assert_eq!(cell(&row("", "pods", one_done), "Status"), "NotReady");
    let killed = pod(json!([{"name": "a", "state": {"terminated": {"exitCode": 137, "signal": 9}}}]), json!([]));
    assert_eq!(cell(&row("", "pods", killed), "Status"), "Signal:9");
}

#[test]
fn a_node_port_service_prints_both_ports() {
    let r = row(
        "",
        "services",
        json!({
            "metadata": {"name": "web", "creationTimestamp": "2024-04-28T09:00:00Z"},
            "spec": {
                "type": "NodePort",
                "clusterIP": "10.96.0.10",
                "clusterIPs": ["10.96.0.10"],
                "selector": {"tier": "front", "app": "web"},
                "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
            },
        }),
    );
    assert_eq!(cell(&r, "Type"), "NodePort");
    assert_eq!(cell(&r, "Cluster-IP"), "10.96.0.10");
    assert_eq!(cell(&r, "External-IP"), "<none>");
    assert_eq!(cell(&r, "Port(s)"), "80:30080/TCP,53/UDP");
    assert_eq!(cell(&r, "Age"), "3d3h");
    assert_eq!(cell(&r, "Selector"), "app=web,tier=front");
}

#[test]
fn load_balancers_are_pending_until_they_have_an_address() {
    let lb = |status: Value| json!({"spec": {"type": "LoadBalancer", "ports": []}, "status": status});
    assert_eq!(cell(&row("", "services", lb(json!({}))), "External-IP"), "<pending>");
    let ready = lb(json!({"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}, {"hostname": "lb.example"}]}}));
    assert_eq!(cell(&row("", "services", ready.clone()), "External-IP"), "1.2.3.4,lb.example");
    assert_eq!(cell(&row("", "services", ready), "Port(s)"), "<none>");
    let headless = json!({"spec": {"clusterIP": "None", "ports": [{"port": 80}]}});
    assert_eq!(cell(&row("", "services", headless.clone()), "Cluster-IP"), "None");
    assert_eq!(cell(&row("", "services", headless), "Port(s)"), "80/TCP");
}

#[test]
fn a_deployment_prints_ready_over_desired_and_its_template() {
    let r = row(
        "apps",
        "deployments",
        json!({
            "metadata": {"name": "web", "creationTimestamp": "2024-05-01T10:00:00Z"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}, {"name": "log", "image": "busybox"}]}},
            },
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
        }),
    );
    assert_eq!(cell(&r, "Ready"), "2/3");
    assert_eq!(cell(&r, "Up-to-date"), 3);
    assert_eq!(cell(&r, "Available"), 2);
    assert_eq!(cell(&r, "Age"), "120m");
    assert_eq!(cell(&r, "Containers"), "nginx,log");
    assert_eq!(cell(&r, "Images"), "nginx:1.27,busybox");
    assert_eq!(cell(&r, "Selector"), "app=web");
}

#[test]
fn human_durations_match_upstream_at_every_boundary() {
    let s = |secs: u64| human_duration(Duration::from_secs(secs));
    assert_eq!(s(0), "0s");
    assert_eq!(s(119), "119s");
    assert_eq!(s(120), "2m");
    assert_eq!(s(200), "3m20s");
    assert_eq!(s(599), "9m59s");
    assert_eq!(s(600), "10m");
    assert_eq!(s(3 * 3600 - 1), "179m");
    assert_eq!(s(3 * 3600), "3h");
    assert_eq!(s(3 * 3600 + 5 * 60), "3h5m");
    assert_eq!(s(8 * 3600), "8h");
    assert_eq!(s(47 * 3600 + 59 * 60), "47h");
    assert_eq!(s(48 * 3600), "2d");
    assert_eq!(s(51 * 3600), "2d3h");
    assert_eq!(s(8 * 86400), "8d");
    assert_eq!(s(45 * 86400), "45d");
    assert_eq!(s(730 * 86400 - 1), "729d");
    assert_eq!(s(730 * 86400), "2y");
    assert_eq!(s(3 * 365 * 86400 + 10 * 86400), "3y10d");
    assert_eq!(s(8 * 365 * 86400 + 10 * 86400), "8y");
    assert_eq!(human_duration(Duration::from_millis(1999)), "1s");
    // Clock skew: up to a second in the future reads as now, more is invalid.
    assert_eq!(human_nanos(-1_500_000_000), "0s");
    assert_eq!(human_nanos(-2_000_000_000), "<invalid>");
}

#[test]
fn ages_are_unknown_without_a_creation_timestamp() {
    let r = row("", "configmaps", json!({"metadata": {"name": "c"}, "data": {"a": "1"}, "binaryData": {"b": "AA=="}}));
    assert_eq!(cell(&r, "Data"), 2);
    assert_eq!(cell(&r, "Age"), "<unknown>");
    let r = row("", "configmaps", json!({"metadata": {"creationTimestamp": "0001-01-01T00:00:00Z"}}));
    assert_eq!(cell(&r, "Age"), "<unknown>");
}

#[test]
fn a_node_prints_conditions_roles_and_addresses() {
    let r = row(
        "",
        "nodes",
        json!({
            "metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "edge"}},
            "spec": {"unschedulable": true},
            "status": {
                "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "False"}],
                "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}],
                "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Debian"},
            },
        }),
    );
    assert_eq!(cell(&r, "Status"), "NotReady,SchedulingDisabled");
    assert_eq!(cell(&r, "Roles"), "control-plane,edge");
    assert_eq!(cell(&r, "Version"), "v1.33.0");
    assert_eq!(cell(&r, "Internal-IP"), "192.168.1.10");
    assert_eq!(cell(&r, "External-IP"), "<none>");
    assert_eq!(cell(&r, "Kernel-Version"), "<unknown>");
    let bare = row("", "nodes", json!({}));
    assert_eq!(cell(&bare, "Status"), "Unknown");
    assert_eq!(cell(&bare, "Roles"), "<none>");
}

#[test]
fn endpoints_abbreviate_after_three_addresses() {
    let r = row(
        "",
        "endpoints",
        json!({"subsets": [{
            "addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "fd00::3"}, {"ip": "10.0.0.4"}],
            "ports": [{"port": 80}, {"port": 443}],
        }]}),
    );
    assert_eq!(cell(&r, "Endpoints"), "10.0.0.1:80,10.0.0.2:80,[fd00::3]:80 + 5 more...");
    assert_eq!(cell(&row("", "endpoints", json!({})), "Endpoints"), "<none>");
}

#[test]
fn events_print_object_source_and_counts_in_both_apis() {
    let core = row(
        "",
        "events",
        json!({
            "metadata": {"name": "web.17a"},
            "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{nginx}"},
            "reason": "Pulled", "type": "Normal", "message": " pulled \n",
            "source": {"component": "kubelet", "host": "n1"},
            "firstTimestamp": "2024-05-01T11:00:00Z", "lastTimestamp": "2024-05-01T11:59:30Z", "count": 3,
        }),
    );
    assert_eq!(core[0].0, "Last Seen");
    assert_eq!(cell(&core, "Last Seen"), "30s");
    assert_eq!(cell(&core, "Object"), "pod/web");
    assert_eq!(cell(&core, "Subobject"), "spec.containers{nginx}");
    assert_eq!(cell(&core, "Source"), "kubelet, n1");
    assert_eq!(cell(&core, "Message"), "pulled");
    assert_eq!(cell(&core, "First Seen"), "60m");
    assert_eq!(cell(&core, "Count"), 3);
    assert_eq!(cell(&core, "Name"), "web.17a");

    let events = lookup("events.k8s.io", "v1", "events").unwrap();
    let ev = json!({
        "metadata": {"name": "e"},
        "regarding": {"kind": "Node", "name": "n1"},
        "note": "rebooted", "reason": "Rebooted", "type": "Warning",
        "eventTime": "2024-05-01T11:58:00.000000Z", "reportingController": "kubelet", "reportingInstance": "n1",
    });
    let r: Vec<_> = columns(events).iter().map(|c| c.name).zip(cells(events, &ev, now())).collect();
    assert_eq!(cell(&r, "Last Seen"), "2m");
    assert_eq!(cell(&r, "Object"), "node/n1");
    assert_eq!(cell(&r, "Source"), "kubelet, n1");
    assert_eq!(cell(&r, "Message"), "rebooted");
    assert_eq!(cell(&r, "Count"), 1);
}

#[test]
fn jobs_and_cron_jobs_print_status_completions_and_schedule() {
    let r = row(
        "batch",
        "jobs",
        json!({
            "spec": {"completions": 3, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}}},
            "status": {"succeeded": 3, "startTime": "2024-05-01T11:00:00Z", "completionTime": "2024-05-01T11:00:42Z",
                       "conditions": [{"type": "Complete", "status": "True"}]},
        }),
    );
    assert_eq!(cell(&r, "Status"), "Complete");
    assert_eq!(cell(&r, "Completions"), "3/3");
    assert_eq!(cell(&r, "Duration"), "42s");
    assert_eq!(cell(&r, "Selector"), "batch.kubernetes.io/controller-uid=u");
    let running = row("batch", "jobs", json!({"spec": {"parallelism": 2}, "status": {"startTime": "2024-05-01T11:50:00Z"}}));
    assert_eq!(cell(&running, "Status"), "Running");
    assert_eq!(cell(&running, "Completions"), "0/1 of 2");
    assert_eq!(cell(&running, "Duration"), "10m");
    assert_eq!(cell(&running, "Selector"), "<none>");

    let cj = row("batch", "cronjobs", json!({"spec": {"schedule": "*/5 * * * *"}, "status": {"active": [{}]}}));
    assert_eq!(cell(&cj, "Schedule"), "*/5 * * * *");
    assert_eq!(cell(&cj, "Timezone"), "<none>");
    assert_eq!(cell(&cj, "Suspend"), "False");
    assert_eq!(cell(&cj, "Active"), 1);
    assert_eq!(cell(&cj, "Last Schedule"), "<none>");
}

#[test]
fn the_remaining_kinds_print_upstream_cells() {
    let rs = row("apps", "replicasets", json!({"spec": {"replicas": 2}, "status": {"replicas": 2, "readyReplicas": 1}}));
    assert_eq!((cell(&rs, "Desired"), cell(&rs, "Current"), cell(&rs, "Ready")), (json!(2), json!(2), json!(1)));
    let sts = row("apps", "statefulsets", json!({"status": {"readyReplicas": 1}}));
    assert_eq!(cell(&sts, "Ready"), "1/1");
    let ds = row("apps", "daemonsets", json!({"spec": {"template": {"spec": {"nodeSelector": {"os": "linux"}}}}}));
    assert_eq!(cell(&ds, "Node Selector"), "os=linux");
    let cr = row(
        "apps",
        "controllerrevisions",
        json!({"metadata": {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "controller": true}]},
               "revision": 4}),
    );
    assert_eq!((cell(&cr, "Controller"), cell(&cr, "Revision")), (json!("statefulset.apps/db"), json!(4)));

    let secret = row("", "secrets", json!({"type": "Opaque", "data": {"a": "", "b": ""}}));
    assert_eq!((cell(&secret, "Type"), cell(&secret, "Data")), (json!("Opaque"), json!(2)));
    let sa = row("", "serviceaccounts", json!({"secrets": [{"name": "t"}]}));
    assert_eq!(cell(&sa, "Secrets"), 1);
    let ns = row("", "namespaces", json!({"status": {"phase": "Active"}}));
    assert_eq!(cell(&ns, "Status"), "Active");

    let pv = row(
        "",
        "persistentvolumes",
        json!({"spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
                        "persistentVolumeReclaimPolicy": "Retain", "claimRef": {"namespace": "d", "name": "data"},
                        "storageClassName": "fast"},
               "status": {"phase": "Bound"}}),
    );
    assert_eq!(cell(&pv, "Capacity"), "10Gi");
    assert_eq!(cell(&pv, "Access Modes"), "RWO,RWX");
    assert_eq!(cell(&pv, "Claim"), "d/data");
    assert_eq!(cell(&pv, "StorageClass"), "fast");
    assert_eq!(cell(&pv, "VolumeAttributesClass"), "<unset>");
    let pvc = row("", "persistentvolumeclaims", json!({"status": {"phase": "Pending", "capacity": {"storage": "1Gi"}}}));
    assert_eq!((cell(&pvc, "Status"), cell(&pvc, "Capacity")), (json!("Pending"), json!("")));

    let quota = row(
        "",
        "resourcequotas",
        json!({"status": {"hard": {"pods": "10", "limits.cpu": "2", "requests.memory": "1Gi"},
                          "used": {"pods": "3", "limits.cpu": "500m"}}}),
    );
    assert_eq!(cell(&quota, "Request"), "pods: 3/10, requests.memory: 0/1Gi");
    assert_eq!(cell(&quota, "Limit"), "limits.cpu: 500m/2");

    let limits = row("", "limitranges", json!({"metadata": {"name": "l", "creationTimestamp": "2024-05-01T10:00:00Z"}}));
    assert_eq!(limits.iter().map(|(n, _)| *n).collect::<Vec<_>>(), ["Name", "Created At"]);
    assert_eq!(cell(&limits, "Created At"), "2024-05-01T10:00:00Z");

    let slice = row(
        "discovery.k8s.io",
        "endpointslices",
        json!({"addressType": "IPv4", "ports": [{"port": 80}, {"name": "dns"}, {}, {"port": 9}],
               "endpoints": [{"addresses": ["10.0.0.1"]}]}),
    );
    assert_eq!(cell(&slice, "Ports"), "80,dns,* + 1 more...");
    assert_eq!(cell(&slice, "Endpoints"), "10.0.0.1");
    assert_eq!(cell(&row("discovery.k8s.io", "endpointslices", json!({})), "Endpoints"), "<unset>");

    let lease = row("coordination.k8s.io", "leases", json!({"spec": {"holderIdentity": "skiff-1"}}));
    assert_eq!(cell(&lease, "Holder"), "skiff-1");
    let rc = row("node.k8s.io", "runtimeclasses", json!({"handler": "runc"}));
    assert_eq!(cell(&rc, "Handler"), "runc");
}

#[test]
fn disruption_budgets_print_their_budget_and_allowance() {
    let pdb = row("policy", "poddisruptionbudgets", json!({"spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 2}}));
    assert_eq!(pdb.iter().map(|(n, _)| *n).collect::<Vec<_>>(), ["Name", "Min Available", "Max Unavailable", "Allowed Disruptions", "Age"]);
    assert_eq!((cell(&pdb, "Min Available"), cell(&pdb, "Max Unavailable")), (json!("50%"), json!("N/A")));
    assert_eq!(cell(&pdb, "Allowed Disruptions"), 2);
    let by_count = row("policy", "poddisruptionbudgets", json!({"spec": {"maxUnavailable": 1}}));
    assert_eq!((cell(&by_count, "Min Available"), cell(&by_count, "Max Unavailable")), (json!("N/A"), json!("1")));
}

#[test]
fn priority_classes_print_value_default_and_policy() {
    let pc = row("scheduling.k8s.io", "priorityclasses", json!({"value": 2000000000, "preemptionPolicy": "PreemptLowerPriority"}));
    assert_eq!(pc.iter().map(|(n, _)| *n).collect::<Vec<_>>(), ["Name", "Value", "Global-Default", "Age", "PreemptionPolicy"]);
    assert_eq!((cell(&pc, "Value"), cell(&pc, "Global-Default")), (json!(2000000000), json!(false)));
    assert_eq!(cell(&pc, "PreemptionPolicy"), "PreemptLowerPriority");
    assert_eq!(cell(&row("scheduling.k8s.io", "priorityclasses", json!({})), "PreemptionPolicy"), "Unknown");
}

#[test]
fn storage_classes_mark_the_default_and_print_unset_policies_as_their_defaults() {
    let sc = row(
        "storage.k8s.io",
        "storageclasses",
        json!({"metadata": {"name": "local-path", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}, "provisioner": "skiff.io/local-path", "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"}),
    );
    assert_eq!(sc.iter().map(|(n, _)| *n).collect::<Vec<_>>(), ["Name", "Provisioner", "ReclaimPolicy", "VolumeBindingMode", "AllowVolumeExpansion", "Age"]);
    assert_eq!(cell(&sc, "Name"), "local-path (default)");
    assert_eq!((cell(&sc, "Provisioner"), cell(&sc, "VolumeBindingMode"), cell(&sc, "AllowVolumeExpansion")), (json!("skiff.io/local-path"), json!("WaitForFirstConsumer"), json!(false)));
    let bare = row("storage.k8s.io", "storageclasses", json!({"metadata": {"name": "slow"}, "provisioner": "example.com/nfs", "allowVolumeExpansion": true}));
    assert_eq!((cell(&bare, "Name"), cell(&bare, "ReclaimPolicy"), cell(&bare, "VolumeBindingMode")), (json!("slow"), json!("Delete"), json!("Immediate")));
    assert_eq!(cell(&bare, "AllowVolumeExpansion"), true);
}

#[test]
fn ingresses_print_class_hosts_address_and_ports() {
    let ing = row(
        "networking.k8s.io",
        "ingresses",
        json!({
            "metadata": {"name": "web", "creationTimestamp": "2024-05-01T11:59:00Z"},
            "spec": {"ingressClassName": "skiff", "rules": [{"host": "a.example.com"}, {"http": {}}, {"host": "b.example.com"}], "tls": [{"hosts": ["a.example.com"]}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.2"}, {"hostname": "lb.example.com"}, {"ip": "10.0.0.1", "hostname": "ignored"}, {"ip": "10.0.0.2"}]}},
        }),
    );
    assert_eq!(ing.iter().map(|(n, _)| *n).collect::<Vec<_>>(), ["Name", "Class", "Hosts", "Address", "Ports", "Age"]);
    assert_eq!(cell(&ing, "Class"), "skiff");
    assert_eq!(cell(&ing, "Hosts"), "a.example.com,b.example.com");
    assert_eq!(cell(&ing, "Address"), "10.0.0.1,10.0.0.2,lb.example.com");
    assert_eq!(cell(&ing, "Ports"), "80, 443");
    assert_eq!(cell(&ing, "Age"), "60s");
    let bare = row("networking.k8s.io", "ingresses", json!({"spec": {"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}}}));
    assert_eq!((cell(&bare, "Class"), cell(&bare, "Hosts"), cell(&bare, "Address"), cell(&bare, "Ports")), (json!("<none>"), json!("*"), json!(""), json!("80")));
}

#[test]
fn ingress_hosts_beyond_three_are_counted_by_rule() {
    let rules: Vec<Value> = ["a", "b", "c", "d", ""].iter().map(|h| json!({"host": h})).collect();
    let ing = row("networking.k8s.io", "ingresses", json!({"spec": {"rules": rules}}));
    assert_eq!(cell(&ing, "Hosts"), "a,b,c + 2 more...");
}

#[test]
fn ingress_classes_print_controller_and_parameters() {
    let ic = row(
        "networking.k8s.io",
        "ingressclasses",
        json!({"spec": {"controller": "skiff.io/gateway", "parameters": {"apiGroup": "skiff.io", "kind": "GatewayConfig", "name": "default"}}}),
    );
    assert_eq!(ic.iter().map(|(n, _)| *n).collect::<Vec<_>>(), ["Name", "Controller", "Parameters", "Age"]);
    assert_eq!((cell(&ic, "Controller"), cell(&ic, "Parameters")), (json!("skiff.io/gateway"), json!("GatewayConfig.skiff.io/default")));
    let core = row("networking.k8s.io", "ingressclasses", json!({"spec": {"controller": "k8s.io/ingress-nginx", "parameters": {"kind": "ConfigMap", "name": "nginx"}}}));
    assert_eq!(cell(&core, "Parameters"), "ConfigMap/nginx");
    assert_eq!(cell(&row("networking.k8s.io", "ingressclasses", json!({"spec": {}})), "Parameters"), "<none>");
}

#[test]
fn network_policies_print_their_pod_selector() {
    let np = row("networking.k8s.io", "networkpolicies", json!({"spec": {"podSelector": {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]}}}));
    assert_eq!(np.iter().map(|(n, _)| *n).collect::<Vec<_>>(), ["Name", "Pod-Selector", "Age"]);
    assert_eq!(cell(&np, "Pod-Selector"), "app=web,tier notin (db)");
    assert_eq!(cell(&row("networking.k8s.io", "networkpolicies", json!({"spec": {"podSelector": {}}})), "Pod-Selector"), "<none>");
    assert_eq!(cell(&row("networking.k8s.io", "networkpolicies", json!({})), "Pod-Selector"), "<none>");
}
