//! Credentials and where the client sends its requests.
//!
//! The credential chain, in the order of the official SDKs' default provider chain
//! (alibabacloud-credentials, "Default credential provider chain":
//! <https://pypi.org/project/alibabacloud-credentials/>; the variables as the Alibaba Cloud CLI
//! names them: <https://www.alibabacloud.com/help/en/cli/environment-variables>); the first
//! source that is configured is the one used, and an error names the source it came from:
//! 0. on AWS Lambda, an AWS Secrets Manager secret named by `ECS_ROLLBACK_ALIBABA_SECRET_ID`,
//!    read at run time through the AWS Parameters and Secrets Lambda Extension (its local HTTP
//!    endpoint, `http://localhost:{PARAMETERS_SECRETS_EXTENSION_HTTP_PORT, 2773}/secretsmanager/get`,
//!    with `AWS_SESSION_TOKEN` in `X-Aws-Parameters-Secrets-Token`; no AWS SDK:
//!    <https://docs.aws.amazon.com/secretsmanager/latest/userguide/retrieving-secrets_lambda.html>).
//!    The secret's string is JSON with `AccessKeyId` and `AccessKeySecret`; with
//!    `ALIBABA_CLOUD_ROLE_ARN` those keys sign STS AssumeRole. Not an SDK source: set only by the
//!    deployment (template.yaml), so the keys are never in the function's configuration and a
//!    rotation needs no deploy;
//! 1. environment: `ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET`,
//!    `ALIBABA_CLOUD_SECURITY_TOKEN` (Function Compute 3.0 sets these to the role's keys too);
//!    with `ALIBABA_CLOUD_ROLE_ARN`, those keys only sign STS AssumeRole;
//! 2. OIDC (RRSA on ACK): `ALIBABA_CLOUD_ROLE_ARN`, `ALIBABA_CLOUD_OIDC_PROVIDER_ARN`,
//!    `ALIBABA_CLOUD_OIDC_TOKEN_FILE`: STS AssumeRoleWithOIDC with the token file's contents
//!    (read again at each refresh; the call is not signed);
//! 3. the `aliyun` CLI's profile file, `~/.aliyun/config.json` (`ALIBABA_CLOUD_PROFILE`, else
//!    its `current` profile): modes `AK`, `StsToken`, `RamRoleArn`, `EcsRamRole`, `OIDC`,
//!    `CredentialsURI`;
//! 4. the ECS instance's RAM role, when `ALIBABA_CLOUD_ECS_METADATA` names it (or is `auto`,
//!    asking the metadata server), unless `ALIBABA_CLOUD_ECS_METADATA_DISABLED=true`: the
//!    metadata server at `http://100.100.100.200` with its session token (PUT
//!    `/latest/api/token`, then the token in `X-aliyun-ecs-metadata-token`). Unlike the SDKs,
//!    which probe the metadata server unasked, this needs the variable: a laptop or a CI
//!    runner never waits on a link-local address;
//! 5. a credentials URI, `ALIBABA_CLOUD_CREDENTIALS_URI`, answering `Code`, `AccessKeyId`,
//!    `AccessKeySecret`, `SecurityToken`, `Expiration`.
//!
//! Temporary credentials (STS, OIDC, metadata, URI) are cached and fetched again three minutes
//! before they expire. No secret or token is ever printed: `Debug` redacts them.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::Url;

/// A secret string whose `Debug` and `Display` print `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub access_key_secret: Secret,
    pub security_token: Option<Secret>,
}

impl Credentials {
    pub fn new(id: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            access_key_id: id.into(),
            access_key_secret: Secret::new(secret),
            security_token: None,
        }
    }
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.security_token = Some(Secret::new(token));
        self
    }
}

/// Where the role to assume is, and how to ask for it.
#[derive(Clone, Debug)]
pub struct AssumeRole {
    pub role_arn: String,
    pub session_name: String,
    /// Base URL of the STS endpoint.
    pub endpoint: Url,
    pub duration_seconds: u32,
}

