//! The Function Compute front door (`ecs-rollback serve-fc`), driven over loopback HTTP as
//! Function Compute drives a custom runtime: the Alibaba sample events of `events/` posted to
//! `/invoke` with FC's headers, the outcomes `events/README.md` states, the status and
//! `x-fc-status` FC reads, the start/end log lines, `/initialize`, credentials from the
//! function role's headers, and the start-up with no arguments in an FC environment.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A running `serve-fc`: its base URL and what it printed on stdout and (its logs) stderr.
struct Runtime {
    child: Child,
    base: String,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary; `args` empty means "as Function Compute starts it" (no arguments,
/// `FC_FUNCTION_NAME` and `FC_SERVER_PORT=0` set).
fn start(args: &[&str], env: &[(&str, String)], simulate: bool) -> Runtime {
    let mut cmd = binary();
    cmd.args(args)
        .env("ECS_ROLLBACK_SIM_SCENARIO", fast_scenario_file())
        .env("ECS_ROLLBACK_POLL_INITIAL_MS", "20")
        .env("ECS_ROLLBACK_POLL_MAX_MS", "100")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if simulate {
        cmd.env("ECS_ROLLBACK_SIMULATE", "1");
    } else {
        cmd.env_remove("ECS_ROLLBACK_SIMULATE");
    }
    if args.is_empty() {
        cmd.env("FC_FUNCTION_NAME", "ecs-rollback")
            .env("FC_SERVER_PORT", "0");
    } else {
        cmd.env_remove("FC_FUNCTION_NAME");
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn serve-fc");
    let stderr = child.stderr.take().expect("stderr");
    let stdout = child.stdout.take().expect("stdout");
    let printed = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&printed);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let mut s = sink.lock().expect("lock");
            s.push_str(&line);
            s.push('\n');
        }
    });
    let (tx, rx) = std::sync::mpsc::channel();
    let logged = Arc::new(Mutex::new(String::new()));
    let log_sink = Arc::clone(&logged);
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            {
                let mut s = log_sink.lock().expect("lock");
                s.push_str(&line);
                s.push('\n');
            }
            if !sent {
                if let Some(addr) = line.strip_prefix("ecs-rollback serve-fc: listening on ") {
                    let _ = tx.send(addr.to_owned());
                    sent = true;
                }
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("serve-fc says where it listens");
    let port = addr.rsplit(':').next().expect("port");
    Runtime {
        child,
        base: format!("http://127.0.0.1:{port}"),
        stdout: printed,
        stderr: logged,
    }
}

