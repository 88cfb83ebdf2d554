//! Telling people: the results an invocation ends with, filtered by outcome, sent to a DingTalk
//! robot, a Lark/Feishu bot, a Slack incoming webhook and a generic CloudEvents HTTP endpoint,
//! each signed as its platform documents (one file per platform). Some results are always sent:
//! `proposed`, the codes `InstanceLeftStopped`, `PartialRollback`, `VerificationFailed`, and a
//! drill whose summary counts failures.
//!
//! Each platform gets one request per invocation (a text listing the results, or the batch of
//! events), retried with backoff on a refused connection, a timeout, 429 or 5xx, all within one
//! time budget (`ECS_ROLLBACK_NOTIFY_BUDGET_MS`, 5 s): a notification never fails a rollback and
//! delays its answer by the budget at most. One that could not be sent is a warning in each
//! result it carried, and a WARN log line with `metric = "NotificationFailed"`.
//!
//! This module opens HTTP connections of its own (to the endpoints configured), besides
//! `ecs/transport.rs`; an endpoint must be `https://`, or `http://` on loopback.

pub mod cloudevents;
pub mod dingtalk;
pub mod lark;
pub mod slack;

use std::time::Duration;

use serde_json::Value;

/// One request to a platform.
#[derive(Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub url: url::Url,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The platforms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    DingTalk,
    Lark,
    Slack,
    CloudEvents,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::DingTalk => "dingtalk",
            Platform::Lark => "lark",
            Platform::Slack => "slack",
            Platform::CloudEvents => "cloudevents",
        }
    }
}

/// One configured endpoint: its URL and signing secret are secrets, never logged.
#[derive(Clone)]
pub struct Endpoint {
    pub platform: Platform,
    pub url: url::Url,
    pub secret: Option<String>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("platform", &self.platform)
            .field("url", &"<redacted>")
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The codes that are always sent, whatever the outcome filter.
pub const ALWAYS_CODES: [&str; 3] = [
    "InstanceLeftStopped",
    "PartialRollback",
    "VerificationFailed",
];

#[derive(Debug)]
pub struct Notifier {
    pub endpoints: Vec<Endpoint>,
    /// The outcomes sent (`ECS_ROLLBACK_NOTIFY_OUTCOMES`); the always-sent ones come on top.
    pub outcomes: Vec<String>,
    /// Every platform's sending, retries included, ends within this.
    pub budget: Duration,
    client: reqwest::Client,
}

/// A URL a notification may go to: https, or http on loopback (tests, a local relay).
pub fn endpoint_url(name: &str, raw: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(raw).map_err(|e| format!("{name}: not a URL: {e}"))?;
    let loopback = matches!(
        url.host(),
        Some(url::Host::Ipv4(ip)) if ip.is_loopback()
    ) || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
        || url.host_str() == Some("localhost");
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        _ => Err(format!(
            "{name}: must be https:// (http:// only to loopback)"
        )),
    }
}

