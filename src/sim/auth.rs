//! What the API gateway checks before an action runs: the common parameters, the access key,
//! the signature (recomputed from the decoded parameters with an encoder written apart from the
//! client's, so a signing bug in the client fails here), the timestamp window, nonce reuse, and
//! the STS security token.

use std::collections::{BTreeMap, HashMap};

use base64::Engine;
use chrono::{DateTime, NaiveDateTime, Utc};
use hmac::{Hmac, Mac};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha1::Sha1;

use super::ApiError;

/// RFC 3986 unreserved characters stay; everything else is `%XY`.
const RFC3986: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn enc(s: &str) -> String {
    utf8_percent_encode(s, RFC3986).to_string()
}

/// Decodes a query string or form body: `+` is a space (as the Tea SDK sends it), `%XY` a byte.
pub fn decode_pairs(raw: &str) -> Result<Vec<(String, String)>, ApiError> {
    let mut out = Vec::new();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let dec = |s: &str| {
            percent_decode_str(&s.replace('+', " "))
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| {
                    // Source: ecs-api.md §5.2 (400 InvalidParameter); the message is the simulator's: UNCONFIRMED.
                    ApiError::new(400, "InvalidParameter", "The request is not valid UTF-8.")
                })
        };
        out.push((dec(k)?, dec(v)?));
    }
    Ok(out)
}

/// The server's StringToSign for `params` (which include `Signature`; it is left out).
pub fn server_string_to_sign(method: &str, params: &BTreeMap<String, String>) -> String {
    let canonical = params
        .iter()
        .filter(|(k, _)| k.as_str() != "Signature")
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&");
    format!("{method}&{}&{}", enc("/"), enc(&canonical))
}

