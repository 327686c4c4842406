//! The SPEC §8 route keys in the configuration: what each reads, its defaults, and the exact error
//! for every bad value, naming the key.

use std::time::Duration;

use http::HeaderName;
use tower_webhooks::WebhooksConfig;
use tower_webhooks::config::{
    AuthMode, Dispatch, EventSettings, RunTaskDispatch, TaskFlowDispatch,
};
use tower_webhooks::events::{EventTypeSource, Idempotency, Verification};
use tower_webhooks::ip_allowlist::AllowedIps;
use tower_webhooks::signature::SignatureScheme;
use tower_webhooks::taskflow::{FlowStatus, NotifyPolicy, TaskStatus};

fn load(text: &str) -> WebhooksConfig {
    match WebhooksConfig::from_json5(text) {
        Ok(config) => config,
        Err(e) => panic!("expected a valid config, got: {e}"),
    }
}

fn error(text: &str) -> String {
    match WebhooksConfig::from_json5(text) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(e) => e.to_string(),
    }
}

/// One route `r` with `keys` (JSON5 members) beside a session key and a secret.
fn route(keys: &str) -> String {
    format!("{{ routes: {{ r: {{ sessionKey: 'agent:main:main', secret: 's', {keys} }} }} }}")
}

/// The README's three providers.
const PROVIDERS: &str = r#"{
  allowedIps: ["10.0.0.0/8"],
  routes: {
    github: {
      sessionKey: "agent:main:main",
      auth: { mode: "signature", scheme: "github", secret: "gh-secret" },
      allowedIps: ["192.30.252.0/22", "185.199.108.0/22"],
      events: ["pull_request"],
      idempotency: {},
      dispatch: {
        mode: "taskflow",
        taskflow: {
          goalTemplate: "Review PR #{pull_request.number}: {pull_request.title}",
          currentStep: "review",
          runTask: { taskTemplate: "Review {pull_request.html_url}", labelTemplate: "PR {pull_request.number}" },
        },
      },
      skills: ["github", "code-review"],
    },
    stripe: {
      auth: { mode: "signature", scheme: "stripe", secret: "whsec_abc", toleranceSeconds: 120 },
      idempotency: { ttlHours: 72 },
      dispatch: { mode: "ack" },
    },
    slack: {
      sessionKey: "agent:main:main",
      secret: "slack-signing-secret",
      auth: { mode: "signature", scheme: "slack" },
      verification: { event: "url_verification" },
      event: { payloadPath: "event.type" },
      prompt: "Slack says: {{ event.text }}",
    },
    zap: { sessionKey: "agent:main:main", secret: "zap-secret" },
  },
}"#;

#[test]
fn the_three_provider_routes_read_as_written() {
    let config = load(PROVIDERS);
    let [github, stripe, slack, zap] = config.routes() else {
        panic!("four routes")
    };

    assert_eq!(
        github.auth,
        AuthMode::Signature {
            scheme: SignatureScheme::GitHub,
            tolerance: Duration::from_secs(300)
        }
    );
    assert!(github.secret.is_empty());
    assert_eq!(
        github.allowed_ips,
        Some(AllowedIps::parse(["192.30.252.0/22", "185.199.108.0/22"]).unwrap())
    );
    assert_eq!(
        github.event,
        EventSettings {
            events: vec!["pull_request".into()],
            event: EventTypeSource::default(),
            idempotency: Some(Idempotency::default()),
            verification: None,
            dispatch: Dispatch::TaskFlow(Box::new(TaskFlowDispatch {
                goal_template: Some(
                    "Review PR #{pull_request.number}: {pull_request.title}".into()
                ),
                current_step: Some("review".into()),
                status: FlowStatus::Queued,
                notify_policy: NotifyPolicy::DoneOnly,
                run_task: Some(RunTaskDispatch {
                    enabled: true,
                    task_template: Some("Review {pull_request.html_url}".into()),
                    run_id_template: None,
                    label_template: Some("PR {pull_request.number}".into()),
                    child_session_key: None,
                    source_id: None,
                    parent_task_id: None,
                    agent_id: None,
                    notify_policy: None,
                    status: TaskStatus::Queued,
                }),
            })),
            prompt: None,
            skills: vec!["github".into(), "code-review".into()],
        }
    );

    // An ack route needs no session key.
    assert_eq!(stripe.session_key, "");
    assert_eq!(stripe.event.dispatch, Dispatch::Ack);
    assert_eq!(
        stripe.event.idempotency.as_ref().unwrap().ttl,
        Duration::from_secs(72 * 3_600)
    );
    assert_eq!(
        stripe.auth,
        AuthMode::Signature {
            scheme: SignatureScheme::Stripe,
            tolerance: Duration::from_secs(120)
        }
    );

    // `prompt` alone makes a taskflow event route with the default flow settings.
    assert_eq!(slack.event.dispatch, Dispatch::TaskFlow(Box::default()));
    assert_eq!(
        slack.event.verification,
        Some(Verification {
            event: Some("url_verification".into()),
            challenge_path: "challenge".into(),
            response_path: "challenge".into(),
        })
    );
    assert_eq!(
        slack.event.event.payload_path.as_deref(),
        Some("event.type")
    );

    // A route with none of the keys is a SPEC §1 route.
    assert_eq!(zap.auth, AuthMode::SharedSecret);
    assert_eq!(zap.event, EventSettings::default());
    assert!(!zap.event.is_set());
    assert_eq!(zap.allowed_ips, None);
}

