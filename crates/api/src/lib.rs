//! Skiff's view of the Kubernetes API, with no I/O.
//!
//! A short tour:
//! - [`resources`]: the static table of every served resource (group, version,
//!   kind, scope, short names, subresources). Everything else keys off it.
//! - [`status`]: the `Status` error type that every failure becomes at the API edge.
//! - [`meta`]: small helpers over `metadata` of JSON objects.
//! - [`selector`]: label and field selectors (parse once, match many).
//! - [`validation`] and [`defaults`]: what the API server checks and fills in on writes.
//! - [`cron`]: CronJob schedules, parsed once for validation and for the controller's
//!   start times.
//! - [`admission`]: what the built-in admission plugins decide (priority, limit
//!   ranges, quota, the eviction budget check), over objects the server hands in.
//! - [`pod_resources`]: a pod's summed requests and limits, and its QoS class.
//! - [`storage`]: how claims, volumes and classes match, the annotations the volume
//!   controller, provisioners and scheduler share, and the built-in `local-path` class.
//! - [`patch`]: JSON, merge, strategic-merge patch and server-side apply, with
//!   the patch metadata of every built-in list ([`patch::meta`]).
//! - [`table`]: server-side `Table` columns, as `kubectl get` prints them.
//! - [`openapi`]: OpenAPI v3 documents built from the k8s-openapi schemas, and
//!   the strict field check (unknown and duplicate fields) that uses the same schemas.
//! - [`yaml`]: YAML bodies, decoded with a bound on alias expansion.
//!
//! Objects travel as `serde_json::Value`: the API server stores and serves JSON, and
//! the typed k8s-openapi structs are used where a schema is needed.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod admission;
pub mod convert;
pub mod cron;
pub mod defaults;
pub mod meta;
pub mod openapi;
pub mod patch;
pub mod pod_resources;
pub mod protobuf;
pub mod resources;
pub mod schema;
pub mod selector;
pub mod status;
pub mod storage;
pub mod table;
pub mod validation;
pub mod yaml;

pub use resources::{ResourceInfo, Subresource, RESOURCES};
pub use status::{Cause, StatusError};

/// The Kubernetes version that Skiff reports and implements.
pub const KUBERNETES_VERSION: &str = "v1.33.0";
