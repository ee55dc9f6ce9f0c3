//! A valid object of every served kind, as a client would send it (before defaults),
//! with what the server fills in before defaulting (namespace, uid). Tests use them to
//! catch rules stricter than upstream's.

use serde_json::{json, Value};

use crate::ResourceInfo;

const CERT: &str = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==";

fn pod_spec() -> Value {
    json!({
        "serviceAccountName": "default",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}, {"operator": "Exists"}],
        "affinity": {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64", "arm64"]}]}]}},
            "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}}]}
        },
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"app": "web"}}}],
        "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 2000, "runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "initContainers": [
            {"name": "init", "image": "busybox:1.36", "command": ["sh", "-c", "true"]},
            {"name": "sidecar", "image": "envoyproxy/envoy:v1.30", "restartPolicy": "Always", "readinessProbe": {"tcpSocket": {"port": 9901}}}
        ],
        "containers": [{
            "name": "web",
            "image": "nginx:1.27",
            "args": ["--port", "8080"],
            "ports": [{"name": "http", "containerPort": 8080}, {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}],
            "env": [
                {"name": "MODE", "value": "prod"},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "APP_LABEL", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "CPU_LIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token", "optional": true}}},
                {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "log.level"}}}
            ],
            "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
            "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}},
            "volumeMounts": [{"name": "config", "mountPath": "/etc/app", "readOnly": true}, {"name": "cache", "mountPath": "/cache"}, {"name": "token", "mountPath": "/var/run/token"}, {"name": "info", "mountPath": "/etc/podinfo"}],
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http", "httpHeaders": [{"name": "X-Probe", "value": "1"}]}, "initialDelaySeconds": 5},
            "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}},
            "startupProbe": {"grpc": {"port": 9090}, "failureThreshold": 30},
            "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
            "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": true}
        }],
        "volumes": [
            {"name": "config", "configMap": {"name": "settings", "items": [{"key": "app.yaml", "path": "app.yaml"}]}},
            {"name": "cache", "emptyDir": {"sizeLimit": "1Gi"}},
            {"name": "token", "projected": {"sources": [{"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}}, {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]}},
            {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}, {"path": "cpu", "resourceFieldRef": {"containerName": "web", "resource": "requests.cpu"}}]}},
            {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 256}}
        ]
    })
}

fn template(labels: Value) -> Value {
    json!({"metadata": {"labels": labels, "annotations": {"kubectl.kubernetes.io/restartedAt": "2024-01-01T00:00:00Z"}}, "spec": pod_spec()})
}

fn meta(name: &str, ns: Option<&str>) -> Value {
    let mut m = json!({"name": name, "uid": "6b8f2a1e-3c4d-4e5f-8a9b-0c1d2e3f4a5b", "labels": {"app.kubernetes.io/name": name}, "annotations": {"example.com/owner": "team-a"}});
    if let Some(ns) = ns {
        m["namespace"] = json!(ns);
    }
    m
}

