//! The built binary in Lambda mode, against a small Lambda Runtime API emulator written here
//! (rust-lambda.md §2.3-2.4) and the ECS simulator over loopback HTTP: an SQS batch with a good,
//! a bad and a retryable record, an SNS alarm, a scheduled drill, a signed HTTP request, an
//! unsigned one, an Alertmanager webhook, and a refused request's error type.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use ecs_rollback::ledger::{self, Phase, RunRecord};
use ecs_rollback::sim::{Scenario, Timings};
use ecs_rollback::triggers::webhook;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, oneshot};

const WEBHOOK_SECRET: &str = "test-webhook-secret";
const WEBHOOK_TOKEN: &str = "test-webhook-token";

/// What the function answered to one invocation.
#[derive(Debug)]
enum Answer {
    Response(Value),
    Error { error_type: String, body: Value },
}

type Pending = (String, Value, oneshot::Sender<Answer>);

#[derive(Clone)]
struct Emulator {
    queue: Arc<tokio::sync::Mutex<mpsc::Receiver<Pending>>>,
    waiting: Arc<Mutex<HashMap<String, oneshot::Sender<Answer>>>>,
}

async fn next(State(em): State<Emulator>) -> Response {
    // A blocking long poll, as real Lambda does: never a 204.
    let Some((id, payload, reply)) = em.queue.lock().await.recv().await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    em.waiting.lock().expect("lock").insert(id.clone(), reply);
    // The function timeout of template.yaml.
    let deadline = chrono::Utc::now().timestamp_millis() + 900_000;
    (
        [
            ("lambda-runtime-aws-request-id", id),
            ("lambda-runtime-deadline-ms", deadline.to_string()),
            (
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:123456789012:function:ecs-rollback".into(),
            ),
            (
                "lambda-runtime-trace-id",
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1".into(),
            ),
            ("content-type", "application/json".into()),
        ],
        payload.to_string(),
    )
        .into_response()
}

async fn response(State(em): State<Emulator>, Path(id): Path<String>, body: String) -> StatusCode {
    if let Some(tx) = em.waiting.lock().expect("lock").remove(&id) {
        let _ = tx.send(Answer::Response(
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        ));
    }
    StatusCode::ACCEPTED
}

async fn error(
    State(em): State<Emulator>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    let error_type = body["errorType"].as_str().unwrap_or("").to_owned();
    let _ = headers;
    if let Some(tx) = em.waiting.lock().expect("lock").remove(&id) {
        let _ = tx.send(Answer::Error { error_type, body });
    }
    StatusCode::ACCEPTED
}

struct Function {
    submit: mpsc::Sender<Pending>,
    child: tokio::process::Child,
    counter: u32,
    /// Everything the function printed, read as it comes (a full pipe would block it).
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

fn drain(pipe: Option<impl tokio::io::AsyncRead + Unpin + Send + 'static>) -> Arc<Mutex<String>> {
    let buf = Arc::new(Mutex::new(String::new()));
    if let Some(mut pipe) = pipe {
        let sink = Arc::clone(&buf);
        tokio::spawn(async move {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .expect("lock")
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        });
    }
    buf
}

impl Function {
    async fn invoke(&mut self, payload: Value) -> Answer {
        self.counter += 1;
        let (tx, rx) = oneshot::channel();
        self.submit
            .send((format!("req-{:04}", self.counter), payload, tx))
            .await
            .expect("emulator running");
        match tokio::time::timeout(Duration::from_secs(60), rx).await {
            Ok(answer) => answer.expect("answered"),
            Err(_) => {
                let _ = self.child.start_kill();
                let out = self.stdout.lock().expect("lock").clone();
                let err = self.stderr.lock().expect("lock").clone();
                panic!(
                    "invocation {} got no answer in a minute\nstdout:\n{out}\nstderr:\n{err}",
                    self.counter
                );
            }
        }
    }
}

async fn start(sim_base: &str) -> Function {
    let (submit, queue) = mpsc::channel(16);
    let em = Emulator {
        queue: Arc::new(tokio::sync::Mutex::new(queue)),
        waiting: Arc::new(Mutex::new(HashMap::new())),
    };
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .with_state(em);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut child = binary_async()
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "ecs-rollback")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .envs(sim_env(sim_base))
        .env("ECS_ROLLBACK_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env("ECS_ROLLBACK_WEBHOOK_TOKEN", WEBHOOK_TOKEN)
        .env("ECS_ROLLBACK_COOLDOWN_SECONDS", "0")
        .env("ECS_ROLLBACK_POLL_INITIAL_MS", "10")
        .env("ECS_ROLLBACK_POLL_MAX_MS", "50")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the function");
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    Function {
        submit,
        child,
        counter: 0,
        stdout,
        stderr,
    }
}

fn sample(name: &str) -> Value {
    let text = std::fs::read_to_string(format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR")))
        .expect("sample");
    serde_json::from_str(&text).expect("json")
}

fn sqs_record(id: &str, body: &str) -> Value {
    json!({"messageId": id, "receiptHandle": "rh", "body": body, "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1796025600000"},
        "messageAttributes": {}, "md5OfBody": "x", "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:ecs-rollback-requests", "awsRegion": "us-east-1"})
}

fn http_event(body: &str, headers: Value) -> Value {
    json!({"version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "", "headers": headers,
        "requestContext": {"http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.1", "userAgent": "test"},
            "requestId": "http-1", "routeKey": "$default", "stage": "$default", "timeEpoch": 0},
        "body": body, "isBase64Encoded": false})
}

