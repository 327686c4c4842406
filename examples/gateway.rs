//! The webhook gateway: the full pipeline over an in-memory TaskFlow store, on hyper 1.
//!
//! ```sh
//! cargo run --release --example gateway -- [--config FILE] [--listen ADDR] [--log-format text|json]
//! ```
//!
//! - Without `--config` it serves the embedded default: route `default` at
//!   `/plugins/webhooks/default` for session `agent:main:main`, its secret from `WEBHOOK_SECRET` or,
//!   when that is unset, generated and printed once with a ready-to-paste `curl` command.
//! - `--listen` defaults to `127.0.0.1:18790`.
//! - Logs go to stderr through `tracing`: readable by default, one JSON object per line with
//!   `--log-format json` (or `LOG_FORMAT=json`); `RUST_LOG` filters them. No secret is ever logged.
//! - `SIGHUP` re-reads the config file and re-resolves its secrets; `SIGTERM` or Ctrl-C stop
//!   accepting and give in-flight requests up to 15 s.
//! - A bad config or listen address exits with status 2 and a message naming the problem.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use tokio::net::TcpListener;
use tower_webhooks::gateway::{Gateway, LoadReport};
use tower_webhooks::serve::{ServeOptions, ServeOutcome, serve};
use tower_webhooks::{Secret, gateway};
use tracing_subscriber::EnvFilter;

const USAGE: &str = "usage: gateway [--config FILE] [--listen ADDR] [--log-format text|json]";
const DEFAULT_LISTEN: &str = "127.0.0.1:18790";

struct Args {
    config: Option<PathBuf>,
    listen: SocketAddr,
    json_logs: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut config = None;
    let mut listen = DEFAULT_LISTEN.to_owned();
    let mut json_logs = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--config" => config = Some(PathBuf::from(value("--config")?)),
            "--listen" => listen = value("--listen")?,
            "--log-format" => match value("--log-format")?.as_str() {
                "json" => json_logs = true,
                "text" => json_logs = false,
                other => return Err(format!("--log-format must be text or json, not {other}")),
            },
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    let listen = listen
        .parse()
        .map_err(|_| format!("--listen {listen}: not an address like {DEFAULT_LISTEN}"))?;
    Ok(Args {
        config,
        listen,
        json_logs,
    })
}

fn init_logs(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    init_logs(args.json_logs);

    let (gateway, report) = match &args.config {
        Some(path) => match Gateway::from_file(path) {
            Ok(loaded) => loaded,
            Err(error) => {
                eprintln!("gateway: {error}");
                return ExitCode::from(2);
            }
        },
        None => {
            let from_env = std::env::var("WEBHOOK_SECRET").ok().and_then(Secret::new);
            let secret = from_env.clone().unwrap_or_else(Secret::generate);
            if from_env.is_none() {
                print_quick_start(args.listen, &secret);
            }
            Gateway::embedded(secret)
        }
    };
    log_report(&report);

    let listener = match TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("gateway: cannot listen on {}: {error}", args.listen);
            return ExitCode::from(2);
        }
    };
    // The bound address, not the requested one: with `--listen 127.0.0.1:0` this line is how a
    // supervisor (or a test) learns the port.
    let listen = listener.local_addr().unwrap_or(args.listen);
    tracing::info!(%listen, "gateway listening");

    let gateway = std::sync::Arc::new(gateway);
    #[cfg(unix)]
    {
        let gateway = std::sync::Arc::clone(&gateway);
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .expect("installing the SIGHUP handler");
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                // Secret resolution may run an exec provider: keep it off the runtime's workers.
                let gateway = std::sync::Arc::clone(&gateway);
                match tokio::task::spawn_blocking(move || gateway.reload()).await {
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

    match serve(
        listener,
        gateway.router(),
        ServeOptions::default(),
        shutdown_signal(),
    )
    .await
    {
        ServeOutcome::Drained => tracing::info!("all connections finished"),
        ServeOutcome::GraceExpired => tracing::warn!("grace period over: open connections dropped"),
    }
    ExitCode::SUCCESS
}
