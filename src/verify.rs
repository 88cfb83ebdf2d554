//! Verified recovery, the pure part: the `verify` block of a request, a drill or the deployment
//! (`ECS_ROLLBACK_VERIFY`), validated; the probe's address, templated on the rolled-back
//! instance's own IP and nothing else; what a Cloud Assistant result or a probe answer means
//! (healthy, unhealthy, or could not verify); the progress mark kept in the disk's
//! `ecs-rollback:verify` tag. The I/O is `rollback/verify.rs` (Cloud Assistant) and `probe.rs`
//! (HTTP, TCP).
//!
//! Facts: shared/reference/ecs-snapshot-groups-and-cloud-assistant.md §3 (DescribeCloudAssistantStatus,
//! RunCommand: `Type`, `CommandContent` at most 18 KB, `Timeout` 10-86400 s; the statuses and
//! `ErrorCode`s of DescribeInvocations / DescribeInvocationResults, Medium confidence), §4 (Veeam
//! SureBackup's 120 s application initialization: the probe window's default).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A `verify` block that cannot be used, and the field that says why (`verify.<field>`); the
/// request maps it to its own `InvalidRequest`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidRequest {
    pub field: String,
    pub message: String,
}

impl InvalidRequest {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The field serde names in an "unknown field `x`" (or duplicate, or missing) message.
fn field_in(message: &str) -> Option<String> {
    ["unknown field `", "duplicate field `", "missing field `"]
        .iter()
        .find_map(|m| message.split(m).nth(1))
        .and_then(|rest| rest.split('`').next().map(str::to_owned))
}

/// `CommandContent` at most 18 KB (§3).
pub const MAX_COMMAND_BYTES: usize = 18 * 1024;
/// `Timeout` of RunCommand, 10 to 86400 s, 60 by default (§3).
pub const COMMAND_TIMEOUT_RANGE: (u32, u32) = (10, 86_400);
/// How long to wait for the agent after the start: OOS's verification template waits up to
/// 7 x 30 s (§3).
pub const DEFAULT_AGENT_WAIT_SECS: u64 = 210;
/// How long a probe is retried: Veeam SureBackup's application initialization, 120 s (§4).
pub const DEFAULT_WINDOW_SECS: u64 = 120;
/// The tail of a command's output a result carries.
pub const OUTPUT_TAIL: usize = 512;

/// What to do when the check says unhealthy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnVerifyFailure {
    /// Say so (`VerificationFailed`); the instance stays Running on the rolled-back disk.
    #[default]
    Report,
    /// Roll the disk back to the undo snapshot this run took (`preserveCurrent`), start,
    /// verify once more, and say so (`RolledBackToUndo`). Never more than once.
    Undo,
}

/// A Cloud Assistant command run inside the instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandCheck {
    /// `RunShellScript` or `RunPowerShellScript`.
    #[serde(rename = "type")]
    pub script: String,
    pub content: String,
    pub timeout_seconds: u32,
    pub expected_exit_code: i64,
}

/// A probe from the function to the instance's own address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Probe {
    /// `http(s)://{privateIp|publicIp}[:port][/path]`; healthy when the status is within
    /// `status` (inclusive) and the body holds `body_contains`, if given.
    Http {
        template: String,
        status: (u16, u16),
        body_contains: Option<String>,
    },
    /// `{privateIp|publicIp}:port`; healthy when a connection is accepted.
    Tcp { template: String },
}

