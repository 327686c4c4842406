//! The webhook gateway: the full pipeline over a TaskFlow store (in memory by default), on hyper 1.
//!
//! ```sh
//! cargo run --release --example gateway -- [--config FILE] [--store URL] [--listen ADDR]
//!     [--log-format text|json] [--metrics-listen ADDR] [--max-connections N] [--check-config]
//! ```
//!
//! - `--store URL` (or `store` in the config file) picks the store: `memory` (the default),
//!   `sqlite:PATH` (build with `--features sqlite`; durable across restarts) or `postgres://…`.
//!   A store that cannot be opened exits 2 naming the setting; a URL's password is never printed.
//!   `/readyz` answers `503` naming the backend while the store does not answer its check.
//!
//! - Without `--config` it serves the embedded default: route `default` at
//!   `/plugins/webhooks/default` for session `agent:main:main`, its secret from `WEBHOOK_SECRET` or,
//!   when that is unset, generated and printed once with a ready-to-paste `curl` command.
//! - `--listen` defaults to `127.0.0.1:18790`. `GET /healthz` answers `ok`, `GET /readyz` `ready`
//!   (or `503` while no route is served), before route lookup and without a secret.
//! - `--metrics-listen ADDR` (or `metrics: { listen }` in the config file) serves Prometheus metrics
//!   at `GET /metrics` on that separate listener; the webhook port never answers `/metrics`.
//! - Logs go to stderr through `tracing`: readable by default, one JSON object per line with
//!   `--log-format json` (or `LOG_FORMAT=json`); `RUST_LOG` filters them. Every request gets one
//!   access-log event (target `tower_webhooks::access`). No secret is ever logged.
//! - `--max-connections N` (default 10,000): at the cap the gateway stops accepting until a
//!   connection closes.
//! - `--check-config` loads the file, resolves every secret, prints the routes and exits: 0 when it
//!   loads, 2 with the error otherwise.
//! - `SIGHUP` re-reads the config file and re-resolves its secrets; `SIGTERM` or Ctrl-C stop
//!   accepting and give in-flight requests up to 15 s.
//! - A bad config, listen address or flag exits with status 2 and a message naming the problem;
//!   `--help` and `--version` exit 0.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, ValueEnum};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_webhooks::gateway::{ConfigCheck, Gateway, LoadReport};
use tower_webhooks::metrics::{MetricsEndpoint, TrackedKeys, WebhookMetrics};
use tower_webhooks::serve::{ServeOptions, ServeOutcome, serve};
use tower_webhooks::taskflow::{StoreUrl, TaskFlowStore};
use tower_webhooks::telemetry::TelemetryLayer;
use tower_webhooks::{Secret, gateway};
use tracing_subscriber::EnvFilter;

const DEFAULT_LISTEN: &str = "127.0.0.1:18790";

/// Authenticated webhook ingress for OpenClaw TaskFlows: the tower-webhooks pipeline on hyper 1.
#[derive(Debug, Parser)]
#[command(
    name = "gateway",
    version,
    after_help = "Environment:\n  WEBHOOK_SECRET  secret of the embedded default route (without --config); \
                  generated and printed when unset\n  LOG_FORMAT      json: the same as --log-format json\n  \
                  RUST_LOG        log filter [default: info]\n\n\
                  Signals: SIGHUP reloads the config file; SIGTERM or Ctrl-C drain and stop."
)]
struct Args {
    /// JSON5 config: the plugin config alone, or a whole OpenClaw config file [default: the
    /// embedded default route]
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// TaskFlow store: memory, sqlite:PATH or postgres://… [default: the config file's store,
    /// else memory]
    #[arg(long, value_name = "URL")]
    store: Option<String>,

    /// Address of the webhook listener
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,

    /// Log format on stderr [default: text, or json when LOG_FORMAT=json]
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<LogFormat>,

    /// Serve Prometheus metrics at GET /metrics on this separate address [default: the config
    /// file's metrics.listen, else no metrics listener]
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,

