//! The RAM policy in the README allows exactly the ECS actions the code can call: the client
//! takes an `Action`, and `Action::ALL` lists every variant (checked in the client's own tests).

use std::collections::BTreeSet;

use ecs_rollback::ecs::client::Action;
use serde_json::Value;

fn readme_policy() -> Value {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let start = readme
        .find("{\"Version\":\"1\",\"Statement\":[")
        .expect("a RAM policy in the README");
    let end = start
        + readme[start..]
            .find("]}\n```")
            .expect("the policy block ends")
        + 2;
    serde_json::from_str(&readme[start..end]).expect("the README's policy is JSON")
}

#[test]
fn the_policy_grants_exactly_the_actions_the_code_calls() {
    let policy = readme_policy();
    let mut granted = BTreeSet::new();
    for statement in policy["Statement"].as_array().expect("statements") {
        assert_eq!(statement["Effect"], "Allow");
        match &statement["Action"] {
            Value::String(a) => {
                granted.insert(a.clone());
            }
            Value::Array(actions) => {
                for a in actions {
                    granted.insert(a.as_str().expect("action").to_owned());
                }
            }
            other => panic!("unexpected Action {other}"),
        }
    }
    assert!(
        granted.iter().all(|a| !a.contains('*')),
        "no wildcard actions: {granted:?}"
    );
    let called: BTreeSet<String> = Action::ALL
        .iter()
        .map(|a| format!("ecs:{}", a.as_str()))
        .collect();
    assert_eq!(
        granted, called,
        "README policy vs the actions the client can call"
    );
}

#[test]
fn state_changing_actions_are_scoped_to_their_resource_types() {
    let policy = readme_policy();
    for statement in policy["Statement"].as_array().expect("statements") {
        let actions: Vec<&str> = match &statement["Action"] {
            Value::String(a) => vec![a.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let changes = actions
            .iter()
            .any(|a| !a.starts_with("ecs:Describe") && *a != "ecs:ListTagResources");
        if changes {
            assert_ne!(
                statement["Resource"], "*",
                "{actions:?} must name resource types, not *"
            );
        }
    }
}