/// The `verify` block, validated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifySpec {
    pub command: Option<CommandCheck>,
    pub probe: Option<Probe>,
    /// How long to wait for the Cloud Assistant agent after the start.
    pub agent_wait_seconds: u64,
    /// How long the probe is retried (and how long the command may take beyond its own timeout).
    pub window_seconds: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawVerify {
    #[serde(default)]
    command: Option<RawCommand>,
    #[serde(default)]
    probe: Option<RawProbe>,
    #[serde(default)]
    agent_wait_seconds: Option<u64>,
    #[serde(default)]
    window_seconds: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawCommand {
    #[serde(rename = "type", default)]
    script: Option<String>,
    content: String,
    #[serde(default)]
    timeout_seconds: Option<u32>,
    #[serde(default)]
    expected_exit_code: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawProbe {
    #[serde(default)]
    http: Option<String>,
    #[serde(default)]
    tcp: Option<String>,
    #[serde(default)]
    status: Option<(u16, u16)>,
    #[serde(default)]
    body_contains: Option<String>,
}

fn bad(field: &str, m: impl Into<String>) -> InvalidRequest {
    InvalidRequest::new(format!("verify.{field}"), m)
}

/// Parses and validates a `verify` block (a request's, a drill's, or the deployment's).
pub fn parse(value: &Value) -> Result<VerifySpec, InvalidRequest> {
    let raw: RawVerify = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let field = field_in(&inner).unwrap_or(path);
        bad(&field, inner)
    })?;
    let command = raw.command.map(parse_command).transpose()?;
    let probe = raw.probe.map(parse_probe).transpose()?;
    if command.is_none() && probe.is_none() {
        return Err(bad("", "give a command, a probe, or both"));
    }
    let agent_wait_seconds = raw.agent_wait_seconds.unwrap_or(DEFAULT_AGENT_WAIT_SECS);
    let window_seconds = raw.window_seconds.unwrap_or(DEFAULT_WINDOW_SECS);
    if !(1..=3600).contains(&agent_wait_seconds) {
        return Err(bad("agentWaitSeconds", "1 to 3600"));
    }
    if !(1..=3600).contains(&window_seconds) {
        return Err(bad("windowSeconds", "1 to 3600"));
    }
    Ok(VerifySpec {
        command,
        probe,
        agent_wait_seconds,
        window_seconds,
    })
}

fn parse_command(c: RawCommand) -> Result<CommandCheck, InvalidRequest> {
    let script = c.script.unwrap_or_else(|| "RunShellScript".into());
    // RunBatScript is a RunCommand type too (§3); a check is a shell or PowerShell script.
    if !matches!(script.as_str(), "RunShellScript" | "RunPowerShellScript") {
        return Err(bad("command.type", "RunShellScript or RunPowerShellScript"));
    }
    if c.content.trim().is_empty() {
        return Err(bad("command.content", "must not be empty"));
    }
    // Sent base64-encoded (ContentEncoding=Base64): the encoded size is what counts.
    if base64_len(c.content.len()) > MAX_COMMAND_BYTES {
        return Err(bad(
            "command.content",
            format!("at most {MAX_COMMAND_BYTES} bytes once base64-encoded"),
        ));
    }
    let timeout_seconds = c.timeout_seconds.unwrap_or(60);
    let (lo, hi) = COMMAND_TIMEOUT_RANGE;
    if !(lo..=hi).contains(&timeout_seconds) {
        return Err(bad("command.timeoutSeconds", format!("{lo} to {hi}")));
    }
    Ok(CommandCheck {
        script,
        content: c.content,
        timeout_seconds,
        expected_exit_code: c.expected_exit_code.unwrap_or(0),
    })
}

fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

fn parse_probe(p: RawProbe) -> Result<Probe, InvalidRequest> {
    match (p.http, p.tcp) {
        (Some(t), None) => {
            check_http_template(&t).map_err(|m| bad("probe.http", m))?;
            let status = p.status.unwrap_or((200, 399));
            if !(100..=599).contains(&status.0) || !(status.0..=599).contains(&status.1) {
                return Err(bad("probe.status", "[low, high] within 100-599, low first"));
            }
            if p.body_contains.as_ref().is_some_and(|b| b.len() > 256) {
                return Err(bad("probe.bodyContains", "at most 256 bytes"));
            }
            Ok(Probe::Http {
                template: t,
                status,
                body_contains: p.body_contains,
            })
        }
        (None, Some(t)) => {
            if p.status.is_some() || p.body_contains.is_some() {
                return Err(bad(
                    "probe",
                    "status and bodyContains are for an http probe",
                ));
            }
            check_tcp_template(&t).map_err(|m| bad("probe.tcp", m))?;
            Ok(Probe::Tcp { template: t })
        }
        _ => Err(bad("probe", "give http or tcp (one of them)")),
    }
}

