//! Who signs: the credentials (static, assumed through STS and cached, or the runtime's), and
//! the two signatures (v1.0 in the query, V3 in the `Authorization` header).

use super::*;

/// `SignatureDoesNotMatch` messages quote the server's StringToSign, which holds the
/// security token (encoded once or twice): cut its value out before the message goes anywhere.
pub fn redact_token(message: &str) -> String {
    let mut out = message.to_owned();
    for (marker, end) in [
        ("SecurityToken%3D", "%26"),
        ("SecurityToken%253D", "%2526"),
        ("SecurityToken=", "&"),
    ] {
        let mut from = 0;
        while let Some(pos) = out[from..].find(marker) {
            let start = from + pos + marker.len();
            let stop = out[start..].find(end).map_or(out.len(), |e| start + e);
            out.replace_range(start..stop, "<redacted>");
            from = start + "<redacted>".len();
        }
    }
    out
}

impl EcsClient {
    pub(super) async fn credentials(&self) -> Result<Credentials, EcsError> {
        match &self.source {
            CredentialSource::Static(c) => Ok(c.clone()),
            CredentialSource::FromRuntime => self
                .runtime_credentials
                .lock()
                .ok()
                .and_then(|c| c.clone())
                .ok_or_else(|| {
                    EcsError::config(
                        "credentials",
                        "no credentials: the runtime sent none (give the function a role) and none are set in the environment",
                    )
                }),
            CredentialSource::AssumeRole { base, role } => {
                let mut cache = self.assumed.lock().await;
                if let Some(c) = cache.as_ref() {
                    if c.is_fresh(self.now(), CREDENTIAL_MARGIN) {
                        return Ok(c.credentials.clone());
                    }
                }
                let params = vec![
                    p("RoleArn", &role.role_arn),
                    p("RoleSessionName", &role.session_name),
                    p("DurationSeconds", role.duration_seconds.to_string()),
                ];
                let resp: AssumeRoleResponse = self
                    .call_with(
                        &role.endpoint,
                        STS_VERSION,
                        "AssumeRole",
                        params,
                        CallKind::Read,
                        base,
                    )
                    .await
                    .map_err(|mut e| {
                        e.kind = ErrorKind::Credentials;
                        e
                    })?;
                let sts = resp.credentials;
                let expires_at = parse_time(&sts.expiration).ok_or_else(|| {
                    EcsError::transport(
                        "AssumeRole",
                        ErrorKind::Decode,
                        "Credentials.Expiration is not a time".into(),
                    )
                })?;
                let credentials = Credentials::new(sts.access_key_id, sts.access_key_secret)
                    .with_token(sts.security_token);
                tracing::info!(
                    role_arn = %role.role_arn,
                    expires_at = %expires_at,
                    "assumed role; temporary credentials cached"
                );
                *cache = Some(Cached {
                    credentials: credentials.clone(),
                    expires_at,
                });
                Ok(credentials)
            }
        }
    }

    pub(super) async fn forget_assumed(&self) {
        *self.assumed.lock().await = None;
    }

    // ---- the request path --------------------------------------------------------------

    /// Signature 1.0: every common parameter in the query, signed with HMAC-SHA1.
    pub(super) fn sign_v1(
        &self,
        method: &'static str,
        base: &Url,
        version: &str,
        action: &str,
        op_params: &Params,
        creds: &Credentials,
    ) -> HttpRequest {
        let mut params: BTreeMap<String, String> = op_params.iter().cloned().collect();
        params.insert("Action".into(), action.into());
        params.insert("Version".into(), version.into());
        params.insert("Format".into(), "JSON".into());
        params.insert("AccessKeyId".into(), creds.access_key_id.clone());
        params.insert("SignatureMethod".into(), "HMAC-SHA1".into());
        params.insert("SignatureVersion".into(), "1.0".into());
        params.insert("SignatureNonce".into(), uuid::Uuid::new_v4().to_string());
        params.insert(
            "Timestamp".into(),
            self.now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        );
        if let Some(token) = &creds.security_token {
            params.insert("SecurityToken".into(), token.expose().to_owned());
        }
        let signature = signer::signature(method, &params, creds.access_key_secret.expose());
        let query = signer::wire_query(&params, &signature);
        let mut url = base.clone();
        url.set_query(Some(&query));
        HttpRequest {
            method,
            url,
            headers: Vec::new(),
        }
    }

    /// Signature V3: the operation's parameters in the query, the common ones in `x-acs-*`
    /// headers, all of them (and `host`) signed with HMAC-SHA256 into `Authorization`.
    pub(super) fn sign_v3(
        &self,
        method: &'static str,
        base: &Url,
        version: &str,
        action: &str,
        op_params: &Params,
        creds: &Credentials,
    ) -> HttpRequest {
        let params: BTreeMap<String, String> = op_params.iter().cloned().collect();
        let host = match (base.host_str(), base.port()) {
            (Some(h), Some(port)) => format!("{h}:{port}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => String::new(),
        };
        let payload = signer_v3::hashed_payload(b"");
        let mut signed = vec![
            ("host".to_owned(), host),
            ("x-acs-action".to_owned(), action.to_owned()),
            ("x-acs-version".to_owned(), version.to_owned()),
            (
                "x-acs-date".to_owned(),
                self.now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            ),
            (
                "x-acs-signature-nonce".to_owned(),
                uuid::Uuid::new_v4().simple().to_string(),
            ),
            ("x-acs-content-sha256".to_owned(), payload.clone()),
        ];
        if let Some(token) = &creds.security_token {
            signed.push(("x-acs-security-token".to_owned(), token.expose().to_owned()));
        }
        let authorization = signer_v3::authorization(
            &creds.access_key_id,
            creds.access_key_secret.expose(),
            method,
            base.path(),
            &params,
            &signed,
            &payload,
        );
        let mut url = base.clone();
        let query = signer_v3::canonical_query(&params);
        url.set_query(if query.is_empty() { None } else { Some(&query) });
        // `host` is signed but written by the HTTP client from the URL, so it is not sent twice.
        let mut headers: Vec<(String, String)> =
            signed.into_iter().filter(|(k, _)| k != "host").collect();
        headers.push(("accept".to_owned(), "application/json".to_owned()));
        headers.push(("authorization".to_owned(), authorization));
        HttpRequest {
            method,
            url,
            headers,
        }
    }
}
