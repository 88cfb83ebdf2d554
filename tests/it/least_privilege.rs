//! The RAM policy (`deploy/ram-policy.json`, which the README points to) allows exactly the ECS
//! actions the code can call: the client takes an `Action`, and `Action::ALL` lists every
//! variant (checked in the client's own tests). Every state change on an instance or a disk is
//! conditioned on the opt-in tag (`tests/flow_check.py` checks the same file from CI).

use std::collections::BTreeSet;

use ecs_rollback::ecs::client::Action;
use serde_json::Value;

fn readme_policy() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/ram-policy.json"
    ))
    .expect("deploy/ram-policy.json");
    serde_json::from_str(&text).expect("the policy is JSON")
}

/// The opt-in tag the settings require by default is the policy's condition on every state
/// change of an instance or a disk.
#[test]
fn state_changes_on_instances_and_disks_need_the_opt_in_tag() {
    let policy = readme_policy();
    let settings = ecs_rollback::settings::Settings::default();
    let (key, value) = settings
        .require_tag
        .clone()
        .expect("an opt-in tag by default");
    let mut conditioned = 0;
    for statement in policy["Statement"].as_array().expect("statements") {
        let resources: Vec<&str> = match &statement["Resource"] {
            Value::String(r) => vec![r.as_str()],
            Value::Array(r) => r.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let on_instance_or_disk = resources
            .iter()
            .any(|r| r.ends_with(":instance/*") || r.ends_with(":disk/*"));
        if on_instance_or_disk {
            assert_eq!(
                statement["Condition"]["StringEquals"][format!("acs:ResourceTag/{key}")],
                Value::String(value.clone()),
                "{statement}"
            );
            conditioned += 1;
        }
    }
    assert!(
        conditioned >= 2,
        "instance and disk statements: {conditioned}"
    );
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
