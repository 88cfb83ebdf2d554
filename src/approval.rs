//! Approvals of proposed rollbacks: a token that names exactly one request (its body as the
//! policy saw it, its idempotency key, the trigger's time that picks the default snapshot),
//! signed with HMAC-SHA256 under `ECS_ROLLBACK_APPROVAL_SECRET`, expiring (an hour by default).
//! Pure: making and checking a token; running it, and remembering that it was used, are the
//! handler's (`handler/gate.rs`).
//!
//! Format: `v1.<base64url(payload JSON)>.<base64url(HMAC-SHA256(secret, "v1." + payload part))>`.
//! The token is a ticket, not a credential: approving it still takes the webhook's
//! authentication or the operator's own cloud credentials (`ecs-rollback approve`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;

/// What an approval token carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proposal {
    /// The request as it will run, with its `idempotencyKey` and `regionId` written in.
    pub request: Value,
    /// The idempotency key (also in `request`): what the token is bound to.
    pub key: String,
    /// The trigger's kind and ID, for the approved run's result.
    pub trigger: String,
    /// The trigger's time (Unix seconds), which picks the default snapshot.
    pub time: Option<i64>,
    /// The policy rule that proposed it.
    pub rule: String,
    /// Unix seconds after which the token runs nothing.
    pub expires: i64,
    /// A fresh value per proposal: what marks a token used.
    pub nonce: String,
}

/// Why a token runs nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    #[error("the approval token is malformed: {0}")]
    Malformed(&'static str),
    #[error(
        "the approval token's signature does not match (altered, or signed with another secret)"
    )]
    BadSignature,
    #[error("the approval expired at {0}")]
    Expired(String),
    #[error("no approval secret is configured (ECS_ROLLBACK_APPROVAL_SECRET)")]
    NoSecret,
}

const VERSION: &str = "v1";

fn mac(secret: &[u8], signed: &str) -> Hmac<Sha256> {
    // HMAC accepts a key of any length.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    m.update(signed.as_bytes());
    m
}

/// The token for `proposal`.
pub fn sign(proposal: &Proposal, secret: &[u8]) -> String {
    let payload = serde_json::to_vec(proposal).unwrap_or_default();
    let signed = format!("{VERSION}.{}", URL_SAFE_NO_PAD.encode(payload));
    let tag = mac(secret, &signed).finalize().into_bytes();
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag))
}

/// The proposal a token carries, if it is signed with `secret` and not expired at `now`.
/// The signature is checked (in constant time) before the payload is read.
pub fn verify(token: &str, secret: &[u8], now: i64) -> Result<Proposal, ApprovalError> {
    if secret.is_empty() {
        return Err(ApprovalError::NoSecret);
    }
    let token = token.trim();
    if token.len() > 8192 {
        return Err(ApprovalError::Malformed("longer than 8192 characters"));
    }
    let (signed, sig) = token
        .rsplit_once('.')
        .ok_or(ApprovalError::Malformed("no signature part"))?;
    let (version, payload) = signed
        .split_once('.')
        .ok_or(ApprovalError::Malformed("no payload part"))?;
    if version != VERSION {
        return Err(ApprovalError::Malformed("unknown version"));
    }
    let sig = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| ApprovalError::Malformed("the signature is not base64url"))?;
    mac(secret, signed)
        .verify_slice(&sig)
        .map_err(|_| ApprovalError::BadSignature)?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| ApprovalError::Malformed("the payload is not base64url"))?;
    let proposal: Proposal = serde_json::from_slice(&payload)
        .map_err(|_| ApprovalError::Malformed("the payload is not a proposal"))?;
    if now > proposal.expires {
        let at = DateTime::<Utc>::from_timestamp(proposal.expires, 0)
            .map(|t| t.to_rfc3339())
            .unwrap_or_else(|| proposal.expires.to_string());
        return Err(ApprovalError::Expired(at));
    }
    Ok(proposal)
}

/// Who approved, made safe for a tag value and a result: printable, at most 64 characters.
pub fn approver(raw: &str) -> String {
    let clean: String = raw
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect::<String>()
        .replace("://", "-");
    let clean = clean.trim().to_owned();
    if clean.is_empty() {
        "unknown".into()
    } else {
        clean
    }
}

impl std::fmt::Display for Proposal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "key {:?} (rule {})", self.key, self.rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn proposal(expires: i64) -> Proposal {
        Proposal {
            request: json!({"diskId": "d-bp1webapp0000sys01", "idempotencyKey": "k-1"}),
            key: "k-1".into(),
            trigger: "ecs-event:e-1".into(),
            time: Some(1_700_000_000),
            rule: "ecs-events".into(),
            expires,
            nonce: "n-1".into(),
        }
    }

    #[test]
    fn a_signed_token_verifies_until_it_expires() {
        let t = sign(&proposal(1_000), b"s3cret");
        assert_eq!(verify(&t, b"s3cret", 999), Ok(proposal(1_000)));
        assert_eq!(verify(&t, b"s3cret", 1_000), Ok(proposal(1_000)));
        assert!(matches!(
            verify(&t, b"s3cret", 1_001),
            Err(ApprovalError::Expired(_))
        ));
        assert_eq!(verify(&t, b"other", 999), Err(ApprovalError::BadSignature));
        assert_eq!(verify(&t, b"", 999), Err(ApprovalError::NoSecret));
    }

    #[test]
    fn any_change_to_the_token_is_refused() {
        let t = sign(&proposal(1_000), b"s3cret");
        // Another request under the same signature.
        let (_, sig) = t.rsplit_once('.').expect("sig");
        let mut other = proposal(1_000);
        other.request["diskId"] = json!("d-bp1other00000sys01");
        let forged = format!(
            "v1.{}.{sig}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&other).expect("json"))
        );
        assert_eq!(
            verify(&forged, b"s3cret", 0),
            Err(ApprovalError::BadSignature)
        );
        // Every single character changed.
        for i in 0..t.len() {
            let mut bytes = t.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(bytes).expect("ascii");
            if altered != t {
                assert!(verify(&altered, b"s3cret", 0).is_err(), "position {i}");
            }
        }
        assert!(matches!(
            verify("nonsense", b"s3cret", 0),
            Err(ApprovalError::Malformed(_))
        ));
    }

    #[test]
    fn approvers_are_tag_safe() {
        assert_eq!(approver("alice"), "alice");
        assert_eq!(approver(" \n"), "unknown");
        assert_eq!(approver("https://x"), "https-x");
        assert_eq!(approver(&"a".repeat(100)).len(), 64);
    }
}
