//! HTTP requests (Function URL, or API Gateway HTTP API payload 2.0): unwrap the body, and
//! authenticate it before anything else happens.
//!
//! Two ways in, checked in constant time:
//! - `X-Rollback-Timestamp: <unix seconds>` and `X-Rollback-Signature: sha256=<hex>`, the
//!   HMAC-SHA256 with `ECS_ROLLBACK_WEBHOOK_SECRET` of `"<timestamp>.<raw body>"`; the timestamp
//!   must be within 5 minutes of now;
//! - `Authorization: Bearer <ECS_ROLLBACK_WEBHOOK_TOKEN>`, for senders that cannot sign
//!   (Alertmanager).
//!
//! With neither configured every request is refused: the door is closed by default.

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::ecs::credentials::Secret;

pub const SIGNATURE_TOLERANCE_SECS: i64 = 300;
/// Bodies larger than this are refused before they are read as JSON: the one limit of every
/// front door.
pub use super::MAX_PAYLOAD as MAX_BODY;

/// Signatures accepted in the last tolerance window, at most this many remembered.
const REPLAY_MEMORY: usize = 10_000;

#[derive(Clone, Debug, Default)]
pub struct WebhookAuth {
    pub secret: Option<Secret>,
    pub token: Option<Secret>,
    /// Signatures accepted within the tolerance window, refused if seen again. Per process: in
    /// Lambda a warm container remembers; across containers, the idempotency key makes a
    /// replayed request a `duplicate`.
    pub seen: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, i64>>>,
}

impl WebhookAuth {
    pub fn from_env() -> Self {
        let get = |k: &str| {
            std::env::var(k)
                .ok()
                .filter(|v| !v.is_empty())
                .map(Secret::new)
        };
        Self {
            secret: get("ECS_ROLLBACK_WEBHOOK_SECRET"),
            token: get("ECS_ROLLBACK_WEBHOOK_TOKEN"),
            seen: Default::default(),
        }
    }
}

/// What an HTTP event carries.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    /// Header names lower-cased.
    pub headers: Map<String, Value>,
    pub body: Vec<u8>,
    pub method: String,
    /// The platform's ID of this request (`requestContext.requestId`, or Function Compute's
    /// `x-fc-request-id`), when it gives one.
    pub request_id: Option<String>,
}

impl HttpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .and_then(Value::as_str)
    }

    /// A request as a server received it (Function Compute's HTTP trigger passes the caller's
    /// request through): header names lower-cased, a header given twice joined with `,` (as
    /// Function Compute's `version: v1` struct does), values that are not text left out.
    pub fn from_parts<'a>(
        method: &str,
        headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
        body: Vec<u8>,
        request_id: Option<String>,
    ) -> Self {
        let mut map = Map::new();
        for (name, value) in headers {
            let Ok(value) = std::str::from_utf8(value) else {
                continue;
            };
            let name = name.to_ascii_lowercase();
            let joined = match map.get(&name).and_then(Value::as_str) {
                Some(before) => format!("{before},{value}"),
                None => value.to_owned(),
            };
            map.insert(name, Value::String(joined));
        }
        Self {
            headers: map,
            body,
            method: method.to_owned(),
            request_id: request_id.filter(|id| !id.is_empty()),
        }
    }
}

/// Why an HTTP event cannot be taken apart.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnwrapError {
    /// The body (decoded) is over the one limit.
    #[error("the body is {len} bytes, more than the limit of {MAX_BODY} bytes")]
    TooLarge { len: usize },
    #[error("{0}")]
    Malformed(String),
}

/// How a request proved who sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Authenticated {
    /// `X-Rollback-Signature` over `"<timestamp>.<body>"`, at this timestamp.
    Signed { timestamp: i64 },
    /// `Authorization: Bearer`, which says nothing about this particular request.
    Bearer,
}

/// What keys a signed request that names no `idempotencyKey`: the signed timestamp and the
/// body's SHA-256, exactly what the signature covers. A replay (same timestamp, same body)
/// gives the same key in every process, so it is a `duplicate`; a new request, signed anew,
/// gives a new key.
pub fn signed_key_basis(timestamp: i64, body: &[u8]) -> String {
    use sha2::Digest;
    format!("{timestamp}.{}", crate::request::hex(&Sha256::digest(body)))
}

