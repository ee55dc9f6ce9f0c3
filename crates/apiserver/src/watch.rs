//! WATCH: a chunked stream of JSON events from the watch cache.
//!
//! Events are written as `{"type":"ADDED","object":{...}}` lines, straight from the
//! cached bytes. Objects that move in or out of a selector become ADDED or DELETED,
//! as upstream. A watch from a resourceVersion older than the cache's history gets an
//! ERROR event with a 410 `Status`, which makes clients relist.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use bytes::Bytes;
use serde_json::{json, Value};
use skiff_api::{ResourceInfo, StatusError};
use skiff_store::cache::{CacheError, CacheEventKind, CacheWatchItem};
use tokio::sync::mpsc;

use crate::app::App;
use crate::handlers::{collection_prefix, Filter};
use crate::object::Entry;
use crate::output::{self, Format, IncludeObject};
use crate::request::{Query, ResourceRequest};

/// How often, at most, a watch with `allowWatchBookmarks` gets a BOOKMARK.
const BOOKMARK_EVERY: Duration = Duration::from_secs(5);

struct Encoder {
    res: &'static ResourceInfo,
    format: Format,
    sent_columns: bool,
}

impl Encoder {
    fn event(&mut self, kind: &str, obj: &Bytes) -> Bytes {
        match self.format {
            Format::Json => {
                let mut out = Vec::with_capacity(obj.len() + 32);
                out.extend_from_slice(b"{\"type\":\"");
                out.extend_from_slice(kind.as_bytes());
                out.extend_from_slice(b"\",\"object\":");
                out.extend_from_slice(obj);
                out.extend_from_slice(b"}\n");
                Bytes::from(out)
            }
            Format::Table { include_object } => {
                let v: Value = serde_json::from_slice(obj).unwrap_or(Value::Null);
                let rv = v.pointer("/metadata/resourceVersion").cloned().unwrap_or(json!(""));
                let t = output::table(self.res, std::slice::from_ref(&v), include_object, json!({"resourceVersion": rv}), !self.sent_columns);
                self.sent_columns = true;
                line(&json!({"type": kind, "object": t}))
            }
        }
    }

    fn bookmark(&self, rv: i64, initial_end: bool) -> Bytes {
        let mut m = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            m["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = match self.format {
            Format::Json => json!({"kind": self.res.kind, "apiVersion": self.res.api_version(), "metadata": m}),
            Format::Table { .. } => json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": m, "columnDefinitions": [], "rows": []}),
        };
        line(&json!({"type": "BOOKMARK", "object": obj}))
    }
}

