//! JSON values and raw bytes through `ScrubConfig::scrub` and `ScrubOwnerMetadata` (SPEC §4).
//!
//! The oracle is SPEC §4 written out: at `result.flow`, each of `result.flows[]` and
//! `result.current`, an object loses `ownerKey`, `requesterOrigin`, `chainId`; at `result.task` and
//! each of `result.tasks[]` it loses `ownerKey`, `requesterSessionKey`, `requesterAgentId`,
//! `metadata`; nothing else changes, and the remaining members keep their order. Checked:
//!
//! - `ScrubConfig::scrub` on a value gives exactly the oracle's value (compared as serialised text,
//!   so order counts), and a second scrub removes nothing;
//! - the layer over a structured body (what the action service answers) does the same;
//! - the layer over a JSON body of raw bytes, in one to three frames: valid JSON comes back as the
//!   oracle's value with a correct `Content-Length`; an empty body passes as it is; anything else
//!   is `500 Internal Server Error` in plain text (fail closed), never the bytes.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Map, Value, json};
use tower::{ServiceExt, service_fn};
use tower_webhooks::{
    ScrubOwnerMetadata,
    body::{StandaloneBody, json_response},
    scrub::ScrubConfig,
};

use super::headers::Frames;
use super::{Input, Outcome, ready};

const FLOW_KEYS: [&str; 3] = ["ownerKey", "requesterOrigin", "chainId"];
const TASK_KEYS: [&str; 4] = [
    "ownerKey",
    "requesterSessionKey",
    "requesterAgentId",
    "metadata",
];
const KEYS: [&str; 14] = [
    "ownerKey",
    "requesterOrigin",
    "chainId",
    "requesterSessionKey",
    "requesterAgentId",
    "metadata",
    "flowId",
    "stateJson",
    "result",
    "flow",
    "flows",
    "task",
    "tasks",
    "current",
];

/// A value's serialised text: comparing these compares member order too (`Value`'s `==` does
/// not), and is never a comparison of a `Value` with a string.
fn text(value: &Value) -> String {
    value.to_string()
}

/// SPEC §4 applied to a copy of `value`.
pub fn expected(value: &Value) -> Value {
    let mut value = value.clone();
    let strip = |item: &mut Value, keys: &[&str]| {
        if let Value::Object(map) = item {
            map.retain(|k, _| !keys.contains(&k.as_str()));
        }
    };
    if let Some(Value::Object(result)) = value.get_mut("result") {
        for (position, keys, each) in [
            ("flow", &FLOW_KEYS[..], false),
            ("flows", &FLOW_KEYS[..], true),
            ("current", &FLOW_KEYS[..], false),
            ("task", &TASK_KEYS[..], false),
            ("tasks", &TASK_KEYS[..], true),
        ] {
            match result.get_mut(position) {
                Some(Value::Array(items)) if each => {
                    items.iter_mut().for_each(|item| strip(item, keys));
                }
                Some(item) if !each => strip(item, keys),
                _ => {}
            }
        }
    }
    value
}

// ---------------------------------------------------------------------- generation

fn any_json(input: &mut Input<'_>, depth: usize) -> Value {
    match input.below(if depth == 0 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => Value::Bool(input.chance(4)),
        2 => json!(i64::from(input.byte()) - 100),
        3 => json!(f64::from(input.byte()) / 3.0),
        4 => (*input.pick(&["", "agent:main:owner", "x"])).into(),
        5 => Value::Array(
            (0..input.below(4))
                .map(|_| any_json(input, depth - 1))
                .collect(),
        ),
        _ => object(input, depth),
    }
}

fn object(input: &mut Input<'_>, depth: usize) -> Value {
    let mut map = Map::new();
    for _ in 0..input.below(6) {
        let key = match input.below(8) {
            0 => String::from_utf8_lossy(input.bytes(4)).into_owned(),
            _ => (*input.pick(&KEYS)).to_owned(),
        };
        let value = any_json(input, depth.saturating_sub(1));
        map.insert(key, value);
    }
    Value::Object(map)
}

fn record(input: &mut Input<'_>) -> Value {
    match input.below(8) {
        0 => any_json(input, 2),
        _ => object(input, 3),
    }
}

/// A TaskFlow-like envelope (or, one time in four, any JSON value).
pub fn envelope(input: &mut Input<'_>) -> Value {
    if input.below(4) == 0 {
        return any_json(input, 4);
    }
    let mut result = Map::new();
    for position in ["flow", "flows", "current", "task", "tasks", "stateJson"] {
        if input.chance(4) {
            let value = if position.ends_with('s') && input.chance(6) {
                Value::Array((0..input.below(4)).map(|_| record(input)).collect())
            } else {
                record(input)
            };
            result.insert(position.to_owned(), value);
        }
    }
    json!({"ok": input.chance(4), "routeId": "r", "result": Value::Object(result)})
}

/// The bytes of a response body: raw (mode 0), an envelope with bytes spliced in (mode 1), an
/// envelope (modes 2 and 3).
pub fn body_bytes(input: &mut Input<'_>) -> Vec<u8> {
    match input.below(4) {
        0 => input.rest().to_vec(),
        1 => {
            let mut text = envelope(input).to_string().into_bytes();
            let at = input.below(text.len() + 1);
            let cut = input.below(3).min(text.len() - at);
            let splice = input.bytes(4).to_vec();
            text.splice(at..at + cut, splice);
            text
        }
        _ => envelope(input).to_string().into_bytes(),
    }
}

