//! Server-side `Table` columns, as `kubectl get` prints them.
//!
//! CONTRACT (implemented by the table work item): for each resource, the same
//! columns upstream prints (kubernetes/pkg/printers/internalversion/printers.go),
//! including the `-o wide` ones (priority 1), and the cell values for one object.

use serde_json::Value;

use crate::ResourceInfo;

/// One column definition (`meta.k8s.io/v1` `TableColumnDefinition`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    /// `string`, `integer`, `number`, `boolean`, `date`.
    pub type_: &'static str,
    pub format: &'static str,
    pub description: &'static str,
    /// 0 for default columns, 1 for `-o wide` only.
    pub priority: u8,
}

/// The columns of a resource. The first is always `Name`.
pub fn columns(_res: &ResourceInfo) -> Vec<Column> {
    todo!()
}

/// The cells of one object's row, one per column; `now` is used for ages.
pub fn cells(_res: &ResourceInfo, _obj: &Value, _now: jiff::Timestamp) -> Vec<Value> {
    todo!()
}
