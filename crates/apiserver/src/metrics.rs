//! `/metrics` in the Prometheus text format.

use std::fmt::Write;

use skiff_api::RESOURCES;

use crate::app::App;

/// Renders the server's metrics: objects per resource and the cache revision.
pub fn render(app: &App) -> String {
    let mut out = String::new();
    out.push_str("# HELP skiff_apiserver_storage_objects Number of stored objects per resource.\n");
    out.push_str("# TYPE skiff_apiserver_storage_objects gauge\n");
    for r in RESOURCES {
        let _ = writeln!(out, "skiff_apiserver_storage_objects{{resource=\"{}{}{}\"}} {}", r.plural, if r.group.is_empty() { "" } else { "." }, r.group, app.cache(r).len());
    }
    out.push_str("# HELP skiff_apiserver_ready Whether the server is ready (1) or not (0).\n");
    out.push_str("# TYPE skiff_apiserver_ready gauge\n");
    let _ = writeln!(out, "skiff_apiserver_ready {}", if app.is_ready() { 1 } else { 0 });
    out
}