/// How the client gets the credentials it signs with.
#[derive(Clone, Debug)]
pub enum CredentialSource {
    Static(Credentials),
    /// `base` signs the AssumeRole call; the role's temporary credentials sign the rest.
    AssumeRole {
        base: Credentials,
        role: AssumeRole,
    },
    /// Given by the runtime with each invocation (Function Compute sends the function role's
    /// temporary credentials as `x-fc-access-key-*` headers): the last ones given sign.
    FromRuntime,
    /// RRSA / OIDC: STS AssumeRoleWithOIDC with the token in `token_file`.
    Oidc {
        role: AssumeRole,
        provider_arn: String,
        token_file: PathBuf,
    },
    /// The ECS instance's RAM role, from the metadata server (`role_name`: `None` asks it).
    EcsRamRole {
        role_name: Option<String>,
        endpoint: Url,
    },
    /// A credentials URI.
    Uri(Url),
    /// An AWS Secrets Manager secret through the Parameters and Secrets Lambda Extension:
    /// `endpoint` is the extension's base URL, `token` the function's `AWS_SESSION_TOKEN`
    /// (the extension's SSRF guard). With `role`, the secret's keys sign STS AssumeRole.
    AwsSecret {
        endpoint: Url,
        secret_id: String,
        token: Secret,
        role: Option<AssumeRole>,
    },
}

impl CredentialSource {
    /// The source, as errors and logs name it.
    pub fn name(&self) -> &'static str {
        match self {
            CredentialSource::Static(_) => "static credentials (environment or profile)",
            CredentialSource::AssumeRole { .. } => "STS AssumeRole",
            CredentialSource::FromRuntime => "the runtime's credentials (Function Compute)",
            CredentialSource::Oidc { .. } => "OIDC (RRSA): STS AssumeRoleWithOIDC",
            CredentialSource::EcsRamRole { .. } => "the ECS instance RAM role (metadata server)",
            CredentialSource::Uri(_) => "the credentials URI (ALIBABA_CLOUD_CREDENTIALS_URI)",
            CredentialSource::AwsSecret { .. } => {
                "AWS Secrets Manager through the Lambda extension (ECS_ROLLBACK_ALIBABA_SECRET_ID)"
            }
        }
    }
}

/// Temporary credentials and when they stop working.
#[derive(Clone, Debug)]
pub struct Cached {
    pub credentials: Credentials,
    pub expires_at: DateTime<Utc>,
}

impl Cached {
    /// Still usable for at least `margin`.
    pub fn is_fresh(&self, now: DateTime<Utc>, margin: Duration) -> bool {
        let margin = chrono::Duration::from_std(margin).unwrap_or(chrono::Duration::zero());
        now + margin < self.expires_at
    }
}

/// The endpoint rule: `https://ecs.{region}.aliyuncs.com/`, or one base URL for every region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Regional,
    Fixed(Url),
}

impl Endpoint {
    pub fn url_for(&self, region: &str) -> Result<Url, String> {
        match self {
            Endpoint::Fixed(url) => Ok(url.clone()),
            Endpoint::Regional => {
                if region.is_empty()
                    || !region
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                {
                    return Err(format!("invalid region {region:?}"));
                }
                Url::parse(&format!("https://ecs.{region}.aliyuncs.com/"))
                    .map_err(|e| e.to_string())
            }
        }
    }
}

/// Parses an endpoint override: `https://` anywhere, `http://` only to a loopback host.
pub fn parse_base_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw.trim()).map_err(|e| format!("{raw:?} is not a URL: {e}"))?;
    match url.scheme() {
        "https" => {}
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
                Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
                None => false,
            };
            if !loopback {
                return Err(format!(
                    "{raw:?}: plain http is accepted only for a loopback host; use https"
                ));
            }
        }
        other => return Err(format!("{raw:?}: unsupported scheme {other:?}")),
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{raw:?}: a base URL has no query or fragment"));
    }
    if url.host().is_none() {
        return Err(format!("{raw:?}: no host"));
    }
    Ok(url)
}

/// Everything the client takes from the environment.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub credentials: Option<CredentialSource>,
    pub endpoint: Endpoint,
    pub default_region: Option<String>,
    /// `ECS_ROLLBACK_SIGNATURE`: `v1` (HMAC-SHA1, the default) or `v3` (ACS3-HMAC-SHA256).
    pub signing: Signing,
}

