//! The gateway end to end: real listeners, real pods on loopback, objects fed
//! the way the agent's watches feed them.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use skiff_gateway::{Gateway, Routes, StatusClass};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn requests_reach_the_service_their_host_and_path_name() {
    let (gw, routes) = start().await;
    let (shop, api, blog) = (Pod::start("shop").await, Pod::start("api").await, Pod::start("blog").await);
    for (name, pod) in [("shop", &shop), ("api", &api), ("blog", &blog)] {
        routes.apply_service(&service(name));
        routes.apply_slice(&slice(name, name, &[pod.addr]));
    }
    routes.apply_ingress(
        &ingress("web")
            .path(Some("shop.test"), "/", "Prefix", "shop")
            .path(Some("shop.test"), "/api", "Prefix", "api")
            .path(Some("*.blogs.test"), "/", "Prefix", "blog")
            .obj(),
    );
    let http = gw.http_addr().unwrap();

    let a = get(http, "shop.test", "/cart").await.unwrap();
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "shop GET /cart"));
    let a = get(http, "SHOP.test:8080", "/api/orders").await.unwrap();
    assert_eq!(a.body, "api GET /api/orders", "host case and port do not matter");
    assert_eq!(get(http, "shop.test", "/apix").await.unwrap().body, "shop GET /apix", "prefixes match whole elements");
    assert_eq!(get(http, "alice.blogs.test", "/").await.unwrap().body, "blog GET /");
    assert_eq!(get(http, "a.b.blogs.test", "/").await.unwrap().status, StatusCode::NOT_FOUND, "a wildcard is one label");
}

#[tokio::test]
async fn unmatched_requests_get_the_default_backend_or_a_404() {
    let (gw, routes) = start().await;
    let (app, fallback) = (Pod::start("app").await, Pod::start("fallback").await);
    for (name, pod) in [("app", &app), ("fallback", &fallback)] {
        routes.apply_service(&service(name));
        routes.apply_slice(&slice(name, name, &[pod.addr]));
    }
    routes.apply_ingress(
        &ingress("web").path(Some("app.test"), "/app", "Exact", "app").default_backend("fallback").obj(),
    );
    let http = gw.http_addr().unwrap();

    assert_eq!(get(http, "app.test", "/app").await.unwrap().body, "app GET /app");
    assert_eq!(get(http, "app.test", "/app/more").await.unwrap().body, "fallback GET /app/more");
    let a = get(http, "elsewhere.test", "/").await.unwrap();
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(a.body.contains("404"), "a small body says why: {:?}", a.body);
}