fn hmac_sha1_b64(secret: &str, msg: &str) -> String {
    let key = format!("{secret}&");
    let mut mac = match Hmac::<Sha1>::new_from_slice(key.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes a key of any length"),
    };
    mac.update(msg.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Constant-time comparison of two signatures.
fn same(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A key the gateway knows.
#[derive(Clone, Debug)]
pub struct KeyEntry {
    pub secret: String,
    /// Temporary (STS) credentials carry a token and an expiry.
    pub token: Option<String>,
    pub expires: Option<DateTime<Utc>>,
}

/// The gateway's memory: keys and the nonces seen in the last 15 minutes.
#[derive(Default)]
pub struct Gateway {
    pub keys: HashMap<String, KeyEntry>,
    /// Signatures received, for tests that look for them where they must not be.
    pub signatures: std::collections::VecDeque<String>,
    nonces: HashMap<String, DateTime<Utc>>,
    pub skew_limit_secs: i64,
}

impl Gateway {
    pub fn new(access_key_id: &str, secret: &str) -> Self {
        let mut g = Gateway {
            skew_limit_secs: 15 * 60,
            ..Default::default()
        };
        g.add_key(access_key_id, secret);
        g
    }

    /// Accepts one more long-term access key.
    pub fn add_key(&mut self, access_key_id: &str, secret: &str) {
        self.keys.insert(
            access_key_id.to_owned(),
            KeyEntry {
                secret: secret.to_owned(),
                token: None,
                expires: None,
            },
        );
    }

    /// Checks one request. `Ok` is the access key that signed it.
    pub fn verify(
        &mut self,
        method: &str,
        params: &BTreeMap<String, String>,
        now: DateTime<Utc>,
    ) -> Result<String, ApiError> {
        let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let missing = |k: &str| {
            // Source: ecs-api.md §5.2 (400 MissingParameter).
            ApiError::new(
                400,
                "MissingParameter",
                format!("The input parameter \"{k}\" that is mandatory for processing this request is not supplied."),
            )
        };
        let ak = get("AccessKeyId").ok_or_else(|| missing("AccessKeyId"))?;
        let signature = get("Signature").ok_or_else(|| missing("Signature"))?;
        if self.signatures.len() >= 10_000 {
            self.signatures.pop_front();
        }
        self.signatures.push_back(signature.to_owned());
        let nonce = get("SignatureNonce").ok_or_else(|| missing("SignatureNonce"))?;
        let ts = get("Timestamp").ok_or_else(|| missing("Timestamp"))?;
        get("Action").ok_or_else(|| missing("Action"))?;
        get("Version").ok_or_else(|| missing("Version"))?;
        if get("SignatureMethod") != Some("HMAC-SHA1") {
            // UNCONFIRMED: a wrong SignatureMethod's code is not in the reference.
            return Err(ApiError::new(
                400,
                "InvalidSignatureMethod",
                "Specified signature method is not valid.",
            ));
        }
        if get("SignatureVersion") != Some("1.0") {
            // UNCONFIRMED: a wrong SignatureVersion's code is not in the reference.
            return Err(ApiError::new(
                400,
                "InvalidSignatureVersion",
                "Specified signature version is not valid.",
            ));
        }
        let Some(entry) = self.keys.get(ak).cloned() else {
            // Source: ecs-api.md §5.2 (400 InvalidAccessKeyId.NotFound, W-GWERR).
            return Err(ApiError::new(
                400,
                "InvalidAccessKeyId.NotFound",
                "Specified access key is not found.",
            ));
        };
        let expected = hmac_sha1_b64(&entry.secret, &server_string_to_sign(method, params));
        if !same(&expected, signature) {
            // Source: ecs-api.md §5.1, §5.2 (400 SignatureDoesNotMatch with the server's string to sign).
            return Err(ApiError::new(
                400,
                "SignatureDoesNotMatch",
                format!(
                    "Specified signature is not matched with our calculation. server string to sign is:{}",
                    server_string_to_sign(method, params)
                ),
            ));
        }
        self.check_time_token_nonce(&entry, ts, get("SecurityToken"), nonce, now)?;
        Ok(ak.to_owned())
    }

    /// Checks one V3 (`ACS3-HMAC-SHA256`) request: the `Authorization` header, the signed
    /// headers, the body hash, then the same time, token and nonce rules as V1. `headers` have
    /// lower-case names. `Ok` is the access key, the action and the version.
    pub fn verify_v3(
        &mut self,
        method: &str,
        path: &str,
        params: &BTreeMap<String, String>,
        headers: &BTreeMap<String, String>,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(String, String, String), ApiError> {
        // UNCONFIRMED: the gateway's codes for a malformed or incomplete V3 Authorization are
        // not in the reference; IncompleteSignature is the code the V3 docs' error list uses.
        let incomplete = |why: &str| {
            ApiError::new(
                400,
                "IncompleteSignature",
                format!("The request signature does not conform to Aliyun standards: {why}."),
            )
        };
        let auth = headers
            .get("authorization")
            .map(String::as_str)
            .unwrap_or("");
        let Some(rest) = auth.strip_prefix("ACS3-HMAC-SHA256 ") else {
            // UNCONFIRMED: V3 with another algorithm; the code is V1's.
            return Err(ApiError::new(
                400,
                "InvalidSignatureMethod",
                "Specified signature method is not valid.",
            ));
        };
        let mut credential = None;
        let mut signed_names = None;
        let mut signature = None;
        for part in rest.split(',') {
            match part.trim().split_once('=') {
                Some(("Credential", v)) => credential = Some(v),
                Some(("SignedHeaders", v)) => signed_names = Some(v),
                Some(("Signature", v)) => signature = Some(v),
                _ => return Err(incomplete("unknown Authorization part")),
            }
        }
        let (Some(ak), Some(signed_names), Some(signature)) = (credential, signed_names, signature)
        else {
            return Err(incomplete(
                "Credential, SignedHeaders and Signature are required",
            ));
        };
        if self.signatures.len() >= 10_000 {
            self.signatures.pop_front();
        }
        self.signatures.push_back(signature.to_owned());
        let header = |k: &str| headers.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let missing = |k: &str| {
            // Source: ecs-api.md §5.2 (400 MissingParameter), for a header.
            ApiError::new(
                400,
                "MissingParameter",
                format!("The input header \"{k}\" that is mandatory for processing this request is not supplied."),
            )
        };
        let action = header("x-acs-action").ok_or_else(|| missing("x-acs-action"))?;
        let version = header("x-acs-version").ok_or_else(|| missing("x-acs-version"))?;
        let ts = header("x-acs-date").ok_or_else(|| missing("x-acs-date"))?;
        let nonce =
            header("x-acs-signature-nonce").ok_or_else(|| missing("x-acs-signature-nonce"))?;
        let content =
            header("x-acs-content-sha256").ok_or_else(|| missing("x-acs-content-sha256"))?;
        let names: Vec<&str> = signed_names.split(';').collect();
        // Every common header that is present must be signed (the V3 docs), and host.
        for must in ["host"].into_iter().chain(
            headers
                .keys()
                .map(String::as_str)
                .filter(|k| k.starts_with("x-acs-")),
        ) {
            if !names.contains(&must) {
                return Err(incomplete(&format!("header {must} is not signed")));
            }
        }
        let body_hash = {
            use sha2::Digest;
            sha2::Sha256::digest(body)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        if !same(&body_hash, content) {
            return Err(incomplete(
                "x-acs-content-sha256 is not the hash of the body",
            ));
        }
        let Some(entry) = self.keys.get(ak).cloned() else {
            // Source: ecs-api.md §5.2 (400 InvalidAccessKeyId.NotFound, W-GWERR).
            return Err(ApiError::new(
                400,
                "InvalidAccessKeyId.NotFound",
                "Specified access key is not found.",
            ));
        };
        let mut canonical_headers = String::new();
        for name in &names {
            let value = headers.get(*name).map(|v| v.trim()).unwrap_or("");
            canonical_headers.push_str(&format!("{name}:{value}\n"));
        }
        let canonical_query = params
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect::<Vec<_>>()
            .join("&");
        let canonical = format!(
            "{method}\n{path}\n{canonical_query}\n{canonical_headers}\n{signed_names}\n{content}"
        );
        let string_to_sign = {
            use sha2::Digest;
            let h = sha2::Sha256::digest(canonical.as_bytes());
            format!(
                "ACS3-HMAC-SHA256\n{}",
                h.iter().map(|b| format!("{b:02x}")).collect::<String>()
            )
        };
        let expected = {
            let mut mac = match Hmac::<sha2::Sha256>::new_from_slice(entry.secret.as_bytes()) {
                Ok(m) => m,
                Err(_) => unreachable!("HMAC takes a key of any length"),
            };
            mac.update(string_to_sign.as_bytes());
            mac.finalize()
                .into_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        if !same(&expected, signature) {
            // Source: ecs-api.md §5.2 (400 SignatureDoesNotMatch).
            return Err(ApiError::new(
                400,
                "SignatureDoesNotMatch",
                format!(
                    "Specified signature is not matched with our calculation. server string to sign is:{string_to_sign}"
                ),
            ));
        }
        self.check_time_token_nonce(&entry, ts, header("x-acs-security-token"), nonce, now)?;
        Ok((ak.to_owned(), action.to_owned(), version.to_owned()))
    }

    /// The rules V1 and V3 share: the timestamp window, the STS token, nonce reuse.
    fn check_time_token_nonce(
        &mut self,
        entry: &KeyEntry,
        ts: &str,
        token: Option<&str>,
        nonce: &str,
        now: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        let t = NaiveDateTime::parse_from_str(ts, "%Y-%m-%dT%H:%M:%SZ")
            .map_err(|_| {
                // Source: ecs-api.md §5.2 (400 InvalidTimeStamp.Format, W-GWERR).
                ApiError::new(
                    400,
                    "InvalidTimeStamp.Format",
                    "Specified time stamp or date value is not well formatted.",
                )
            })?
            .and_utc();
        if (now - t).num_seconds().abs() > self.skew_limit_secs {
            // Source: ecs-api.md §5.2 (400 InvalidTimeStamp.Expired, W-GWERR).
            return Err(ApiError::new(
                400,
                "InvalidTimeStamp.Expired",
                "Specified time stamp or date value is expired.",
            ));
        }
        match (&entry.token, token) {
            (None, _) => {}
            (Some(_), None) => {
                // UNCONFIRMED: ecs-api.md §5.2 gives the code, not its status.
                return Err(ApiError::new(
                    400,
                    "MissingSecurityToken",
                    "SecurityToken is mandatory for this action.",
                ));
            }
            (Some(want), Some(got)) if !same(want, got) => {
                // UNCONFIRMED: ecs-api.md §5.2 gives the code from third-party constants only.
                return Err(ApiError::new(
                    400,
                    "InvalidSecurityToken.MismatchWithAccessKey",
                    "Specified SecurityToken mismatch with the AccessKey.",
                ));
            }
            (Some(_), Some(_)) => {
                if entry.expires.is_some_and(|e| e <= now) {
                    // UNCONFIRMED: ecs-api.md §5.2 gives the code from third-party constants only.
                    return Err(ApiError::new(
                        400,
                        "InvalidSecurityToken.Expired",
                        "Specified SecurityToken is expired.",
                    ));
                }
            }
        }
        self.nonces
            .retain(|_, seen| (now - *seen).num_seconds() <= self.skew_limit_secs + 60);
        if self.nonces.contains_key(nonce) {
            // Source: ecs-api.md §5.2 (400 SignatureNonceUsed, OLDERR).
            return Err(ApiError::new(
                400,
                "SignatureNonceUsed",
                "Specified signature nonce was used already.",
            ));
        }
        self.nonces.insert(nonce.to_owned(), now);
        Ok(())
    }

    /// STS AssumeRole: issues temporary credentials and registers them.
    pub fn assume_role(
        &mut self,
        params: &BTreeMap<String, String>,
        caller: &str,
        now: DateTime<Utc>,
    ) -> Result<serde_json::Value, ApiError> {
        if self.keys.get(caller).is_some_and(|k| k.token.is_some()) {
            // The simulator's choice: temporary credentials may not chain.
            // UNCONFIRMED: the simulator's choice (a chained AssumeRole).
            return Err(ApiError::new(
                403,
                "NoPermission",
                "You are not authorized to do this action. You should be authorized by RAM.",
            ));
        }
        let arn = params
            .get("RoleArn")
            .filter(|a| a.starts_with("acs:ram::") && a.contains(":role/"))
            .ok_or_else(|| {
                // Source: ecs-api.md §7.1 (W-STS: 400 InvalidParameter.RoleArn).
                ApiError::new(
                    400,
                    "InvalidParameter.RoleArn",
                    "The parameter RoleArn is wrongly formed.",
                )
            })?;
        let session = params
            .get("RoleSessionName")
            .map(String::as_str)
            .unwrap_or("");
        let session_ok = (2..=64).contains(&session.len())
            && session
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b));
        if !session_ok {
            // Source: ecs-api.md §7.1 (W-STS: 400 InvalidParameter.RoleSessionName).
            return Err(ApiError::new(
                400,
                "InvalidParameter.RoleSessionName",
                "The parameter RoleSessionName is wrongly formed.",
            ));
        }
        let duration: i64 = match params.get("DurationSeconds") {
            None => 3600,
            Some(d) => d
                .parse()
                .ok()
                .filter(|d| (900..=3600).contains(d))
                .ok_or_else(|| {
                    // Source: ecs-api.md §7.1 (W-STS: 400 InvalidParameter.DurationSeconds).
                    ApiError::new(
                        400,
                        "InvalidParameter.DurationSeconds",
                        "The Min/Max value of DurationSeconds is 15min/1hr.",
                    )
                })?,
        };
        let id = format!("STS.{}", uuid::Uuid::new_v4().simple());
        let secret = uuid::Uuid::new_v4().simple().to_string();
        let token = format!("CAIS{}", uuid::Uuid::new_v4().simple());
        let expires = now + chrono::Duration::seconds(duration);
        self.keys.insert(
            id.clone(),
            KeyEntry {
                secret: secret.clone(),
                token: Some(token.clone()),
                expires: Some(expires),
            },
        );
        Ok(serde_json::json!({
            "AssumedRoleUser": {"AssumedRoleId": format!("3000000000000000:{session}"), "Arn": format!("{arn}/{session}")},
            "Credentials": {
                "AccessKeyId": id,
                "AccessKeySecret": secret,
                "SecurityToken": token,
                "Expiration": expires.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn independent_encoder_agrees_with_the_documented_vector() {
        // V2a, from the decoded wire query of signature-vectors.txt.
        let wire = "AccessKeyId=testid&Action=ResetDisk&DiskId=d-bp1abcdefghijklmno&Format=JSON&RegionId=cn-hangzhou&Signature=7zGdPQvT5ximZszC4vPdxFtMcWs%3D&SignatureMethod=HMAC-SHA1&SignatureNonce=5c6a2b1e-7d0f-4c39-9a51-2f0b8e6d4c11&SignatureVersion=1.0&SnapshotId=s-bp1abcdefghijklmno&Timestamp=2024-05-01T08%3A00%3A00Z&Version=2014-05-26";
        let params: BTreeMap<_, _> = decode_pairs(wire).expect("decodes").into_iter().collect();
        let mut g = Gateway::new("testid", "testsecret");
        let now = NaiveDateTime::parse_from_str("2024-05-01T08:05:00Z", "%Y-%m-%dT%H:%M:%SZ")
            .expect("time")
            .and_utc();
        assert_eq!(g.verify("POST", &params, now), Ok("testid".into()));
        // Same nonce again.
        assert_eq!(
            g.verify("POST", &params, now).map_err(|e| e.code),
            Err("SignatureNonceUsed".into())
        );
        // Wrong method: the signature no longer matches.
        let mut g = Gateway::new("testid", "testsecret");
        assert_eq!(
            g.verify("GET", &params, now).map_err(|e| e.code),
            Err("SignatureDoesNotMatch".into())
        );
        // Sixteen minutes later.
        let mut g = Gateway::new("testid", "testsecret");
        let late = now + chrono::Duration::minutes(16);
        assert_eq!(
            g.verify("POST", &params, late).map_err(|e| e.code),
            Err("InvalidTimeStamp.Expired".into())
        );
    }

    #[derive(serde::Deserialize)]
    struct V3File {
        vectors: Vec<V3Vector>,
    }

    #[derive(serde::Deserialize)]
    struct V3Vector {
        name: String,
        method: String,
        pathname: String,
        headers: Vec<(String, String)>,
        authorization: String,
        url: String,
    }

    /// The gateway that signed the SDK vectors: `testid` and the STS key of two of them.
    fn v3_gateway() -> Gateway {
        let mut g = Gateway::new("testid", "testsecret");
        g.keys.insert(
            "STS.NUx2Yz".into(),
            KeyEntry {
                secret: "3SJ9Xr/k+Vb8wq=secretWithSpecials".into(),
                token: Some("CAIS+token/with=specials&more".into()),
                expires: None,
            },
        );
        g
    }

    /// A vector as the server receives it: the SDK's own URL (its query encoding, `+` for
    /// space), its headers and its Authorization.
    fn v3_received(v: &V3Vector) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
        let query = v.url.split_once('?').map(|(_, q)| q).unwrap_or("");
        let params = decode_pairs(query).expect("decodes").into_iter().collect();
        let mut headers: BTreeMap<String, String> = v.headers.iter().cloned().collect();
        headers.insert("authorization".into(), v.authorization.clone());
        (params, headers)
    }

    fn v3_vectors() -> Vec<V3Vector> {
        let text = include_str!("../../tests/data/signature-v3-vectors.json");
        serde_json::from_str::<V3File>(text)
            .expect("vectors")
            .vectors
    }

    fn at(v: &V3Vector) -> DateTime<Utc> {
        let date = v
            .headers
            .iter()
            .find(|(k, _)| k == "x-acs-date")
            .map(|(_, d)| d.as_str())
            .expect("date");
        NaiveDateTime::parse_from_str(date, "%Y-%m-%dT%H:%M:%SZ")
            .expect("time")
            .and_utc()
    }

    #[test]
    fn the_gateway_accepts_every_v3_request_the_official_sdk_signed() {
        for v in v3_vectors() {
            let mut g = v3_gateway();
            let (params, headers) = v3_received(&v);
            let ok = g.verify_v3(&v.method, &v.pathname, &params, &headers, b"", at(&v));
            let ak = if v.authorization.contains("STS.") {
                "STS.NUx2Yz"
            } else {
                "testid"
            };
            let action = headers["x-acs-action"].clone();
            assert_eq!(
                ok,
                Ok((ak.to_owned(), action, "2014-05-26".to_owned())),
                "{}",
                v.name
            );
            // The same request again: its nonce was used.
            assert_eq!(
                g.verify_v3(&v.method, &v.pathname, &params, &headers, b"", at(&v))
                    .map_err(|e| e.code),
                Err("SignatureNonceUsed".into()),
                "{}",
                v.name
            );
        }
    }

    #[test]
    fn the_gateway_refuses_altered_v3_requests() {
        let v = &v3_vectors()[1]; // STS, JSON array
        let (params, headers) = v3_received(v);
        let code = |params: &BTreeMap<String, String>,
                    headers: &BTreeMap<String, String>,
                    body: &[u8],
                    now: DateTime<Utc>| {
            v3_gateway()
                .verify_v3("POST", "/", params, headers, body, now)
                .map(|_| ())
                .map_err(|e| e.code)
        };
        let now = at(v);
        assert_eq!(code(&params, &headers, b"", now), Ok(()));
        let mut p = params.clone();
        p.insert("MaxResults".into(), "10".into());
        assert_eq!(
            code(&p, &headers, b"", now),
            Err("SignatureDoesNotMatch".into())
        );
        let mut h = headers.clone();
        h.insert("x-acs-action".into(), "ResetDisk".into());
        assert_eq!(
            code(&params, &h, b"", now),
            Err("SignatureDoesNotMatch".into())
        );
        let mut h = headers.clone();
        h.insert("x-acs-security-token".into(), "CAISother".into());
        assert_eq!(
            code(&params, &h, b"", now),
            Err("SignatureDoesNotMatch".into())
        );
        let mut h = headers.clone();
        h.insert("x-acs-extra".into(), "unsigned".into());
        assert_eq!(
            code(&params, &h, b"", now),
            Err("IncompleteSignature".into())
        );
        assert_eq!(
            code(&params, &headers, b"DiskId=x", now),
            Err("IncompleteSignature".into())
        );
        let late = now + chrono::Duration::minutes(16);
        assert_eq!(
            code(&params, &headers, b"", late),
            Err("InvalidTimeStamp.Expired".into())
        );
        let mut h = headers.clone();
        h.insert(
            "authorization".into(),
            headers["authorization"].replace("ACS3-HMAC-SHA256", "ACS3-HMAC-SM3"),
        );
        assert_eq!(
            code(&params, &h, b"", now),
            Err("InvalidSignatureMethod".into())
        );
        let mut h = headers.clone();
        h.remove("x-acs-date");
        assert_eq!(code(&params, &h, b"", now), Err("MissingParameter".into()));
    }

    #[test]
    fn plus_decodes_as_space() {
        let p = decode_pairs("a=x+y&b=x%20y&c=%2B").expect("decodes");
        assert_eq!(p[0].1, "x y");
        assert_eq!(p[1].1, "x y");
        assert_eq!(p[2].1, "+");
    }
}