/// Which signature the client puts on its requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Signing {
    /// Signature version 1.0, HMAC-SHA1, in the query (`ecs::signer`).
    #[default]
    V1,
    /// Signature V3, ACS3-HMAC-SHA256, in the `Authorization` header (`ecs::signer_v3`).
    V3,
}

impl std::str::FromStr for Signing {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "v1" | "1" | "1.0" | "hmac-sha1" => Ok(Signing::V1),
            "v3" | "3" | "acs3-hmac-sha256" => Ok(Signing::V3),
            other => Err(format!(
                "ECS_ROLLBACK_SIGNATURE {other:?}: expected v1 (HMAC-SHA1) or v3 (ACS3-HMAC-SHA256)"
            )),
        }
    }
}

impl ClientConfig {
    pub fn from_env() -> Result<Self, String> {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// `lookup` returns a variable's value, or `None` when it is unset or empty.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let endpoint = match lookup("ECS_ROLLBACK_ECS_ENDPOINT") {
            Some(raw) => Endpoint::Fixed(parse_base_url(&raw)?),
            None => Endpoint::Regional,
        };
        let credentials = chain(&lookup)?;
        let signing = match lookup("ECS_ROLLBACK_SIGNATURE") {
            Some(raw) => raw.parse()?,
            None => Signing::V1,
        };
        Ok(Self {
            credentials,
            endpoint,
            default_region: lookup("ALIBABA_CLOUD_REGION_ID"),
            signing,
        })
    }
}

fn sts_endpoint(lookup: &impl Fn(&str) -> Option<String>) -> Result<Url, String> {
    match lookup("ECS_ROLLBACK_STS_ENDPOINT") {
        Some(raw) => parse_base_url(&raw),
        None => Url::parse("https://sts.aliyuncs.com/").map_err(|e| e.to_string()),
    }
}

fn role(
    lookup: &impl Fn(&str) -> Option<String>,
    role_arn: String,
    session_name: Option<String>,
) -> Result<AssumeRole, String> {
    let session_name = session_name
        .or_else(|| lookup("ALIBABA_CLOUD_ROLE_SESSION_NAME"))
        .unwrap_or_else(|| "ecs-rollback".to_owned());
    let valid = (2..=64).contains(&session_name.len())
        && session_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b));
    if !valid {
        return Err(format!(
            "ALIBABA_CLOUD_ROLE_SESSION_NAME {session_name:?}: 2 to 64 letters, digits or . @ - _"
        ));
    }
    Ok(AssumeRole {
        role_arn,
        session_name,
        endpoint: sts_endpoint(lookup)?,
        duration_seconds: 3600,
    })
}

fn metadata_endpoint(lookup: &impl Fn(&str) -> Option<String>) -> Result<Url, String> {
    match lookup("ECS_ROLLBACK_METADATA_ENDPOINT") {
        // For tests and proxies: https anywhere, plain http to loopback only.
        Some(raw) => parse_base_url(&raw),
        None => Url::parse("http://100.100.100.200/").map_err(|e| e.to_string()),
    }
}