fn outcomes(results: &Value) -> Vec<String> {
    results["results"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|e| e["data"]["outcome"].as_str().unwrap_or("?").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn lambda_mode_end_to_end() {
    let sim = sim_with(Scenario {
        timings: Timings::fast(),
        ..Default::default()
    });
    let base = serve(&sim).await;
    // Another run holds legacy-03's disk: a request for it is retryable (RollbackInProgress).
    let held = RunRecord {
        key: "fedcba9876543210".into(),
        phase: Phase::Stopping,
        since: chrono::Utc::now().timestamp(),
        snapshot: LEGACY_SNAP.into(),
        was_running: true,
        end_running: true,
        stop_at: None,
        failure: None,
        undo: None,
        instance: None,
    };
    inproc_client(&sim)
        .tag_resources(
            REGION,
            "disk",
            &[LEGACY_SYS.to_owned()],
            &[(ledger::RUN_TAG.into(), held.encode())],
        )
        .await
        .expect("seed the ledger");
    let mut f = start(&base).await;

    // 1. SQS: a good, a bad and a retryable record.
    let batch = json!({"Records": [
        sqs_record("m-good", &json!({"diskId": WEB_DATA, "reason": "sqs"}).to_string()),
        sqs_record("m-bad", "{\"diskId\": 42}"),
        sqs_record("m-retry", &json!({"diskId": LEGACY_SYS}).to_string()),
    ]});
    match f.invoke(batch).await {
        Answer::Response(v) => assert_eq!(
            v,
            json!({"batchItemFailures": [{"itemIdentifier": "m-retry"}]})
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(sim.disk(WEB_DATA).expect("disk")["content"], WEB_DATA_SNAP);

    // 2. An SNS CloudWatch alarm in ALARM.
    match f.invoke(sample("sns-cloudwatch-alarm.json")).await {
        Answer::Response(v) => assert_eq!(outcomes(&v), vec!["succeeded"]),
        other => panic!("{other:?}"),
    }
    assert_eq!(sim.disk(WEB_SYS).expect("disk")["resets"], 1);
    assert_eq!(sim.instance_status(WEB).as_deref(), Some("Running"));

    // 3. A scheduled drill (EventBridge Scheduler input). Its schedule time (in the sample)
    // is older than the alarm's rollback of web-01 just above: rolling web-01 back again would
    // undo that later rollback, so that target is superseded; batch-02 rolls back.
    match f.invoke(sample("scheduler-drill.json")).await {
        Answer::Response(v) => assert_eq!(outcomes(&v), vec!["superseded", "succeeded"]),
        other => panic!("{other:?}"),
    }
    assert_eq!(sim.disk(WEB_SYS).expect("disk")["resets"], 1);
    assert_eq!(sim.disk(BATCH_SYS).expect("disk")["content"], BATCH_SNAP);
    assert_eq!(
        sim.instance_status(BATCH).as_deref(),
        Some("Running"),
        "the drill asked startAfterReset"
    );

    // 4. A signed HTTP request.
    let body =
        json!({"diskId": WEB_DATA, "idempotencyKey": "http-signed-1", "dryRun": true}).to_string();
    let ts = chrono::Utc::now().timestamp();
    let signed = http_event(
        &body,
        json!({"content-type": "application/json", "x-rollback-timestamp": ts.to_string(),
        "x-rollback-signature": webhook::sign(WEBHOOK_SECRET, ts, body.as_bytes())}),
    );
    match f.invoke(signed).await {
        Answer::Response(v) => {
            assert_eq!(v["statusCode"], 200);
            let inner: Value =
                serde_json::from_str(v["body"].as_str().expect("body")).expect("json");
            assert_eq!(outcomes(&inner), vec!["dry-run"]);
        }
        other => panic!("{other:?}"),
    }

    // 5. The same body unsigned, and signed with the wrong secret: 401, nothing touched.
    let before = sim.events().len();
    for headers in [
        json!({"content-type": "application/json"}),
        json!({"x-rollback-timestamp": ts.to_string(), "x-rollback-signature": webhook::sign("wrong", ts, body.as_bytes())}),
    ] {
        match f
            .invoke(http_event(
                &json!({"diskId": WEB_DATA}).to_string(),
                headers,
            ))
            .await
        {
            Answer::Response(v) => assert_eq!(v["statusCode"], 401),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(sim.events().len(), before);

    // 6. An Alertmanager webhook, through the Function URL with the bearer token.
    let am = sample("alertmanager-webhook.json").to_string();
    match f
        .invoke(http_event(
            &am,
            json!({"authorization": format!("Bearer {WEBHOOK_TOKEN}")}),
        ))
        .await
    {
        Answer::Response(v) => {
            assert_eq!(v["statusCode"], 200);
            let inner: Value =
                serde_json::from_str(v["body"].as_str().expect("body")).expect("json");
            // The alert began (its `startsAt` in the sample) before the alarm's rollback of
            // web-01 above completed: that later rollback is not undone.
            assert_eq!(outcomes(&inner), vec!["superseded", "ignored"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sim.disk(WEB_SYS).expect("disk")["resets"], 1);

    // 7. A refused request: an error whose type says so, not a Rust type name.
    match f
        .invoke(
            json!({"instanceId": LEGACY, "snapshotId": LEGACY_SNAP, "idempotencyKey": "legacy-1"}),
        )
        .await
    {
        Answer::Error { error_type, body } => {
            assert_eq!(error_type, "Retryable", "{body}");
            assert!(body["errorMessage"]
                .as_str()
                .is_some_and(|m| m.contains("RollbackInProgress")));
        }
        other => panic!("{other:?}"),
    }
    match f
        .invoke(json!({"instanceId": LOCKED, "idempotencyKey": "locked-1"}))
        .await
    {
        Answer::Error { error_type, .. } => assert_eq!(error_type, "RollbackRejected"),
        other => panic!("{other:?}"),
    }
    match f.invoke(json!("not an event")).await {
        Answer::Error { error_type, body } => {
            assert_eq!(error_type, "RollbackRejected");
            assert!(
                body["errorMessage"]
                    .as_str()
                    .is_some_and(|m| m.contains("unrecognised event")),
                "{body}"
            );
        }
        other => panic!("{other:?}"),
    }

    // The logs: JSON lines on stdout carrying the Lambda request id and the idempotency key,
    // and one line per result event.
    let _ = f.child.kill().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let out = f.stdout.lock().expect("lock").clone();
    let lines: Vec<Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(!lines.is_empty(), "JSON log lines on stdout: {out}");
    // The request ID where Lambda's JSON log format puts it: `requestId`, at the top level
    // (not nested in a span), with `level` and an RFC 3339 `timestamp` beside it.
    assert!(
        lines.iter().any(|l| l["requestId"] == "req-0001"),
        "a line with requestId req-0001 at the top: {out}"
    );
    for l in lines.iter().filter(|l| l.get("message").is_some()) {
        assert!(l.get("span").is_none() && l.get("spans").is_none(), "{l}");
        assert!(l["level"].is_string() && l["timestamp"].is_string(), "{l}");
    }
    assert!(lines
        .iter()
        .any(|l| l.to_string().contains("\"idempotency_key\"")));
    for l in out.lines() {
        assert!(
            l.matches("\"message\":").count() <= 1,
            "a log line with two message keys: {l}"
        );
    }
    let results = lines
        .iter()
        .filter(|l| l["message"] == "result event")
        .count();
    assert!(results >= 10, "{results} result event lines");
    assert!(
        !out.contains(ecs_rollback::sim::SIM_ACCESS_KEY_SECRET),
        "the secret never reaches the logs"
    );
    assert!(!out.contains(WEBHOOK_SECRET) && !out.contains(WEBHOOK_TOKEN));
}

#[tokio::test]
async fn lambda_mode_without_credentials_refuses_to_start() {
    let out = binary_async()
        .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
        .env("AWS_LAMBDA_FUNCTION_NAME", "ecs-rollback")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .output()
        .await
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no credentials"));
}

fn http_event_with_id(body: &str, headers: Value, request_id: &str) -> Value {
    let mut e = http_event(body, headers);
    e["requestContext"]["requestId"] = json!(request_id);
    e
}

fn http_results(answer: Answer) -> (u64, Value) {
    match answer {
        Answer::Response(v) => (
            v["statusCode"].as_u64().unwrap_or_default(),
            serde_json::from_str(v["body"].as_str().expect("body")).expect("json"),
        ),
        other => panic!("{other:?}"),
    }
}

/// One limit, one answer: an event over 1 MiB, and an HTTP body over it, are refused by the
/// project's limit, saying so (the event: `RollbackRejected`; the body: 413).
#[tokio::test]
async fn lambda_refuses_payloads_over_the_one_limit() {
    let sim = sim_with(Scenario {
        timings: Timings::fast(),
        ..Default::default()
    });
    let base = serve(&sim).await;
    let mut f = start(&base).await;
    let big = json!({"instanceId": WEB, "reason": "x".repeat(5 << 20)});
    match f.invoke(big).await {
        Answer::Error { error_type, body } => {
            assert_eq!(error_type, "RollbackRejected");
            assert!(
                body["errorMessage"]
                    .as_str()
                    .is_some_and(|m| m.contains("more than the limit of 1048576 bytes")),
                "{body}"
            );
        }
        other => panic!("{other:?}"),
    }
    let body = json!({"instanceId": WEB, "reason": "x".repeat(3 << 19)}).to_string();
    let (status, inner) = http_results(
        f.invoke(http_event(
            &body,
            json!({"authorization": format!("Bearer {WEBHOOK_TOKEN}")}),
        ))
        .await,
    );
    assert_eq!(status, 413, "{inner}");
    let message = inner["results"][0]["data"]["error"]["message"]
        .as_str()
        .unwrap_or("");
    assert!(
        message.contains("more than the limit of 1048576 bytes"),
        "{inner}"
    );
    assert!(sim.events().is_empty(), "nothing reached ECS");
}

/// Keys of HTTP requests that name none: a signed request is keyed by what its signature covers
/// (a replay, in another process, is a `duplicate`; the same body signed anew is a new
/// rollback); a bearer request by its request id (a repeat is never a silent duplicate). The
/// result carries the trigger's kind and the request id.
#[tokio::test]
async fn http_keys_follow_the_signature_or_the_request() {
    let sim = sim_with(Scenario {
        timings: Timings::fast(),
        ..Default::default()
    });
    let base = serve(&sim).await;
    let mut first = start(&base).await;
    let mut second = start(&base).await;
    let body =
        json!({"instanceId": WEB, "snapshotId": WEB_SNAP_TAGGED, "reason": "incident"}).to_string();
    let ts = chrono::Utc::now().timestamp();
    let signed = |ts: i64, id: &str| {
        http_event_with_id(
            &body,
            json!({"content-type": "application/json", "x-rollback-timestamp": ts.to_string(),
                "x-rollback-signature": webhook::sign(WEBHOOK_SECRET, ts, body.as_bytes())}),
            id,
        )
    };
    let (status, a) = http_results(first.invoke(signed(ts, "req-a")).await);
    assert_eq!(
        (status, outcomes(&a)),
        (200, vec!["succeeded".into()]),
        "{a}"
    );
    let data = &a["results"][0]["data"];
    assert_eq!(
        data["trigger"],
        json!({"kind": "http", "id": "req-a"}),
        "{data}"
    );
    // The same signed request replayed to another instance of the function: same key.
    let (_, b) = http_results(second.invoke(signed(ts, "req-b")).await);
    assert_eq!(outcomes(&b), vec!["duplicate"], "{b}");
    assert_eq!(
        b["results"][0]["data"]["idempotencyKey"],
        data["idempotencyKey"]
    );
    // The same body, signed anew: a new request, a new rollback.
    let (_, c) = http_results(first.invoke(signed(ts - 1, "req-c")).await);
    assert_eq!(outcomes(&c), vec!["succeeded"], "{c}");
    assert_ne!(
        c["results"][0]["data"]["idempotencyKey"],
        data["idempotencyKey"]
    );
    // Bearer: each request is its own; the same body twice is two rollbacks (cooldown 0 here).
    let bearer = json!({"authorization": format!("Bearer {WEBHOOK_TOKEN}")});
    for id in ["req-d", "req-e"] {
        let (_, r) = http_results(
            first
                .invoke(http_event_with_id(&body, bearer.clone(), id))
                .await,
        );
        assert_eq!(outcomes(&r), vec!["succeeded"], "{id}: {r}");
        assert_eq!(r["results"][0]["data"]["trigger"]["id"], id);
    }
    assert_eq!(sim.disk(WEB_SYS).expect("disk")["resets"], 4);
}

/// The lines of `out` that are EMF documents (a JSON object with `_aws`), each parsed whole.
fn metric_lines(out: &str) -> Vec<Value> {
    out.lines()
        .filter(|l| l.contains("\"_aws\""))
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .unwrap_or_else(|e| panic!("a metric line is one JSON document: {e}: {l}"))
        })
        .collect()
}

/// Time to recovery where users look: each result event has one CloudWatch EMF line of its own
/// on stdout (CloudWatch Logs extracts the metrics from it), naming the event, with the outcome
/// and trigger as dimensions and the recovery and downtime seconds as metrics; and a function
/// whose 900 s timeout fits a rollback says nothing about it.
#[tokio::test]
async fn each_result_event_has_its_metric_line_on_stdout() {
    let sim = sim_with(Scenario {
        timings: Timings::fast(),
        ..Default::default()
    });
    let base = serve(&sim).await;
    let mut f = start(&base).await;
    let mut ids = Vec::new();
    match f
        .invoke(
            json!({"instanceId": WEB, "snapshotId": WEB_SNAP_TAGGED, "idempotencyKey": "emf-1"}),
        )
        .await
    {
        Answer::Response(v) => {
            assert_eq!(outcomes(&v), vec!["succeeded"], "{v}");
            ids.push(v["results"][0]["id"].clone());
        }
        other => panic!("{other:?}"),
    }
    // An SQS batch: a good record and a bad one, two results, two lines.
    let batch = json!({"Records": [
        sqs_record("m-good", &json!({"diskId": WEB_DATA, "reason": "emf"}).to_string()),
        sqs_record("m-bad", "{\"diskId\": 42}"),
    ]});
    match f.invoke(batch).await {
        Answer::Response(v) => assert_eq!(v, json!({"batchItemFailures": []})),
        other => panic!("{other:?}"),
    }
    // The lines were written before each answer; the pipe is read by another task.
    let mut lines = Vec::new();
    for _ in 0..500 {
        lines = metric_lines(&f.stdout.lock().expect("lock"));
        if lines.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = f.stdout.lock().expect("lock").clone();
    assert_eq!(lines.len(), 3, "one metric line per result event:\n{out}");
    for m in &lines {
        let directive = &m["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "EcsRollback", "{m}");
        assert_eq!(
            directive["Dimensions"][0],
            json!(["Outcome", "TriggerKind"]),
            "{m}"
        );
        assert!(m["_aws"]["Timestamp"].is_i64(), "{m}");
        assert!(m["RecoverySeconds"].is_number(), "{m}");
        assert!(
            m.get("requestId").is_none() && m.get("message").is_none(),
            "a line of its own, not a log line: {m}"
        );
    }
    let direct = &lines[0];
    assert_eq!(direct["resultEventId"], ids[0], "the line names its event");
    assert_eq!(
        (&direct["Outcome"], &direct["TriggerKind"]),
        (&json!("succeeded"), &json!("direct"))
    );
    assert!(
        direct["DowntimeSeconds"].as_f64().is_some_and(|d| d > 0.0),
        "web-01 was stopped and started: {direct}"
    );
    let declared: Vec<&Value> = direct["_aws"]["CloudWatchMetrics"][0]["Metrics"]
        .as_array()
        .expect("metrics")
        .iter()
        .map(|m| &m["Name"])
        .collect();
    assert_eq!(
        declared,
        vec![
            &json!("RecoverySeconds"),
            &json!("DowntimeSeconds"),
            &json!("EcsCalls")
        ]
    );
    assert!(
        direct["EcsCalls"].as_u64().is_some_and(|n| n > 5),
        "the run's ECS requests are counted: {direct}"
    );
    let mut sqs: Vec<(String, String)> = lines[1..]
        .iter()
        .map(|m| {
            (
                m["Outcome"].as_str().unwrap_or("").to_owned(),
                m["TriggerKind"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    sqs.sort();
    assert_eq!(
        sqs,
        vec![
            ("rejected".to_owned(), "sqs".to_owned()),
            ("succeeded".to_owned(), "sqs".to_owned())
        ]
    );
    assert!(
        !out.contains("a rollback needs at least"),
        "a 900 s timeout fits a rollback: nothing to say\n{out}"
    );
}
