//! Operators in the loop (issue 24), over loopback HTTP: the remediation policy (an ECS
//! `Disk:Stalled` event proposes and changes nothing), approvals (the approved request runs
//! once; expired, altered and replayed approvals run nothing), the pause switch (the built
//! binary's `pause` / `resume`, and a warm process that sees it within its cache's life), the
//! cap, and notifications, each platform's request checked by a receiver on 127.0.0.1 the way
//! that platform's documentation says it checks them, with one receiver down.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::common::*;
use ecs_rollback::handler::gate::{Approvals, Control, Controls};
use ecs_rollback::handler::Handler;
use ecs_rollback::notify::{Endpoint, Notifier, Platform};
use ecs_rollback::policy::Policy;
use ecs_rollback::report::Outcome;
use ecs_rollback::settings::Settings;
use ecs_rollback::sim::Simulator;

const SECRET: &str = "approval-secret-for-tests";

fn cli(base: &str, args: &[&str], extra: &[(&str, &str)]) -> (i32, Vec<Value>, String) {
    let mut c = binary();
    c.args(args).stdin(std::process::Stdio::null());
    for (k, v) in sim_env(base) {
        c.env(k, v);
    }
    for (k, v) in [
        ("ECS_ROLLBACK_APPROVAL_SECRET", SECRET),
        ("ECS_ROLLBACK_POLL_INITIAL_MS", "50"),
        ("ECS_ROLLBACK_POLL_MAX_MS", "200"),
        ("ECS_ROLLBACK_TAG_SETTLE_MS", "20"),
    ]
    .iter()
    .chain(extra)
    {
        c.env(k, v);
    }
    let out = c.output().expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let events = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect();
    (
        out.status.code().unwrap_or(-1),
        events,
        String::from_utf8_lossy(&out.stderr).into_owned() + &stdout,
    )
}

fn sample(name: &str) -> String {
    format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn step<'a>(event: &'a Value, name: &str) -> Option<&'a Value> {
    event["data"]["steps"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
}

/// State-changing calls the simulator applied (tags included).
fn changes(sim: &Simulator) -> Vec<String> {
    sim.events()
        .iter()
        .filter(|e| {
            matches!(
                e.action.as_str(),
                "StopInstance" | "StartInstance" | "ResetDisk" | "CreateSnapshot" | "TagResources"
            )
        })
        .map(|e| format!("{} {}", e.action, e.resource))
        .collect()
}