fn line(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

fn error_line(e: &StatusError) -> Bytes {
    line(&json!({"type": "ERROR", "object": e.to_status()}))
}

pub async fn watch(app: &App, rr: &ResourceRequest, q: &Query, headers: &HeaderMap) -> Result<Response<Body>, StatusError> {
    let format = match Format::negotiate(headers, q.get("includeObject"))? {
        Format::Table { include_object: IncludeObject::None } => Format::Table { include_object: IncludeObject::Metadata },
        f => f,
    };
    let filter = Filter::parse(rr.res, q)?;
    let bookmarks = q.flag("allowWatchBookmarks");
    let send_initial = q.get("sendInitialEvents").map(|v| v == "true");
    let rv_param = q.get("resourceVersion").unwrap_or("").to_string();
    if send_initial.is_some() && q.get("resourceVersionMatch") != Some("NotOlderThan") {
        return Err(StatusError::invalid("meta.k8s.io", "ListOptions", "", vec![skiff_api::Cause::forbidden("sendInitialEvents", "sendInitialEvents is forbidden for watch unless resourceVersionMatch is set to NotOlderThan")]));
    }
    let timeout = match q.int("timeoutSeconds")? {
        Some(s) if s > 0 => Duration::from_secs(s as u64),
        _ => {
            use rand::Rng;
            Duration::from_secs(rand::rng().random_range(1800..3600))
        }
    };
    let prefix = collection_prefix(rr);
    let cache = app.cache(rr.res);
    let mut enc = Encoder { res: rr.res, format, sent_columns: false };
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(256);

    // Decide where the stream starts.
    let initial_state = match (send_initial, rv_param.as_str()) {
        (Some(true), _) => true,
        (Some(false), _) => false,
        (None, "") | (None, "0") => true,
        (None, _) => false,
    };
    let (initial, mut watcher, start_rev): (Vec<Entry>, _, i64) = if initial_state {
        if rv_param.is_empty() {
            app.sync_cache(rr.res).await?;
        }
        let (list, w) = cache.list_and_watch(&prefix, &|e| filter.matches(&e.object));
        (list.items, w, list.revision)
    } else if rv_param.is_empty() || rv_param == "0" {
        // sendInitialEvents=false: start at the current revision with no initial state.
        let rev = cache.revision();
        match cache.watch(&prefix, rev) {
            Ok(w) => (vec![], w, rev),
            Err(e) => return Err(StatusError::internal(e.to_string())),
        }
    } else {
        let rv: i64 = rv_param.parse().map_err(|_| StatusError::bad_request(format!("invalid resource version: {rv_param:?}")))?;
        let _ = cache.wait_for(rv, Duration::from_secs(3)).await;
        match cache.watch(&prefix, rv) {
            Ok(w) => (vec![], w, rv),
            Err(CacheError::TooOld { requested, oldest }) => {
                // Upstream answers 200 and an ERROR event carrying 410 Gone.
                let e = StatusError::gone(format!("too old resource version: {requested} ({oldest})"));
                let body = Body::from(error_line(&e));
                return Ok(stream_response(body));
            }
            Err(e) => return Err(StatusError::internal(e.to_string())),
        }
    };

    let res = rr.res;
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + timeout;
        for e in &initial {
            if tx.send(Ok(enc.event("ADDED", &e.object.json))).await.is_err() {
                return;
            }
        }
        if initial_state && bookmarks && send_initial == Some(true) {
            if tx.send(Ok(enc.bookmark(start_rev, true))).await.is_err() {
                return;
            }
        }
        let _ = res;
        let mut last_bookmark = tokio::time::Instant::now();
        loop {
            let item = tokio::select! {
                item = watcher.next() => item,
                _ = tokio::time::sleep_until(deadline) => return,
                _ = tx.closed() => return,
            };
            let chunk = match item {
                Ok(CacheWatchItem::Event(ev)) => {
                    let now_matches = filter.matches(&ev.entry.object);
                    let before_matched = ev.prev.as_ref().is_some_and(|p| filter.matches(&p.object));
                    match ev.kind {
                        CacheEventKind::Added if now_matches => Some(enc.event("ADDED", &ev.entry.object.json)),
                        CacheEventKind::Modified if now_matches && before_matched => Some(enc.event("MODIFIED", &ev.entry.object.json)),
                        CacheEventKind::Modified if now_matches => Some(enc.event("ADDED", &ev.entry.object.json)),
                        CacheEventKind::Modified if before_matched => Some(enc.event("DELETED", &ev.entry.object.json)),
                        CacheEventKind::Deleted if now_matches || before_matched => Some(enc.event("DELETED", &ev.entry.object.json)),
                        _ => None,
                    }
                }
                Ok(CacheWatchItem::Progress(rev)) => {
                    if bookmarks && last_bookmark.elapsed() >= BOOKMARK_EVERY {
                        last_bookmark = tokio::time::Instant::now();
                        Some(enc.bookmark(rev, false))
                    } else {
                        None
                    }
                }
                Err(CacheError::TooSlow) | Err(CacheError::Stopped) => return,
                Err(e) => {
                    let _ = tx.send(Ok(error_line(&StatusError::gone(e.to_string())))).await;
                    return;
                }
            };
            if let Some(c) = chunk {
                if tx.send(Ok(c)).await.is_err() {
                    return;
                }
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    Ok(stream_response(Body::from_stream(stream)))
}

fn stream_response(body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    r
}