/// The placeholders an address may name: the instance's own IPs as ECS reports them.
const PLACEHOLDERS: [&str; 2] = ["{privateIp}", "{publicIp}"];

const NOT_OWN: &str = "the host must be {privateIp} or {publicIp} (the rolled-back instance's own address, read from ECS); no other host is probed";

/// `(placeholder, rest)`: the address starts with a placeholder.
fn split_host(s: &str) -> Result<(&'static str, &str), String> {
    PLACEHOLDERS
        .iter()
        .find_map(|p| s.strip_prefix(p).map(|rest| (*p, rest)))
        .ok_or_else(|| NOT_OWN.to_owned())
}

fn check_port(port: &str) -> Result<(), String> {
    match port.parse::<u16>() {
        Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        _ => Err(format!("port {port:?}: 1 to 65535")),
    }
}

fn check_http_template(t: &str) -> Result<(), String> {
    if t.len() > 512 {
        return Err("at most 512 characters".into());
    }
    let rest = t
        .strip_prefix("http://")
        .or_else(|| t.strip_prefix("https://"))
        .ok_or("http:// or https://")?;
    let (_, rest) = split_host(rest)?;
    let (authority_rest, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if let Some(port) = authority_rest.strip_prefix(':') {
        check_port(port)?;
    } else if !authority_rest.is_empty() {
        return Err(NOT_OWN.into());
    }
    if path.contains('{') || path.contains('}') {
        return Err("the path holds no placeholder".into());
    }
    if path
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '#')
    {
        return Err("the path holds no spaces, controls or fragment".into());
    }
    Ok(())
}

fn check_tcp_template(t: &str) -> Result<(), String> {
    let (_, rest) = split_host(t)?;
    match rest.strip_prefix(':') {
        Some(port) => check_port(port),
        None => Err(format!("{NOT_OWN}, followed by :port")),
    }
}

/// The instance's own addresses, as DescribeInstances gave them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnAddresses {
    pub private: Option<IpAddr>,
    pub public: Option<IpAddr>,
}

/// Where a probe goes, rendered from its template and the instance's own addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Http(String),
    Tcp(std::net::SocketAddr),
}

impl Target {
    pub fn describe(&self) -> String {
        match self {
            Target::Http(u) => u.clone(),
            Target::Tcp(a) => format!("tcp://{a}"),
        }
    }
}

/// Renders the probe's address. `Err` when the instance has no such address; the rendered
/// address is checked once more to hold exactly the instance's own IP as its host.
pub fn render(probe: &Probe, own: &OwnAddresses) -> Result<Target, String> {
    let template = match probe {
        Probe::Http { template, .. } | Probe::Tcp { template } => template,
    };
    let body = template
        .strip_prefix("http://")
        .or_else(|| template.strip_prefix("https://"))
        .unwrap_or(template);
    let (placeholder, _) = split_host(body)?;
    let ip = match placeholder {
        "{privateIp}" => own.private,
        _ => own.public,
    }
    .ok_or_else(|| format!("the instance has no {placeholder} address in ECS"))?;
    let host = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    let rendered = template.replacen(placeholder, &host, 1);
    match probe {
        Probe::Http { .. } => {
            let url = url::Url::parse(&rendered).map_err(|e| format!("{rendered}: {e}"))?;
            let same = match (url.host(), ip) {
                (Some(url::Host::Ipv4(a)), IpAddr::V4(b)) => a == b,
                (Some(url::Host::Ipv6(a)), IpAddr::V6(b)) => a == b,
                _ => false,
            };
            if !same || !url.username().is_empty() || url.password().is_some() {
                return Err(format!("{rendered}: not the instance's own address"));
            }
            Ok(Target::Http(url.to_string()))
        }
        Probe::Tcp { .. } => rendered
            .parse()
            .map(Target::Tcp)
            .map_err(|e| format!("{rendered}: {e}")),
    }
}