/// The request's own ID (`requestContext.requestId`), for the trigger.
pub fn request_id(event: &Value) -> String {
    event
        .pointer("/requestContext/requestId")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

/// Unwraps a Function URL / API Gateway v2 event (or Function Compute's `version: v1` HTTP
/// trigger struct, which has the same fields).
pub fn unwrap(event: &Value) -> Result<HttpRequest, UnwrapError> {
    let headers: Map<String, Value> = event
        .get("headers")
        .and_then(Value::as_object)
        .map(|h| {
            h.iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    let method = event
        .pointer("/requestContext/http/method")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let raw = event.get("body").and_then(Value::as_str).unwrap_or("");
    let body = if event.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) {
        base64::engine::general_purpose::STANDARD
            .decode(raw)
            .map_err(|e| UnwrapError::Malformed(format!("the body is not valid base64: {e}")))?
    } else {
        raw.as_bytes().to_vec()
    };
    if body.len() > MAX_BODY {
        return Err(UnwrapError::TooLarge { len: body.len() });
    }
    let id = request_id(event);
    Ok(HttpRequest {
        headers,
        body,
        method,
        request_id: (!id.is_empty()).then_some(id),
    })
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `sha256=<hex>` for `body` at `timestamp`: what a sender puts in `X-Rollback-Signature`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes a key of any length"),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "sha256={}",
        crate::request::hex(&mac.finalize().into_bytes())
    )
}

/// How the request proved its sender, when it carries a valid signature or bearer token; else
/// why not (never which part of a secret was wrong).
pub fn authenticate(
    req: &HttpRequest,
    auth: &WebhookAuth,
    now: i64,
) -> Result<Authenticated, String> {
    if auth.secret.is_none() && auth.token.is_none() {
        return Err("webhook authentication is not configured (ECS_ROLLBACK_WEBHOOK_SECRET or ECS_ROLLBACK_WEBHOOK_TOKEN)".into());
    }
    if let (Some(secret), Some(sig)) = (&auth.secret, req.header("x-rollback-signature")) {
        let ts: i64 = req
            .header("x-rollback-timestamp")
            .and_then(|t| t.trim().parse().ok())
            .ok_or("X-Rollback-Timestamp is missing or not a number")?;
        if (now - ts).abs() > SIGNATURE_TOLERANCE_SECS {
            return Err("X-Rollback-Timestamp is more than 5 minutes from now".into());
        }
        let given = sig
            .trim()
            .strip_prefix("sha256=")
            .and_then(hex_decode)
            .ok_or("X-Rollback-Signature is not sha256=<hex>")?;
        let mut mac = match Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC takes a key of any length"),
        };
        mac.update(ts.to_string().as_bytes());
        mac.update(b".");
        mac.update(&req.body);
        mac.verify_slice(&given)
            .map_err(|_| "X-Rollback-Signature does not match the body".to_owned())?;
        let mut seen = auth.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.retain(|_, at| (now - *at).abs() <= SIGNATURE_TOLERANCE_SECS);
        if seen.contains_key(sig.trim()) {
            return Err("this signed request was already received (replay)".into());
        }
        if seen.len() >= REPLAY_MEMORY {
            seen.clear();
        }
        seen.insert(sig.trim().to_owned(), ts);
        return Ok(Authenticated::Signed { timestamp: ts });
    }
    if let (Some(token), Some(header)) = (&auth.token, req.header("authorization")) {
        let given = header.trim().strip_prefix("Bearer ").unwrap_or("").trim();
        let want = token.expose();
        let equal =
            given.len() == want.len() && bool::from(given.as_bytes().ct_eq(want.as_bytes()));
        return if equal {
            Ok(Authenticated::Bearer)
        } else {
            Err("the bearer token is wrong".into())
        };
    }
    Err("no X-Rollback-Signature or Authorization header".into())
}

