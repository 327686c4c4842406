//! The `gateway` example as a subprocess: built once per test binary, started on `127.0.0.1:0` with
//! JSON logs, its output read line by line so a test can wait for a log line instead of sleeping.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;

/// The `gateway` example's executable, built (or found up to date) by the cargo running the tests.
pub fn gateway_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
        let output = std::process::Command::new(cargo)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            // The test binaries' own features: every test of one `cargo test` run then asks for
            // the same executable, instead of rebuilding it over another's (the store tests need
            // the `sqlite` backend in it).
            .args([
                "build",
                "--example",
                "gateway",
                "--features",
                &gateway_features(),
                "--message-format=json",
            ])
            .output()
            .expect("running cargo build");
        assert!(
            output.status.success(),
            "cargo build --example gateway failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "gateway")
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo reported no gateway executable")
    })
}

/// A running gateway: its output, line by line as it comes, and all of it.
pub struct Subprocess {
    pub child: tokio::process::Child,
    pub lines: mpsc::UnboundedReceiver<String>,
    pub output: Arc<Mutex<String>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

pub const WAIT: Duration = Duration::from_secs(30);

impl Subprocess {
    /// The gateway on `127.0.0.1:0`, logging JSON at `trace`, without `WEBHOOK_SECRET`.
    pub fn command(config: Option<&Path>) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(gateway_binary());
        if let Some(config) = config {
            command.args(["--config", config.to_str().unwrap()]);
        }
        command
            .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
            .env("RUST_LOG", "trace")
            .env_remove("WEBHOOK_SECRET");
        command
    }

    /// The gateway with `config` on the store `store` (a `--store` URL), once it listens.
    pub async fn on_store(config: &Path, store: &str) -> (Self, std::net::SocketAddr) {
        let mut command = Self::command(Some(config));
        command.args(["--store", store]);
        let mut gateway = Self::start(command);
        let addr = gateway.listening().await;
        (gateway, addr)
    }

    pub fn start(mut command: tokio::process::Command) -> Self {
        let mut child = command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("starting the gateway");
        let (tx, lines) = mpsc::unbounded_channel();
        let output = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            Self::read(
                child.stdout.take().unwrap(),
                tx.clone(),
                Arc::clone(&output),
            ),
            Self::read(child.stderr.take().unwrap(), tx, Arc::clone(&output)),
        ];
        Self {
            child,
            lines,
            output,
            readers,
        }
    }

    fn read(
        stream: impl AsyncRead + Unpin + Send + 'static,
        tx: mpsc::UnboundedSender<String>,
        output: Arc<Mutex<String>>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                {
                    let mut all = output.lock().unwrap();
                    all.push_str(&line);
                    all.push('\n');
                }
                let _ = tx.send(line);
            }
        })
    }

    /// Waits (at most [`WAIT`]) for the next output line whose message is `message`.
    pub async fn wait_for(&mut self, message: &str) -> Value {
        let found = tokio::time::timeout(WAIT, async {
            while let Some(line) = self.lines.recv().await {
                if let Ok(event) = serde_json::from_str::<Value>(&line) {
                    if event["fields"]["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with(message))
                    {
                        return Some(event);
                    }
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(event)) => event,
            Ok(None) => panic!(
                "the gateway exited before logging {message:?}:\n{}",
                self.output.lock().unwrap()
            ),
            Err(_) => panic!(
                "no {message:?} within {WAIT:?}:\n{}",
                self.output.lock().unwrap()
            ),
        }
    }

    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("the gateway is running");
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// `SIGKILL` now (no drain, no goodbye), and waits until the process is gone.
    pub async fn kill_now(mut self) {
        self.signal("KILL");
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("killed")
            .unwrap();
        assert!(!status.success(), "killed, not exited: {status}");
    }

    /// Waits for the `gateway listening` line and returns the bound address it names.
    pub async fn listening(&mut self) -> SocketAddr {
        let listening = self.wait_for("gateway listening").await;
        listening["fields"]["listen"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// `SIGHUP`, then the outcome line: `configuration reloaded` or `reload failed`.
    pub async fn reload(&mut self) -> Value {
        self.signal("HUP");
        let found = tokio::time::timeout(WAIT, async {
            while let Some(line) = self.lines.recv().await {
                if let Ok(event) = serde_json::from_str::<Value>(&line) {
                    let message = event["fields"]["message"].as_str().unwrap_or("");
                    if message == "configuration reloaded" || message.starts_with("reload failed") {
                        return Some(event);
                    }
                }
            }
            None
        })
        .await;
        found.ok().flatten().unwrap_or_else(|| {
            panic!("no reload outcome:\n{}", self.output.lock().unwrap());
        })
    }

    /// `SIGTERM`, then everything the process wrote until it exited.
    pub async fn stop(mut self) -> String {
        self.signal("TERM");
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("the gateway did not exit after SIGTERM")
            .unwrap();
        assert!(status.success(), "gateway exit status {status}");
        for reader in self.readers.drain(..) {
            tokio::time::timeout(WAIT, reader).await.unwrap().unwrap();
        }
        self.output.lock().unwrap().clone()
    }
}

/// Runs the gateway to completion (it must exit within [`WAIT`]) and returns its status and output.
pub async fn run_to_exit(
    mut command: tokio::process::Command,
) -> (std::process::ExitStatus, String) {
    let output = tokio::time::timeout(WAIT, command.kill_on_drop(true).output())
        .await
        .expect("the gateway did not exit")
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status, text)
}

/// The features the gateway binary is built with: the test crate's backends, so one `cargo test`
/// run builds one gateway that every backend test can run.
fn gateway_features() -> String {
    let mut features = String::from("gateway");
    for (on, backend) in [
        (cfg!(feature = "redis"), "redis"),
        (cfg!(feature = "sqlite"), "sqlite"),
        (cfg!(feature = "postgres"), "postgres"),
    ] {
        if on {
            features.push(' ');
            features.push_str(backend);
        }
    }
    features
}