impl Notifier {
    pub fn new(endpoints: Vec<Endpoint>, outcomes: Vec<String>, budget: Duration) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .build()
            .unwrap_or_default();
        Self {
            endpoints,
            outcomes,
            budget,
            client,
        }
    }

    /// From `ECS_ROLLBACK_NOTIFY_*`; `None` when no endpoint is set.
    pub fn from_env() -> Result<Option<Self>, String> {
        let var = |k: &str| {
            std::env::var(k)
                .ok()
                .filter(|v| !v.trim().is_empty() && v.trim() != "none")
        };
        let mut endpoints = Vec::new();
        for (platform, url_var, secret_var) in [
            (
                Platform::DingTalk,
                "ECS_ROLLBACK_NOTIFY_DINGTALK_URL",
                Some("ECS_ROLLBACK_NOTIFY_DINGTALK_SECRET"),
            ),
            (
                Platform::Lark,
                "ECS_ROLLBACK_NOTIFY_LARK_URL",
                Some("ECS_ROLLBACK_NOTIFY_LARK_SECRET"),
            ),
            (Platform::Slack, "ECS_ROLLBACK_NOTIFY_SLACK_URL", None),
            (
                Platform::CloudEvents,
                "ECS_ROLLBACK_NOTIFY_CLOUDEVENTS_URL",
                Some("ECS_ROLLBACK_NOTIFY_CLOUDEVENTS_SECRET"),
            ),
        ] {
            if let Some(raw) = var(url_var) {
                endpoints.push(Endpoint {
                    platform,
                    url: endpoint_url(url_var, raw.trim())?,
                    secret: secret_var.and_then(var),
                });
            }
        }
        if endpoints.is_empty() {
            return Ok(None);
        }
        let outcomes = var("ECS_ROLLBACK_NOTIFY_OUTCOMES")
            .unwrap_or_else(|| "failed,proposed".into())
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        let budget = match var("ECS_ROLLBACK_NOTIFY_BUDGET_MS") {
            Some(v) => Duration::from_millis(
                v.parse::<u64>()
                    .map_err(|_| "ECS_ROLLBACK_NOTIFY_BUDGET_MS: not a number".to_owned())?
                    .clamp(100, 30_000),
            ),
            None => Duration::from_secs(5),
        };
        Ok(Some(Self::new(endpoints, outcomes, budget)))
    }

    /// Whether a result event (or a drill summary) is to be sent.
    pub fn wanted(&self, event: &Value) -> bool {
        let data = &event["data"];
        let outcome = data["outcome"].as_str().unwrap_or("");
        let code = data["error"]["code"].as_str().unwrap_or("");
        let failed_drill = event["type"] == "ecs-rollback.drill-summary"
            && data["failed"].as_u64().is_some_and(|f| f > 0);
        outcome == "proposed"
            || ALWAYS_CODES.contains(&code)
            || failed_drill
            || (!outcome.is_empty() && self.outcomes.iter().any(|o| o == outcome))
    }

    /// Sends `events` (already filtered) to every endpoint at once, within the budget; the
    /// platforms that could not be told, and why.
    pub async fn send(&self, events: &[Value]) -> Vec<(Platform, String)> {
        if events.is_empty() {
            return vec![];
        }
        let text = text_of(events);
        let deadline = tokio::time::Instant::now() + self.budget;
        let sends = self.endpoints.iter().map(|e| {
            let text = &text;
            async move {
                let build = || {
                    let now = chrono::Utc::now();
                    match e.platform {
                        Platform::DingTalk => dingtalk::request(
                            &e.url,
                            e.secret.as_deref(),
                            text,
                            now.timestamp_millis(),
                        ),
                        Platform::Lark => {
                            lark::request(&e.url, e.secret.as_deref(), text, now.timestamp())
                        }
                        Platform::Slack => slack::request(&e.url, text),
                        Platform::CloudEvents => cloudevents::request(
                            &e.url,
                            e.secret.as_deref(),
                            events,
                            now.timestamp(),
                        ),
                    }
                };
                let r = self.deliver(e.platform, build, deadline).await;
                r.err().map(|why| (e.platform, why))
            }
        });
        let failures: Vec<(Platform, String)> = futures_util::future::join_all(sends)
            .await
            .into_iter()
            .flatten()
            .collect();
        for (p, why) in &failures {
            tracing::warn!(metric = "NotificationFailed", platform = p.as_str(), why = %why, "a notification could not be sent");
        }
        failures
    }

    /// One platform's request, retried with backoff (full jitter) while the budget lasts. The
    /// request is built again for each attempt (a fresh timestamp and signature).
    async fn deliver(
        &self,
        platform: Platform,
        build: impl Fn() -> Outgoing,
        deadline: tokio::time::Instant,
    ) -> Result<(), String> {
        let mut backoff = Duration::from_millis(200);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(format!("no time left after {} attempt(s)", attempt - 1));
            }
            let out = build();
            let mut rb = self
                .client
                .post(out.url.clone())
                .timeout(left.min(Duration::from_secs(3)))
                .body(out.body);
            for (k, v) in &out.headers {
                rb = rb.header(k.as_str(), v.as_str());
            }
            let (retry, why) = match rb.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let body = resp.bytes().await.unwrap_or_default();
                    if (200..300).contains(&status) {
                        let verdict = match platform {
                            Platform::DingTalk => dingtalk::accepted(&body),
                            Platform::Lark => lark::accepted(&body),
                            Platform::Slack | Platform::CloudEvents => Ok(()),
                        };
                        match verdict {
                            Ok(()) => return Ok(()),
                            Err(why) => (false, format!("refused: {why}")),
                        }
                    } else {
                        let short: String =
                            String::from_utf8_lossy(&body).chars().take(120).collect();
                        (
                            status == 429 || status >= 500,
                            format!("HTTP {status} {short}"),
                        )
                    }
                }
                // reqwest's error names the URL, which holds the secret: keep only its kind.
                Err(e) => (
                    true,
                    if e.is_timeout() {
                        "timed out".to_owned()
                    } else if e.is_connect() {
                        "could not connect".to_owned()
                    } else {
                        "the request failed".to_owned()
                    },
                ),
            };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let pause = backoff.mul_f64(fastrand::f64());
            if !retry || pause >= left {
                return Err(format!("{why} (after {attempt} attempt(s))"));
            }
            tokio::time::sleep(pause).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
}