#[test]
fn resolving_uses_auth_secret_and_the_plugin_allowlist_as_a_default() {
    let resolved = load(PROVIDERS).resolve();
    assert!(resolved.skipped.is_empty());
    let secrets = |id: &str| {
        resolved
            .routes
            .iter()
            .find(|r| r.id == id)
            .unwrap()
            .secrets
            .iter()
            .map(|s| s.expose().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(secrets("github"), ["gh-secret"]);
    assert_eq!(secrets("slack"), ["slack-signing-secret"]);
    let allowed = |id: &str| {
        resolved
            .routes
            .iter()
            .find(|r| r.id == id)
            .unwrap()
            .allowed_ips
            .clone()
    };
    // The route's own list replaces the plugin's.
    assert_eq!(
        allowed("github"),
        Some(AllowedIps::parse(["192.30.252.0/22", "185.199.108.0/22"]).unwrap())
    );
    assert_eq!(
        allowed("zap"),
        Some(AllowedIps::parse(["10.0.0.0/8"]).unwrap())
    );
    let stripe = resolved.routes.iter().find(|r| r.id == "stripe").unwrap();
    assert_eq!(stripe.event.dispatch, Dispatch::Ack);
}

#[test]
fn an_unresolved_auth_secret_skips_the_route_naming_auth_secret() {
    let text = route(
        "auth: { mode: 'bearer', secret: { source: 'env', provider: 'default', id: 'TOWER_WEBHOOKS_EVENT_CONFIG_UNSET' } }",
    );
    let resolved = load(&text).resolve();
    assert_eq!(
        resolved.warnings(),
        ["[webhooks] skipping route r: could not resolve \
          plugins.entries.webhooks.config.routes.r.auth.secret \
          (env:default:TOWER_WEBHOOKS_EVENT_CONFIG_UNSET): \
          environment variable TOWER_WEBHOOKS_EVENT_CONFIG_UNSET is not set"]
    );
}

#[test]
fn every_auth_mode_with_its_defaults() {
    let mode = |auth: &str| {
        load(&route(&format!("auth: {auth}"))).routes()[0]
            .auth
            .clone()
    };
    assert_eq!(
        mode("{ mode: 'bearer' }"),
        AuthMode::Bearer {
            prefix: "Bearer".into()
        }
    );
    assert_eq!(
        mode("{ mode: 'bearer', prefix: 'Token' }"),
        AuthMode::Bearer {
            prefix: "Token".into()
        }
    );
    assert_eq!(
        mode("{ mode: 'header' }"),
        AuthMode::Header {
            header: HeaderName::from_static("x-openclaw-webhook-secret"),
            prefix: None
        }
    );
    assert_eq!(
        mode("{ mode: 'header', header: 'X-Gitlab-Token', prefix: 'tok ' }"),
        AuthMode::Header {
            header: HeaderName::from_static("x-gitlab-token"),
            prefix: Some("tok".into())
        }
    );
    assert_eq!(
        mode("{ mode: 'hmac-sha256' }"),
        AuthMode::HmacSha256 {
            header: HeaderName::from_static("x-webhook-signature"),
            prefix: None
        }
    );
    assert_eq!(
        mode("{ mode: 'signature', scheme: 'standard-webhooks', toleranceSeconds: 1 }"),
        AuthMode::Signature {
            scheme: SignatureScheme::StandardWebhooks,
            tolerance: Duration::from_secs(1)
        }
    );
    assert!(mode("{ mode: 'signature', scheme: 'slack' }").needs_body());
    assert!(!mode("{ mode: 'header' }").needs_body());
}

#[test]
fn every_bad_value_names_its_key() {
    let cases: &[(&str, &str)] = &[
        (
            "auth: 'bearer'",
            "webhooks.routes.r.auth: must be an object",
        ),
        ("auth: {}", "webhooks.routes.r.auth.mode: is required"),
        (
            "auth: { mode: 'oauth' }",
            r#"webhooks.routes.r.auth.mode: must be "bearer", "header", "hmac-sha256" or "signature""#,
        ),
        (
            "auth: { mode: 'bearer', extra: 1 }",
            "webhooks.routes.r.auth.extra: unknown key",
        ),
        (
            "auth: { mode: 'signature' }",
            r#"webhooks.routes.r.auth.scheme: is required with mode "signature""#,
        ),
        (
            "auth: { mode: 'signature', scheme: 'gitlab' }",
            r#"webhooks.routes.r.auth.scheme: must be "standard-webhooks", "github", "stripe" or "slack""#,
        ),
        (
            "auth: { mode: 'signature', scheme: 'hmac-sha256' }",
            r#"webhooks.routes.r.auth.scheme: must be "standard-webhooks", "github", "stripe" or "slack""#,
        ),
        (
            "auth: { mode: 'signature', scheme: 'github', toleranceSeconds: 0 }",
            "webhooks.routes.r.auth.toleranceSeconds: must be an integer >= 1",
        ),
        (
            "auth: { mode: 'signature', scheme: 'github', toleranceSeconds: 1.5 }",
            "webhooks.routes.r.auth.toleranceSeconds: must be an integer >= 1",
        ),
        (
            "auth: { mode: 'signature', scheme: 'github', header: 'x-sig' }",
            r#"webhooks.routes.r.auth.header: only applies to mode "header" or "hmac-sha256""#,
        ),
        (
            "auth: { mode: 'bearer', scheme: 'github' }",
            r#"webhooks.routes.r.auth.scheme: only applies to mode "signature""#,
        ),
        (
            "auth: { mode: 'header', toleranceSeconds: 5 }",
            r#"webhooks.routes.r.auth.toleranceSeconds: only applies to mode "signature""#,
        ),
        (
            "auth: { mode: 'header', header: 'bad header' }",
            "webhooks.routes.r.auth.header: must be a header name",
        ),
        (
            "auth: { mode: 'bearer', secret: [] }",
            "webhooks.routes.r.auth.secret: must not be an empty array",
        ),
        (
            "allowedIps: '10.0.0.0/8'",
            "webhooks.routes.r.allowedIps: must be an array of strings",
        ),
        (
            "allowedIps: ['10.0.0.0/8', '10.0.0.0/99']",
            "webhooks.routes.r.allowedIps[1]: invalid CIDR block or IP address `10.0.0.0/99`",
        ),
        (
            "allowedIps: [' ']",
            "webhooks.routes.r.allowedIps[0]: must not be empty",
        ),
        (
            "events: ['push', 3]",
            "webhooks.routes.r.events[1]: must be a string",
        ),
        (
            "event: { type: 'x' }",
            "webhooks.routes.r.event.type: unknown key",
        ),
        (
            "event: { header: '' }",
            "webhooks.routes.r.event.header: must not be empty",
        ),
        (
            "idempotency: true",
            "webhooks.routes.r.idempotency: must be an object",
        ),
        (
            "idempotency: { ttlHours: 0 }",
            "webhooks.routes.r.idempotency.ttlHours: must be a number > 0 and at most 876600 (a century)",
        ),
        (
            "idempotency: { ttlHours: '24' }",
            "webhooks.routes.r.idempotency.ttlHours: must be a number > 0 and at most 876600 (a century)",
        ),
        (
            "idempotency: { ttlHours: 1e9 }",
            "webhooks.routes.r.idempotency.ttlHours: must be a number > 0 and at most 876600 (a century)",
        ),
        (
            "verification: { path: 'x' }",
            "webhooks.routes.r.verification.path: unknown key",
        ),
        (
            "dispatch: {}",
            "webhooks.routes.r.dispatch.mode: is required",
        ),
        (
            "dispatch: { mode: 'agent' }",
            r#"webhooks.routes.r.dispatch.mode: "agent" is not supported"#,
        ),
        (
            "dispatch: { mode: 'deliver' }",
            r#"webhooks.routes.r.dispatch.mode: "deliver" is not supported"#,
        ),
        (
            "dispatch: { mode: 'email' }",
            r#"webhooks.routes.r.dispatch.mode: must be "taskflow" or "ack""#,
        ),
        (
            "dispatch: { mode: 'ack', taskflow: {} }",
            r#"webhooks.routes.r.dispatch.taskflow: only applies to mode "taskflow""#,
        ),
        (
            "dispatch: { mode: 'taskflow', taskflow: { status: 'succeeded' } }",
            r#"webhooks.routes.r.dispatch.taskflow.status: must be one of "queued", "running", "waiting", "blocked""#,
        ),
        (
            "dispatch: { mode: 'taskflow', taskflow: { notifyPolicy: 'loud' } }",
            r#"webhooks.routes.r.dispatch.taskflow.notifyPolicy: must be one of "done_only", "state_changes", "silent""#,
        ),
        (
            "dispatch: { mode: 'taskflow', taskflow: { runTask: { status: 'failed' } } }",
            r#"webhooks.routes.r.dispatch.taskflow.runTask.status: must be one of "queued", "running""#,
        ),
        (
            "dispatch: { mode: 'taskflow', taskflow: { runTask: { enabled: 'no' } } }",
            "webhooks.routes.r.dispatch.taskflow.runTask.enabled: must be a boolean",
        ),
        (
            "dispatch: { mode: 'taskflow', taskflow: { runTask: { runtime: 'acp' } } }",
            "webhooks.routes.r.dispatch.taskflow.runTask.runtime: unknown key",
        ),
        ("prompt: ''", "webhooks.routes.r.prompt: must not be empty"),
        (
            "skills: 'github'",
            "webhooks.routes.r.skills: must be an array of strings",
        ),
    ];
    for (keys, expected) in cases {
        assert_eq!(error(&route(keys)), *expected, "{keys}");
    }
}

#[test]
fn owners_and_secrets_are_required_where_the_spec_says() {
    assert_eq!(
        error("{ routes: { r: { secret: 's', dispatch: { mode: 'taskflow', taskflow: {} } } } }"),
        "webhooks.routes.r.sessionKey: is required"
    );
    assert_eq!(
        error("{ routes: { r: { sessionKey: 'agent:a:b', auth: { mode: 'bearer' } } } }"),
        "webhooks.routes.r.secret: is required"
    );
    let ack = load("{ routes: { r: { secret: 's', dispatch: { mode: 'ack' } } } }");
    assert_eq!(ack.routes()[0].session_key, "");
    assert_eq!(
        error("{ allowedIps: ['nope'], routes: {} }"),
        "webhooks.allowedIps[0]: invalid CIDR block or IP address `nope`"
    );
}

#[test]
fn dispatch_taskflow_without_templates_or_prompt_keeps_the_action_api() {
    let config = load(&route("dispatch: { mode: 'taskflow' }"));
    assert_eq!(config.routes()[0].event.dispatch, Dispatch::Actions);
    assert!(!config.routes()[0].event.is_event_route());
    let with_prompt = load(&route(
        "dispatch: { mode: 'taskflow' }, prompt: 'Handle it'",
    ));
    assert_eq!(
        with_prompt.routes()[0].event.dispatch,
        Dispatch::TaskFlow(Box::default())
    );
    let disabled = load(&route(
        "dispatch: { mode: 'taskflow', taskflow: { runTask: { enabled: false } } }",
    ));
    let Dispatch::TaskFlow(flow) = &disabled.routes()[0].event.dispatch else {
        panic!("a taskflow route")
    };
    assert!(!flow.run_task.as_ref().unwrap().enabled);
    let hours = load(&route("idempotency: { ttlHours: 0.5 }"));
    assert_eq!(
        hours.routes()[0].event.idempotency.as_ref().unwrap().ttl,
        Duration::from_secs(1_800)
    );
}
