//! List+watch of one collection over the raw JSON client, with client-go's
//! reflector semantics: a paginated LIST replaces what the caller knows, a WATCH from
//! its resourceVersion follows, bookmarks keep that version fresh, and a 410 Gone
//! (or an error) makes it list again.
//!
//! Objects are decoded into the caller's compact form page by page as they arrive,
//! so 50,000 pods never sit in memory as JSON trees at once.

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use skiff_client::Client;

/// Items per LIST page.
const PAGE: usize = 500;
/// The first retry delay after an error; doubles up to `MAX_RETRY`.
const FIRST_RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(30);

/// What the caller is told.
#[derive(Debug)]
pub enum Delta<T> {
    /// Everything there is (after a LIST): anything else the caller knows is gone.
    Replace(Vec<T>),
    Upsert(T),
    Delete(T),
}

/// Lists and watches `path` (a collection, e.g. `/api/v1/pods`) with `query` (e.g.
/// a field selector, already encoded) forever. `decode` turns an object into the
/// caller's form, or `None` to ignore it.
pub async fn reflect<T, D, A>(client: Client, path: String, query: String, decode: D, mut apply: A)
where
    D: Fn(Value) -> Option<T>,
    A: FnMut(Delta<T>),
{
    let mut retry = FIRST_RETRY;
    loop {
        let (items, mut rv) = match list(&client, &path, &query, &decode).await {
            Ok(listed) => listed,
            Err(e) => {
                tracing::warn!(%path, error = %e, "listing failed; retrying");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(MAX_RETRY);
                continue;
            }
        };
        apply(Delta::Replace(items));

        // WATCH from there until the history is gone.
        loop {
            let timeout = 240 + rand::random_range(0..120u32);
            let url = with_query(&path, &query, &format!("resourceVersion={}&allowWatchBookmarks=true&timeoutSeconds={timeout}", encode(&rv)));
            let mut events = match client.watch(&url).await {
                Ok(events) => events,
                Err(e) if e.code() == Some(410) => break,
                Err(e) => {
                    tracing::warn!(%path, error = %e, "watch failed; retrying");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(MAX_RETRY);
                    continue;
                }
            };
            let mut gone = false;
            while let Some(event) = events.next().await {
                let event = match event {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::debug!(%path, error = %e, "watch stream broke");
                        break;
                    }
                };
                retry = FIRST_RETRY;
                if event.kind != "ERROR" {
                    if let Some(v) = event.object.pointer("/metadata/resourceVersion").and_then(Value::as_str) {
                        rv = v.to_string();
                    }
                }
                match event.kind.as_str() {
                    "ADDED" | "MODIFIED" => {
                        if let Some(t) = decode(event.object) {
                            apply(Delta::Upsert(t));
                        }
                    }
                    "DELETED" => {
                        if let Some(t) = decode(event.object) {
                            apply(Delta::Delete(t));
                        }
                    }
                    "BOOKMARK" => {}
                    _ => {
                        // An ERROR: 410 Gone means the history is compacted; any
                        // other error is safest handled by listing again too.
                        if event.object.get("code").and_then(Value::as_u64) != Some(410) {
                            tracing::warn!(%path, status = %event.object, "watch error; listing again");
                        }
                        gone = true;
                        break;
                    }
                }
            }
            if gone {
                break;
            }
        }
    }
}

/// A paginated LIST of `path` at one resourceVersion: the decoded items and that
/// resourceVersion.
pub async fn list<T>(client: &Client, path: &str, query: &str, decode: impl Fn(Value) -> Option<T>) -> skiff_client::Result<(Vec<T>, String)> {
    let mut items = Vec::new();
    let mut rv = String::new();
    let mut cont = String::new();
    loop {
        let mut extra = format!("limit={PAGE}");
        if !cont.is_empty() {
            extra.push_str("&continue=");
            extra.push_str(&encode(&cont));
        }
        let mut page = client.get(&with_query(path, query, &extra)).await?;
        if rv.is_empty() {
            rv = page.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or("").to_string();
        }
        cont = page.pointer("/metadata/continue").and_then(Value::as_str).unwrap_or("").to_string();
        if let Some(Value::Array(list)) = page.get_mut("items").map(Value::take) {
            items.extend(list.into_iter().filter_map(&decode));
        }
        if cont.is_empty() {
            return Ok((items, rv));
        }
    }
}

fn with_query(path: &str, query: &str, extra: &str) -> String {
    match (query.is_empty(), extra.is_empty()) {
        (true, true) => path.to_string(),
        (true, false) => format!("{path}?{extra}"),
        (false, true) => format!("{path}?{query}"),
        (false, false) => format!("{path}?{query}&{extra}"),
    }
}

/// Percent-encodes a query value (resource versions and continue tokens are
/// opaque; continue tokens are base64 with `=` padding).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode("12345"), "12345");
        assert_eq!(encode("eyJ2Ijo=="), "eyJ2Ijo%3D%3D");
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
    }
}
