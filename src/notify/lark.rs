//! Lark / Feishu custom bot, with signature verification on: the key is
//! `timestamp + "\n" + secret` (timestamp in seconds, within an hour), HmacSHA256 over an empty
//! message, Base64, sent in the JSON body as `timestamp` and `sign` beside `msg_type` and
//! `content` (<https://open.feishu.cn/document/client-docs/bot-v3/add-custom-bot>, "Signature
//! verification"; Lark: <https://open.larksuite.com/document/client-docs/bot-v3/add-custom-bot>;
//! the help center's overview: <https://www.feishu.cn/hc/en-US/articles/360024984973>).
//! A refused message answers with `code` other than 0.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use super::Outgoing;

pub fn sign(timestamp_s: i64, secret: &str) -> String {
    let key = format!("{timestamp_s}\n{secret}");
    let mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    // The message is empty: the key carries the timestamp and the secret.
    STANDARD.encode(mac.finalize().into_bytes())
}

pub fn request(url: &url::Url, secret: Option<&str>, text: &str, now_s: i64) -> Outgoing {
    let mut body = json!({"msg_type": "text", "content": {"text": text}});
    if let Some(secret) = secret {
        body["timestamp"] = Value::String(now_s.to_string());
        body["sign"] = Value::String(sign(now_s, secret));
    }
    Outgoing {
        url: url.clone(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
    }
}

/// Lark's verdict: `{"code": 0, …}` (older bots answer `StatusCode: 0`).
pub fn accepted(body: &[u8]) -> Result<(), String> {
    let v: Value = serde_json::from_slice(body).map_err(|_| "not JSON".to_owned())?;
    let code = v
        .get("code")
        .or_else(|| v.get("StatusCode"))
        .and_then(Value::as_i64);
    match code {
        Some(0) => Ok(()),
        Some(c) => Err(format!(
            "code {c}: {}",
            v.get("msg").and_then(Value::as_str).unwrap_or("")
        )),
        None => Err("no code".into()),
    }
}
