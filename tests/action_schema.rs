//! The action schema tables (SPEC §3): the actions the parser accepts are exactly the ones the
//! tables are keyed by, and each table's fields are exactly the fields its action accepts.

use serde_json::{Map, Value, json};
use tower_webhooks::taskflow::Action;
use tower_webhooks::taskflow::ActionName;

/// A valid value for each required field of any action.
fn valid(field: &str) -> Value {
    match field {
        "flowId" => json!("00000000-0000-4000-8000-000000000000"),
        "expectedRevision" => json!(0),
        "runtime" => json!("acp"),
        "goal" | "token" | "task" => json!("x"),
        other => panic!("no valid value for required field {other}"),
    }
}

/// `action` and every required field of `action`, valid.
fn minimal(action: ActionName) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("action".into(), action.as_str().into());
    for field in action.required_field_names() {
        body.insert(field.into(), valid(field));
    }
    body
}

fn error(body: Map<String, Value>) -> String {
    Action::parse(&Value::Object(body)).unwrap_err().to_string()
}

#[test]
fn the_parser_accepts_exactly_the_actions_of_the_schema_tables() {
    // Every action of the table parses, with only its required fields, to itself.
    for action in ActionName::ALL {
        let body = Value::Object(minimal(action));
        let parsed = Action::parse(&body).unwrap_or_else(|e| panic!("{action}: {e}"));
        assert_eq!(parsed.name(), action);
        assert_eq!(ActionName::from_wire(action.as_str()), Some(action));
    }
    // Anything else is refused with the list of the table's actions, in its order.
    let listed: Vec<&str> = ActionName::ALL.iter().map(|a| a.as_str()).collect();
    let refusal = format!("action: must be one of {}", listed.join(", "));
    for name in [
        "create",
        "Create_flow",
        "get_flow ",
        "list_flow",
        "x",
        "run_tasks",
    ] {
        let mut body = Map::new();
        body.insert("action".into(), name.into());
        assert_eq!(error(body), refusal, "{name}");
        assert_eq!(ActionName::from_wire(name), None);
    }
    assert_eq!(
        refusal,
        "action: must be one of create_flow, get_flow, list_flows, find_latest_flow, \
         resolve_flow, get_task_summary, set_waiting, resume_flow, finish_flow, fail_flow, \
         request_cancel, cancel_flow, run_task"
    );
}

#[test]
fn each_action_accepts_exactly_the_fields_of_its_table() {
    let every_field: Vec<&str> = ActionName::ALL
        .iter()
        .flat_map(|action| action.field_names())
        .collect();
    for action in ActionName::ALL {
        let fields: Vec<&str> = action.field_names().collect();
        // A field of the table is never an unknown field, whatever its value.
        for field in &fields {
            let mut body = minimal(action);
            body.insert((*field).into(), json!({"not": "valid"}));
            let unknown = format!("{field}: unknown field");
            match Action::parse(&Value::Object(body)) {
                Ok(_) => {}
                Err(e) => assert_ne!(e.to_string(), unknown, "{action}"),
            }
        }
        // A field of another action's table is.
        for field in every_field.iter().filter(|f| !fields.contains(f)) {
            let mut body = minimal(action);
            body.insert((*field).into(), valid_or_null(field));
            assert_eq!(error(body), format!("{field}: unknown field"), "{action}");
        }
        // Each required field, left out, is named.
        for field in action.required_field_names() {
            let mut body = minimal(action);
            body.remove(field);
            assert_eq!(error(body), format!("{field}: required"), "{action}");
        }
    }
}

fn valid_or_null(field: &str) -> Value {
    match field {
        "flowId" | "expectedRevision" | "runtime" | "goal" | "token" | "task" => valid(field),
        _ => Value::Null,
    }
}