// ---------------------------------------------------------------------- the checks

/// `ScrubConfig::scrub` and the layer over a structured body, on `value`.
pub fn check_value(value: &Value) -> Outcome {
    let want = expected(value).to_string();
    let config = ScrubConfig::new();
    let mut scrubbed = value.clone();
    config.scrub(&mut scrubbed);
    ensure!(
        text(&scrubbed) == want,
        "scrub({value}) gave {scrubbed}, expected {want}"
    );
    ensure!(
        config.scrub(&mut scrubbed) == 0 && text(&scrubbed) == want,
        "a second scrub of {value} changed something"
    );

    let structured = value.clone();
    let service = ScrubOwnerMetadata::new(
        service_fn(move |_: Request<()>| {
            let response: Response<StandaloneBody> =
                json_response(StatusCode::OK, structured.clone());
            async move { Ok::<_, Infallible>(response) }
        }),
        ScrubConfig::new(),
    );
    let response = ready(service.oneshot(Request::new(())))?.unwrap_or_else(|e| match e {});
    let bytes = ready(response.into_body().collect())?
        .unwrap_or_else(|e| match e {})
        .to_bytes();
    let got: Value = serde_json::from_slice(&bytes).map_err(|e| format!("structured: {e}"))?;
    ensure!(
        text(&got) == want,
        "the layer over a structured {value} gave {got}, expected {want}"
    );
    Ok(())
}

/// The answer of the layer over a JSON response whose body is `bytes`, sent in
/// `cuts.len() + 1` frames.
fn through_layer(
    bytes: &[u8],
    cuts: &[usize],
    content_type: &'static str,
) -> Result<(http::response::Parts, Bytes), String> {
    let mut frames = Vec::new();
    let mut rest = bytes;
    for cut in cuts {
        let (head, tail) = rest.split_at((*cut).min(rest.len()));
        frames.push(Bytes::copy_from_slice(head));
        rest = tail;
    }
    frames.push(Bytes::copy_from_slice(rest));
    let length = bytes.len();
    let service = ScrubOwnerMetadata::new(
        service_fn(move |_: Request<()>| {
            let response = Response::builder()
                .header("content-type", content_type)
                .header("content-length", length)
                .body(Frames(frames.iter().cloned().collect()))
                .expect("a valid response");
            async move { Ok::<_, Infallible>(response) }
        }),
        ScrubConfig::new(),
    );
    let response = ready(service.oneshot(Request::new(())))?.unwrap_or_else(|e| match e {});
    let (parts, body) = response.into_parts();
    let out = ready(body.collect())?
        .unwrap_or_else(|e| match e {})
        .to_bytes();
    Ok((parts, out))
}

/// The body the layer sends for a JSON response of `bytes`.
pub fn layer_output(bytes: &[u8]) -> Result<String, String> {
    let (_, out) = through_layer(bytes, &[], "application/json")?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The layer over a JSON response whose body is `bytes`, sent in `cuts.len() + 1` frames.
pub fn check_bytes(bytes: &[u8], cuts: &[usize], content_type: &'static str) -> Outcome {
    let (parts, out) = through_layer(bytes, cuts, content_type)?;
    let shown = String::from_utf8_lossy(bytes);
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());

    if bytes.is_empty() {
        ensure!(
            parts.status == StatusCode::OK
                && out.is_empty()
                && header("content-length") == Some("0"),
            "an empty JSON body came back as {} {out:?}",
            parts.status
        );
        return Ok(());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(value) => {
            let want = expected(&value).to_string();
            let got: Value = serde_json::from_slice(&out)
                .map_err(|e| format!("valid JSON {shown:?} came back invalid ({e}): {out:?}"))?;
            ensure!(
                parts.status == StatusCode::OK && text(&got) == want,
                "{shown:?} came back as {} {got}, expected {want}",
                parts.status
            );
            ensure!(
                header("content-length") == Some(out.len().to_string().as_str()),
                "Content-Length {:?} for {} bytes",
                header("content-length"),
                out.len()
            );
        }
        Err(_) => {
            ensure!(
                parts.status == StatusCode::INTERNAL_SERVER_ERROR
                    && out == "Internal Server Error"
                    && header("content-type") == Some("text/plain; charset=utf-8"),
                "invalid JSON {shown:?} came back as {} {out:?} (must fail closed)",
                parts.status
            );
        }
    }
    Ok(())
}

/// One check from raw bytes: a value (mode 0, its bytes also go through the layer) or response
/// bytes through the layer (modes 1 to 3).
pub fn check(data: &[u8]) -> Outcome {
    let mut input = Input::new(data);
    let mode = input.below(4);
    let content_type = *input.pick(&[
        "application/json",
        "application/json; charset=utf-8",
        "application/problem+json",
    ]);
    let cuts: Vec<usize> = (0..input.below(3)).map(|_| input.below(64)).collect();
    if mode == 0 {
        let value = envelope(&mut input);
        check_value(&value)?;
        return check_bytes(value.to_string().as_bytes(), &cuts, content_type);
    }
    let bytes = body_bytes(&mut input);
    check_bytes(&bytes, &cuts, content_type)
}
