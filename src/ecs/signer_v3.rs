//! Signature V3 (`ACS3-HMAC-SHA256`), the one the ECS docs now recommend over HMAC-SHA1.
//!
//! The algorithm (Alibaba Cloud "V3 request structure and signature"; the Tea SDK's
//! `Utils.get_authorization`):
//! 1. `CanonicalRequest = METHOD \n PATH \n CanonicalQuery \n CanonicalHeaders \n SignedHeaders
//!    \n HashedPayload`, where the query is sorted by name, names and values encoded with
//!    [`percent_encode`]; headers are lower-cased, trimmed, sorted, one `name:value\n` each (a
//!    repeated header's values sorted and joined with `,`); SignedHeaders is their names joined
//!    with `;`; HashedPayload is hex SHA-256 of the body (also sent as `x-acs-content-sha256`);
//! 2. `StringToSign = "ACS3-HMAC-SHA256" \n hex(SHA-256(CanonicalRequest))`;
//! 3. `Signature = hex(HMAC-SHA256(secret, StringToSign))`, sent as
//!    `Authorization: ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=...,Signature=...`.
//!
//! Action and Version travel as `x-acs-action` / `x-acs-version`, the timestamp as `x-acs-date`,
//! the nonce as `x-acs-signature-nonce`, an STS token as `x-acs-security-token`: every one of
//! these common headers that is present must be signed. The query holds only the operation's
//! own parameters. Vectors: tests/data/signature-v3-vectors.json, made by the official SDK with
//! tests/v3/generate_vectors.py.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub use super::signer::percent_encode;

pub const ALGORITHM: &str = "ACS3-HMAC-SHA256";

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 0x0f) as usize] as char);
    }
    out
}

/// Hex SHA-256 of `payload`: the `x-acs-content-sha256` header and the canonical request's
/// last line.
pub fn hashed_payload(payload: &[u8]) -> String {
    hex(&Sha256::digest(payload))
}

/// `k=v&k=v`, sorted by name (bytes), names and values encoded.
pub fn canonical_query(params: &BTreeMap<String, String>) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The canonical headers (`name:value\n` each) and the signed-header list (`a;b;c`).
pub fn canonical_headers(headers: &[(String, String)]) -> (String, String) {
    let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in headers {
        by_name
            .entry(k.to_ascii_lowercase())
            .or_default()
            .push(v.trim().to_owned());
    }
    let mut canonical = String::new();
    for (name, values) in &mut by_name {
        values.sort();
        canonical.push_str(name);
        canonical.push(':');
        canonical.push_str(&values.join(","));
        canonical.push('\n');
    }
    let signed = by_name.keys().cloned().collect::<Vec<_>>().join(";");
    (canonical, signed)
}

/// The canonical request for `headers` (every header given is signed).
pub fn canonical_request(
    method: &str,
    path: &str,
    params: &BTreeMap<String, String>,
    headers: &[(String, String)],
    payload_hash: &str,
) -> String {
    request_and_signed(method, path, params, headers, payload_hash).0
}

/// The canonical request and the signed-header list, from one pass over the headers.
fn request_and_signed(
    method: &str,
    path: &str,
    params: &BTreeMap<String, String>,
    headers: &[(String, String)],
    payload_hash: &str,
) -> (String, String) {
    let (canonical_headers, signed) = canonical_headers(headers);
    let request = format!(
        "{method}\n{path}\n{}\n{canonical_headers}\n{signed}\n{payload_hash}",
        canonical_query(params)
    );
    (request, signed)
}

pub fn string_to_sign(canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    )
}

/// hex(HMAC-SHA256(secret, string_to_sign)).
pub fn sign_string(secret: &str, string_to_sign: &str) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC-SHA256 takes a key of any length"),
    };
    mac.update(string_to_sign.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// The `Authorization` header for a request with these parts; every header given is signed.
pub fn authorization(
    access_key_id: &str,
    secret: &str,
    method: &str,
    path: &str,
    params: &BTreeMap<String, String>,
    headers: &[(String, String)],
    payload_hash: &str,
) -> String {
    let (cr, signed) = request_and_signed(method, path, params, headers, payload_hash);
    let signature = sign_string(secret, &string_to_sign(&cr));
    format!("{ALGORITHM} Credential={access_key_id},SignedHeaders={signed},Signature={signature}")
}

#[cfg(test)]
mod tests {
    //! The vectors the official SDK made (tests/v3/generate_vectors.py), reproduced byte for
    //! byte: canonical request, string to sign, Authorization, and the SDK's own URL query
    //! decoding to the same parameters.
    use super::*;

    #[derive(serde::Deserialize)]
    struct File {
        vectors: Vec<Vector>,
    }

    #[derive(serde::Deserialize)]
    struct Vector {
        name: String,
        secret: String,
        method: String,
        pathname: String,
        query: Vec<(String, String)>,
        headers: Vec<(String, String)>,
        canonical_request: String,
        string_to_sign: String,
        authorization: String,
    }

    fn vectors() -> Vec<Vector> {
        let text = include_str!("../../tests/data/signature-v3-vectors.json");
        match serde_json::from_str::<File>(text) {
            Ok(f) => f.vectors,
            Err(e) => panic!("tests/data/signature-v3-vectors.json: {e}"),
        }
    }

    #[test]
    fn every_sdk_vector_byte_for_byte() {
        let all = vectors();
        assert_eq!(all.len(), 5, "the generator writes five vectors");
        for v in &all {
            let params: BTreeMap<String, String> = v.query.iter().cloned().collect();
            let payload = v
                .headers
                .iter()
                .find(|(k, _)| k == "x-acs-content-sha256")
                .map(|(_, h)| h.clone())
                .unwrap_or_default();
            assert_eq!(payload, hashed_payload(b""), "{}: empty body", v.name);
            let cr = canonical_request(&v.method, &v.pathname, &params, &v.headers, &payload);
            assert_eq!(cr, v.canonical_request, "{}: canonical request", v.name);
            assert_eq!(
                string_to_sign(&cr),
                v.string_to_sign,
                "{}: string to sign",
                v.name
            );
            let ak = v
                .authorization
                .split("Credential=")
                .nth(1)
                .and_then(|s| s.split(',').next())
                .unwrap_or_default();
            let auth = authorization(
                ak,
                &v.secret,
                &v.method,
                &v.pathname,
                &params,
                &v.headers,
                &payload,
            );
            assert_eq!(auth, v.authorization, "{}: Authorization", v.name);
        }
    }

    #[test]
    fn a_changed_byte_changes_the_signature() {
        let v = &vectors()[0];
        let mut params: BTreeMap<String, String> = v.query.iter().cloned().collect();
        params.insert("DiskId".into(), "d-bp1abcdefghijklmnp".into());
        let payload = hashed_payload(b"");
        let auth = authorization(
            "testid", &v.secret, "POST", "/", &params, &v.headers, &payload,
        );
        assert_ne!(auth, v.authorization);
    }

    #[test]
    fn repeated_headers_are_sorted_and_joined() {
        let h = vec![
            ("X-B".to_owned(), " 2 ".to_owned()),
            ("x-a".to_owned(), "z".to_owned()),
            ("x-b".to_owned(), "1".to_owned()),
        ];
        let (c, s) = canonical_headers(&h);
        assert_eq!(c, "x-a:z\nx-b:1,2\n");
        assert_eq!(s, "x-a;x-b");
    }
}
