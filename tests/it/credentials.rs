//! The credential chain, each source against a local stand-in on 127.0.0.1: the ECS metadata
//! server (with its session token), STS AssumeRoleWithOIDC (RRSA), a credentials URI, the
//! `aliyun` CLI's profile file; the order of the chain; refresh before expiry; errors that name
//! the source. The credentials the stand-ins hand out are the simulator's, so each test ends in
//! a DescribeInstances the simulator verifies.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post, put};
use axum::Router;
use ecs_rollback::ecs::{ClientConfig, CredentialSource, InstanceQuery};
use serde_json::json;

use crate::common::{fast_sim, http_client, serve, REGION, WEB};

/// Counts of the stand-in's answers, by route.
#[derive(Clone, Default)]
struct Hits(Arc<HashMap<&'static str, AtomicUsize>>);

impl Hits {
    fn new(routes: &[&'static str]) -> Self {
        Self(Arc::new(
            routes.iter().map(|r| (*r, AtomicUsize::new(0))).collect(),
        ))
    }
    fn hit(&self, route: &'static str) {
        if let Some(c) = self.0.get(route) {
            c.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn count(&self, route: &'static str) -> usize {
        self.0.get(route).map_or(0, |c| c.load(Ordering::SeqCst))
    }
}

/// The simulator's keys, as a temporary-credential answer expiring in `secs` (under the
/// client's three-minute margin when small: every call fetches again).
fn sim_keys(secs: i64) -> serde_json::Value {
    json!({
        "Code": "Success",
        "AccessKeyId": ecs_rollback::sim::SIM_ACCESS_KEY_ID,
        "AccessKeySecret": ecs_rollback::sim::SIM_ACCESS_KEY_SECRET,
        "SecurityToken": "",
        "Expiration": (chrono::Utc::now() + chrono::Duration::seconds(secs))
            .format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "LastUpdated": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    })
}

async fn stand_in(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/")
}

/// The ECS metadata server: the session token by PUT (with its TTL header), then the role's
/// name and credentials, each only with the token.
async fn metadata_server(expires_in: i64) -> (String, Hits) {
    let hits = Hits::new(&["token", "role", "credentials"]);
    let app = Router::new()
        .route(
            "/latest/api/token",
            put(|State(h): State<Hits>, headers: HeaderMap| async move {
                if headers
                    .get("x-aliyun-ecs-metadata-token-ttl-seconds")
                    .is_none()
                {
                    return (StatusCode::BAD_REQUEST, String::new());
                }
                h.hit("token");
                (StatusCode::OK, "metadata-token-1".to_owned())
            }),
        )
        .route(
            "/latest/meta-data/ram/security-credentials/",
            get(|State(h): State<Hits>, headers: HeaderMap| async move {
                if headers
                    .get("x-aliyun-ecs-metadata-token")
                    .and_then(|v| v.to_str().ok())
                    != Some("metadata-token-1")
                {
                    return (StatusCode::UNAUTHORIZED, String::new());
                }
                h.hit("role");
                (StatusCode::OK, "ecs-rollback-role".to_owned())
            }),
        )
        .route(
            "/latest/meta-data/ram/security-credentials/ecs-rollback-role",
            get(
                move |State(h): State<Hits>, headers: HeaderMap| async move {
                    if headers
                        .get("x-aliyun-ecs-metadata-token")
                        .and_then(|v| v.to_str().ok())
                        != Some("metadata-token-1")
                    {
                        return (StatusCode::UNAUTHORIZED, String::new());
                    }
                    h.hit("credentials");
                    (StatusCode::OK, sim_keys(expires_in).to_string())
                },
            ),
        )
        .with_state(hits.clone());
    (stand_in(app).await, hits)
}

fn config(vars: &[(&str, String)]) -> Result<ClientConfig, String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    ClientConfig::from_lookup(|k| map.get(k).cloned())
}

/// Two DescribeInstances through `source` against a fresh simulator.
async fn two_calls(source: CredentialSource) -> Result<(), String> {
    let sim = fast_sim();
    let base = serve(&sim).await;
    let client = http_client(&base, source, Duration::from_secs(5));
    let q = InstanceQuery {
        ids: vec![WEB.to_owned()],
        ..Default::default()
    };
    for _ in 0..2 {
        let found = client
            .describe_instances(REGION, &q)
            .await
            .map_err(|e| e.to_string())?;
        assert_eq!(found.len(), 1);
    }
    Ok(())
}

#[tokio::test]
async fn the_ecs_instance_role_comes_from_the_metadata_server_with_its_token() {
    let (base, hits) = metadata_server(60).await;
    let cfg = config(&[
        ("ALIBABA_CLOUD_ECS_METADATA", "auto".into()),
        ("ECS_ROLLBACK_METADATA_ENDPOINT", base),
    ])
    .expect("config");
    let source = cfg.credentials.expect("a source");
    assert!(matches!(source, CredentialSource::EcsRamRole { .. }));
    two_calls(source)
        .await
        .expect("signed with the role's keys");
    // Expiring within the three-minute margin: fetched again before the second call.
    assert_eq!(hits.count("credentials"), 2, "refreshed before expiry");
    assert_eq!(hits.count("token"), 2);
    assert_eq!(hits.count("role"), 2, "the role's name asked for (auto)");
}

#[tokio::test]
async fn long_lived_credentials_are_cached() {
    let (base, hits) = metadata_server(3600).await;
    let cfg = config(&[
        ("ALIBABA_CLOUD_ECS_METADATA", "ecs-rollback-role".into()),
        ("ECS_ROLLBACK_METADATA_ENDPOINT", base),
    ])
    .expect("config");
    two_calls(cfg.credentials.expect("a source"))
        .await
        .expect("ok");
    assert_eq!(hits.count("credentials"), 1, "cached for the second call");
    assert_eq!(hits.count("role"), 0, "the role was named");
}

#[tokio::test]
async fn oidc_exchanges_the_token_file_with_sts_assume_role_with_oidc() {
    let dir = tempdir("oidc");
    let token_file = dir.join("token");
    std::fs::write(&token_file, "eyJ.oidc-token.sig\n").expect("write");
    let hits = Hits::new(&["sts"]);
    let app = Router::new()
        .route(
            "/",
            post(
                |State(h): State<Hits>, Query(q): Query<HashMap<String, String>>| async move {
                    let ok = q.get("Action").map(String::as_str) == Some("AssumeRoleWithOIDC")
                        && q.get("OIDCToken").map(String::as_str) == Some("eyJ.oidc-token.sig")
                        && q.get("OIDCProviderArn").map(String::as_str)
                            == Some("acs:ram::1:oidc-provider/ack")
                        && q.get("RoleArn").map(String::as_str) == Some("acs:ram::1:role/r")
                        && !q.contains_key("Signature");
                    if !ok {
                        return (
                            StatusCode::BAD_REQUEST,
                            json!({"Code": "InvalidParameter"}).to_string(),
                        );
                    }
                    h.hit("sts");
                    let mut c = sim_keys(3600);
                    if let Some(m) = c.as_object_mut() {
                        m.remove("Code");
                        m.remove("LastUpdated");
                    }
                    (
                        StatusCode::OK,
                        json!({"RequestId": "r-1", "Credentials": c}).to_string(),
                    )
                },
            ),
        )
        .with_state(hits.clone());
    let sts = stand_in(app).await;
    let cfg = config(&[
        ("ALIBABA_CLOUD_ROLE_ARN", "acs:ram::1:role/r".into()),
        (
            "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
            "acs:ram::1:oidc-provider/ack".into(),
        ),
        (
            "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
            token_file.display().to_string(),
        ),
        ("ECS_ROLLBACK_STS_ENDPOINT", sts),
    ])
    .expect("ALIBABA_CLOUD_ROLE_ARN without keys is RRSA, not an error");
    two_calls(cfg.credentials.expect("a source"))
        .await
        .expect("ok");
    assert_eq!(hits.count("sts"), 1);
}

#[tokio::test]
async fn a_credentials_uri_is_read_and_its_failure_names_it() {
    let hits = Hits::new(&["uri"]);
    let app = Router::new()
        .route(
            "/creds",
            get(|State(h): State<Hits>| async move {
                h.hit("uri");
                sim_keys(3600).to_string()
            }),
        )
        .route(
            "/broken",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "{}") }),
        )
        .with_state(hits.clone());
    let base = stand_in(app).await;
    let cfg = config(&[("ALIBABA_CLOUD_CREDENTIALS_URI", format!("{base}creds"))]).expect("config");
    two_calls(cfg.credentials.expect("a source"))
        .await
        .expect("ok");
    assert_eq!(hits.count("uri"), 1);
    let cfg =
        config(&[("ALIBABA_CLOUD_CREDENTIALS_URI", format!("{base}broken"))]).expect("config");
    let err = two_calls(cfg.credentials.expect("a source"))
        .await
        .expect_err("the URI fails");
    assert!(err.contains("credentials URI"), "names the source: {err}");
    assert!(err.contains("HTTP 500"), "{err}");
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "ecs-rollback-cred-{name}-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn home_with_profile(profiles: serde_json::Value) -> String {
    let home = tempdir("home");
    std::fs::create_dir_all(home.join(".aliyun")).expect("dir");
    std::fs::write(home.join(".aliyun/config.json"), profiles.to_string()).expect("write");
    home.display().to_string()
}