/// A valid object of `res`'s kind.
pub(crate) fn fixture(res: &ResourceInfo) -> Value {
    let ns = res.namespaced.then_some("default");
    let mut obj = match (res.group, res.kind) {
        ("", "Namespace") => json!({"metadata": meta("team-a", None)}),
        ("", "Pod") => {
            let mut spec = pod_spec();
            spec["hostname"] = json!("web-0");
            spec["subdomain"] = json!("web");
            json!({"metadata": meta("web-0", ns), "spec": spec})
        }
        ("", "Service") => json!({"metadata": meta("web", ns), "spec": {
            "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}, {"name": "metrics", "port": 9090, "appProtocol": "http"}],
            "sessionAffinity": "ClientIP"
        }}),
        ("", "Endpoints") => json!({"metadata": meta("web", ns), "subsets": [{
            "addresses": [{"ip": "10.244.0.5", "nodeName": "node-1", "targetRef": {"kind": "Pod", "name": "web-0", "namespace": "default"}}],
            "notReadyAddresses": [{"ip": "10.244.0.6", "hostname": "web-1"}],
            "ports": [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9090, "protocol": "TCP"}]
        }]}),
        ("", "ConfigMap") => {
            json!({"metadata": meta("settings", ns), "data": {"app.yaml": "level: info\n", "log.level": "debug", "KEY_NAME": "v"}, "binaryData": {"logo.png": "iVBORw0KGgo="}})
        }
        ("", "Secret") => {
            json!({"metadata": meta("tls", ns), "type": "kubernetes.io/tls", "data": {"tls.crt": CERT, "tls.key": CERT}, "stringData": {"note": "hello"}})
        }
        ("", "ServiceAccount") => {
            json!({"metadata": meta("builder", ns), "secrets": [{"name": "builder-token"}], "automountServiceAccountToken": false})
        }
        ("", "Node") => json!({"metadata": meta("node-1", None), "spec": {
            "podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"], "providerID": "skiff://node-1",
            "taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]
        }, "status": {
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110", "ephemeral-storage": "100Gi"},
            "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}, {"type": "Hostname", "address": "node-1"}],
            "conditions": [{"type": "Ready", "status": "True"}]
        }}),
        ("", "Event") => json!({"metadata": meta("web-0.17a1b2c3d4e5f6a7", ns),
            "involvedObject": {"kind": "Pod", "name": "web-0", "namespace": "default", "apiVersion": "v1"},
            "reason": "Scheduled", "message": "Successfully assigned default/web-0 to node-1", "type": "Normal",
            "source": {"component": "default-scheduler"}, "firstTimestamp": "2024-01-01T00:00:00Z", "lastTimestamp": "2024-01-01T00:00:00Z", "count": 1}),
        ("", "PersistentVolume") => json!({"metadata": meta("pv-1", None), "spec": {
            "capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "manual", "hostPath": {"path": "/mnt/data"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-1"]}]}]}}
        }}),
        ("", "PersistentVolumeClaim") => json!({"metadata": meta("data", ns), "spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": "manual",
            "selector": {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["cold"]}]}
        }}),
        ("", "ResourceQuota") => json!({"metadata": meta("quota", ns), "spec": {
            "hard": {"pods": "10", "requests.cpu": "4", "limits.memory": "8Gi", "count/deployments.apps": "5", "requests.nvidia.com/gpu": "1"},
            "scopeSelector": {"matchExpressions": [{"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}
        }}),
        ("", "LimitRange") => json!({"metadata": meta("limits", ns), "spec": {"limits": [
            {"type": "Container", "default": {"cpu": "500m"}, "defaultRequest": {"cpu": "100m"}, "max": {"cpu": "2", "memory": "1Gi"}, "min": {"cpu": "10m"}, "maxLimitRequestRatio": {"cpu": "10"}},
            {"type": "Pod", "max": {"memory": "2Gi"}},
            {"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}, "max": {"storage": "10Gi"}}
        ]}}),
        ("apps", "Deployment") => json!({"metadata": meta("web", ns), "spec": {
            "replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template(json!({"app": "web", "tier": "frontend"})),
            "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": "10%"}}, "minReadySeconds": 5
        }}),
        ("apps", "ReplicaSet") => json!({"metadata": meta("web-5d4b8c7f9", ns), "spec": {
            "replicas": 2, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "5d4b8c7f9"}}, "template": template(json!({"app": "web", "pod-template-hash": "5d4b8c7f9"}))
        }}),
        ("apps", "StatefulSet") => {
            let mut t = template(json!({"app": "db"}));
            t["spec"]["containers"][0]["volumeMounts"].as_array_mut().unwrap().push(json!({"name": "data", "mountPath": "/var/lib/data"}));
            json!({"metadata": meta("db", ns), "spec": {
                "serviceName": "db", "replicas": 3, "selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["db"]}]}, "template": t,
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}}}],
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}
            }})
        }
        ("apps", "DaemonSet") => {
            json!({"metadata": meta("agent", ns), "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": template(json!({"app": "agent"}))}})
        }
        ("apps", "ControllerRevision") => {
            json!({"metadata": meta("db-7c9d8f6b5", ns), "data": {"spec": {"template": {"metadata": {"labels": {"app": "db"}}}}}, "revision": 1})
        }
        ("batch", "Job") => {
            let mut t = template(json!({"app": "pi"}));
            t["spec"]["restartPolicy"] = json!("OnFailure");
            json!({"metadata": meta("pi", ns), "spec": {"backoffLimit": 4, "completions": 3, "parallelism": 2, "ttlSecondsAfterFinished": 100, "template": t}})
        }
        ("batch", "CronJob") => {
            let mut t = template(json!({"app": "report"}));
            t["spec"]["restartPolicy"] = json!("Never");
            json!({"metadata": meta("report", ns), "spec": {
                "schedule": "*/15 9-17 * * MON-FRI", "timeZone": "Europe/Berlin", "concurrencyPolicy": "Forbid", "startingDeadlineSeconds": 60,
                "jobTemplate": {"metadata": {"labels": {"app": "report"}}, "spec": {"template": t}}
            }})
        }
        ("discovery.k8s.io", "EndpointSlice") => json!({"metadata": meta("web-abc12", ns), "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.0.5"], "conditions": {"ready": true}, "nodeName": "node-1", "zone": "a", "targetRef": {"kind": "Pod", "name": "web-0", "namespace": "default"}}],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"port": 9090}]}),
        ("coordination.k8s.io", "Lease") => json!({"metadata": meta("node-1", ns), "spec": {
            "holderIdentity": "node-1", "leaseDurationSeconds": 40, "renewTime": "2024-01-01T00:00:00.000000Z", "leaseTransitions": 0
        }}),
        ("events.k8s.io", "Event") => json!({"metadata": meta("web-0.17a1b2c3d4e5f6a8", ns),
            "eventTime": "2024-01-01T00:00:00.000000Z", "reportingController": "skiff.io/scheduler", "reportingInstance": "scheduler-node-1",
            "action": "Binding", "reason": "Scheduled", "note": "Successfully assigned default/web-0 to node-1", "type": "Normal",
            "regarding": {"kind": "Pod", "name": "web-0", "namespace": "default"}}),
        ("node.k8s.io", "RuntimeClass") => {
            json!({"metadata": meta("gvisor", None), "handler": "runsc", "overhead": {"podFixed": {"cpu": "100m", "memory": "20Mi"}},
            "scheduling": {"nodeSelector": {"runtime": "gvisor"}, "tolerations": [{"key": "runtime", "operator": "Equal", "value": "gvisor", "effect": "NoSchedule"}]}})
        }
        ("networking.k8s.io", "Ingress") => json!({"metadata": meta("web", ns), "spec": {
            "ingressClassName": "skiff",
            "defaultBackend": {"service": {"name": "fallback", "port": {"name": "http"}}},
            "tls": [{"hosts": ["example.com", "*.example.com"], "secretName": "web-tls"}],
            "rules": [
                {"host": "example.com", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}},
                    {"path": "/api/v1", "pathType": "Exact", "backend": {"service": {"name": "api", "port": {"name": "http"}}}},
                    {"pathType": "ImplementationSpecific", "backend": {"resource": {"apiGroup": "example.com", "kind": "Bucket", "name": "assets"}}}
                ]}},
                {"host": "*.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 8080}}}}]}}
            ]
        }}),
        ("networking.k8s.io", "IngressClass") => json!({"metadata": meta("skiff", None), "spec": {
            "controller": "skiff.io/gateway", "parameters": {"apiGroup": "skiff.io", "kind": "GatewayConfig", "name": "default", "scope": "Namespace", "namespace": "kube-system"}
        }}),
        ("networking.k8s.io", "NetworkPolicy") => json!({"metadata": meta("web", ns), "spec": {
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"from": [
                {"podSelector": {"matchLabels": {"role": "frontend"}}, "namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "In", "values": ["a"]}]}},
                {"ipBlock": {"cidr": "172.17.0.0/16", "except": ["172.17.1.0/24"]}}
            ], "ports": [{"protocol": "TCP", "port": 8080}, {"port": "metrics"}, {"protocol": "UDP", "port": 30000, "endPort": 32767}]}],
            "egress": [{"to": [{"namespaceSelector": {}}], "ports": [{"protocol": "UDP", "port": 53}]}],
            "policyTypes": ["Ingress", "Egress"]
        }}),
        ("policy", "PodDisruptionBudget") => json!({"metadata": meta("web", ns), "spec": {
            "minAvailable": "50%", "selector": {"matchLabels": {"app": "web"}}, "unhealthyPodEvictionPolicy": "AlwaysAllow"
        }}),
        ("scheduling.k8s.io", "PriorityClass") => {
            json!({"metadata": meta("high-priority", None), "value": 1000000, "globalDefault": false, "description": "For the web tier.", "preemptionPolicy": "Never"})
        }
        ("storage.k8s.io", "StorageClass") => json!({"metadata": meta("fast", None), "provisioner": "skiff.io/local-path",
            "parameters": {"nodePath": "/var/lib/skiff/storage"}, "reclaimPolicy": "Retain", "volumeBindingMode": "WaitForFirstConsumer",
            "allowVolumeExpansion": false, "mountOptions": ["noatime"],
            "allowedTopologies": [{"matchLabelExpressions": [{"key": "topology.kubernetes.io/zone", "values": ["a", "b"]}]}]}),
        (group, kind) => panic!("no fixture for {group}/{kind}; add one when adding a resource"),
    };
    obj["apiVersion"] = json!(res.api_version());
    obj["kind"] = json!(res.kind);
    obj
}
