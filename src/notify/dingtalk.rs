//! DingTalk custom robot ("自定义机器人"), signed ("加签"): the string to sign is
//! `timestamp + "\n" + secret` (timestamp in milliseconds, within an hour of DingTalk's clock),
//! HmacSHA256 keyed with the secret, Base64, then URL-encoded, sent as the `timestamp` and
//! `sign` query parameters of the robot's webhook URL
//! (<https://help.dingtalk.io/open/dingstart/customize-robot-security-settings>, "Sign request";
//! the same page on open.dingtalk.com: `/document/robots/customize-robot-security-settings`).
//! A refused message still answers HTTP 200, with `errcode` other than 0.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use super::Outgoing;

/// The signature of `timestamp_ms` under `secret`, Base64 (before URL encoding).
pub fn sign(timestamp_ms: i64, secret: &str) -> String {
    let to_sign = format!("{timestamp_ms}\n{secret}");
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(to_sign.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

pub fn request(url: &url::Url, secret: Option<&str>, text: &str, now_ms: i64) -> Outgoing {
    let mut url = url.clone();
    if let Some(secret) = secret {
        // `query_pairs_mut` URL-encodes the Base64 signature (`+`, `/`, `=`).
        url.query_pairs_mut()
            .append_pair("timestamp", &now_ms.to_string())
            .append_pair("sign", &sign(now_ms, secret));
    }
    Outgoing {
        url,
        headers: vec![("content-type".into(), "application/json".into())],
        body: json!({"msgtype": "text", "text": {"content": text}})
            .to_string()
            .into_bytes(),
    }
}

/// DingTalk's own verdict: `{"errcode": 0, "errmsg": "ok"}`.
pub fn accepted(body: &[u8]) -> Result<(), String> {
    let v: Value = serde_json::from_slice(body).map_err(|_| "not JSON".to_owned())?;
    match v.get("errcode").and_then(Value::as_i64) {
        Some(0) => Ok(()),
        Some(c) => Err(format!(
            "errcode {c}: {}",
            v.get("errmsg").and_then(Value::as_str).unwrap_or("")
        )),
        None => Err("no errcode".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_recipe() {
        // Python of the DingTalk page: base64(hmac(secret, f"{ts}\n{secret}", sha256)), quote_plus.
        let s = sign(1_700_000_000_000, "SECtest");
        assert_eq!(STANDARD.decode(&s).map(|b| b.len()).ok(), Some(32));
        let url =
            url::Url::parse("https://oapi.dingtalk.com/robot/send?access_token=t").expect("url");
        let out = request(&url, Some("SECtest"), "hi", 1_700_000_000_000);
        let q: Vec<(String, String)> = out.url.query_pairs().into_owned().collect();
        assert_eq!(q[0], ("access_token".into(), "t".into()));
        assert_eq!(q[1], ("timestamp".into(), "1700000000000".into()));
        assert_eq!(q[2], ("sign".into(), s));
        assert!(accepted(br#"{"errcode":0,"errmsg":"ok"}"#).is_ok());
        assert!(accepted(br#"{"errcode":310000,"errmsg":"sign not match"}"#).is_err());
    }
}