#[tokio::test]
async fn the_cli_profile_file_is_read() {
    let home = home_with_profile(json!({"current": "ops", "profiles": [
        {"name": "default", "mode": "AK", "access_key_id": "wrong", "access_key_secret": "wrong"},
        {"name": "ops", "mode": "AK",
         "access_key_id": ecs_rollback::sim::SIM_ACCESS_KEY_ID,
         "access_key_secret": ecs_rollback::sim::SIM_ACCESS_KEY_SECRET,
         "region_id": "cn-hangzhou"}]}));
    let cfg = config(&[("HOME", home.clone())]).expect("config");
    two_calls(cfg.credentials.expect("the current profile"))
        .await
        .expect("signed with the ops profile");
    // ALIBABA_CLOUD_PROFILE picks another: the default one's keys are refused by ECS.
    let cfg = config(&[
        ("HOME", home.clone()),
        ("ALIBABA_CLOUD_PROFILE", "default".into()),
    ])
    .expect("config");
    assert!(two_calls(cfg.credentials.expect("a source")).await.is_err());
    // A profile that names the instance role goes to the metadata server.
    let (base, hits) = metadata_server(3600).await;
    let home = home_with_profile(json!({"current": "ecs", "profiles": [
        {"name": "ecs", "mode": "EcsRamRole", "ram_role_name": "ecs-rollback-role"}]}));
    let cfg = config(&[("HOME", home), ("ECS_ROLLBACK_METADATA_ENDPOINT", base)]).expect("config");
    two_calls(cfg.credentials.expect("a source"))
        .await
        .expect("ok");
    assert_eq!(hits.count("credentials"), 1);
    // A mode this tool does not read is an error that names the file and the mode.
    let home = home_with_profile(json!({"current": "sso", "profiles": [
        {"name": "sso", "mode": "CloudSSO"}]}));
    let err = config(&[("HOME", home)]).expect_err("unknown mode");
    assert!(
        err.contains("config.json") && err.contains("CloudSSO"),
        "{err}"
    );
}