impl Runtime {
    /// Whether the runtime printed all of `lines` on stdout within a few seconds (the pipe
    /// is read by another thread).
    fn printed(&self, lines: &[&str]) -> bool {
        let until = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let out = self.stdout.lock().expect("lock").clone();
            if lines.iter().all(|l| out.contains(l)) {
                return true;
            }
            if std::time::Instant::now() > until {
                eprintln!("stdout so far:\n{out}");
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Runtime {
    /// The log lines (stderr) that contain `needle`, waiting a few seconds for them.
    fn logged(&self, needle: &str) -> Vec<String> {
        let until = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let lines: Vec<String> = self
                .stderr
                .lock()
                .expect("lock")
                .lines()
                .filter(|l| l.contains(needle))
                .map(str::to_owned)
                .collect();
            if !lines.is_empty() || std::time::Instant::now() > until {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn start_sim() -> Runtime {
    start(
        &["serve-fc", "--host", "127.0.0.1", "--port", "0"],
        &[],
        true,
    )
}

struct Answer {
    status: u16,
    fc_status: String,
    body: Value,
}

async fn invoke(base: &str, body: String, headers: &[(&str, &str)]) -> Answer {
    post(base, "/invoke", body, headers).await
}

/// A POST to `path`, as a caller (or Function Compute) sends it; the answer must be JSON.
async fn post(base: &str, path: &str, body: String, headers: &[(&str, &str)]) -> Answer {
    let mut req = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .header("content-type", "application/octet-stream")
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = tokio::time::timeout(Duration::from_secs(60), req.send())
        .await
        .expect("answered in time")
        .expect("sent");
    let status = r.status().as_u16();
    let fc_status = r
        .headers()
        .get("x-fc-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = r.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    Answer {
        status,
        fc_status,
        body,
    }
}

fn outcomes(body: &Value) -> Vec<String> {
    body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|e| e["data"]["outcome"].as_str().unwrap_or("?").to_owned())
        .collect()
}

const ALIBABA_SAMPLES: &[&str] = &[
    "fc-mns-cloudevent.json",
    "fc-mns-batch.json",
    "fc-timer-drill.json",
    "alibaba-eventbridge-custom.json",
    "alibaba-eventbridge-ecs-statechange.json",
    "cms-to-mns.json",
    "cms-callback.json",
    "arms-webhook.json",
    "ecs-event-disk-stalled.json",
    "ecs-event-instance-statechange.json",
];

#[tokio::test]
async fn every_alibaba_sample_event_through_the_fc_front_door() {
    let expected = event_outcomes();
    for (n, file) in ALIBABA_SAMPLES.iter().enumerate() {
        // A runtime per sample: each starts from the simulator's fresh fleet, as `invoke` does.
        let rt = start_sim();
        let want = expected
            .get(*file)
            .unwrap_or_else(|| panic!("events/README.md has no row for {file}"));
        let body = std::fs::read_to_string(root().join("events").join(file)).expect("sample");
        let id = format!("1-6749c1a0-{n:08x}");
        let a = invoke(
            &rt.base,
            body,
            &[("x-fc-request-id", &id), ("x-fc-function-timeout", "900")],
        )
        .await;
        assert_eq!(&outcomes(&a.body), want, "{file}: {}", a.body);
        assert_eq!(a.status, 200, "{file}: {}", a.body);
        assert_eq!(a.fc_status, "200", "{file}");
        if file.contains("drill") {
            assert_eq!(
                a.body["summaries"].as_array().map(Vec::len),
                Some(1),
                "{file}: the drill summary"
            );
        }
        assert!(
            rt.printed(&[
                &format!("FC Invoke Start RequestId: {id}"),
                &format!("FC Invoke End RequestId: {id}")
            ]),
            "{file}: start and end lines"
        );
    }
}

#[tokio::test]
async fn refusals_and_bad_input_are_failed_invocations_with_their_type() {
    let rt = start_sim();
    let body =
        std::fs::read_to_string(root().join("events/refused-not-opted-in.json")).expect("sample");
    let a = invoke(&rt.base, body, &[("x-fc-request-id", "r-1")]).await;
    assert_eq!((a.status, a.fc_status.as_str()), (404, "404"), "{}", a.body);
    assert_eq!(a.body["errorType"], "RollbackRejected");
    assert_eq!(outcomes(&a.body), vec!["rejected"]);
    assert!(
        a.body["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("NotOptedIn")),
        "{}",
        a.body
    );

    let a = invoke(
        &rt.base,
        "{\"diskId\": ".into(),
        &[("x-fc-request-id", "r-2")],
    )
    .await;
    assert_eq!(a.status, 404);
    assert_eq!(outcomes(&a.body), vec!["rejected"]);
    let a = invoke(
        &rt.base,
        r#"{"diskId":"d-bp1webapp0000sys01","diskId":"d-bp1batch00000sys02"}"#.into(),
        &[],
    )
    .await;
    assert_eq!(a.status, 404, "a repeated key is refused: {}", a.body);

    let init = reqwest::Client::new()
        .post(format!("{}/initialize", rt.base))
        .header("x-fc-request-id", "init-1")
        .send()
        .await
        .expect("initialize");
    assert_eq!(init.status().as_u16(), 200);
    assert!(rt.printed(&["FC Initialize Start RequestId: init-1"]));
}

#[tokio::test]
async fn the_function_roles_credentials_come_from_the_fc_headers() {
    let scenario: ecs_rollback::sim::Scenario = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/data/fast-scenario.json")).expect("scenario"),
    )
    .expect("scenario JSON");
    let sim = ecs_rollback::sim::Simulator::new(scenario).expect("scenario");
    let endpoint = serve(&sim).await;
    let rt = start(
        &["serve-fc", "--host", "127.0.0.1", "--port", "0"],
        &[
            ("ECS_ROLLBACK_ECS_ENDPOINT", endpoint),
            ("ALIBABA_CLOUD_REGION_ID", REGION.to_owned()),
        ],
        false,
    );
    let event = std::fs::read_to_string(root().join("events/rollback.json")).expect("sample");
    // No role: nothing to sign with, said so, nothing touched.
    let a = invoke(&rt.base, event.clone(), &[("x-fc-request-id", "c-1")]).await;
    assert_eq!(a.status, 404, "{}", a.body);
    assert!(a.body.to_string().contains("no credentials"), "{}", a.body);
    assert!(sim.events().is_empty(), "no change without credentials");
    // The role's temporary credentials, as FC sends them with each call.
    let a = invoke(
        &rt.base,
        event,
        &[
            ("x-fc-request-id", "c-2"),
            ("x-fc-access-key-id", ecs_rollback::sim::SIM_ACCESS_KEY_ID),
            (
                "x-fc-access-key-secret",
                ecs_rollback::sim::SIM_ACCESS_KEY_SECRET,
            ),
        ],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(outcomes(&a.body), vec!["succeeded"]);
    assert_eq!(sim.disk(WEB_SYS).expect("disk")["resets"], 1);
}

#[tokio::test]
async fn with_no_arguments_in_a_function_compute_environment_it_serves() {
    let rt = start(&[], &[], true);
    let body =
        std::fs::read_to_string(root().join("events/fc-mns-cloudevent.json")).expect("sample");
    let a = invoke(&rt.base, body, &[("x-fc-request-id", "auto-1")]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(outcomes(&a.body), vec!["succeeded"]);
}

#[tokio::test]
async fn the_drill_timer_of_deploy_s_yaml_reaches_the_drill_runner() {
    let yaml = std::fs::read_to_string(root().join("deploy/s.yaml")).expect("deploy/s.yaml");
    let payload = yaml
        .lines()
        .find_map(|l| l.trim().strip_prefix("payload: '"))
        .and_then(|p| p.strip_suffix('\''))
        .expect("the timer trigger's payload");
    let event = serde_json::json!({
        "triggerTime": "2026-11-30T03:00:00Z",
        "triggerName": "drill",
        "payload": payload,
    });
    let rt = start_sim();
    let a = invoke(
        &rt.base,
        event.to_string(),
        &[("x-fc-request-id", "timer-1")],
    )
    .await;
    // The simulator's fleet has no instance tagged for the weekly drill: the drill is parsed,
    // its selector resolved, and found nothing, which is said (not a malformed payload).
    let text = a.body.to_string();
    assert!(text.contains("drill.selector: matched no target"), "{text}");
    assert_eq!(a.body["summaries"][0]["data"]["drill"], "weekly", "{text}");
}

#[tokio::test]
async fn the_result_event_logged_is_the_one_returned() {
    let rt = start_sim();
    let event = serde_json::json!({"instanceId": WEB, "snapshotId": WEB_SNAP_TAGGED, "idempotencyKey": "one-event"});
    let a = invoke(
        &rt.base,
        event.to_string(),
        &[("x-fc-request-id", "same-id-1")],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let returned = &a.body["results"][0];
    let id = returned["id"].as_str().expect("an id");
    let lines = rt.logged(id);
    assert_eq!(
        lines.len(),
        1,
        "one log line carries the returned event's id: {lines:?}"
    );
    assert!(lines[0].contains("result event"), "{}", lines[0]);
    // The text log line: `... result event result_event={...} outcome="succeeded"`.
    let logged: Value = lines[0]
        .split_once("result_event=")
        .and_then(|(_, rest)| {
            serde_json::Deserializer::from_str(rest)
                .into_iter::<Value>()
                .next()?
                .ok()
        })
        .unwrap_or_else(|| panic!("a log line with the event: {}", lines[0]));
    assert_eq!(&logged, returned, "the same event, time and all");
}

const SECRET: &str = "fc-webhook-secret";
const TOKEN: &str = "fc-webhook-token";

fn webhook_env() -> Vec<(&'static str, String)> {
    vec![
        ("ECS_ROLLBACK_WEBHOOK_SECRET", SECRET.to_owned()),
        ("ECS_ROLLBACK_WEBHOOK_TOKEN", TOKEN.to_owned()),
        ("ECS_ROLLBACK_COOLDOWN_SECONDS", "0".to_owned()),
    ]
}

fn signature(body: &str) -> (String, String) {
    let ts = chrono::Utc::now().timestamp();
    (
        ts.to_string(),
        ecs_rollback::triggers::webhook::sign(SECRET, ts, body.as_bytes()),
    )
}

/// The one limit's answer: a `rejected` result that names the limit.
fn says_over_the_limit(result: &Value) -> bool {
    result["data"]["outcome"] == "rejected"
        && result["data"]["error"]["code"] == "InvalidRequest"
        && result["data"]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("more than the limit of 1048576 bytes"))
}

/// FC's HTTP trigger passes the caller's request through (method, path, headers, body): in
/// HTTP mode (`serve-fc --http`, the webhook function of deploy/s.yaml) every path is the
/// webhook, authenticated first, answered with its real status as the Lambda Function URL;
/// `x-fc-status` says 200 (an answered request, refusals included).
#[tokio::test]
async fn an_http_trigger_call_reaches_the_webhook_with_its_real_status() {
    let yaml = std::fs::read_to_string(root().join("deploy/s.yaml")).expect("deploy/s.yaml");
    assert!(
        yaml.contains("- --http") && yaml.contains("triggerType: http"),
        "deploy/s.yaml serves the HTTP trigger with serve-fc --http"
    );
    let rt = start(
        &["serve-fc", "--http", "--host", "127.0.0.1", "--port", "0"],
        &webhook_env(),
        true,
    );
    let body = serde_json::json!({"instanceId": WEB, "snapshotId": WEB_SNAP_TAGGED, "reason": "fc webhook"})
        .to_string();
    let (ts, sig) = signature(&body);
    let a = post(
        &rt.base,
        "/hooks/rollback?from=ops",
        body.clone(),
        &[
            ("x-fc-request-id", "http-call-1"),
            ("x-rollback-timestamp", &ts),
            ("x-rollback-signature", &sig),
            ("content-type", "application/json"),
        ],
    )
    .await;
    assert_eq!((a.status, a.fc_status.as_str()), (200, "200"), "{}", a.body);
    assert_eq!(outcomes(&a.body), vec!["succeeded"]);
    let trigger = &a.body["results"][0]["data"]["trigger"];
    assert_eq!(trigger["kind"], "http", "{trigger}");
    assert_eq!(trigger["id"], "http-call-1", "the request id in the result");
    assert!(rt.printed(&["FC Invoke Start RequestId: http-call-1"]));

    // Unauthenticated: 401 to the caller, nothing run; the invocation itself answered.
    let a = post(
        &rt.base,
        "/",
        body.clone(),
        &[("x-fc-request-id", "http-call-2")],
    )
    .await;
    assert_eq!((a.status, a.fc_status.as_str()), (401, "200"), "{}", a.body);
    assert_eq!(
        a.body["results"][0]["data"]["error"]["code"],
        "Unauthenticated"
    );
    // /invoke is the webhook's too in HTTP mode: no unauthenticated event runs.
    let a = post(&rt.base, "/invoke", body.clone(), &[]).await;
    assert_eq!(a.status, 401, "{}", a.body);

    // A refusal of the request itself: 422.
    let refused = serde_json::json!({"instanceId": LEGACY, "snapshotId": LEGACY_SNAP}).to_string();
    let auth = format!("Bearer {TOKEN}");
    let a = post(&rt.base, "/", refused, &[("authorization", &auth)]).await;
    assert_eq!((a.status, a.fc_status.as_str()), (422, "200"), "{}", a.body);
    assert_eq!(outcomes(&a.body), vec!["rejected"]);

    // Over the one limit: 413 with the project's own result, not the framework's bare 413.
    let big = serde_json::json!({"instanceId": WEB, "reason": "x".repeat(3 << 20)}).to_string();
    let a = post(&rt.base, "/", big, &[("authorization", &auth)]).await;
    assert_eq!((a.status, a.fc_status.as_str()), (413, "200"), "{}", a.body);
    assert!(says_over_the_limit(&a.body["results"][0]), "{}", a.body);
}

/// In events mode (API calls), an FC HTTP-trigger struct (`version: v1`) given as the event is
/// answered with the HTTP response struct; an HTTP call that lands on the events runtime is
/// never run as an event.
#[tokio::test]
async fn the_events_runtime_answers_http_events_in_the_response_struct_and_refuses_http_calls() {
    let rt = start(
        &["serve-fc", "--host", "127.0.0.1", "--port", "0"],
        &webhook_env(),
        true,
    );
    let body = serde_json::json!({"instanceId": WEB, "snapshotId": WEB_SNAP_TAGGED}).to_string();
    let v1 = serde_json::json!({"version": "v1", "rawPath": "/", "body": body, "isBase64Encoded": false,
        "headers": {"content-type": "application/json"}, "queryParameters": {},
        "requestContext": {"accountId": "1", "domainName": "x.cn-hangzhou.fcapp.run", "domainPrefix": "x",
            "http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.9", "userAgent": "t"},
            "requestId": "1-v1-request", "time": "2026-11-29T08:00:00Z", "timeEpoch": "1796025600000"}});
    let a = invoke(&rt.base, v1.to_string(), &[("x-fc-request-id", "api-1")]).await;
    assert_eq!((a.status, a.fc_status.as_str()), (200, "200"), "{}", a.body);
    assert_eq!(a.body["statusCode"], 401, "{}", a.body);
    assert_eq!(a.body["isBase64Encoded"], false);
    let inner: Value = serde_json::from_str(a.body["body"].as_str().expect("body is a string"))
        .expect("the results");
    assert_eq!(outcomes(&inner), vec!["rejected"]);
    assert_eq!(inner["results"][0]["data"]["trigger"]["id"], "1-v1-request");

    // An HTTP call FC marks as such, on /invoke: the webhook's (401 here), never an event.
    let a = invoke(
        &rt.base,
        body.clone(),
        &[
            ("x-fc-control-path", "/http-invoke"),
            ("x-fc-request-id", "h-1"),
        ],
    )
    .await;
    assert_eq!(a.status, 401, "{}", a.body);
    // Any other path: refused, saying where the webhook is served.
    let a = post(&rt.base, "/hooks", body, &[]).await;
    assert_eq!(a.status, 404, "{}", a.body);
    assert!(
        a.body["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("serve-fc --http")),
        "{}",
        a.body
    );
}

/// One limit, one answer: an event over 1 MiB posted to /invoke is a failed invocation with the
/// project's `rejected` result (not the web framework's bare 413).
#[tokio::test]
async fn an_event_over_the_limit_gets_the_projects_answer_on_fc() {
    let rt = start_sim();
    for size in [(3 << 19), (5 << 20), (7 << 20)] {
        let big = serde_json::json!({"instanceId": WEB, "reason": "x".repeat(size)}).to_string();
        let a = invoke(&rt.base, big, &[("x-fc-request-id", "big-1")]).await;
        assert_eq!(
            (a.status, a.fc_status.as_str()),
            (404, "404"),
            "{size}: {}",
            a.body
        );
        assert_eq!(a.body["errorType"], "RollbackRejected");
        assert!(
            says_over_the_limit(&a.body["results"][0]),
            "{size}: {}",
            a.body
        );
    }
}

/// A function deployed with a timeout no rollback fits (60 s against the 242 s the default
/// estimates and margin need) says so once per process, at its first invocation, at ERROR,
/// naming the timeout, the minimum and the settings to change; not again at the second. Each
/// result also has its CloudWatch EMF metric line on stdout, as under Lambda (Function
/// Compute's logs keep stdout too).
#[tokio::test]
async fn a_timeout_that_can_never_fit_a_rollback_is_said_once_and_loudly() {
    let rt = start_sim();
    for n in 1..=2 {
        let event = serde_json::json!({"instanceId": WEB, "snapshotId": WEB_SNAP_TAGGED,
            "idempotencyKey": format!("short-timeout-{n}")});
        let id = format!("short-{n}");
        let a = invoke(
            &rt.base,
            event.to_string(),
            &[("x-fc-request-id", &id), ("x-fc-function-timeout", "60")],
        )
        .await;
        // Refused before anything changed: the deadline cannot hold the rollback.
        assert_eq!(a.status, 404, "{}", a.body);
        assert_eq!(
            a.body["results"][0]["data"]["error"]["code"], "DeadlineExceeded",
            "{}",
            a.body
        );
    }
    // Both invocations' result lines are logged (after any line of the second invocation's
    // check): only then is the count final.
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while rt.logged("result event").len() < 2 && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(rt.logged("result event").len(), 2);
    let said = rt.logged("a rollback needs at least");
    assert_eq!(said.len(), 1, "once per process: {said:?}");
    for needle in [
        "ERROR",
        "timeout is 60 s",
        "at least 242 s",
        "ECS_ROLLBACK_ESTIMATE_STOP_SECONDS",
        "ECS_ROLLBACK_ESTIMATE_RESET_SECONDS",
        "ECS_ROLLBACK_ESTIMATE_START_SECONDS",
    ] {
        assert!(said[0].contains(needle), "{needle}: {}", said[0]);
    }
    assert!(rt.printed(&["\"_aws\""]), "a metric line on stdout");
    let until = std::time::Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let m: Vec<Value> = rt
            .stdout
            .lock()
            .expect("lock")
            .lines()
            .filter(|l| l.contains("\"_aws\""))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        if m.len() >= 2 || std::time::Instant::now() > until {
            break m;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(metrics.len(), 2, "one metric line per result: {metrics:?}");
    for m in &metrics {
        assert_eq!(
            m["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "EcsRollback"
        );
        assert_eq!(m["Outcome"], "rejected");
        assert_eq!(m["errorCode"], "DeadlineExceeded");
    }
}
