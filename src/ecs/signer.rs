//! Signature version 1.0 (HMAC-SHA1) for the Alibaba Cloud RPC API.
//!
//! The algorithm, step by step (`shared/reference/ecs-api.md` §1.1):
//! 1. every parameter except `Signature`, empty values included;
//! 2. sorted by raw name, byte order (so `InstanceId.10` sorts before `InstanceId.2`);
//! 3. name and value percent-encoded with [`percent_encode`] and joined as `k=v&k=v`;
//! 4. `StringToSign = METHOD & %2F & percent_encode(canonical)`;
//! 5. `Base64(HMAC-SHA1(secret + "&", StringToSign))`.
//!
//! The wire query is built with the same encoder, so what is sent is exactly what was signed
//! (reqwest's form serializer writes space as `+`, keeps `*` and encodes `~`: not used here).

use std::collections::BTreeMap;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// Percent-encodes per RFC 3986 as the Alibaba signature requires: only `A-Z a-z 0-9 - _ . ~`
/// stay as they are; every other byte of the UTF-8 form becomes `%XY` with uppercase hex.
/// Space is `%20` (never `+`), `*` is `%2A`, `~` stays `~`.
pub fn percent_encode(input: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(input.len() * 3);
    for &b in input.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0x0f) as usize] as char);
        }
    }
    out
}

/// The canonicalized query string: parameters sorted by raw name (a `BTreeMap` of `String`
/// orders by bytes), each pair encoded and joined with `&`. `Signature` is never included.
pub fn canonical_query(params: &BTreeMap<String, String>) -> String {
    encode_pairs(params.iter().filter(|(k, _)| k.as_str() != "Signature"))
}

/// `k=v&k=v`, each name and value encoded with [`percent_encode`], in the given order.
fn encode_pairs<'a>(pairs: impl Iterator<Item = (&'a String, &'a String)>) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&percent_encode(k));
        out.push('=');
        out.push_str(&percent_encode(v));
    }
    out
}

/// `METHOD&%2F&percentEncode(canonical query)`.
pub fn string_to_sign(method: &str, params: &BTreeMap<String, String>) -> String {
    format!(
        "{}&{}&{}",
        method,
        percent_encode("/"),
        percent_encode(&canonical_query(params))
    )
}