    /// Open connections at most; at the cap the gateway stops accepting until one closes
    #[arg(long, value_name = "N", default_value = "10000", value_parser = at_least_one)]
    max_connections: NonZeroUsize,

    /// Load the config, resolve every secret, print the routes and exit (0 ok, 2 error)
    #[arg(long)]
    check_config: bool,
}

fn at_least_one(text: &str) -> Result<NonZeroUsize, String> {
    text.parse::<NonZeroUsize>()
        .map_err(|_| "must be a whole number >= 1".into())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

impl Args {
    fn json_logs(&self) -> bool {
        match self.log_format {
            Some(format) => format == LogFormat::Json,
            // Any other LOG_FORMAT value means text, as before the flag parser: a variable meant
            // for another program must not stop the gateway.
            None => std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json")),
        }
    }
}

fn init_logs(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: a log file or journald would keep the escape codes.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn log_report(report: &LoadReport) {
    for warning in &report.warnings {
        tracing::warn!("{warning}");
    }
    for (id, path) in &report.routes {
        tracing::info!(route = %id, %path, "serving route");
    }
    if report.routes.is_empty() {
        tracing::warn!("no route is served: every request will answer 404");
    }
}

fn print_quick_start(listen: SocketAddr, secret: &Secret) {
    // Printed once to stdout, for the operator: the only place the generated secret ever appears.
    println!("No WEBHOOK_SECRET set: generated a secret for this run.");
    println!();
    println!("  secret: {}", secret.expose());
    println!();
    println!("Create a TaskFlow:");
    println!();
    println!(
        "  curl -sS -X POST http://{listen}/plugins/webhooks/{} \\\n    -H 'Authorization: Bearer {}' \\\n    -H 'Content-Type: application/json' \\\n    -d '{{\"action\":\"create_flow\",\"goal\":\"Try the webhook gateway\"}}'",
        gateway::DEFAULT_ROUTE_ID,
        secret.expose()
    );
    println!();
}

/// Completes on SIGTERM or Ctrl-C. The handlers are installed here, at once, not when the future
/// is first polled: a SIGTERM sent right after the `gateway listening` line must drain, not kill.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    let interrupt = tokio::signal::ctrl_c();
    async move {
        #[cfg(unix)]
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = interrupt.await;
        tracing::info!("shutting down: no new connections, finishing in-flight requests");
    }
}

/// `--store`, parsed: relative SQLite paths are relative to the working directory.
fn store_override(args: &Args) -> Result<Option<StoreUrl>, ExitCode> {
    let Some(text) = &args.store else {
        return Ok(None);
    };
    StoreUrl::parse(text, None).map(Some).map_err(|why| {
        eprintln!("gateway: {}: {why}", gateway::STORE_FLAG);
        ExitCode::from(2)
    })
}

/// `--check-config`: what a start would load, printed without a secret; exit 0, or 2 with the error.
fn check_config(args: &Args) -> ExitCode {
    let store = match store_override(args) {
        Ok(store) => store,
        Err(code) => return code,
    };
    let check = match &args.config {
        Some(path) => match ConfigCheck::of_file_on(path, store.as_ref()) {
            Ok(check) => check,
            Err(error) => {
                eprintln!("gateway: {error}");
                return ExitCode::from(2);
            }
        },
        None => ConfigCheck::embedded_on(store.as_ref()),
    };
    let mut check = check;
    if args.metrics_listen.is_some() {
        check.metrics_listen = args.metrics_listen;
    }
    print!("{check}");
    ExitCode::SUCCESS
}

/// Serves `GET /metrics` on `listen` until `stopping` turns true.
async fn serve_metrics(
    listen: SocketAddr,
    endpoint: MetricsEndpoint,
    mut stopping: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<ServeOutcome>, ExitCode> {
    let listener = match TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("gateway: cannot listen on {listen} for metrics: {error}");
            return Err(ExitCode::from(2));
        }
    };
    let listen = listener.local_addr().unwrap_or(listen);
    tracing::info!(%listen, "metrics listening");
    Ok(tokio::spawn(serve(
        listener,
        endpoint,
        ServeOptions::default(),
        async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        },
    )))
}

