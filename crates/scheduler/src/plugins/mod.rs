//! The default plugins, one module each, named as upstream's. Each has a `NAME`,
//! its reason texts, and pure functions that the plugin wrapper calls.
//!
//! | plugin | PreFilter | Filter | Score (weight) |
//! |---|---|---|---|
//! | [`nodeunschedulable`] | | `spec.unschedulable` | |
//! | [`nodename`] | | `spec.nodeName` | |
//! | [`tainttoleration`] | | NoSchedule/NoExecute | PreferNoSchedule (3) |
//! | [`nodeaffinity`] | node names | nodeSelector, required terms | preferred terms (2) |
//! | [`nodeports`] | | host ports | |
//! | [`noderesources`] | | requests vs allocatable | LeastAllocated (1), BalancedAllocation (1) |
//! | [`volume_binding`] | claims, volumes | volume node affinity, provisioning | |
//! | [`podtopologyspread`] | domain counts | DoNotSchedule | ScheduleAnyway (2) |
//! | [`interpodaffinity`] | topology counts | required terms | preferred terms (2) |
//!
//! VolumeBinding also has a PreBind step, which the scheduler runs before binding.
//! DefaultPreemption (PostFilter) lives in [`crate::preemption`].

pub mod interpodaffinity;
pub mod nodeaffinity;
pub mod nodename;
pub mod nodeports;
pub mod noderesources;
pub mod nodeunschedulable;
pub mod podtopologyspread;
pub mod tainttoleration;
pub mod volume_binding;
