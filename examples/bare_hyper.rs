//! The loopback baseline: a bare hyper 1 server on the same accept loop as the gateway (HTTP/1.1 and
//! HTTP/2, hyper-util's auto builder), whose handler reads the body and answers a small JSON, with no
//! middleware at all. `benches/loopback.sh` drives it and the gateway alternately with the same load.
//!
//! ```sh
//! cargo run --release --example bare_hyper -- [ADDR]     # default 127.0.0.1:18800
//! ```

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tower::service_fn;
use tower_webhooks::serve::{ServeOptions, serve};

async fn handle(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // Read the body as the pipeline does, so both servers do the same I/O.
    let _ = request.into_body().collect().await;
    let mut response = Response::new(Full::new(Bytes::from_static(
        br#"{"ok":true,"routeId":"bare","result":{"flow":null}}"#,
    )));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/json; charset=utf-8".parse().unwrap(),
    );
    Ok(response)
}

#[tokio::main]
async fn main() {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18800".to_owned());
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .expect("binding the listen address");
    eprintln!("bare hyper listening on {listen}");
    serve(
        listener,
        service_fn(handle),
        ServeOptions::default(),
        async {
            let _ = tokio::signal::ctrl_c().await;
        },
    )
    .await;
}