/// The credential chain (see the module's head): the first configured source, or `None`.
pub fn chain(lookup: &impl Fn(&str) -> Option<String>) -> Result<Option<CredentialSource>, String> {
    let id = lookup("ALIBABA_CLOUD_ACCESS_KEY_ID");
    let secret = lookup("ALIBABA_CLOUD_ACCESS_KEY_SECRET");
    let role_arn = lookup("ALIBABA_CLOUD_ROLE_ARN");
    // 0. The deployment's secret on AWS Lambda.
    if let Some(secret_id) = lookup("ECS_ROLLBACK_ALIBABA_SECRET_ID") {
        return aws_secret(
            lookup,
            secret_id,
            role_arn,
            id.is_some() || secret.is_some(),
        )
        .map(Some);
    }
    // 1. The environment.
    match (id, secret) {
        (Some(id), Some(secret)) => {
            let mut c = Credentials::new(id, secret);
            if let Some(token) = lookup("ALIBABA_CLOUD_SECURITY_TOKEN") {
                c = c.with_token(token);
            }
            return Ok(Some(match role_arn {
                None => CredentialSource::Static(c),
                Some(arn) => CredentialSource::AssumeRole {
                    base: c,
                    role: role(lookup, arn, None)?,
                },
            }));
        }
        (None, None) => {}
        (Some(_), None) => {
            return Err(
                "environment: ALIBABA_CLOUD_ACCESS_KEY_ID is set but ALIBABA_CLOUD_ACCESS_KEY_SECRET is not"
                    .into(),
            )
        }
        (None, Some(_)) => {
            return Err(
                "environment: ALIBABA_CLOUD_ACCESS_KEY_SECRET is set but ALIBABA_CLOUD_ACCESS_KEY_ID is not"
                    .into(),
            )
        }
    }
    // 2. OIDC (RRSA).
    let provider = lookup("ALIBABA_CLOUD_OIDC_PROVIDER_ARN");
    let token_file = lookup("ALIBABA_CLOUD_OIDC_TOKEN_FILE");
    match (&role_arn, provider, token_file) {
        (Some(arn), Some(provider_arn), Some(file)) => {
            return Ok(Some(CredentialSource::Oidc {
                role: role(lookup, arn.clone(), None)?,
                provider_arn,
                token_file: PathBuf::from(file),
            }))
        }
        (_, None, None) => {}
        _ => {
            return Err("OIDC (RRSA): ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_PROVIDER_ARN and ALIBABA_CLOUD_OIDC_TOKEN_FILE go together; one or two are set".into())
        }
    }
    // 3. The CLI's profile file.
    if let Some(source) = profile(lookup)? {
        return Ok(Some(source));
    }
    // 4. The ECS instance's RAM role.
    let disabled = lookup("ALIBABA_CLOUD_ECS_METADATA_DISABLED")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if let (Some(name), false) = (lookup("ALIBABA_CLOUD_ECS_METADATA"), disabled) {
        return Ok(Some(CredentialSource::EcsRamRole {
            role_name: Some(name).filter(|n| !n.eq_ignore_ascii_case("auto")),
            endpoint: metadata_endpoint(lookup)?,
        }));
    }
    // 5. A credentials URI.
    if let Some(raw) = lookup("ALIBABA_CLOUD_CREDENTIALS_URI") {
        let url = Url::parse(raw.trim())
            .map_err(|e| format!("ALIBABA_CLOUD_CREDENTIALS_URI {raw:?} is not a URL: {e}"))?;
        return Ok(Some(CredentialSource::Uri(url)));
    }
    if role_arn.is_some() {
        return Err("ALIBABA_CLOUD_ROLE_ARN is set, but neither AccessKey variables (for AssumeRole) nor ALIBABA_CLOUD_OIDC_PROVIDER_ARN and ALIBABA_CLOUD_OIDC_TOKEN_FILE (for OIDC/RRSA) are".into());
    }
    Ok(None)
}

/// Step 0 of the chain: the secret, through the Parameters and Secrets Lambda Extension.
fn aws_secret(
    lookup: &impl Fn(&str) -> Option<String>,
    secret_id: String,
    role_arn: Option<String>,
    keys_too: bool,
) -> Result<CredentialSource, String> {
    if keys_too {
        return Err("ECS_ROLLBACK_ALIBABA_SECRET_ID and ALIBABA_CLOUD_ACCESS_KEY_* are both set: the keys come from one place (the secret, read at run time, or the environment)".into());
    }
    let token = lookup("AWS_SESSION_TOKEN").ok_or(
        "ECS_ROLLBACK_ALIBABA_SECRET_ID: the Parameters and Secrets Lambda Extension needs AWS_SESSION_TOKEN (Lambda sets it); outside Lambda, use another source of the chain",
    )?;
    let endpoint = match lookup("ECS_ROLLBACK_SECRETS_EXTENSION_ENDPOINT") {
        // For tests: https anywhere, plain http to loopback only.
        Some(raw) => parse_base_url(&raw)?,
        None => {
            let port = match lookup("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT") {
                Some(raw) => raw
                    .trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| {
                        format!(
                            "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT {raw:?}: a port, 1 to 65535"
                        )
                    })?,
                None => 2773,
            };
            Url::parse(&format!("http://localhost:{port}/")).map_err(|e| e.to_string())?
        }
    };
    Ok(CredentialSource::AwsSecret {
        endpoint,
        secret_id,
        token: Secret::new(token),
        role: role_arn.map(|arn| role(lookup, arn, None)).transpose()?,
    })
}

