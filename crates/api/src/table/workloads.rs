//! Printers of `apps/v1` and `batch/v1`.

use serde_json::Value;

use super::*;

/// `spec.replicas`, which defaults to 1.
fn desired_replicas(obj: &Value) -> i64 {
    obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)
}

const SELECTOR: Column = wide("Selector", "string", "Label query over pods that should match the replicas count.");

// === Deployment ===

pub(super) fn deployment_columns() -> Vec<Column> {
    vec![
        NAME,
        col("Ready", "string", "Number of the pod with ready state"),
        col("Up-to-date", "string", "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
        col("Available", "string", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ]
}

pub(super) fn deployment_cells(d: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (containers, images) = container_cells(d, "/spec/template/spec/containers");
    // Unlike the other workloads, an empty selector prints as nothing, not `<none>`.
    let selector = match LabelSelector::from_json(d.pointer("/spec/selector").unwrap_or(&Value::Null)) {
        Ok(s) => s.to_string(),
        Err(_) => "<invalid>".to_string(),
    };
    vec![
        name(d).into(),
        format!("{}/{}", int_at(d, "/status/readyReplicas"), desired_replicas(d)).into(),
        int_at(d, "/status/updatedReplicas").into(),
        int_at(d, "/status/availableReplicas").into(),
        age(d, now).into(),
        containers.into(),
        images.into(),
        selector.into(),
    ]
}

// === ReplicaSet ===

pub(super) fn replica_set_columns() -> Vec<Column> {
    vec![
        NAME,
        col("Desired", "integer", "Replicas is the number of desired replicas."),
        col("Current", "integer", "Replicas is the most recently observed number of replicas."),
        col("Ready", "integer", "The number of ready replicas for this replica set."),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ]
}

pub(super) fn replica_set_cells(rs: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (containers, images) = container_cells(rs, "/spec/template/spec/containers");
    vec![
        name(rs).into(),
        desired_replicas(rs).into(),
        int_at(rs, "/status/replicas").into(),
        int_at(rs, "/status/readyReplicas").into(),
        age(rs, now).into(),
        containers.into(),
        images.into(),
        format_label_selector(rs.pointer("/spec/selector")).into(),
    ]
}

// === StatefulSet ===

pub(super) fn stateful_set_columns() -> Vec<Column> {
    vec![NAME, col("Ready", "string", "Number of the pod with ready state"), AGE, CONTAINERS, IMAGES]
}

pub(super) fn stateful_set_cells(sts: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (containers, images) = container_cells(sts, "/spec/template/spec/containers");
    vec![
        name(sts).into(),
        format!("{}/{}", int_at(sts, "/status/readyReplicas"), desired_replicas(sts)).into(),
        age(sts, now).into(),
        containers.into(),
        images.into(),
    ]
}

// === DaemonSet ===

pub(super) fn daemon_set_columns() -> Vec<Column> {
    vec![
        NAME,
        col("Desired", "integer", "The total number of nodes that should be running the daemon pod."),
        col("Current", "integer", "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod."),
        col("Ready", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready."),
        col("Up-to-date", "integer", "The total number of nodes that are running updated daemon pod"),
        col("Available", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available."),
        col("Node Selector", "string", "NodeSelector is a selector which must be true for the pod to fit on a node."),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ]
}

pub(super) fn daemon_set_cells(ds: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (containers, images) = container_cells(ds, "/spec/template/spec/containers");
    vec![
        name(ds).into(),
        int_at(ds, "/status/desiredNumberScheduled").into(),
        int_at(ds, "/status/currentNumberScheduled").into(),
        int_at(ds, "/status/numberReady").into(),
        int_at(ds, "/status/updatedNumberScheduled").into(),
        int_at(ds, "/status/numberAvailable").into(),
        format_labels(map_at(ds, "/spec/template/spec/nodeSelector")).into(),
        age(ds, now).into(),
        containers.into(),
        images.into(),
        format_label_selector(ds.pointer("/spec/selector")).into(),
    ]
}

// === ControllerRevision ===

pub(super) fn controller_revision_columns() -> Vec<Column> {
    vec![
        NAME,
        col("Controller", "string", "Controller of the object"),
        col("Revision", "string", "Revision indicates the revision of the state represented by Data."),
        AGE,
    ]
}

/// `kind.group/name` of the controlling owner (`statefulset.apps/web`), or `<none>`.
fn controller_of(obj: &Value) -> String {
    let Some(owner) = arr_at(obj, "/metadata/ownerReferences").iter().find(|o| bool_at(o, "/controller")) else {
        return "<none>".to_string();
    };
    let api_version = str_at(owner, "/apiVersion");
    let group = match api_version.split_once('/') {
        Some((group, _)) => group,
        None => "",
    };
    let kind = str_at(owner, "/kind");
    let name = str_at(owner, "/name");
    match (group, kind) {
        ("", "") => name.to_string(),
        ("", kind) => format!("{}/{name}", kind.to_lowercase()),
        (group, kind) => format!("{}/{name}", format!("{kind}.{group}").to_lowercase()),
    }
}

pub(super) fn controller_revision_cells(cr: &Value, now: jiff::Timestamp) -> Vec<Value> {
    vec![name(cr).into(), controller_of(cr).into(), int_at(cr, "/revision").into(), age(cr, now).into()]
}

// === Job ===

pub(super) fn job_columns() -> Vec<Column> {
    vec![
        NAME,
        col("Status", "string", "Status of the job."),
        col("Completions", "string", "The number of pods which reached phase Succeeded."),
        col("Duration", "string", "Time required to complete the job."),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ]
}

/// `hasJobCondition`: the first condition of the type decides.
fn has_job_condition(job: &Value, type_: &str) -> bool {
    arr_at(job, "/status/conditions")
        .iter()
        .find(|c| str_at(c, "/type") == type_)
        .is_some_and(|c| str_at(c, "/status") == "True")
}

fn job_status(job: &Value) -> &'static str {
    if has_job_condition(job, "Complete") {
        "Complete"
    } else if has_job_condition(job, "Failed") {
        "Failed"
    } else if crate::meta::is_deleting(job) {
        "Terminating"
    } else if has_job_condition(job, "Suspended") {
        "Suspended"
    } else if has_job_condition(job, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    }
}

pub(super) fn job_cells(job: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let succeeded = int_at(job, "/status/succeeded");
    let completions = match job.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => match int_at(job, "/spec/parallelism") {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let duration = match (time_at(job, "/status/startTime"), time_at(job, "/status/completionTime")) {
        (None, _) => String::new(),
        (Some(start), None) => since(Some(start), now),
        (Some(start), Some(end)) => since(Some(start), end),
    };
    let (containers, images) = container_cells(job, "/spec/template/spec/containers");
    vec![
        name(job).into(),
        job_status(job).into(),
        completions.into(),
        duration.into(),
        age(job, now).into(),
        containers.into(),
        images.into(),
        format_label_selector(job.pointer("/spec/selector")).into(),
    ]
}

// === CronJob ===

pub(super) fn cron_job_columns() -> Vec<Column> {
    vec![
        NAME,
        col("Schedule", "string", "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
        col("Timezone", "string", "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones."),
        col("Suspend", "boolean", "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions."),
        col("Active", "integer", "A list of pointers to currently running jobs."),
        col("Last Schedule", "string", "Information when was the last time the job was successfully scheduled."),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ]
}

pub(super) fn cron_job_cells(cj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    // `suspend` defaults to false; upstream prints the pointer as True/False.
    let suspend = if bool_at(cj, "/spec/suspend") { "True" } else { "False" };
    let last_schedule = match cj.pointer("/status/lastScheduleTime").filter(|t| !t.is_null()) {
        Some(_) => since(time_at(cj, "/status/lastScheduleTime"), now),
        None => "<none>".to_string(),
    };
    let (containers, images) = container_cells(cj, "/spec/jobTemplate/spec/template/spec/containers");
    vec![
        name(cj).into(),
        str_at(cj, "/spec/schedule").into(),
        opt_str_at(cj, "/spec/timeZone").unwrap_or("<none>").into(),
        suspend.into(),
        len_at(cj, "/status/active").into(),
        last_schedule.into(),
        age(cj, now).into(),
        containers.into(),
        images.into(),
        format_label_selector(cj.pointer("/spec/jobTemplate/spec/selector")).into(),
    ]
}
