//! A generic HTTP endpoint, CloudEvents HTTP protocol binding in batched content mode: the
//! result events themselves, a JSON array, `Content-Type: application/cloudevents-batch+json`
//! (<https://github.com/cloudevents/spec/blob/v1.0/http-protocol-binding.md>, §3.3), signed
//! as the function's own webhook is (README, "Webhook authentication"):
//! `X-Rollback-Timestamp: <unix seconds>` and `X-Rollback-Signature: sha256=<hex of
//! HMAC-SHA256(secret, "<timestamp>.<body>")>`, so one secret scheme serves both directions.

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::Outgoing;

pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

pub fn request(url: &url::Url, secret: Option<&str>, events: &[Value], now_s: i64) -> Outgoing {
    let body = serde_json::to_vec(events).unwrap_or_default();
    let mut headers = vec![(
        "content-type".into(),
        "application/cloudevents-batch+json".into(),
    )];
    if let Some(secret) = secret {
        headers.push(("x-rollback-timestamp".into(), now_s.to_string()));
        headers.push((
            "x-rollback-signature".into(),
            signature(secret, now_s, &body),
        ));
    }
    Outgoing {
        url: url.clone(),
        headers,
        body,
    }
}