/// The body as an event: JSON, or a form (CloudMonitor's threshold callback) as an object of
/// strings.
pub fn body_event(req: &HttpRequest) -> Result<Value, String> {
    let text = std::str::from_utf8(&req.body).map_err(|_| "the body is not UTF-8".to_owned())?;
    let is_form = req.header("content-type").is_some_and(|c| {
        c.to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    });
    if is_form {
        let mut m = Map::new();
        for (k, v) in url::form_urlencoded::parse(text.as_bytes()) {
            if m.insert(k.to_string(), Value::String(v.into_owned()))
                .is_some()
            {
                return Err(format!("the form repeats {k:?}"));
            }
        }
        return Ok(Value::Object(m));
    }
    crate::strict_json::from_str(text).map_err(|e| format!("the body is not JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(headers: Value, body: &str) -> HttpRequest {
        unwrap(&json!({"requestContext": {"http": {"method": "POST"}}, "headers": headers, "body": body})).expect("ok")
    }

    fn auth() -> WebhookAuth {
        WebhookAuth {
            secret: Some(Secret::new("s3cret")),
            token: Some(Secret::new("tok-123")),
            seen: Default::default(),
        }
    }

    #[test]
    fn signatures() {
        let now = 1_800_000_000;
        let body = r#"{"diskId":"d-bp1webapp0000sys01"}"#;
        let sig = sign("s3cret", now, body.as_bytes());
        let good = req(
            json!({"X-Rollback-Timestamp": now.to_string(), "X-Rollback-Signature": sig}),
            body,
        );
        let a = auth();
        assert_eq!(
            authenticate(&good, &a, now + 10),
            Ok(Authenticated::Signed { timestamp: now })
        );
        assert!(authenticate(&good, &a, now + 20).is_err(), "replayed");
        assert!(authenticate(&good, &auth(), now + 301).is_err(), "expired");
        let tampered = req(
            json!({"x-rollback-timestamp": now.to_string(), "x-rollback-signature": sig}),
            &body.replace("sys01", "sys02"),
        );
        assert!(authenticate(&tampered, &auth(), now).is_err());
        let wrong = req(
            json!({"x-rollback-timestamp": now.to_string(), "x-rollback-signature": sign("other", now, body.as_bytes())}),
            body,
        );
        assert!(authenticate(&wrong, &auth(), now).is_err());
        let garbage = req(
            json!({"x-rollback-timestamp": now.to_string(), "x-rollback-signature": "sha256=zz"}),
            body,
        );
        assert!(authenticate(&garbage, &auth(), now).is_err());
        let none = req(json!({}), body);
        assert!(authenticate(&none, &auth(), now).is_err());
        assert!(
            authenticate(&good, &WebhookAuth::default(), now).is_err(),
            "closed by default"
        );
    }

    #[test]
    fn bearer() {
        let now = 0;
        assert_eq!(
            authenticate(
                &req(json!({"Authorization": "Bearer tok-123"}), "{}"),
                &auth(),
                now
            ),
            Ok(Authenticated::Bearer)
        );
        assert!(authenticate(
            &req(json!({"authorization": "Bearer tok-124"}), "{}"),
            &auth(),
            now
        )
        .is_err());
        assert!(authenticate(
            &req(json!({"authorization": "Bearer "}), "{}"),
            &auth(),
            now
        )
        .is_err());
        assert!(authenticate(
            &req(json!({"authorization": "tok-123"}), "{}"),
            &auth(),
            now
        )
        .is_err());
    }

    #[test]
    fn bodies() {
        let form = req(
            json!({"content-type": "application/x-www-form-urlencoded"}),
            "alertState=ALERT&dimensions=%7BinstanceId%3Di-1%7D",
        );
        assert_eq!(
            body_event(&form).expect("form")["dimensions"],
            "{instanceId=i-1}"
        );
        let b64 = unwrap(&json!({"requestContext": {"http": {"method": "POST"}}, "body": "eyJ0ZXN0IjoiYm9keSJ9", "isBase64Encoded": true})).expect("ok");
        assert_eq!(body_event(&b64).expect("json")["test"], "body");
    }
}
