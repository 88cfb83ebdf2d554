//! Every file in `events/` runs through `ecs-rollback invoke` against the built-in simulator,
//! with the outcomes `events/README.md` states.

use crate::common::{binary, fast_scenario_file};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `file -> outcomes`, from the README's table.
fn expectations() -> BTreeMap<String, Vec<String>> {
    crate::common::event_outcomes()
}

fn invoke(file: &Path, token: bool) -> (Vec<Value>, i32, String) {
    let mut cmd = binary();
    cmd.arg("invoke")
        .arg(file)
        .env("ECS_ROLLBACK_SIM_SCENARIO", fast_scenario_file());
    if token {
        cmd.env("ECS_ROLLBACK_WEBHOOK_TOKEN", "example-webhook-token");
    }
    let out = cmd.output().expect("runs");
    let stdout = String::from_utf8(out.stdout).expect("utf8");
    let events = stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("one JSON event per line"))
        // A drill's summary comes after its targets' results; it is checked on its own.
        .filter(|e| e["type"] != "ecs-rollback.drill-summary")
        .collect();
    (
        events,
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_sample_event_has_the_stated_outcome() {
    let want = expectations();
    let mut files: Vec<String> = std::fs::read_dir(root().join("events"))
        .expect("events/")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "{files:?}");
    for f in &files {
        let expected = want
            .get(f)
            .unwrap_or_else(|| panic!("events/README.md has no row for {f}"));
        let (events, code, stderr) = invoke(&root().join("events").join(f), true);
        let got: Vec<String> = events
            .iter()
            .map(|e| e["data"]["outcome"].as_str().unwrap_or("?").to_owned())
            .collect();
        assert_eq!(&got, expected, "{f}: {stderr}");
        for e in &events {
            assert_eq!(e["specversion"], "1.0", "{f}");
            assert_eq!(
                e["type"],
                format!(
                    "ecs-rollback.{}",
                    e["data"]["outcome"].as_str().unwrap_or("")
                ),
                "{f}"
            );
        }
        if f.contains("drill") {
            let out = binary()
                .arg("invoke")
                .arg(root().join("events").join(f))
                .env("ECS_ROLLBACK_SIM_SCENARIO", fast_scenario_file())
                .output()
                .expect("runs");
            let last = String::from_utf8_lossy(&out.stdout)
                .lines()
                .last()
                .unwrap_or("")
                .to_owned();
            let summary: Value = serde_json::from_str(&last).expect("json");
            assert_eq!(summary["type"], "ecs-rollback.drill-summary", "{f}");
            assert_eq!(summary["data"]["targets"], expected.len(), "{f}");
        }
        let ok = got.iter().all(|o| {
            matches!(
                o.as_str(),
                "succeeded" | "duplicate" | "dry-run" | "ignored" | "proposed"
            )
        });
        assert_eq!(code, if ok { 0 } else { 1 }, "{f}: exit code");
    }
    for f in want.keys() {
        assert!(
            files.contains(f),
            "events/README.md lists {f}, which does not exist"
        );
    }
}

#[test]
fn http_samples_without_the_token_are_refused_and_touch_nothing() {
    for f in ["http-alertmanager.json", "http-cms-callback-form.json"] {
        let (events, code, stderr) = invoke(&root().join("events").join(f), false);
        assert_eq!(events.len(), 1, "{f}");
        assert_eq!(events[0]["data"]["outcome"], "rejected");
        assert_eq!(events[0]["data"]["error"]["code"], "Unauthenticated");
        assert!(stderr.contains("HTTP 401"), "{stderr}");
        assert_eq!(code, 1);
    }
}

#[test]
fn unreadable_input_exits_2() {
    let dir = std::env::temp_dir().join(format!("ecs-rollback-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{not json").expect("write");
    let (events, code, stderr) = invoke(&bad, false);
    assert!(events.is_empty());
    assert_eq!(code, 2);
    assert!(stderr.contains("is not JSON"), "{stderr}");
    let (_, code, _) = invoke(&dir.join("missing.json"), false);
    assert_eq!(code, 2);
    let out = binary().args(["invoke", "--bogus"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
}

/// One limit, one answer: an event over 1 MiB given to `invoke` is one `rejected` result that
/// names the limit (exit 1), as on Lambda and Function Compute.
#[test]
fn invoke_refuses_an_event_over_the_one_limit() {
    let dir = std::env::temp_dir().join(format!("ecs-rollback-limit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for size in [3usize << 19, 5 << 20, 7 << 20] {
        let file = dir.join(format!("big-{size}.json"));
        let event =
            serde_json::json!({"instanceId": "i-bp1webapp00000001", "reason": "x".repeat(size)});
        std::fs::write(&file, event.to_string()).expect("write");
        let (events, code, stderr) = invoke(&file, false);
        assert_eq!(code, 1, "{size}: {stderr}");
        assert_eq!(events.len(), 1, "{size}");
        let data = &events[0]["data"];
        assert_eq!(data["outcome"], "rejected", "{size}");
        assert_eq!(data["error"]["code"], "InvalidRequest");
        assert!(
            data["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("more than the limit of 1048576 bytes")),
            "{size}: {data}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