/// The chain's order: environment, OIDC, profile file, instance role, URI.
#[test]
fn the_chain_takes_the_first_configured_source_in_the_sdks_order() {
    let home = home_with_profile(json!({"current": "default", "profiles": [
        {"name": "default", "mode": "AK", "access_key_id": "p", "access_key_secret": "p"}]}));
    let all = [
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", "env".to_owned()),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "env".to_owned()),
        ("ALIBABA_CLOUD_ROLE_ARN", "acs:ram::1:role/r".to_owned()),
        (
            "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
            "acs:ram::1:oidc-provider/p".to_owned(),
        ),
        (
            "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
            "/nonexistent/token".to_owned(),
        ),
        ("HOME", home),
        ("ALIBABA_CLOUD_ECS_METADATA", "role".to_owned()),
        (
            "ALIBABA_CLOUD_CREDENTIALS_URI",
            "http://127.0.0.1:9/".to_owned(),
        ),
    ];
    let kind = |skip: usize| {
        let vars: Vec<(&str, String)> = all[skip..].to_vec();
        config(&vars)
            .expect("config")
            .credentials
            .map(|s| s.name())
            .unwrap_or("none")
    };
    assert_eq!(kind(0), "STS AssumeRole", "environment keys with a role");
    assert_eq!(kind(2), "OIDC (RRSA): STS AssumeRoleWithOIDC");
    assert_eq!(kind(5), "static credentials (environment or profile)");
    assert_eq!(kind(6), "the ECS instance RAM role (metadata server)");
    assert_eq!(
        kind(7),
        "the credentials URI (ALIBABA_CLOUD_CREDENTIALS_URI)"
    );
    assert_eq!(kind(8), "none");
    // Disabled, the instance role is passed over.
    let vars = vec![
        ("ALIBABA_CLOUD_ECS_METADATA", "role".to_owned()),
        ("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true".to_owned()),
    ];
    assert!(config(&vars).expect("config").credentials.is_none());
    // A role without keys or OIDC is an error that says what is missing.
    let err = config(&[("ALIBABA_CLOUD_ROLE_ARN", "acs:ram::1:role/r".into())])
        .expect_err("nothing to assume it with");
    assert!(err.contains("OIDC"), "{err}");
}

