//! Issue 11, making the gateway operable: health and readiness, metrics on their own listener, the
//! access log, the connection cap flag and a real command line, each driven through the built
//! gateway where an operator would meet it.

mod support;

use tower_webhooks::WebhooksConfig;

#[test]
fn a_route_at_a_health_path_is_a_config_error_naming_its_path_key() {
    for (path, reserved) in [
        ("/healthz", "/healthz"),
        ("readyz/", "/readyz"),
        (" /healthz ", "/healthz"),
    ] {
        let text = format!(
            r#"{{ routes: {{ ok: {{ sessionKey: "agent:main:main", secret: "s" }},
                             probe: {{ path: "{path}", sessionKey: "agent:main:main", secret: "s" }} }} }}"#
        );
        let error = WebhooksConfig::from_json5(&text).unwrap_err().to_string();
        assert_eq!(
            error,
            format!(
                "webhooks.routes.probe.path: {reserved} is answered by the health check and \
                 cannot be a route"
            ),
            "path {path:?}"
        );
    }
    // Near misses are ordinary routes.
    for path in ["/healthz/x", "/Healthz", "/plugins/webhooks/healthz"] {
        let text = format!(
            r#"{{ routes: {{ probe: {{ path: "{path}", sessionKey: "agent:main:main", secret: "s" }} }} }}"#
        );
        assert!(WebhooksConfig::from_json5(&text).is_ok(), "{path}");
    }
}

#[test]
fn metrics_listen_is_read_from_the_plugin_config_and_checked() {
    let config =
        WebhooksConfig::from_json5(r#"{ metrics: { listen: "127.0.0.1:9464" } }"#).unwrap();
    assert_eq!(
        config.metrics().listen,
        Some("127.0.0.1:9464".parse().unwrap())
    );
    let whole = WebhooksConfig::from_json5(
        r#"{ plugins: { entries: { webhooks: { config: { metrics: { listen: "[::1]:9464" } } } } } }"#,
    )
    .unwrap();
    assert_eq!(whole.metrics().listen, Some("[::1]:9464".parse().unwrap()));
    assert_eq!(
        WebhooksConfig::from_json5("{}").unwrap().metrics().listen,
        None
    );
    for (text, error) in [
        (
            r#"{ metrics: { listen: "localhost" } }"#,
            "webhooks.metrics.listen: must be an address like 127.0.0.1:9464",
        ),
        (
            r#"{ metrics: { listen: 9464 } }"#,
            "webhooks.metrics.listen: must be a string",
        ),
        (
            r#"{ metrics: { port: 1 } }"#,
            "webhooks.metrics.port: unknown key",
        ),
        (
            r#"{ metrics: true }"#,
            "webhooks.metrics: must be an object",
        ),
    ] {
        assert_eq!(
            WebhooksConfig::from_json5(text).unwrap_err().to_string(),
            error,
            "{text}"
        );
    }
}