/// The `aliyun` CLI's profile file (`~/.aliyun/config.json`): the profile named by
/// `ALIBABA_CLOUD_PROFILE`, else the file's `current` one. `None` when there is no file.
fn profile(lookup: &impl Fn(&str) -> Option<String>) -> Result<Option<CredentialSource>, String> {
    let Some(home) = lookup("HOME") else {
        return Ok(None);
    };
    let path = PathBuf::from(home).join(".aliyun").join("config.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("profile file {}: {e}", path.display())),
    };
    let where_ = format!("profile file {}", path.display());
    let doc: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{where_}: not JSON: {e}"))?;
    let wanted = lookup("ALIBABA_CLOUD_PROFILE")
        .or_else(|| doc["current"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "default".to_owned());
    let Some(p) = doc["profiles"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == wanted.as_str()))
    else {
        return Err(format!("{where_}: no profile {wanted:?}"));
    };
    let field = |k: &str| p[k].as_str().filter(|v| !v.is_empty()).map(str::to_owned);
    let need = |k: &str| field(k).ok_or_else(|| format!("{where_}: profile {wanted:?} has no {k}"));
    let mode = field("mode").unwrap_or_else(|| "AK".to_owned());
    let keys = || -> Result<Credentials, String> {
        Ok(Credentials::new(
            need("access_key_id")?,
            need("access_key_secret")?,
        ))
    };
    let source = match mode.as_str() {
        "AK" => CredentialSource::Static(keys()?),
        "StsToken" => CredentialSource::Static(keys()?.with_token(need("sts_token")?)),
        "RamRoleArn" => CredentialSource::AssumeRole {
            base: keys()?,
            role: role(lookup, need("ram_role_arn")?, field("ram_session_name"))?,
        },
        "EcsRamRole" => CredentialSource::EcsRamRole {
            role_name: field("ram_role_name"),
            endpoint: metadata_endpoint(lookup)?,
        },
        "OIDC" => CredentialSource::Oidc {
            role: role(lookup, need("ram_role_arn")?, field("ram_session_name"))?,
            provider_arn: need("oidc_provider_arn")?,
            token_file: PathBuf::from(need("oidc_token_file")?),
        },
        "CredentialsURI" => CredentialSource::Uri(
            Url::parse(&need("credentials_uri")?).map_err(|e| format!("{where_}: {e}"))?,
        ),
        other => {
            return Err(format!(
                "{where_}: profile {wanted:?} has mode {other:?}, which this tool does not read (AK, StsToken, RamRoleArn, EcsRamRole, OIDC, CredentialsURI)"
            ))
        }
    };
    Ok(Some(source))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(vars: &[(&str, &str)]) -> Result<ClientConfig, String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        ClientConfig::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn endpoint_rules() {
        assert!(parse_base_url("http://127.0.0.1:9000").is_ok());
        assert!(parse_base_url("http://localhost:9000/").is_ok());
        assert!(parse_base_url("http://[::1]:9000/").is_ok());
        assert!(parse_base_url("https://ecs.example.com/").is_ok());
        assert!(parse_base_url("http://10.0.0.1:9000/").is_err());
        assert!(parse_base_url("http://ecs.cn-hangzhou.aliyuncs.com/").is_err());
        assert!(parse_base_url("ftp://127.0.0.1/").is_err());
        assert!(parse_base_url("https://x/?a=b").is_err());
        assert_eq!(
            Endpoint::Regional
                .url_for("cn-hangzhou")
                .map(|u| u.to_string()),
            Ok("https://ecs.cn-hangzhou.aliyuncs.com/".into())
        );
        assert!(Endpoint::Regional.url_for("evil.com/x").is_err());
    }

    #[test]
    fn credentials_from_env() {
        let c = cfg(&[]).expect("ok");
        assert!(c.credentials.is_none());
        assert_eq!(c.endpoint, Endpoint::Regional);
        let c = cfg(&[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "id"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "sec"),
            ("ALIBABA_CLOUD_SECURITY_TOKEN", "tok"),
            ("ALIBABA_CLOUD_REGION_ID", "cn-shanghai"),
            ("ECS_ROLLBACK_ECS_ENDPOINT", "http://127.0.0.1:1234"),
        ])
        .expect("ok");
        match c.credentials {
            Some(CredentialSource::Static(c)) => {
                assert_eq!(c.security_token.as_ref().map(Secret::expose), Some("tok"))
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(c.default_region.as_deref(), Some("cn-shanghai"));
        assert!(cfg(&[("ALIBABA_CLOUD_ACCESS_KEY_ID", "id")]).is_err());
        assert!(cfg(&[("ALIBABA_CLOUD_ROLE_ARN", "acs:ram::1:role/r")]).is_err());
        let c = cfg(&[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "id"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "sec"),
            ("ALIBABA_CLOUD_ROLE_ARN", "acs:ram::1:role/r"),
        ])
        .expect("ok");
        assert!(matches!(
            c.credentials,
            Some(CredentialSource::AssumeRole { .. })
        ));
    }

    #[test]
    fn debug_never_shows_secrets() {
        let c = Credentials::new("LTAIid", "the-secret-value").with_token("the-token-value");
        let dbg = format!("{c:?}");
        assert!(dbg.contains("LTAIid"));
        assert!(!dbg.contains("the-secret-value"));
        assert!(!dbg.contains("the-token-value"));
        let src = CredentialSource::AssumeRole {
            base: c,
            role: AssumeRole {
                role_arn: "acs:ram::1:role/r".into(),
                session_name: "s".into(),
                endpoint: Url::parse("https://sts.aliyuncs.com/").expect("url"),
                duration_seconds: 3600,
            },
        };
        let dbg = format!("{src:?}");
        assert!(!dbg.contains("the-secret-value") && !dbg.contains("the-token-value"));
    }

    #[test]
    fn the_secret_through_the_lambda_extension_comes_first() {
        let base = [
            ("ECS_ROLLBACK_ALIBABA_SECRET_ID", "ecs-rollback/alibaba"),
            ("AWS_SESSION_TOKEN", "the-session-token"),
        ];
        let src = cfg(&base).expect("config").credentials.expect("a source");
        match &src {
            CredentialSource::AwsSecret {
                endpoint,
                secret_id,
                token,
                role,
            } => {
                assert_eq!(endpoint.as_str(), "http://localhost:2773/");
                assert_eq!(secret_id, "ecs-rollback/alibaba");
                assert_eq!(token.expose(), "the-session-token");
                assert!(role.is_none());
            }
            other => panic!("{other:?}"),
        }
        assert!(!format!("{src:?}").contains("the-session-token"));
        // The extension's port, and a role the secret's keys assume; before any other source.
        let mut vars = base.to_vec();
        vars.extend([
            ("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", "2999"),
            ("ALIBABA_CLOUD_ROLE_ARN", "acs:ram::1:role/r"),
            ("ALIBABA_CLOUD_CREDENTIALS_URI", "http://127.0.0.1:9/"),
        ]);
        match cfg(&vars).expect("config").credentials {
            Some(CredentialSource::AwsSecret { endpoint, role, .. }) => {
                assert_eq!(endpoint.port(), Some(2999));
                assert_eq!(
                    role.map(|r| r.role_arn).as_deref(),
                    Some("acs:ram::1:role/r")
                );
            }
            other => panic!("{other:?}"),
        }
        // Without Lambda's session token, with keys beside it, or a port that is none: errors
        // that say what is wrong.
        let err = cfg(&base[..1]).expect_err("no token");
        assert!(err.contains("AWS_SESSION_TOKEN"), "{err}");
        let mut vars = base.to_vec();
        vars.push(("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI"));
        let err = cfg(&vars).expect_err("two places");
        assert!(err.contains("one place"), "{err}");
        let mut vars = base.to_vec();
        vars.push(("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", "0"));
        assert!(cfg(&vars).is_err());
        let mut vars = base.to_vec();
        vars.push((
            "ECS_ROLLBACK_SECRETS_EXTENSION_ENDPOINT",
            "http://10.0.0.1:2773/",
        ));
        assert!(cfg(&vars).is_err(), "plain http only to loopback");
    }
}