/// The text a chat platform shows: one line per result, at most 20 (then how many more).
pub fn text_of(events: &[Value]) -> String {
    let mut lines = vec![format!("ecs-rollback: {} result(s)", events.len())];
    for e in events.iter().take(20) {
        let d = &e["data"];
        if e["type"] == "ecs-rollback.drill-summary" {
            lines.push(format!(
                "- drill {}: {} failed, {} succeeded",
                d["name"].as_str().unwrap_or(""),
                d["failed"],
                d["succeeded"]
            ));
            continue;
        }
        let mut line = format!(
            "- {} {} ({})",
            d["outcome"].as_str().unwrap_or("?"),
            e["subject"].as_str().unwrap_or(""),
            d["target"]["regionId"].as_str().unwrap_or("")
        );
        if let Some(code) = d["error"]["code"].as_str() {
            line.push_str(&format!(
                ": {code}: {}",
                d["error"]["message"].as_str().unwrap_or("")
            ));
        }
        for s in d["steps"].as_array().into_iter().flatten() {
            if matches!(s["name"].as_str(), Some("policy" | "proposal")) {
                line.push_str(&format!("; {}", s["detail"].as_str().unwrap_or("")));
            }
        }
        if let Some(r) = d["reason"].as_str() {
            line.push_str(&format!("; reason: {r}"));
        }
        lines.push(line);
    }
    if events.len() > 20 {
        lines.push(format!("… and {} more", events.len() - 20));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn endpoints_are_https_or_loopback() {
        assert!(endpoint_url("x", "https://oapi.dingtalk.com/robot/send?access_token=a").is_ok());
        assert!(endpoint_url("x", "http://127.0.0.1:9/x").is_ok());
        assert!(endpoint_url("x", "http://example.com/x").is_err());
        assert!(endpoint_url("x", "ftp://127.0.0.1/").is_err());
    }

    #[test]
    fn what_is_always_sent() {
        let n = Notifier::new(vec![], vec!["failed".into()], Duration::from_secs(1));
        let ev = |outcome: &str, code: Option<&str>| {
            json!({"type": format!("ecs-rollback.{outcome}"),
                   "data": {"outcome": outcome, "error": code.map(|c| json!({"code": c}))}})
        };
        assert!(n.wanted(&ev("failed", None)));
        assert!(n.wanted(&ev("proposed", None)));
        assert!(!n.wanted(&ev("succeeded", None)));
        assert!(!n.wanted(&ev("rejected", Some("NotOptedIn"))));
        assert!(n.wanted(&ev("rejected", Some("InstanceLeftStopped"))));
        let drill = json!({"type": "ecs-rollback.drill-summary", "data": {"failed": 1}});
        assert!(n.wanted(&drill));
        let fine = json!({"type": "ecs-rollback.drill-summary", "data": {"failed": 0}});
        assert!(!n.wanted(&fine));
    }
}
