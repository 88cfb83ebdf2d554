//! Slack incoming webhook: the URL itself is the secret (Slack: "keep it secret"), a JSON
//! body with `text` (<https://api.slack.com/messaging/webhooks>); Slack answers `ok` with 200,
//! an error with a 4xx and a short reason (`invalid_payload`, `no_service`).

use serde_json::json;

use super::Outgoing;

pub fn request(url: &url::Url, text: &str) -> Outgoing {
    Outgoing {
        url: url.clone(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: json!({"text": text}).to_string().into_bytes(),
    }
}
