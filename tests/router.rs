//! WebhookRouter: lookup by normalised path, 404, fallback, and table swaps under load.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::sync::oneshot;
use tower::util::BoxCloneSyncService;
use tower::{ServiceExt, service_fn};
use tower_webhooks::{ResponseBody, WebhookRouter, router::RouteTable};

type Body = Full<Bytes>;

fn reply(text: &'static str) -> Response<ResponseBody<Body>> {
    Response::new(ResponseBody::new(Full::new(Bytes::from_static(
        text.as_bytes(),
    ))))
}

fn named(
    text: &'static str,
) -> impl tower::Service<
    Request<Body>,
    Response = Response<ResponseBody<Body>>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    service_fn(move |_req: Request<Body>| async move { Ok::<_, Infallible>(reply(text)) })
}

async fn text_of(response: Response<ResponseBody<Body>>) -> (StatusCode, String) {
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

fn post(path: &str) -> Request<Body> {
    Request::post(path).body(Full::default()).unwrap()
}

#[tokio::test]
async fn routes_by_normalised_path_and_keeps_case_and_double_slashes() {
    let router = WebhookRouter::new([("webhooks/slack/", named("slack")), ("/A", named("upper"))]);
    for (path, expected) in [
        ("/webhooks/slack", "slack"),
        ("/webhooks/slack/", "slack"),
        ("/webhooks/slack?x=1", "slack"),
        ("/A", "upper"),
    ] {
        assert_eq!(
            text_of(router.clone().oneshot(post(path)).await.unwrap())
                .await
                .1,
            expected
        );
    }
    for path in [
        "/a",
        "/webhooks//slack",
        "/webhooks/slack//",
        "/webhooks/%73lack",
        "/",
    ] {
        let (status, text) = text_of(router.clone().oneshot(post(path)).await.unwrap()).await;
        assert_eq!(
            (status, text.as_str()),
            (StatusCode::NOT_FOUND, "Not Found"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn not_found_is_plain_text() {
    let router = WebhookRouter::new([("/x", named("x"))]);
    let response = router.oneshot(post("/nope")).await.unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
}

#[tokio::test]
async fn unknown_paths_go_to_the_fallback_when_hosted() {
    let router = WebhookRouter::new([("/x", named("x"))]).fallback(named("host app"));
    assert_eq!(
        text_of(router.clone().oneshot(post("/other")).await.unwrap())
            .await
            .1,
        "host app"
    );
    assert_eq!(
        text_of(router.oneshot(post("/x/")).await.unwrap()).await.1,
        "x"
    );
}

#[tokio::test]
async fn swapping_the_table_lets_routed_requests_finish_on_the_old_service() {
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let release_rx = Arc::new(tokio::sync::Mutex::new(Some(release_rx)));
    let (entered_tx, entered_rx) = oneshot::channel::<()>();
    let entered_tx = Arc::new(std::sync::Mutex::new(Some(entered_tx)));
    let old = service_fn(move |_req: Request<Body>| {
        let release_rx = Arc::clone(&release_rx);
        let entered_tx = Arc::clone(&entered_tx);
        async move {
            if let Some(tx) = entered_tx.lock().unwrap().take() {
                let _ = tx.send(());
            }
            if let Some(rx) = release_rx.lock().await.take() {
                let _ = rx.await;
            }
            Ok::<_, Infallible>(reply("old"))
        }
    });
    let router = WebhookRouter::new([("/hook", BoxCloneSyncService::new(old))]);
    let handle = router.table_handle();

    let in_flight = tokio::spawn(router.clone().oneshot(post("/hook")));
    entered_rx.await.unwrap();

    handle.replace(RouteTable::new([
        ("/hook", BoxCloneSyncService::new(named("new"))),
        ("/added", BoxCloneSyncService::new(named("added"))),
    ]));
    assert_eq!(
        text_of(router.clone().oneshot(post("/hook")).await.unwrap())
            .await
            .1,
        "new"
    );
    assert_eq!(
        text_of(router.clone().oneshot(post("/added")).await.unwrap())
            .await
            .1,
        "added"
    );

    release_tx.send(()).unwrap();
    assert_eq!(text_of(in_flight.await.unwrap().unwrap()).await.1, "old");
    assert_eq!(handle.current().len(), 2);
}

#[tokio::test]
async fn waits_for_the_route_service_to_be_ready() {
    // A concurrency limit of 1 makes readiness observable: the second request waits for the first.
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = {
        let calls = Arc::clone(&calls);
        service_fn(move |_req: Request<Body>| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(reply("ok")) }
        })
    };
    let limited = tower::ServiceBuilder::new()
        .layer(tower::buffer::BufferLayer::new(4))
        .concurrency_limit(1)
        .service(counted);
    let router = WebhookRouter::new([("/hook", limited)]);
    let (a, b) = tokio::join!(
        router.clone().oneshot(post("/hook")),
        router.oneshot(post("/hook"))
    );
    assert_eq!(a.unwrap().status(), 200);
    assert_eq!(b.unwrap().status(), 200);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn debug_shows_paths_only() {
    let router = WebhookRouter::new([("/b", named("x")), ("a", named("y"))]);
    let debug = format!("{router:?}");
    assert!(debug.contains(r#"paths: ["/a", "/b"]"#), "{debug}");
}