#[tokio::test]
async fn a_backend_without_endpoints_answers_503() {
    let (gw, routes) = start().await;
    routes.apply_service(&service("empty"));
    routes.apply_ingress(&ingress("web").path(Some("empty.test"), "/", "Prefix", "empty").obj());
    let http = gw.http_addr().unwrap();
    assert_eq!(get(http, "empty.test", "/").await.unwrap().status, StatusCode::SERVICE_UNAVAILABLE);
    routes.apply_ingress(&ingress("web").path(Some("empty.test"), "/", "Prefix", "missing-service").obj());
    assert_eq!(get(http, "empty.test", "/").await.unwrap().status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(gw.metrics().requests(StatusClass::ServerError), 2);
}

#[tokio::test]
async fn ingresses_of_other_classes_are_ignored() {
    let (gw, routes) = start().await;
    let pod = Pod::start("pod").await;
    routes.apply_service(&service("svc"));
    routes.apply_slice(&slice("svc", "svc", &[pod.addr]));
    routes.apply_ingress(&ingress("theirs").class(Some("nginx")).path(Some("a.test"), "/", "Prefix", "svc").obj());
    routes.apply_ingress(&ingress("unclassed").class(None).path(Some("b.test"), "/", "Prefix", "svc").obj());
    let http = gw.http_addr().unwrap();
    assert_eq!(get(http, "a.test", "/").await.unwrap().status, StatusCode::NOT_FOUND);
    assert_eq!(get(http, "b.test", "/").await.unwrap().status, StatusCode::NOT_FOUND);
    assert_eq!(pod.hits(), 0);
}

#[tokio::test]
async fn requests_are_spread_over_every_endpoint() {
    let (gw, routes) = start().await;
    // Two pods on one port of two loopback addresses, in one slice.
    let first = Pod::start_on("one", "127.0.0.2:0".parse().unwrap()).await;
    let second = Pod::start_on("two", std::net::SocketAddr::new("127.0.0.3".parse().unwrap(), first.addr.port())).await;
    routes.apply_service(&service("web"));
    routes.apply_slice(&slice("web", "web", &[first.addr, second.addr]));
    routes.apply_ingress(&ingress("web").path(Some("web.test"), "/", "Prefix", "web").obj());
    let http = gw.http_addr().unwrap();
    for _ in 0..10 {
        assert_eq!(get(http, "web.test", "/").await.unwrap().status, StatusCode::OK);
    }
    assert_eq!((first.hits(), second.hits()), (5, 5), "round robin");
}

#[tokio::test]
async fn a_removed_endpoint_gets_no_more_requests() {
    let (gw, routes) = start().await;
    let (old, new) = (Pod::start("old").await, Pod::start("new").await);
    serve(&routes, "web", "web.test", &[&old, &new]);
    let http = gw.http_addr().unwrap();
    for _ in 0..4 {
        get(http, "web.test", "/").await.unwrap();
    }
    assert_eq!(old.hits(), 2);
    routes.delete_slice(NS, "web-0");
    for _ in 0..6 {
        assert_eq!(get(http, "web.test", "/").await.unwrap().body, "new GET /");
    }
    assert_eq!(old.hits(), 2);
}

#[tokio::test]
async fn a_retry_on_another_endpoint_hides_a_dead_one() {
    let (gw, routes) = start().await;
    let alive = Pod::start("alive").await;
    routes.apply_service(&service("web"));
    routes.apply_slice(&slice("web-dead", "web", &[dead_addr()]));
    routes.apply_slice(&slice("web-alive", "web", &[alive.addr]));
    routes.apply_ingress(&ingress("web").path(Some("web.test"), "/", "Prefix", "web").obj());
    let http = gw.http_addr().unwrap();
    for i in 0..6 {
        // POST too: a refused connection means the pod never saw the request.
        let req = Request::builder()
            .method(if i % 2 == 0 { "GET" } else { "POST" })
            .uri("/")
            .header("host", "web.test")
            .body(Full::new(Bytes::from_static(b"payload")))
            .unwrap();
        let a = send(http, req).await.unwrap();
        assert_eq!(a.status, StatusCode::OK, "{a:?}");
    }
    assert_eq!(alive.hits(), 6);
    assert!(gw.metrics().retries() >= 3, "every other pick is the dead endpoint");
    assert_eq!(gw.metrics().requests(StatusClass::Success), 6);
}

#[tokio::test]
async fn a_request_the_pod_dropped_is_replayed_only_when_idempotent_and_bodiless() {
    let (gw, routes) = start().await;
    let (dropper, alive) = (Dropper::start().await, Pod::start("alive").await);
    routes.apply_service(&service("web"));
    routes.apply_slice(&slice("web-dropper", "web", &[dropper.addr]));
    routes.apply_slice(&slice("web-alive", "web", &[alive.addr]));
    routes.apply_ingress(&ingress("web").path(Some("web.test"), "/", "Prefix", "web").obj());
    let http = gw.http_addr().unwrap();
    for _ in 0..4 {
        assert_eq!(get(http, "web.test", "/").await.unwrap().status, StatusCode::OK);
    }
    let gets_swallowed = dropper.swallowed();
    assert!(gets_swallowed > 0, "some GETs went to the dropper first");

    let mut statuses = Vec::new();
    for _ in 0..4 {
        let req = Request::builder()
            .method("POST")
            .uri("/")
            .header("host", "web.test")
            .body(Full::new(Bytes::from_static(b"not twice")))
            .unwrap();
        statuses.push(send(http, req).await.unwrap().status);
    }
    let posts_swallowed = dropper.swallowed() - gets_swallowed;
    assert!(posts_swallowed > 0);
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::BAD_GATEWAY).count(), posts_swallowed, "{statuses:?}");
    assert_eq!(alive.hits(), 4 + (4 - posts_swallowed), "a POST the dropper saw is never sent again");
}

