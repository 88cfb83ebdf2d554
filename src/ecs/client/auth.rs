//! Who signs: the credentials (static; temporary ones from STS AssumeRole or AssumeRoleWithOIDC,
//! the ECS metadata server or a credentials URI, cached and fetched again before they expire;
//! or the runtime's), and
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

/// STS's answer as cached credentials.
fn sts_cached(sts: crate::ecs::model::StsCredentials) -> Result<Cached, (ErrorKind, String)> {
    let expires_at = parse_time(&sts.expiration).ok_or_else(|| {
        (
            ErrorKind::Decode,
            "Credentials.Expiration is not a time".to_owned(),
        )
    })?;
    let mut credentials = Credentials::new(sts.access_key_id, sts.access_key_secret);
    if !sts.security_token.is_empty() {
        credentials = credentials.with_token(sts.security_token);
    }
    Ok(Cached {
        credentials,
        expires_at,
    })
}

/// The metadata server's and a credentials URI's answer: `Code` "Success", the keys, the
/// token and `Expiration`.
fn coded_cached(body: &[u8]) -> Result<Cached, (ErrorKind, String)> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Coded {
        #[serde(default)]
        code: Option<String>,
        access_key_id: String,
        access_key_secret: String,
        #[serde(default)]
        security_token: Option<String>,
        expiration: String,
    }
    let c: Coded = serde_json::from_slice(body)
        .map_err(|e| (ErrorKind::Decode, format!("not credentials: {e}")))?;
    if let Some(code) = c.code.as_deref().filter(|c| *c != "Success") {
        return Err((ErrorKind::Credentials, format!("Code {code}")));
    }
    let expires_at = parse_time(&c.expiration)
        .ok_or_else(|| (ErrorKind::Decode, "Expiration is not a time".to_owned()))?;
    let mut credentials = Credentials::new(c.access_key_id, c.access_key_secret);
    if let Some(t) = c.security_token.filter(|t| !t.is_empty()) {
        credentials = credentials.with_token(t);
    }
    Ok(Cached {
        credentials,
        expires_at,
    })
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
            source => {
                let mut cache = self.assumed.lock().await;
                if let Some(c) = cache.as_ref() {
                    if c.is_fresh(self.now(), CREDENTIAL_MARGIN) {
                        return Ok(c.credentials.clone());
                    }
                }
                // Fetched again this long before they expire (or at once when stale).
                // Boxed: a rare path, kept out of every call's future (whose nesting the compiler
                // bounds).
                let fresh = Box::pin(self.fetch_temporary(source)).await.map_err(|mut e| {
                    e.kind = ErrorKind::Credentials;
                    if !e.message.contains(source.name()) {
                        e.message = format!("{}: {}", source.name(), e.message);
                    }
                    e
                })?;
                tracing::info!(
                    source = source.name(),
                    expires_at = %fresh.expires_at,
                    "temporary credentials fetched and cached"
                );
                let credentials = fresh.credentials.clone();
                *cache = Some(fresh);
                Ok(credentials)
            }
        }
    }

    /// Temporary credentials from a source that hands them out: STS (AssumeRole,
    /// AssumeRoleWithOIDC), the ECS metadata server, a credentials URI.
    async fn fetch_temporary(&self, source: &CredentialSource) -> Result<Cached, EcsError> {
        match source {
            CredentialSource::AssumeRole { base, role } => self.assume_role(base, role).await,
            CredentialSource::AwsSecret {
                endpoint,
                secret_id,
                token,
                role,
            } => {
                let keys = self.read_secret(endpoint, secret_id, token).await?;
                match role {
                    Some(role) => self.assume_role(&keys, role).await,
                    // Kept for `SECRET_REREAD`, then read again (the extension answers from
                    // its own cache); read again at once when ECS refuses the keys.
                    None => Ok(Cached {
                        credentials: keys,
                        expires_at: self.now()
                            + chrono::Duration::from_std(CREDENTIAL_MARGIN + SECRET_REREAD)
                                .unwrap_or_else(|_| chrono::Duration::zero()),
                    }),
                }
            }
            CredentialSource::Oidc {
                role,
                provider_arn,
                token_file,
            } => {
                const ACTION: &str = "AssumeRoleWithOIDC";
                // Read at every refresh: the platform rotates the file (RRSA: about hourly).
                let token = std::fs::read_to_string(token_file).map_err(|e| {
                    EcsError::config(
                        ACTION,
                        format!("OIDC token file {}: {e}", token_file.display()),
                    )
                })?;
                // AssumeRoleWithOIDC is called without a signature (the token is the proof):
                // https://www.alibabacloud.com/help/en/ram/developer-reference/api-sts-2015-04-01-assumerolewithoidc
                let mut url = role.endpoint.clone();
                url.query_pairs_mut()
                    .append_pair("Action", ACTION)
                    .append_pair("Version", STS_VERSION)
                    .append_pair("Format", "JSON")
                    .append_pair(
                        "Timestamp",
                        &(self.clock)().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                    )
                    .append_pair("RoleArn", &role.role_arn)
                    .append_pair("OIDCProviderArn", provider_arn)
                    .append_pair("OIDCToken", token.trim())
                    .append_pair("RoleSessionName", &role.session_name)
                    .append_pair("DurationSeconds", &role.duration_seconds.to_string());
                let body = self.fetch(ACTION, "POST", url, vec![]).await?;
                let resp: AssumeRoleResponse = serde_json::from_slice(&body)
                    .map_err(|e| EcsError::transport(ACTION, ErrorKind::Decode, format!("{e}")))?;
                sts_cached(resp.credentials).map_err(|(k, m)| EcsError::transport(ACTION, k, m))
            }
            CredentialSource::EcsRamRole {
                role_name,
                endpoint,
            } => {
                const ACTION: &str = "ECS metadata";
                let join = |path: &str| endpoint.join(path).map_err(|e| e.to_string());
                // The metadata server's session token (its "hardened mode"): asked for with
                // PUT, then sent with every read.
                let token = self
                    .fetch(
                        ACTION,
                        "PUT",
                        join("latest/api/token").map_err(|e| EcsError::config(ACTION, e))?,
                        vec![(
                            "X-aliyun-ecs-metadata-token-ttl-seconds".into(),
                            "21600".into(),
                        )],
                    )
                    .await?;
                let token = String::from_utf8_lossy(&token).trim().to_owned();
                let header = || vec![("X-aliyun-ecs-metadata-token".into(), token.clone())];
                let role_name = match role_name {
                    Some(r) => r.clone(),
                    None => {
                        let body = self
                            .fetch(
                                ACTION,
                                "GET",
                                join("latest/meta-data/ram/security-credentials/")
                                    .map_err(|e| EcsError::config(ACTION, e))?,
                                header(),
                            )
                            .await?;
                        String::from_utf8_lossy(&body).trim().to_owned()
                    }
                };
                let body = self
                    .fetch(
                        ACTION,
                        "GET",
                        join(&format!(
                            "latest/meta-data/ram/security-credentials/{role_name}"
                        ))
                        .map_err(|e| EcsError::config(ACTION, e))?,
                        header(),
                    )
                    .await?;
                coded_cached(&body).map_err(|(k, m)| EcsError::transport(ACTION, k, m))
            }
            CredentialSource::Uri(url) => {
                const ACTION: &str = "credentials URI";
                let body = self.fetch(ACTION, "GET", url.clone(), vec![]).await?;
                coded_cached(&body).map_err(|(k, m)| EcsError::transport(ACTION, k, m))
            }
            CredentialSource::Static(_) | CredentialSource::FromRuntime => Err(EcsError::config(
                "credentials",
                "not a source of temporary credentials",
            )),
        }
    }

    /// STS AssumeRole, signed with `base`.
    async fn assume_role(&self, base: &Credentials, role: &AssumeRole) -> Result<Cached, EcsError> {
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
            .await?;
        sts_cached(resp.credentials).map_err(|(k, m)| EcsError::transport("AssumeRole", k, m))
    }

    /// The AccessKey in an AWS Secrets Manager secret, through the Parameters and Secrets Lambda
    /// Extension: `GET /secretsmanager/get?secretId=…` with the function's session token in
    /// `X-Aws-Parameters-Secrets-Token`; the answer is GetSecretValue's (`SecretString`), the
    /// secret's string JSON with `AccessKeyId` and `AccessKeySecret`
    /// (<https://docs.aws.amazon.com/secretsmanager/latest/userguide/retrieving-secrets_lambda.html>).
    async fn read_secret(
        &self,
        endpoint: &Url,
        secret_id: &str,
        token: &crate::ecs::credentials::Secret,
    ) -> Result<Credentials, EcsError> {
        const ACTION: &str = "Secrets Manager (Lambda extension)";
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Answer {
            #[serde(default)]
            secret_string: Option<String>,
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Keys {
            access_key_id: String,
            access_key_secret: String,
        }
        let mut url = endpoint
            .join("secretsmanager/get")
            .map_err(|e| EcsError::config(ACTION, e.to_string()))?;
        url.query_pairs_mut().append_pair("secretId", secret_id);
        let body = self
            .fetch(
                ACTION,
                "GET",
                url,
                vec![(
                    "X-Aws-Parameters-Secrets-Token".into(),
                    token.expose().to_owned(),
                )],
            )
            .await?;
        // Never quote the body or serde's message about it: either may hold the secret.
        let answer: Answer = serde_json::from_slice(&body).map_err(|_| {
            EcsError::transport(
                ACTION,
                ErrorKind::Decode,
                "not GetSecretValue's answer".into(),
            )
        })?;
        let text = answer.secret_string.ok_or_else(|| {
            EcsError::transport(
                ACTION,
                ErrorKind::Credentials,
                format!("secret {secret_id} has no SecretString"),
            )
        })?;
        let keys: Keys = serde_json::from_str(&text).map_err(|_| {
            EcsError::transport(
                ACTION,
                ErrorKind::Credentials,
                format!("secret {secret_id}: its string is not JSON with AccessKeyId and AccessKeySecret"),
            )
        })?;
        Ok(Credentials::new(keys.access_key_id, keys.access_key_secret))
    }

    /// One request to a credentials endpoint: the body of a 2xx answer, or an error that
    /// quotes the status (never the body: it may hold a secret).
    async fn fetch(
        &self,
        action: &str,
        method: &'static str,
        url: Url,
        headers: Vec<(String, String)>,
    ) -> Result<Vec<u8>, EcsError> {
        let resp = self
            .transport
            .send(HttpRequest {
                method,
                url,
                headers,
            })
            .await
            .map_err(|e| EcsError::transport(action, ErrorKind::Connect, e.to_string()))?;
        if !(200..300).contains(&resp.status) {
            let code = serde_json::from_slice::<serde_json::Value>(&resp.body)
                .ok()
                .and_then(|v| v["Code"].as_str().map(str::to_owned))
                .unwrap_or_default();
            return Err(EcsError::transport(
                action,
                ErrorKind::Credentials,
                format!("HTTP {} {code}", resp.status),
            ));
        }
        Ok(resp.body)
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