/// What one check found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Healthy,
    /// The service answered, and not as it should: the rollback did not bring it back.
    Unhealthy,
    /// The check itself could not be made: nothing is known of the service.
    CouldNotVerify,
}

/// The overall statuses of DescribeInvocations that end an invocation (§3).
pub fn invocation_finished(status: &str) -> bool {
    matches!(status, "Success" | "Failed" | "PartialFailed" | "Stopped")
}

/// One instance's result (DescribeInvocationResults), as a verdict; `None` while it runs.
///
/// Decided on purpose (README, "Verified recovery"):
/// - healthy: the command ran to its end with the expected exit code;
/// - unhealthy: it ran and exited otherwise (`ExitCodeNonzero`, or any other exit code than
///   the expected one), or it ran past its own timeout (`ExecutionTimeout`, status `Timeout`):
///   the check hung, which is what a dead service does;
/// - could not verify: it never ran, or was cut off for a reason that is not the service's
///   (the agent not running, not answering, upgrading; `DeliveryTimeout` and `Aborted`: not
///   delivered within a minute; the instance not running or gone; `ExecutionInterrupted`,
///   `ExecutionException`; `Cancelled`, `Terminated`, `Invalid`, `Error` without a code).
pub fn classify(
    status: &str,
    exit_code: Option<i64>,
    error_code: &str,
    expected: i64,
) -> Option<Verdict> {
    match status {
        "Pending" | "Scheduled" | "Running" | "Stopping" => return None,
        _ => {}
    }
    if matches!(error_code, "ExecutionTimeout") || status == "Timeout" {
        return Some(Verdict::Unhealthy);
    }
    let ran = matches!(status, "Success" | "Failed")
        && (error_code.is_empty() || error_code == "ExitCodeNonzero");
    if ran {
        return Some(match exit_code {
            Some(c) if c == expected => Verdict::Healthy,
            Some(_) => Verdict::Unhealthy,
            None => Verdict::CouldNotVerify,
        });
    }
    Some(Verdict::CouldNotVerify)
}

/// An HTTP answer, as a verdict.
pub fn classify_http(
    status: u16,
    body: &str,
    want: (u16, u16),
    body_contains: Option<&str>,
) -> Verdict {
    let in_range = (want.0..=want.1).contains(&status);
    let body_ok = body_contains.is_none_or(|b| body.contains(b));
    if in_range && body_ok {
        Verdict::Healthy
    } else {
        Verdict::Unhealthy
    }
}

/// The last `OUTPUT_TAIL` bytes of an output (at a character boundary).
pub fn tail(s: &str) -> String {
    if s.len() <= OUTPUT_TAIL {
        return s.to_owned();
    }
    let mut start = s.len() - OUTPUT_TAIL;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_owned()
}

/// The verification's progress on the disk (`ecs-rollback:verify`):
/// `k=<16 hex key>;n=<round>;s=<stage>[;i=<invoke id>]`. Round 1 checks the rollback; round 2
/// checks the undo. Stage `c`: checking (the invocation, once RunCommand named it); `u`: undoing
/// (the instance stopped and the disk reset to the undo snapshot: may be repeated, the instance
/// is not started in this stage); `r`: the undo reset is done (never reset again; start, then
/// round 2). At most 16 + 2 + 1 + 24 characters of fields: within a tag value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyMark {
    pub key: String,
    pub round: u8,
    pub stage: Stage,
    pub invoke_id: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Checking,
    Undoing,
    UndoReset,
}

impl VerifyMark {
    pub fn encode(&self) -> String {
        let s = match self.stage {
            Stage::Checking => "c",
            Stage::Undoing => "u",
            Stage::UndoReset => "r",
        };
        let mut v = format!("k={};n={};s={s}", self.key, self.round);
        if let Some(i) = &self.invoke_id {
            // An InvokeId is `t-` and some 20 characters; anything odd is cut to fit.
            let id: String = i
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .take(64)
                .collect();
            v.push_str(&format!(";i={id}"));
        }
        v
    }