#[tokio::test]
async fn a_kept_alive_connection_the_pod_closed_costs_a_get_nothing() {
    let (gw, routes) = start().await;
    let pod = OneAnswerPerConnection::start().await;
    routes.apply_service(&service("web"));
    routes.apply_slice(&slice("web", "web", &[pod.addr]));
    routes.apply_ingress(&ingress("web").path(Some("web.test"), "/", "Prefix", "web").obj());
    let http = gw.http_addr().unwrap();
    for _ in 0..3 {
        let a = get(http, "web.test", "/").await.unwrap();
        assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "ok"), "the only endpoint, on a fresh connection");
        // Let the connection go back to the pool.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A POST that went out on such a connection may have been seen: not sent twice.
    let req = Request::builder()
        .method("POST")
        .uri("/")
        .header("host", "web.test")
        .body(Full::new(Bytes::from_static(b"once")))
        .unwrap();
    assert_eq!(send(http, req).await.unwrap().status, StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn a_rolling_update_fails_no_request() {
    let (gw, routes) = start().await;
    let old = Pod::start("old").await;
    serve(&routes, "web", "web.test", &[&old]);
    let http = gw.http_addr().unwrap();

    let client = tokio::spawn(async move {
        let mut answers = Vec::new();
        for _ in 0..200 {
            answers.push(get(http, "web.test", "/").await.map(|a| a.status));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        answers
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The new pod becomes ready; the old one terminates, leaves the slice, then exits.
    let new = Pod::start("new").await;
    routes.apply_slice(&slice("web-1", "web", &[new.addr]));
    tokio::time::sleep(Duration::from_millis(50)).await;
    routes.apply_slice(&slice_with("web-0", "web", &[old.addr], false));
    drop(old);
    let answers = client.await.unwrap();
    let failed: Vec<_> = answers.iter().filter(|a| !matches!(a, Ok(StatusCode::OK))).collect();
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    assert!(new.hits() > 0);
}

#[tokio::test]
async fn the_pod_sees_forwarding_headers_and_no_hop_by_hop_ones() {
    let (gw, routes) = start().await;
    let pod = Pod::start("pod").await;
    serve(&routes, "web", "web.test", &[&pod]);
    let req = Request::builder()
        .uri("/")
        .header("host", "web.test:8080")
        .header("x-forwarded-for", "6.6.6.6")
        .header("connection", "keep-alive, x-private")
        .header("keep-alive", "timeout=5")
        .header("x-private", "secret")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let a = send(gw.http_addr().unwrap(), req).await.unwrap();
    assert_eq!(a.header("x-seen-host"), Some("web.test:8080"));
    assert_eq!(a.header("x-seen-forwarded-host"), Some("web.test:8080"));
    assert_eq!(a.header("x-seen-forwarded-for"), Some("127.0.0.1"), "the client's own claim is replaced");
    assert_eq!(a.header("x-seen-real-ip"), Some("127.0.0.1"));
    assert_eq!(a.header("x-seen-forwarded-proto"), Some("http"));
    assert!(a.header("x-seen-request-id").is_some_and(|id| id.len() == 32));
    assert_eq!(a.header("x-seen-private"), None);
    assert_eq!(a.header("x-seen-keep-alive"), None);
}

#[tokio::test]
async fn request_bodies_are_streamed_to_the_pod() {
    let (gw, routes) = start().await;
    let pod = Pod::start("pod").await;
    serve(&routes, "web", "web.test", &[&pod]);
    let (tx, body) = channel_body();
    let req = Request::builder().method("POST").uri("/upload").header("host", "web.test").body(body).unwrap();
    let http = gw.http_addr().unwrap();
    let tcp = tokio::net::TcpStream::connect(http).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let response = tokio::spawn(async move { sender.send_request(req).await });
    for _ in 0..64 {
        tx.send(Bytes::from(vec![b'x'; 1024])).await.unwrap();
    }
    drop(tx);
    let resp = response.await.unwrap().unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes();
    assert_eq!(body, "pod POST /upload 65536");
}

#[tokio::test]
async fn the_pod_gets_the_body_before_the_client_has_finished_sending_it() {
    let (gw, routes) = start().await;
    let pod = Pod::start("pod").await;
    serve(&routes, "web", "web.test", &[&pod]);
    let (tx, body) = channel_body();
    let req = Request::builder().method("POST").uri("/first-chunk").header("host", "web.test").body(body).unwrap();
    let tcp = tokio::net::TcpStream::connect(gw.http_addr().unwrap()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let response = tokio::spawn(async move { sender.send_request(req).await });
    tx.send(Bytes::from_static(b"12345")).await.unwrap();
    // The body stays open: only a streaming gateway lets the pod answer now.
    let resp = tokio::time::timeout(Duration::from_secs(5), response).await.expect("answered before the body ended");
    let body = http_body_util::BodyExt::collect(resp.unwrap().unwrap().into_body()).await.unwrap().to_bytes();
    assert_eq!(body, "pod first chunk 5");
    drop(tx);
}

/// A request body fed chunk by chunk from a channel.
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

fn channel_body() -> (tokio::sync::mpsc::Sender<Bytes>, ChannelBody) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    (tx, ChannelBody(rx))
}

#[tokio::test]
async fn http2_clients_are_served_over_one_connection() {
    let (gw, routes) = start().await;
    let pod = Pod::start("pod").await;
    serve(&routes, "web", "web.test", &[&pod]);
    let answers = h2_get(gw.http_addr().unwrap(), "web.test", &["/a", "/b"]).await.unwrap();
    let bodies: Vec<&str> = answers.iter().map(|a| a.body.as_str()).collect();
    assert_eq!(bodies, ["pod GET /a", "pod GET /b"]);
    assert_eq!(answers[0].header("x-seen-host"), Some("web.test"), "the authority becomes the Host header");
}

#[tokio::test]
async fn upgrades_are_tunnelled_to_the_pod() {
    let (gw, routes) = start().await;
    let pod = Pod::start("pod").await;
    serve(&routes, "web", "web.test", &[&pod]);
    let tcp = tokio::net::TcpStream::connect(gw.http_addr().unwrap()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn.with_upgrades());
    let req = Request::builder()
        .uri("/ws")
        .header("host", "web.test")
        .header("connection", "Upgrade")
        .header("upgrade", "echo")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    let mut io = TokioIo::new(hyper::upgrade::on(resp).await.unwrap());
    io.write_all(b"hello through the gateway").await.unwrap();
    let mut buf = vec![0u8; 25];
    tokio::time::timeout(Duration::from_secs(5), io.read_exact(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf, b"hello through the gateway");
    assert_eq!(gw.metrics().requests(StatusClass::Informational), 1);
}

#[tokio::test]
async fn tls_serves_the_certificate_of_the_secret_by_sni() {
    let (gw, routes) = start().await;
    let pod = Pod::start("pod").await;
    let (secret, ca) = tls_secret("shop-tls", &["shop.test"]);
    routes.apply_secret(&secret);
    routes.apply_service(&service("web"));
    routes.apply_slice(&slice("web", "web", &[pod.addr]));
    routes.apply_ingress(
        &ingress("web")
            .path(Some("shop.test"), "/", "Prefix", "web")
            .path(Some("other.test"), "/", "Prefix", "web")
            .tls(&["shop.test"], "shop-tls")
            .obj(),
    );
    let https = gw.https_addr().unwrap();
    let a = https_get(https, "shop.test", "/secure", &ca).await.unwrap();
    assert_eq!(a.body, "pod GET /secure");
    assert_eq!(a.header("x-seen-forwarded-proto"), Some("https"));
    let a = https_h2_get(https, "shop.test", "/h2", &ca).await.unwrap();
    assert_eq!(a.body, "pod GET /h2");
    // A host without a certificate gets the fallback, which the client does not trust.
    assert!(https_get(https, "other.test", "/", &ca).await.is_err());
}

#[tokio::test]
async fn a_certificate_arriving_after_the_ingress_serves_the_next_handshake() {
    let (gw, routes) = start().await;
    let pod = Pod::start("pod").await;
    serve(&routes, "web", "shop.test", &[&pod]);
    routes.apply_ingress(&ingress("web").path(Some("shop.test"), "/", "Prefix", "web").tls(&["shop.test"], "late").obj());
    let (secret, ca) = tls_secret("late", &["shop.test"]);
    let https = gw.https_addr().unwrap();
    assert!(https_get(https, "shop.test", "/", &ca).await.is_err(), "no Secret yet: the fallback certificate");
    routes.apply_secret(&secret);
    assert_eq!(https_get(https, "shop.test", "/", &ca).await.unwrap().status, StatusCode::OK);
}

#[tokio::test]
async fn plain_http_to_a_host_with_tls_is_redirected_to_https() {
    let (gw, routes) = start().await;
    let pod = Pod::start("pod").await;
    let (secret, _) = tls_secret("shop-tls", &["shop.test"]);
    routes.apply_secret(&secret);
    serve(&routes, "web", "shop.test", &[&pod]);
    routes.apply_ingress(&ingress("web").path(Some("shop.test"), "/", "Prefix", "web").tls(&["shop.test"], "shop-tls").obj());
    let a = get(gw.http_addr().unwrap(), "shop.test", "/cart?item=1").await.unwrap();
    assert_eq!(a.status, StatusCode::PERMANENT_REDIRECT);
    let port = gw.https_addr().unwrap().port();
    assert_eq!(a.header("location"), Some(format!("https://shop.test:{port}/cart?item=1").as_str()));
    assert_eq!(pod.hits(), 0);
}

#[tokio::test]
async fn dropping_the_gateway_stops_serving() {
    let (gw, routes): (Gateway, Routes) = start().await;
    let http = gw.http_addr().unwrap();
    assert_eq!(get(http, "any.test", "/").await.unwrap().status, StatusCode::NOT_FOUND);
    drop(gw);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(get(http, "any.test", "/").await.is_err());
    drop(routes);
}
