//! The gateway's `store` setting over its command line and config file (SPEC §7): each scheme,
//! relative paths, `--store` over the file, a store that cannot be opened is exit 2 naming the
//! setting (never a fall back to memory), `--check-config` names the store without its password,
//! and `/readyz` names the store.

mod support;

use support::gateway_process::{Subprocess, run_to_exit};
use support::temp::TempDir;
use support::{post_bytes, raw};

const SECRET: &str = "store-gateway-secret-91c2";
const SESSION_KEY: &str = "agent:main:store";
const PASSWORD: &str = "hunter2-c0rrect-h0rse";

fn config(dir: &TempDir, store: Option<&str>) -> std::path::PathBuf {
    let name = format!("webhooks-{}.json5", dir.path().read_dir().unwrap().count());
    let store = store.map_or(String::new(), |store| format!("store: {store},"));
    dir.file(
        &name,
        format!(
            r#"{{ {store} routes: {{ s: {{ path: "/hooks/s", sessionKey: "{SESSION_KEY}", secret: "{SECRET}" }} }} }}"#
        ),
        0o600,
    )
}

async fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut command = tokio::process::Command::new(support::gateway_process::gateway_binary());
    command.args(args).env_remove("WEBHOOK_SECRET");
    for (name, value) in env {
        command.env(name, value);
    }
    let (status, output) = run_to_exit(command).await;
    (status.code().expect("exited, not killed"), output)
}

#[tokio::test]
async fn check_config_names_the_store_without_its_password() {
    let dir = TempDir::new("check");
    let path = config(&dir, Some(r#""sqlite:flows.db""#));
    let path = path.to_str().unwrap();
    let (code, output) = run(&["--config", path, "--check-config"], &[]).await;
    assert_eq!(code, 0, "{output}");
    let expected = format!(
        "store: sqlite (sqlite:{})\n",
        dir.path().join("flows.db").display()
    );
    assert!(
        output.contains(&expected),
        "relative to the config file:\n{output}"
    );
    assert!(
        !dir.path().join("flows.db").exists(),
        "checking a config creates no database"
    );

    let url = format!("postgres://hooks:{PASSWORD}@db.internal:5432/hooks?sslmode=require");
    let (code, output) = run(&["--config", path, "--store", &url, "--check-config"], &[]).await;
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("store: postgres (postgres://hooks:***@db.internal:5432/hooks?***)\n"),
        "{output}"
    );
    assert!(!output.contains(PASSWORD), "{output}");

    // A SecretRef keeps the URL out of the file; the check resolves it and still hides it.
    let path = config(
        &dir,
        Some(r#"{ source: "env", provider: "default", id: "STORE_GATEWAY_TEST_URL" }"#),
    );
    let path = path.to_str().unwrap();
    let (code, output) = run(
        &["--config", path, "--check-config"],
        &[("STORE_GATEWAY_TEST_URL", &url)],
    )
    .await;
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("store: postgres (postgres://hooks:***@"),
        "{output}"
    );
    assert!(!output.contains(PASSWORD), "{output}");
    let (code, output) = run(&["--config", path, "--check-config"], &[]).await;
    assert_eq!(code, 2, "{output}");
    assert_eq!(
        output,
        "gateway: webhooks.store: could not resolve (env:default:STORE_GATEWAY_TEST_URL): \
         environment variable STORE_GATEWAY_TEST_URL is not set\n"
    );
}

#[tokio::test]
async fn a_store_that_cannot_be_used_exits_2_naming_the_setting() {
    let dir = TempDir::new("bad");
    let with_file = config(&dir, None);
    let with_file = with_file.to_str().unwrap();
    let bad_file = config(&dir, Some(&format!(r#""mysql://u:{PASSWORD}@h/d""#)));
    let bad_file = bad_file.to_str().unwrap().to_owned();
    let missing_path = dir.path().join("no/such/dir/flows.db");
    let missing_dir = format!("sqlite:{}", missing_path.display());
    let postgres = format!("postgres://hooks:{PASSWORD}@127.0.0.1:1/hooks");
    let not_a_database = dir.file("garbage.db", "not a database at all, just words", 0o600);
    let not_a_database = format!("sqlite:{}", not_a_database.display());
    let cases: [(Vec<&str>, String); 6] = [
        (
            vec!["--store", "redis://127.0.0.1:6379"],
            "gateway: --store: unknown store scheme \"redis\": must be memory, sqlite:<path> or postgres://…\n".into(),
        ),
        (
            vec!["--store", "sqlite:"],
            "gateway: --store: sqlite: needs a file path, like sqlite:/var/lib/tower-webhooks/flows.db\n".into(),
        ),
        (
            vec!["--config", &bad_file],
            "gateway: webhooks.store: unknown store scheme \"mysql\": must be memory, sqlite:<path> or postgres://…\n".into(),
        ),
        (
            vec!["--config", with_file, "--store", &missing_dir],
            format!(
                "gateway: --store: cannot open the sqlite store {missing_dir}: unable to open \
                 database file: {}\n",
                missing_path.display()
            ),
        ),
        (
            vec!["--store", &not_a_database],
            format!("gateway: --store: cannot open the sqlite store {not_a_database}: file is not a database\n"),
        ),
        (
            vec!["--config", with_file, "--store", &postgres],
            if cfg!(feature = "postgres") {
                // Nothing listens on port 1: the pool's connection error, without the password.
                "gateway: --store: cannot open the postgres store postgres://hooks:***@127.0.0.1:1/hooks: cannot reach PostgreSQL: Error occurred while creating a new object: error connecting to server\n".into()
            } else {
                "gateway: --store: cannot open the postgres store postgres://hooks:***@127.0.0.1:1/hooks: built without the postgres feature\n".into()
            },
        ),
    ];
    for (args, expected) in cases {
        let mut args = args.clone();
        args.extend(["--listen", "127.0.0.1:0"]);
        let (code, output) = run(&args, &[]).await;
        assert_eq!(code, 2, "{args:?}: {output}");
        assert_eq!(output, expected, "{args:?}");
        assert!(!output.contains(PASSWORD), "{output}");
    }
}

#[tokio::test]
async fn the_gateway_serves_from_the_file_s_store_and_readyz_names_it() {
    let dir = TempDir::new("serve");
    let path = config(&dir, Some(r#""sqlite:flows.db""#));
    let mut gateway = Subprocess::start(Subprocess::command(Some(&path)));
    let opened = gateway.wait_for("TaskFlow store open").await;
    assert_eq!(
        opened["fields"]["store"].as_str(),
        Some(format!("sqlite:{}", dir.path().join("flows.db").display()).as_str())
    );
    let addr = gateway.listening().await;
    let bearer = format!("Bearer {SECRET}");
    let headers = [
        ("content-type", "application/json"),
        ("authorization", bearer.as_str()),
    ];
    let response = raw(
        addr,
        &post_bytes(
            "/hooks/s",
            &headers,
            br#"{"action":"create_flow","goal":"durable"}"#,
        ),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(
        dir.path().join("flows.db").exists(),
        "the file next to the config"
    );
    let ready = raw(
        addr,
        b"GET /readyz HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!((ready.status, ready.text()), (200, "ready".to_owned()));
    let output = gateway.stop().await;
    assert!(!output.contains(SECRET));
}