fn token_of(proposed: &Value) -> String {
    let detail = step(proposed, "proposal").expect("a proposal step")["detail"]
        .as_str()
        .expect("detail")
        .to_owned();
    let start = detail.find("approve v1.").expect("the token") + "approve ".len();
    detail[start..]
        .split(['`', ' '])
        .next()
        .expect("token")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_stalled_proposes_and_changes_nothing_and_its_approval_rolls_back_once() {
    let sim = fast_sim();
    let base = serve(&sim).await;
    let (code, out, log) = cli(
        &base,
        &["invoke", &sample("ecs-event-disk-stalled.json")],
        &[],
    );
    assert_eq!(code, 0, "{log}");
    assert_eq!(out.len(), 1, "{log}");
    let proposed = &out[0];
    assert_eq!(proposed["data"]["outcome"], "proposed", "{log}");
    assert_eq!(
        step(proposed, "policy").map(|s| s["detail"].clone()),
        Some(json!("rule ecs-events: propose"))
    );
    assert!(changes(&sim).is_empty(), "{:?}", changes(&sim));
    let token = token_of(proposed);

    // Altered: one character of the payload changed.
    let mut altered = token.clone().into_bytes();
    altered[10] = if altered[10] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).expect("ascii");
    let (code, out, log) = cli(&base, &["approve", &altered, "--by", "mallory"], &[]);
    assert_eq!(code, 1, "{log}");
    assert_eq!(out[0]["data"]["error"]["code"], "ApprovalInvalid", "{log}");
    // Signed with another secret.
    let (_, out, log) = cli(
        &base,
        &["approve", &token],
        &[("ECS_ROLLBACK_APPROVAL_SECRET", "another")],
    );
    assert_eq!(out[0]["data"]["error"]["code"], "ApprovalInvalid", "{log}");
    // Expired: the same proposal, signed with the right secret, an hour old.
    let payload = token.split('.').nth(1).expect("payload");
    let mut p: ecs_rollback::approval::Proposal = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("b64"),
    )
    .expect("proposal");
    p.expires = chrono::Utc::now().timestamp() - 1;
    let expired = ecs_rollback::approval::sign(&p, SECRET.as_bytes());
    let (_, out, log) = cli(&base, &["approve", &expired], &[]);
    assert_eq!(out[0]["data"]["error"]["code"], "ApprovalExpired", "{log}");
    assert!(changes(&sim).is_empty(), "nothing ran: {:?}", changes(&sim));

    // Approved: exactly that request runs, once.
    let (code, out, log) = cli(&base, &["approve", &token, "--by", "alice"], &[]);
    assert_eq!(code, 0, "{log}");
    let done = &out[0];
    assert_eq!(done["data"]["outcome"], "succeeded", "{log}");
    assert_eq!(
        done["data"]["idempotencyKey"],
        proposed["data"]["idempotencyKey"]
    );
    assert_eq!(done["data"]["target"]["diskId"], WEB_DATA);
    let approval = step(done, "approval").expect("approval step")["detail"].clone();
    assert!(
        approval
            .as_str()
            .is_some_and(|d| d.contains("approved by alice (cli)")),
        "{approval}"
    );
    assert_eq!(resets(&sim, WEB_DATA), 1);
    let tag = sim.disk(WEB_DATA).expect("disk")["tags"]["ecs-rollback:approval"].clone();
    assert!(tag.as_str().is_some_and(|t| t.contains("alice")), "{tag}");

    // Replayed: refused, nothing runs again.
    let (code, out, log) = cli(&base, &["approve", &token, "--by", "bob"], &[]);
    assert_eq!(code, 1, "{log}");
    assert_eq!(out[0]["data"]["error"]["code"], "ApprovalReplayed", "{log}");
    assert!(
        out[0]["data"]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("alice")),
        "{log}"
    );
    assert_eq!(resets(&sim, WEB_DATA), 1);
    assert_safe(&sim.events(), WEB_DATA);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_approves_with_its_own_authentication() {
    let sim = fast_sim();
    let base = serve(&sim).await;
    let (_, out, log) = cli(
        &base,
        &["invoke", &sample("ecs-event-disk-stalled.json")],
        &[],
    );
    let token = token_of(&out[0]);
    let body = json!({"approve": token, "approvedBy": "carol"}).to_string();
    let http = |body: &str, auth: Option<&str>| {
        let mut headers = json!({"content-type": "application/json"});
        if let Some(a) = auth {
            headers["authorization"] = json!(a);
        }
        json!({"version": "2.0", "rawPath": "/", "headers": headers, "body": body,
               "isBase64Encoded": false, "requestContext": {"http": {"method": "POST"}, "requestId": "r-1"}})
    };
    let file = std::env::temp_dir().join(format!("approve-{}.json", std::process::id()));
    std::fs::write(&file, http(&body, None).to_string()).expect("write");
    let env = [("ECS_ROLLBACK_WEBHOOK_TOKEN", "hook-token")];
    let (_, out, log2) = cli(&base, &["invoke", file.to_str().expect("path")], &env);
    assert_eq!(
        out[0]["data"]["error"]["code"], "Unauthenticated",
        "{log}{log2}"
    );
    assert_eq!(resets(&sim, WEB_DATA), 0);
    std::fs::write(&file, http(&body, Some("Bearer hook-token")).to_string()).expect("write");
    let (code, out, log2) = cli(&base, &["invoke", file.to_str().expect("path")], &env);
    let _ = std::fs::remove_file(&file);
    assert_eq!(code, 0, "{log2}");
    assert_eq!(out[0]["data"]["outcome"], "succeeded", "{log2}");
    assert!(step(&out[0], "approval").expect("approval")["detail"]
        .as_str()
        .is_some_and(|d| d.contains("carol (webhook, bearer token)")));
    assert_eq!(resets(&sim, WEB_DATA), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_refuses_every_rollback_and_drill_and_resume_restores() {
    let sim = fast_sim();
    let base = serve(&sim).await;
    let (code, _, log) = cli(
        &base,
        &[
            "pause",
            "--region",
            REGION,
            "--reason",
            "incident 42",
            "--by",
            "dave",
        ],
        &[],
    );
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("PAUSED"), "{log}");
    let (code, _, log) = cli(&base, &["status", WEB_SYS], &[]);
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("rollbacks PAUSED since") && log.contains("incident 42"),
        "{log}"
    );
    let before = changes(&sim).len();
    let (code, out, log) = cli(&base, &["invoke", &sample("rollback.json")], &[]);
    assert_eq!(code, 1, "{log}");
    assert_eq!(out[0]["data"]["error"]["code"], "Paused", "{log}");
    let (_, out, log) = cli(&base, &["invoke", &sample("scheduler-drill.json")], &[]);
    let targets: Vec<&Value> = out
        .iter()
        .filter(|e| e["data"]["outcome"].is_string())
        .collect();
    assert_eq!(targets.len(), 2, "{log}");
    for t in targets {
        assert_eq!(t["data"]["error"]["code"], "Paused", "{log}");
    }
    // Nothing changed but the pause tag itself.
    assert_eq!(changes(&sim).len(), before, "{:?}", changes(&sim));
    assert_eq!(resets(&sim, WEB_SYS), 0);

    let (code, _, log) = cli(&base, &["resume", "--region", REGION], &[]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("not paused"), "{log}");
    let (code, out, log) = cli(&base, &["invoke", &sample("rollback.json")], &[]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(out[0]["data"]["outcome"], "succeeded", "{log}");
}

fn handler(base: &str, controls: Controls) -> Handler {
    let mut h = Handler::new(
        http_client(base, sim_credentials(), Duration::from_secs(5)),
        Settings::fast(),
        Some(REGION.into()),
    );
    h.controls = controls;
    h
}

fn controls(policy: Policy, cache: Duration) -> Controls {
    Controls {
        policy: Arc::new(policy),
        approvals: Approvals {
            secret: Some(SECRET.into()),
            ttl_secs: 3600,
        },
        control: Some(Control::new("ecs-rollback-control", cache)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_process_sees_a_pause_within_its_cache_life() {
    let sim = fast_sim();
    let base = serve(&sim).await;
    let h = handler(
        &base,
        controls(Policy::default(), Duration::from_millis(500)),
    );
    let dry = |key: &str| json!({"instanceId": WEB, "dryRun": true, "idempotencyKey": key});
    let r = h.handle(&dry("warm-1"), None).await;
    assert_eq!(r.reports[0].outcome, Outcome::DryRun, "{:?}", r.reports[0]);
    let (code, _, log) = cli(&base, &["pause", "--region", REGION], &[]);
    assert_eq!(code, 0, "{log}");
    let paused_at = Instant::now();
    let refused = loop {
        let r = h.handle(&dry("warm-2"), None).await;
        if r.reports[0]
            .error
            .as_ref()
            .is_some_and(|e| e.code == "Paused")
        {
            break paused_at.elapsed();
        }
        assert!(
            paused_at.elapsed() < Duration::from_secs(60),
            "not refused within a minute"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(refused < Duration::from_secs(60));
    cli(&base, &["resume", "--region", REGION], &[]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let r = h.handle(&dry("warm-3"), None).await;
    assert_eq!(r.reports[0].outcome, Outcome::DryRun, "{:?}", r.reports[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_refuses_the_rollback_past_it_in_the_window() {
    let fleet = opted_in_fleet(3, "capped", &[], 0, ("x", "y"));
    let sim = sim_with(ecs_rollback::sim::Scenario {
        fleet: Some(fleet),
        timings: ecs_rollback::sim::Timings::fast(),
        ..Default::default()
    });
    let base = serve(&sim).await;
    let policy = Policy::parse(
        r#"{"rules": [{"name": "requests", "match": {"source": "request"}, "action": "act",
                        "cap": {"max": 2, "windowSeconds": 3600}}]}"#,
    )
    .expect("policy");
    let h = handler(&base, controls(policy, Duration::from_secs(1)));
    let req = |i: usize| json!({"instanceId": format!("i-bp1capped{i:010}"), "idempotencyKey": format!("cap-{i}")});
    for i in 0..2 {
        let r = h.handle(&req(i), None).await;
        assert_eq!(
            r.reports[0].outcome,
            Outcome::Succeeded,
            "{:?}",
            r.reports[0]
        );
        assert!(r.reports[0].steps.iter().any(|s| s.name == "cap"));
    }
    let r = h.handle(&req(2), None).await;
    let e = r.reports[0].error.clone().expect("refused");
    assert_eq!(e.code, "CapReached", "{e:?}");
    assert!(
        e.message
            .contains("rule requests allows 2 rollbacks per 3600 s"),
        "{e:?}"
    );
    assert_eq!(resets(&sim, "d-bp1capped0000000002"), 0);
    assert!(!sim
        .events()
        .iter()
        .any(|ev| ev.resource.contains("capped0000000002") && ev.action != "TagResources"));
    // A redelivery of an admitted key keeps its place (a duplicate, not refused).
    let r = h.handle(&req(0), None).await;
    assert_eq!(
        r.reports[0].outcome,
        Outcome::Duplicate,
        "{:?}",
        r.reports[0]
    );
}

/// What a receiver saw: the platform, and whether its signature checked out.
type Seen = Arc<Mutex<Vec<(String, bool, Value)>>>;

fn hmac256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("key");
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

const DING_SECRET: &str = "SECding-test-secret";
const LARK_SECRET: &str = "lark-test-secret";
const CE_SECRET: &str = "ce-test-secret";
const SLACK_PATH: &str = "/services/T0000/B0000/XXXXXXXXXXXXXXXXXXXXXXXX";

/// Receivers on 127.0.0.1, each checking its platform's signature as documented:
/// - DingTalk (help.dingtalk.io, customize-robot-security-settings): `sign` =
///   urlencode(base64(HmacSHA256(secret, timestamp + "\n" + secret))), timestamp in ms within an hour;
/// - Lark/Feishu (open.feishu.cn, bot-v3/add-custom-bot): `sign` = base64(HmacSHA256(key =
///   timestamp + "\n" + secret, message = "")), in the body, timestamp in s within an hour;
/// - Slack (api.slack.com/messaging/webhooks): the secret URL path, a JSON `text`;
/// - CloudEvents (HTTP binding, batched mode): the content type, and the webhook's own signature.
async fn receivers(seen: Seen) -> String {
    async fn ding(
        State(seen): State<Seen>,
        Query(q): Query<std::collections::HashMap<String, String>>,
        body: Bytes,
    ) -> (StatusCode, String) {
        let ts: i64 = q.get("timestamp").and_then(|t| t.parse().ok()).unwrap_or(0);
        let want = STANDARD.encode(hmac256(
            DING_SECRET.as_bytes(),
            format!("{ts}\n{DING_SECRET}").as_bytes(),
        ));
        // `Query` has URL-decoded `sign` already.
        let fresh = (chrono::Utc::now().timestamp_millis() - ts).abs() < 3_600_000;
        let ok = q.get("sign") == Some(&want) && fresh && q.contains_key("access_token");
        let v: Value = serde_json::from_slice(&body).unwrap_or_default();
        seen.lock().expect("lock").push(("dingtalk".into(), ok, v));
        let answer = if ok {
            json!({"errcode": 0, "errmsg": "ok"})
        } else {
            json!({"errcode": 310000, "errmsg": "sign not match"})
        };
        (StatusCode::OK, answer.to_string())
    }
    async fn lark(State(seen): State<Seen>, body: Bytes) -> (StatusCode, String) {
        let v: Value = serde_json::from_slice(&body).unwrap_or_default();
        let ts: i64 = v["timestamp"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let want = STANDARD.encode(hmac256(format!("{ts}\n{LARK_SECRET}").as_bytes(), b""));
        let fresh = (chrono::Utc::now().timestamp() - ts).abs() < 3600;
        let ok = v["sign"] == want && fresh && v["msg_type"] == "text";
        seen.lock().expect("lock").push(("lark".into(), ok, v));
        let answer = if ok {
            json!({"code": 0, "msg": "success"})
        } else {
            json!({"code": 19021, "msg": "sign match fail or timestamp is not within one hour from current time"})
        };
        (StatusCode::OK, answer.to_string())
    }
    async fn slack(State(seen): State<Seen>, body: Bytes) -> (StatusCode, &'static str) {
        let v: Value = serde_json::from_slice(&body).unwrap_or_default();
        let ok = v["text"].is_string();
        seen.lock().expect("lock").push(("slack".into(), ok, v));
        if ok {
            (StatusCode::OK, "ok")
        } else {
            (StatusCode::BAD_REQUEST, "invalid_payload")
        }
    }
    async fn ce(State(seen): State<Seen>, headers: HeaderMap, body: Bytes) -> StatusCode {
        let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
        let ts = h("x-rollback-timestamp");
        let mac = hmac256(
            CE_SECRET.as_bytes(),
            &[ts.as_bytes(), b".", &body[..]].concat(),
        );
        let want = format!(
            "sha256={}",
            mac.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let ok = h("content-type") == "application/cloudevents-batch+json"
            && h("x-rollback-signature") == want;
        let v: Value = serde_json::from_slice(&body).unwrap_or_default();
        seen.lock()
            .expect("lock")
            .push(("cloudevents".into(), ok, v));
        if ok {
            StatusCode::ACCEPTED
        } else {
            StatusCode::UNAUTHORIZED
        }
    }
    let app = axum::Router::new()
        .route("/robot/send", post(ding))
        .route("/open-apis/bot/v2/hook/abc", post(lark))
        .route(SLACK_PATH, post(slack))
        .route("/events", post(ce))
        .with_state(seen);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

/// A port nothing listens on (bound, then closed).
async fn down() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    format!("http://{addr}")
}

fn url(s: &str) -> url::Url {
    url::Url::parse(s).expect("url")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_platform_gets_a_request_signed_as_it_documents_and_a_dead_one_is_a_warning() {
    let sim = fast_sim();
    let base = serve(&sim).await;
    let seen: Seen = Arc::default();
    let rx = receivers(seen.clone()).await;
    let dead = down().await;
    let mut h = handler(&base, controls(Policy::default(), Duration::from_secs(1)));
    let budget = Duration::from_secs(2);
    h.notifier = Some(Notifier::new(
        vec![
            Endpoint {
                platform: Platform::DingTalk,
                url: url(&format!("{rx}/robot/send?access_token=tok")),
                secret: Some(DING_SECRET.into()),
            },
            Endpoint {
                platform: Platform::Lark,
                url: url(&format!("{rx}/open-apis/bot/v2/hook/abc")),
                secret: Some(LARK_SECRET.into()),
            },
            Endpoint {
                platform: Platform::Slack,
                url: url(&format!("{rx}{SLACK_PATH}")),
                secret: None,
            },
            Endpoint {
                platform: Platform::CloudEvents,
                url: url(&format!("{rx}/events")),
                secret: Some(CE_SECRET.into()),
            },
            // A second CloudEvents endpoint, down.
            Endpoint {
                platform: Platform::CloudEvents,
                url: url(&format!("{dead}/events")),
                secret: Some(CE_SECRET.into()),
            },
        ],
        vec!["failed".into()],
        budget,
    ));
    let stalled: Value = serde_json::from_str(
        &std::fs::read_to_string(sample("ecs-event-disk-stalled.json")).expect("sample"),
    )
    .expect("json");
    let started = Instant::now();
    let reply = h.handle(&stalled, None).await;
    let took = started.elapsed();
    let r = &reply.reports[0];
    assert_eq!(r.outcome, Outcome::Proposed, "{r:?}");
    let seen = seen.lock().expect("lock").clone();
    for p in ["dingtalk", "lark", "slack", "cloudevents"] {
        let got: Vec<_> = seen.iter().filter(|(n, _, _)| n == p).collect();
        assert_eq!(got.len(), 1, "{p}: {seen:?}");
        assert!(
            got[0].1,
            "{p}: the signature did not check out: {:?}",
            got[0].2
        );
    }
    let ding = &seen
        .iter()
        .find(|(n, _, _)| n == "dingtalk")
        .expect("ding")
        .2;
    assert!(ding["text"]["content"]
        .as_str()
        .is_some_and(|t| t.contains("proposed") && t.contains("ecs-rollback approve v1.")));
    let ce = &seen
        .iter()
        .find(|(n, _, _)| n == "cloudevents")
        .expect("ce")
        .2;
    assert_eq!(ce[0]["type"], "ecs-rollback.proposed");
    // The dead endpoint: a warning in the result, and the answer came within the budget.
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    assert!(
        r.warnings[0].contains("cloudevents notification could not be sent"),
        "{:?}",
        r.warnings
    );
    assert!(took < budget + Duration::from_secs(5), "{took:?}");
    // A succeeded rollback is not in the filter: nothing more is sent.
    let before = seen.len();
    let ok = h
        .handle(&json!({"instanceId": WEB, "dryRun": true}), None)
        .await;
    assert_eq!(ok.reports[0].outcome, Outcome::DryRun);
    assert!(
        ok.reports[0].warnings.is_empty(),
        "{:?}",
        ok.reports[0].warnings
    );
    assert_eq!(before, 4);
}

fn resets(sim: &Simulator, disk: &str) -> u64 {
    sim.disk(disk).expect("disk")["resets"]
        .as_u64()
        .unwrap_or_default()
}