/// The Parameters and Secrets Lambda Extension: `GET /secretsmanager/get?secretId=…`, only with
/// the session token in `X-Aws-Parameters-Secrets-Token`, answering GetSecretValue's JSON. The
/// secret's keys are whatever `keys` holds at the time (a rotation swaps them).
async fn secrets_extension(keys: Arc<std::sync::Mutex<(String, String)>>) -> (String, Hits) {
    #[derive(Clone)]
    struct Ext {
        hits: Hits,
        keys: Arc<std::sync::Mutex<(String, String)>>,
    }
    let hits = Hits::new(&["get"]);
    let app = Router::new()
        .route(
            "/secretsmanager/get",
            get(
                |State(ext): State<Ext>,
                 Query(q): Query<HashMap<String, String>>,
                 headers: HeaderMap| async move {
                    if headers
                        .get("x-aws-parameters-secrets-token")
                        .and_then(|v| v.to_str().ok())
                        != Some("lambda-session-token")
                    {
                        return (StatusCode::UNAUTHORIZED, String::new());
                    }
                    if q.get("secretId").map(String::as_str) != Some("ecs-rollback/alibaba") {
                        return (StatusCode::BAD_REQUEST, String::new());
                    }
                    ext.hits.hit("get");
                    let (id, secret) = ext.keys.lock().expect("keys").clone();
                    let string = json!({"AccessKeyId": id, "AccessKeySecret": secret}).to_string();
                    let answer = json!({
                        "ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:ecs-rollback/alibaba-AbCdEf",
                        "Name": "ecs-rollback/alibaba",
                        "VersionId": "a1b2c3d4-5678-90ab-cdef-EXAMPLE11111",
                        "SecretString": string,
                        "VersionStages": ["AWSCURRENT"],
                        "CreatedDate": "2026-12-05T00:00:00Z",
                    });
                    (StatusCode::OK, answer.to_string())
                },
            ),
        )
        .with_state(Ext {
            hits: hits.clone(),
            keys,
        });
    (stand_in(app).await, hits)
}

/// On AWS the keys are read at run time from Secrets Manager through the Lambda extension,
/// cached, and read again when ECS refuses them: a rotated secret needs no deploy.
#[tokio::test]
async fn the_aws_secret_is_read_through_the_lambda_extension_and_again_after_a_rotation() {
    // The secret still holds a key ECS no longer knows (rotated and the old one disabled).
    let keys = Arc::new(std::sync::Mutex::new((
        "LTAIretiredkey0000000000".to_owned(),
        "the-retired-secret".to_owned(),
    )));
    let (base, hits) = secrets_extension(keys.clone()).await;
    let cfg = config(&[
        (
            "ECS_ROLLBACK_ALIBABA_SECRET_ID",
            "ecs-rollback/alibaba".into(),
        ),
        ("AWS_SESSION_TOKEN", "lambda-session-token".into()),
        ("ECS_ROLLBACK_SECRETS_EXTENSION_ENDPOINT", base.clone()),
    ])
    .expect("config");
    let source = cfg.credentials.expect("a source");
    assert!(matches!(source, CredentialSource::AwsSecret { .. }));
    let sim = fast_sim();
    let ecs = serve(&sim).await;
    let client = http_client(&ecs, source, Duration::from_secs(5));
    let q = InstanceQuery {
        ids: vec![WEB.to_owned()],
        ..Default::default()
    };
    // Refused, read again, the same key: the refusal is the answer, and it says why.
    let err = client
        .describe_instances(REGION, &q)
        .await
        .expect_err("a retired key");
    assert_eq!(err.code(), Some("InvalidAccessKeyId.NotFound"), "{err}");
    assert_eq!(hits.count("get"), 2, "read, then read again on the refusal");
    // The secret is rotated: the next call is refused with the cached key, reads the secret
    // again and succeeds, with no new configuration.
    *keys.lock().expect("keys") = (
        ecs_rollback::sim::SIM_ACCESS_KEY_ID.to_owned(),
        ecs_rollback::sim::SIM_ACCESS_KEY_SECRET.to_owned(),
    );
    let found = client
        .describe_instances(REGION, &q)
        .await
        .expect("the rotated key signs");
    assert_eq!(found.len(), 1);
    assert_eq!(hits.count("get"), 3);
    // Cached: the next calls do not ask the extension.
    client.describe_instances(REGION, &q).await.expect("cached");
    client.describe_instances(REGION, &q).await.expect("cached");
    assert_eq!(hits.count("get"), 3, "cached between reads");
    // Without the session token the extension refuses, and the error names the source.
    let cfg = config(&[
        (
            "ECS_ROLLBACK_ALIBABA_SECRET_ID",
            "ecs-rollback/alibaba".into(),
        ),
        ("AWS_SESSION_TOKEN", "another-token".into()),
        ("ECS_ROLLBACK_SECRETS_EXTENSION_ENDPOINT", base),
    ])
    .expect("config");
    let err = two_calls(cfg.credentials.expect("a source"))
        .await
        .expect_err("the extension refuses");
    assert!(err.contains("Secrets Manager"), "names the source: {err}");
    assert!(err.contains("HTTP 401"), "{err}");
    assert!(
        !err.contains("the-retired-secret") && !err.contains("lambda-session-token"),
        "{err}"
    );
}