    pub fn decode(v: &str) -> Option<Self> {
        let mut key = None;
        let mut round = None;
        let mut stage = None;
        let mut invoke_id = None;
        for kv in v.split(';') {
            match kv.split_once('=') {
                Some(("k", k)) => key = Some(k.to_owned()),
                Some(("n", n)) => round = n.parse().ok().filter(|n| (1..=2).contains(n)),
                Some(("s", "c")) => stage = Some(Stage::Checking),
                Some(("s", "u")) => stage = Some(Stage::Undoing),
                Some(("s", "r")) => stage = Some(Stage::UndoReset),
                Some(("i", i)) if !i.is_empty() => invoke_id = Some(i.to_owned()),
                _ => {}
            }
        }
        Some(Self {
            key: key?,
            round: round?,
            stage: stage?,
            invoke_id,
        })
    }
}

/// RunCommand's `ClientToken` for a key's round: the same on every delivery, so a redelivery
/// that lost the answer gets the same invocation back instead of running the command twice
/// (ECS: "How to ensure idempotence", help/en/doc-detail/25693; RunCommand takes a
/// `ClientToken` per the official SDK's RunCommandRequest model). At most 64 ASCII characters.
pub fn client_token(digest: &str, round: u8) -> String {
    let d: String = digest.chars().take(40).collect();
    format!("ecs-rollback-verify-{round}-{d}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(v: Value) -> String {
        parse(&v).expect_err("invalid").field
    }

    fn own() -> OwnAddresses {
        OwnAddresses {
            private: Some("172.16.0.7".parse().expect("ip")),
            public: None,
        }
    }

    #[test]
    fn a_block_with_a_command_and_a_probe() {
        let s = parse(&json!({"command": {"content": "systemctl is-active nginx"},
            "probe": {"http": "http://{privateIp}:8080/health", "bodyContains": "ok"}}))
        .expect("valid");
        let c = s.command.expect("command");
        assert_eq!(
            (c.script.as_str(), c.timeout_seconds, c.expected_exit_code),
            ("RunShellScript", 60, 0)
        );
        assert_eq!(s.agent_wait_seconds, DEFAULT_AGENT_WAIT_SECS);
        let t = render(&s.probe.expect("probe"), &own()).expect("rendered");
        assert_eq!(t, Target::Http("http://172.16.0.7:8080/health".into()));
    }

    #[test]
    fn an_address_that_is_not_the_instances_own_is_refused() {
        for bad_url in [
            "http://10.0.0.1:8080/health",
            "http://example.com/health",
            "http://{privateIp}.evil.example/x",
            "http://{privateIp}@evil.example/x",
            "http://user@{privateIp}/x",
            "http://{privateIp}:80@evil.example/x",
            "http://{instanceId}/x",
            "ftp://{privateIp}/x",
            "http://{privateIp}/{publicIp}",
            "http://{privateIp}:0/",
            "http://{privateIp}:99999/",
        ] {
            assert_eq!(
                field(json!({"probe": {"http": bad_url}})),
                "verify.probe.http",
                "{bad_url}"
            );
        }
        for bad_tcp in ["10.0.0.1:22", "{privateIp}", "{privateIp}:22/x", "host:22"] {
            assert_eq!(
                field(json!({"probe": {"tcp": bad_tcp}})),
                "verify.probe.tcp",
                "{bad_tcp}"
            );
        }
        parse(&json!({"probe": {"tcp": "{publicIp}:22"}})).expect("own public address");
    }

    #[test]
    fn every_rejection_names_its_field() {
        assert_eq!(field(json!({})), "verify.");
        assert_eq!(
            field(json!({"command": {"content": "x", "type": "RunBatScript"}})),
            "verify.command.type"
        );
        assert_eq!(
            field(json!({"command": {"content": " "}})),
            "verify.command.content"
        );
        assert_eq!(
            field(json!({"command": {"content": "x".repeat(14_000)}})),
            "verify.command.content"
        );
        assert_eq!(
            field(json!({"command": {"content": "x", "timeoutSeconds": 5}})),
            "verify.command.timeoutSeconds"
        );
        assert_eq!(
            field(json!({"probe": {"http": "http://{privateIp}/", "tcp": "{privateIp}:1"}})),
            "verify.probe"
        );
        assert_eq!(
            field(json!({"probe": {"http": "http://{privateIp}/", "status": [300, 200]}})),
            "verify.probe.status"
        );
        assert_eq!(
            field(json!({"command": {"content": "x"}, "bogus": 1})),
            "verify.bogus"
        );
        assert_eq!(
            field(json!({"command": {"content": "x"}, "windowSeconds": 0})),
            "verify.windowSeconds"
        );
    }

    #[test]
    fn rendering_needs_the_address_and_yields_only_it() {
        let p = Probe::Tcp {
            template: "{publicIp}:443".into(),
        };
        assert!(render(&p, &own()).is_err(), "no public address");
        let both = OwnAddresses {
            private: Some("127.0.0.1".parse().expect("ip")),
            public: Some("::1".parse().expect("ip")),
        };
        assert_eq!(render(&p, &both).expect("v6").describe(), "tcp://[::1]:443");
    }

    #[test]
    fn statuses_and_codes_map_as_documented() {
        assert_eq!(classify("Running", None, "", 0), None);
        assert_eq!(classify("Pending", None, "", 0), None);
        assert_eq!(classify("Success", Some(0), "", 0), Some(Verdict::Healthy));
        assert_eq!(
            classify("Failed", Some(1), "ExitCodeNonzero", 0),
            Some(Verdict::Unhealthy)
        );
        assert_eq!(
            classify("Failed", Some(3), "ExitCodeNonzero", 3),
            Some(Verdict::Healthy)
        );
        assert_eq!(
            classify("Success", Some(0), "", 3),
            Some(Verdict::Unhealthy)
        );
        assert_eq!(
            classify("Timeout", None, "ExecutionTimeout", 0),
            Some(Verdict::Unhealthy)
        );
        for (status, code) in [
            ("Aborted", "DeliveryTimeout"),
            ("Failed", "ClientNotRunning"),
            ("Failed", "ClientNotResponse"),
            ("Failed", "ClientIsUpgrading"),
            ("Failed", "InstanceNotRunning"),
            ("Failed", "ExecutionInterrupted"),
            ("Invalid", "CommandNotApplicable"),
            ("Cancelled", ""),
            ("Terminated", ""),
            ("Error", ""),
        ] {
            assert_eq!(
                classify(status, None, code, 0),
                Some(Verdict::CouldNotVerify),
                "{status} {code}"
            );
        }
        assert!(invocation_finished("PartialFailed") && !invocation_finished("Running"));
    }

    #[test]
    fn http_answers() {
        assert_eq!(
            classify_http(200, "ok", (200, 399), Some("ok")),
            Verdict::Healthy
        );
        assert_eq!(
            classify_http(503, "ok", (200, 399), None),
            Verdict::Unhealthy
        );
        assert_eq!(
            classify_http(200, "down", (200, 399), Some("ok")),
            Verdict::Unhealthy
        );
    }

    #[test]
    fn the_mark_round_trips_within_a_tag_value() {
        let m = VerifyMark {
            key: "0123456789abcdef".into(),
            round: 2,
            stage: Stage::UndoReset,
            invoke_id: Some("t-hz0jdfwd9f8e7h1q6sq2".into()),
        };
        let v = m.encode();
        assert!(v.len() <= 128, "{v}");
        assert_eq!(VerifyMark::decode(&v), Some(m));
        assert_eq!(VerifyMark::decode("k=x;n=3;s=c"), None);
        assert!(client_token(&"f".repeat(64), 2).len() <= 64);
        assert_ne!(client_token("ab", 1), client_token("ab", 2));
    }

    #[test]
    fn the_tail_keeps_the_end() {
        let long = format!("{}END", "é".repeat(600));
        let t = tail(&long);
        assert!(t.ends_with("END") && t.len() <= OUTPUT_TAIL);
    }
}