#[tokio::main]
async fn main() -> ExitCode {
    // Usage errors exit 2 with clap's message; --help and --version exit 0.
    let args = Args::parse();
    if args.check_config {
        return check_config(&args);
    }
    init_logs(args.json_logs());
    let store = match store_override(&args) {
        Ok(store) => store,
        Err(code) => return code,
    };

    let loaded = match &args.config {
        Some(path) => Gateway::from_file_on(path, store.as_ref()),
        None => {
            let from_env = std::env::var("WEBHOOK_SECRET").ok().and_then(Secret::new);
            let secret = from_env.clone().unwrap_or_else(Secret::generate);
            let loaded = match &store {
                Some(store) => Gateway::embedded_on(secret.clone(), store),
                None => Ok(Gateway::embedded(secret.clone())),
            };
            if from_env.is_none() && loaded.is_ok() {
                print_quick_start(args.listen, &secret);
            }
            loaded
        }
    };
    let (gateway, report) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("gateway: {error}");
            return ExitCode::from(2);
        }
    };
    log_report(&report);
    tracing::info!(store = %gateway.store_url(), "TaskFlow store open");

    let listener = match TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("gateway: cannot listen on {}: {error}", args.listen);
            return ExitCode::from(2);
        }
    };

    let (stop, stopping) = watch::channel(false);
    let mut telemetry = TelemetryLayer::new();
    let mut metrics = None;
    let mut metrics_server = None;
    if let Some(listen) = args.metrics_listen.or(gateway.metrics_settings().listen) {
        let mut registry = Registry::default();
        let backend = gateway.pipeline().store().backend();
        let counting = WebhookMetrics::with_store_backend(&mut registry, backend);
        registry.register_collector(Box::new(TrackedKeys::of(gateway.pipeline())));
        telemetry = telemetry.metrics(counting.clone());
        metrics = Some(counting);
        match serve_metrics(listen, MetricsEndpoint::new(registry), stopping.clone()).await {
            Ok(server) => metrics_server = Some(server),
            Err(code) => return code,
        }
    }

    let shutdown = shutdown_signal();
    let watching = tokio::spawn(gateway.watch_store());
    let gateway = Arc::new(gateway);
    #[cfg(unix)]
    {
        let gateway = Arc::clone(&gateway);
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .expect("installing the SIGHUP handler");
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                // Secret resolution may run an exec provider: keep it off the runtime's workers.
                let reloading = Arc::clone(&gateway);
                let outcome = tokio::task::spawn_blocking(move || reloading.reload()).await;
                if let Some(metrics) = &metrics {
                    metrics.record_config_reload(matches!(outcome, Ok(Ok(_))));
                }
                match outcome {
                    Ok(Ok(report)) => {
                        tracing::info!("configuration reloaded");
                        log_report(&report);
                    }
                    Ok(Err(error)) => tracing::error!("reload failed, old routes kept: {error}"),
                    Err(error) => tracing::error!("reload task failed: {error}"),
                }
            }
        });
    }

    // The bound address, not the requested one: with `--listen 127.0.0.1:0` this line is how a
    // supervisor (or a test) learns the port. Every signal handler is installed by now.
    let listen = listener.local_addr().unwrap_or(args.listen);
    tracing::info!(%listen, max_connections = args.max_connections, "gateway listening");

    let options = ServeOptions {
        max_connections: args.max_connections,
        ..ServeOptions::default()
    };
    let outcome = serve(listener, gateway.service(telemetry), options, async {
        shutdown.await;
        let _ = stop.send(true);
    })
    .await;
    match outcome {
        ServeOutcome::Drained => tracing::info!("all connections finished"),
        ServeOutcome::GraceExpired => tracing::warn!("grace period over: open connections dropped"),
    }
    if let Some(server) = metrics_server {
        let _ = server.await;
    }
    watching.abort();
    ExitCode::SUCCESS
}