/// Base64(HMAC-SHA1(key = secret + "&", string_to_sign)).
pub fn sign_string(secret: &str, string_to_sign: &str) -> String {
    let key = format!("{secret}&");
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha1>::new_from_slice(key.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC-SHA1 takes a key of any length"),
    };
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Signs `params` for `method` with `secret`.
pub fn signature(method: &str, params: &BTreeMap<String, String>, secret: &str) -> String {
    sign_string(secret, &string_to_sign(method, params))
}

/// The query string sent on the wire: the canonical query plus `Signature`, every value
/// encoded with [`percent_encode`]. Parameter order on the wire does not matter to the server;
/// this one is sorted, `Signature` in its sorted place.
pub fn wire_query(params: &BTreeMap<String, String>, signature: &str) -> String {
    let mut all = params.clone();
    all.insert("Signature".to_owned(), signature.to_owned());
    encode_pairs(all.iter())
}

#[cfg(test)]
mod tests {
    //! Every vector of `shared/reference/signature-vectors.txt`, computed with the official
    //! Alibaba SDKs (aliyun-python-sdk-core, alibabacloud-tea-openapi), reproduced byte for byte:
    //! the canonical query, the StringToSign, the signature and the final wire query.
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    struct Vector {
        method: &'static str,
        secret: &'static str,
        params: BTreeMap<String, String>,
        canonical: &'static str,
        string_to_sign: &'static str,
        signature: &'static str,
        final_query: &'static str,
    }

    fn check(v: &Vector) {
        assert_eq!(canonical_query(&v.params), v.canonical, "canonical query");
        assert_eq!(
            string_to_sign(v.method, &v.params),
            v.string_to_sign,
            "StringToSign"
        );
        let sig = signature(v.method, &v.params, v.secret);
        assert_eq!(sig, v.signature, "signature");
        assert_eq!(wire_query(&v.params, &sig), v.final_query, "wire query");
    }

    fn v1_params(ts_name: &str) -> BTreeMap<String, String> {
        params(&[
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("Format", "XML"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("SignatureVersion", "1.0"),
            (ts_name, "2016-02-23T12:46:24Z"),
            ("Version", "2014-05-26"),
        ])
    }

    #[test]
    fn v1_documented_example_timestamp_capital_s() {
        check(&Vector {
            method: "GET",
            secret: "testsecret",
            params: v1_params("TimeStamp"),
            canonical: "AccessKeyId=testid&Action=DescribeRegions&Format=XML&SignatureMethod=HMAC-SHA1&SignatureNonce=3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf&SignatureVersion=1.0&TimeStamp=2016-02-23T12%3A46%3A24Z&Version=2014-05-26",
            string_to_sign: "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0%26TimeStamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26",
            signature: "CT9X0VtwR86fNWSnsc6v8YGOjuE=",
            final_query: "AccessKeyId=testid&Action=DescribeRegions&Format=XML&Signature=CT9X0VtwR86fNWSnsc6v8YGOjuE%3D&SignatureMethod=HMAC-SHA1&SignatureNonce=3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf&SignatureVersion=1.0&TimeStamp=2016-02-23T12%3A46%3A24Z&Version=2014-05-26",
        });
    }

    #[test]
    fn v1b_documented_example_timestamp() {
        check(&Vector {
            method: "GET",
            secret: "testsecret",
            params: v1_params("Timestamp"),
            canonical: "AccessKeyId=testid&Action=DescribeRegions&Format=XML&SignatureMethod=HMAC-SHA1&SignatureNonce=3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf&SignatureVersion=1.0&Timestamp=2016-02-23T12%3A46%3A24Z&Version=2014-05-26",
            string_to_sign: "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26",
            signature: "OLeaidS1JvxuMvnyHOwuJ+uX5qY=",
            final_query: "AccessKeyId=testid&Action=DescribeRegions&Format=XML&Signature=OLeaidS1JvxuMvnyHOwuJ%2BuX5qY%3D&SignatureMethod=HMAC-SHA1&SignatureNonce=3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf&SignatureVersion=1.0&Timestamp=2016-02-23T12%3A46%3A24Z&Version=2014-05-26",
        });
    }

    fn v2_params() -> BTreeMap<String, String> {
        params(&[
            ("AccessKeyId", "testid"),
            ("Action", "ResetDisk"),
            ("DiskId", "d-bp1abcdefghijklmno"),
            ("Format", "JSON"),
            ("RegionId", "cn-hangzhou"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "5c6a2b1e-7d0f-4c39-9a51-2f0b8e6d4c11"),
            ("SignatureVersion", "1.0"),
            ("SnapshotId", "s-bp1abcdefghijklmno"),
            ("Timestamp", "2024-05-01T08:00:00Z"),
            ("Version", "2014-05-26"),
        ])
    }

    const V2_CANONICAL: &str = "AccessKeyId=testid&Action=ResetDisk&DiskId=d-bp1abcdefghijklmno&Format=JSON&RegionId=cn-hangzhou&SignatureMethod=HMAC-SHA1&SignatureNonce=5c6a2b1e-7d0f-4c39-9a51-2f0b8e6d4c11&SignatureVersion=1.0&SnapshotId=s-bp1abcdefghijklmno&Timestamp=2024-05-01T08%3A00%3A00Z&Version=2014-05-26";

    #[test]
    fn v2a_reset_disk_post() {
        check(&Vector {
            method: "POST",
            secret: "testsecret",
            params: v2_params(),
            canonical: V2_CANONICAL,
            string_to_sign: "POST&%2F&AccessKeyId%3Dtestid%26Action%3DResetDisk%26DiskId%3Dd-bp1abcdefghijklmno%26Format%3DJSON%26RegionId%3Dcn-hangzhou%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D5c6a2b1e-7d0f-4c39-9a51-2f0b8e6d4c11%26SignatureVersion%3D1.0%26SnapshotId%3Ds-bp1abcdefghijklmno%26Timestamp%3D2024-05-01T08%253A00%253A00Z%26Version%3D2014-05-26",
            signature: "7zGdPQvT5ximZszC4vPdxFtMcWs=",
            final_query: "AccessKeyId=testid&Action=ResetDisk&DiskId=d-bp1abcdefghijklmno&Format=JSON&RegionId=cn-hangzhou&Signature=7zGdPQvT5ximZszC4vPdxFtMcWs%3D&SignatureMethod=HMAC-SHA1&SignatureNonce=5c6a2b1e-7d0f-4c39-9a51-2f0b8e6d4c11&SignatureVersion=1.0&SnapshotId=s-bp1abcdefghijklmno&Timestamp=2024-05-01T08%3A00%3A00Z&Version=2014-05-26",
        });
    }

    #[test]
    fn v2b_reset_disk_get() {
        check(&Vector {
            method: "GET",
            secret: "testsecret",
            params: v2_params(),
            canonical: V2_CANONICAL,
            string_to_sign: "GET&%2F&AccessKeyId%3Dtestid%26Action%3DResetDisk%26DiskId%3Dd-bp1abcdefghijklmno%26Format%3DJSON%26RegionId%3Dcn-hangzhou%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D5c6a2b1e-7d0f-4c39-9a51-2f0b8e6d4c11%26SignatureVersion%3D1.0%26SnapshotId%3Ds-bp1abcdefghijklmno%26Timestamp%3D2024-05-01T08%253A00%253A00Z%26Version%3D2014-05-26",
            signature: "HHI9YCEQrDE5+afi3yTgqHaozbY=",
            final_query: "AccessKeyId=testid&Action=ResetDisk&DiskId=d-bp1abcdefghijklmno&Format=JSON&RegionId=cn-hangzhou&Signature=HHI9YCEQrDE5%2Bafi3yTgqHaozbY%3D&SignatureMethod=HMAC-SHA1&SignatureNonce=5c6a2b1e-7d0f-4c39-9a51-2f0b8e6d4c11&SignatureVersion=1.0&SnapshotId=s-bp1abcdefghijklmno&Timestamp=2024-05-01T08%3A00%3A00Z&Version=2014-05-26",
        });
    }

    #[test]
    fn v3_json_array_and_security_token() {
        check(&Vector {
            method: "POST",
            secret: "3SJ9Xr/k+Vb8wq=secretWithSpecials",
            params: params(&[
                ("AccessKeyId", "STS.NUgYrLnoC37mZZCNnAbez2Hy"),
                ("Action", "DescribeInstances"),
                ("Format", "JSON"),
                ("InstanceIds", r#"["i-bp67acfmxazb4ph1","i-bp67acfmxazb4ph2"]"#),
                ("MaxResults", "100"),
                ("RegionId", "cn-hangzhou"),
                ("SecurityToken", "CAIS+gF1q6Ft5B2yfSjIr5b/Dd3Ruu1Z0bSjcVXf/T8t6S5m=="),
                ("SignatureMethod", "HMAC-SHA1"),
                ("SignatureNonce", "0f5c8a1e-3b2d-4e6f-8a9b-0c1d2e3f4a5b"),
                ("SignatureVersion", "1.0"),
                ("Timestamp", "2024-05-01T08:00:00Z"),
                ("Version", "2014-05-26"),
            ]),
            canonical: "AccessKeyId=STS.NUgYrLnoC37mZZCNnAbez2Hy&Action=DescribeInstances&Format=JSON&InstanceIds=%5B%22i-bp67acfmxazb4ph1%22%2C%22i-bp67acfmxazb4ph2%22%5D&MaxResults=100&RegionId=cn-hangzhou&SecurityToken=CAIS%2BgF1q6Ft5B2yfSjIr5b%2FDd3Ruu1Z0bSjcVXf%2FT8t6S5m%3D%3D&SignatureMethod=HMAC-SHA1&SignatureNonce=0f5c8a1e-3b2d-4e6f-8a9b-0c1d2e3f4a5b&SignatureVersion=1.0&Timestamp=2024-05-01T08%3A00%3A00Z&Version=2014-05-26",
            string_to_sign: "POST&%2F&AccessKeyId%3DSTS.NUgYrLnoC37mZZCNnAbez2Hy%26Action%3DDescribeInstances%26Format%3DJSON%26InstanceIds%3D%255B%2522i-bp67acfmxazb4ph1%2522%252C%2522i-bp67acfmxazb4ph2%2522%255D%26MaxResults%3D100%26RegionId%3Dcn-hangzhou%26SecurityToken%3DCAIS%252BgF1q6Ft5B2yfSjIr5b%252FDd3Ruu1Z0bSjcVXf%252FT8t6S5m%253D%253D%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D0f5c8a1e-3b2d-4e6f-8a9b-0c1d2e3f4a5b%26SignatureVersion%3D1.0%26Timestamp%3D2024-05-01T08%253A00%253A00Z%26Version%3D2014-05-26",
            signature: "cNBQx7II2x9pHu2dfuhhK6R6Eck=",
            final_query: "AccessKeyId=STS.NUgYrLnoC37mZZCNnAbez2Hy&Action=DescribeInstances&Format=JSON&InstanceIds=%5B%22i-bp67acfmxazb4ph1%22%2C%22i-bp67acfmxazb4ph2%22%5D&MaxResults=100&RegionId=cn-hangzhou&SecurityToken=CAIS%2BgF1q6Ft5B2yfSjIr5b%2FDd3Ruu1Z0bSjcVXf%2FT8t6S5m%3D%3D&Signature=cNBQx7II2x9pHu2dfuhhK6R6Eck%3D&SignatureMethod=HMAC-SHA1&SignatureNonce=0f5c8a1e-3b2d-4e6f-8a9b-0c1d2e3f4a5b&SignatureVersion=1.0&Timestamp=2024-05-01T08%3A00%3A00Z&Version=2014-05-26",
        });
    }

    #[test]
    fn v4_unicode_and_awkward_ascii() {
        check(&Vector {
            method: "POST",
            secret: "testsecret",
            params: params(&[
                ("AccessKeyId", "testid"),
                ("Action", "TagResources"),
                ("Format", "JSON"),
                ("RegionId", "cn-hangzhou"),
                ("ResourceId.1", "d-bp1abcdefghijklmno"),
                ("ResourceType", "disk"),
                ("SignatureMethod", "HMAC-SHA1"),
                ("SignatureNonce", "9b2f4e7a-1c3d-4b5e-8f60-7a8b9c0d1e2f"),
                ("SignatureVersion", "1.0"),
                ("Tag.1.Key", "rollback:owner"),
                ("Tag.1.Value", "a b*c~d/e+f=g&h 中文 ü"),
                ("Timestamp", "2024-05-01T08:00:00Z"),
                ("Version", "2014-05-26"),
            ]),
            canonical: "AccessKeyId=testid&Action=TagResources&Format=JSON&RegionId=cn-hangzhou&ResourceId.1=d-bp1abcdefghijklmno&ResourceType=disk&SignatureMethod=HMAC-SHA1&SignatureNonce=9b2f4e7a-1c3d-4b5e-8f60-7a8b9c0d1e2f&SignatureVersion=1.0&Tag.1.Key=rollback%3Aowner&Tag.1.Value=a%20b%2Ac~d%2Fe%2Bf%3Dg%26h%20%E4%B8%AD%E6%96%87%20%C3%BC&Timestamp=2024-05-01T08%3A00%3A00Z&Version=2014-05-26",
            string_to_sign: "POST&%2F&AccessKeyId%3Dtestid%26Action%3DTagResources%26Format%3DJSON%26RegionId%3Dcn-hangzhou%26ResourceId.1%3Dd-bp1abcdefghijklmno%26ResourceType%3Ddisk%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D9b2f4e7a-1c3d-4b5e-8f60-7a8b9c0d1e2f%26SignatureVersion%3D1.0%26Tag.1.Key%3Drollback%253Aowner%26Tag.1.Value%3Da%2520b%252Ac~d%252Fe%252Bf%253Dg%2526h%2520%25E4%25B8%25AD%25E6%2596%2587%2520%25C3%25BC%26Timestamp%3D2024-05-01T08%253A00%253A00Z%26Version%3D2014-05-26",
            signature: "1R2ujilC6Ir/pHp27/EN2+4Pltk=",
            final_query: "AccessKeyId=testid&Action=TagResources&Format=JSON&RegionId=cn-hangzhou&ResourceId.1=d-bp1abcdefghijklmno&ResourceType=disk&Signature=1R2ujilC6Ir%2FpHp27%2FEN2%2B4Pltk%3D&SignatureMethod=HMAC-SHA1&SignatureNonce=9b2f4e7a-1c3d-4b5e-8f60-7a8b9c0d1e2f&SignatureVersion=1.0&Tag.1.Key=rollback%3Aowner&Tag.1.Value=a%20b%2Ac~d%2Fe%2Bf%3Dg%26h%20%E4%B8%AD%E6%96%87%20%C3%BC&Timestamp=2024-05-01T08%3A00%3A00Z&Version=2014-05-26",
        });
    }

    #[test]
    fn v5_repeat_list_sorts_by_raw_name() {
        check(&Vector {
            method: "POST",
            secret: "testsecret",
            params: params(&[
                ("AccessKeyId", "testid"),
                ("Action", "StopInstances"),
                ("ForceStop", "false"),
                ("Format", "JSON"),
                ("InstanceId.1", "i-aaaa"),
                ("InstanceId.10", "i-jjjj"),
                ("InstanceId.2", "i-bbbb"),
                ("RegionId", "cn-hangzhou"),
                ("SignatureMethod", "HMAC-SHA1"),
                ("SignatureNonce", "11111111-2222-3333-4444-555555555555"),
                ("SignatureVersion", "1.0"),
                ("StoppedMode", "KeepCharging"),
                ("Timestamp", "2024-05-01T08:00:00Z"),
                ("Version", "2014-05-26"),
            ]),
            canonical: "AccessKeyId=testid&Action=StopInstances&ForceStop=false&Format=JSON&InstanceId.1=i-aaaa&InstanceId.10=i-jjjj&InstanceId.2=i-bbbb&RegionId=cn-hangzhou&SignatureMethod=HMAC-SHA1&SignatureNonce=11111111-2222-3333-4444-555555555555&SignatureVersion=1.0&StoppedMode=KeepCharging&Timestamp=2024-05-01T08%3A00%3A00Z&Version=2014-05-26",
            string_to_sign: "POST&%2F&AccessKeyId%3Dtestid%26Action%3DStopInstances%26ForceStop%3Dfalse%26Format%3DJSON%26InstanceId.1%3Di-aaaa%26InstanceId.10%3Di-jjjj%26InstanceId.2%3Di-bbbb%26RegionId%3Dcn-hangzhou%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D11111111-2222-3333-4444-555555555555%26SignatureVersion%3D1.0%26StoppedMode%3DKeepCharging%26Timestamp%3D2024-05-01T08%253A00%253A00Z%26Version%3D2014-05-26",
            signature: "3jA/bzHs1Gasji2nbhz8zlPWb9s=",
            final_query: "AccessKeyId=testid&Action=StopInstances&ForceStop=false&Format=JSON&InstanceId.1=i-aaaa&InstanceId.10=i-jjjj&InstanceId.2=i-bbbb&RegionId=cn-hangzhou&Signature=3jA%2FbzHs1Gasji2nbhz8zlPWb9s%3D&SignatureMethod=HMAC-SHA1&SignatureNonce=11111111-2222-3333-4444-555555555555&SignatureVersion=1.0&StoppedMode=KeepCharging&Timestamp=2024-05-01T08%3A00%3A00Z&Version=2014-05-26",
        });
    }

    #[test]
    fn legacy_sdk_signs_empty_values() {
        // (d): aliyunsdkcore also signs an empty `SignatureType=`; empty values are kept.
        let mut p = v2_params();
        p.insert("SignatureType".into(), String::new());
        assert_eq!(
            signature("POST", &p, "testsecret"),
            "uGCSMY775amGLjKyDa0dTNoVTKE="
        );
    }

    #[test]
    fn encoding_table() {
        assert_eq!(percent_encode(" "), "%20");
        assert_eq!(percent_encode("*"), "%2A");
        assert_eq!(percent_encode("~"), "~");
        assert_eq!(percent_encode("/+=&:\",[]"), "%2F%2B%3D%26%3A%22%2C%5B%5D");
        assert_eq!(percent_encode("中ü"), "%E4%B8%AD%C3%BC");
        assert_eq!(percent_encode("AZaz09-_.~"), "AZaz09-_.~");
    }

    #[test]
    fn url_keeps_the_hand_built_query_untouched() {
        // reqwest sends `Url` as parsed; the url crate must not re-encode what we encoded.
        let q = wire_query(&v2_params(), "a+b/c=");
        let url = reqwest::Url::parse(&format!("https://ecs.cn-hangzhou.aliyuncs.com/?{q}"))
            .expect("valid url");
        assert_eq!(url.query(), Some(q.as_str()));
        let tricky = "Tag.1.Value=a%20b%2Ac~d%2Fe%2Bf%3Dg%26h%20%E4%B8%AD";
        let url = reqwest::Url::parse(&format!("http://127.0.0.1/?{tricky}")).expect("valid url");
        assert_eq!(url.query(), Some(tricky));
    }
}
