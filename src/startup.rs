//! From the environment to a handler: the client (real API, the built-in simulator, or the
//! function role's credentials per invocation), the settings, the webhook secrets, the drill a
//! bare schedule runs. The front doors and the CLI call it once.

use std::path::PathBuf;

use crate::ecs::{
    ClientConfig, CredentialSource, Credentials, EcsClient, Endpoint, ReqwestTransport, RetryConfig,
};
use crate::handler::Handler;
use crate::settings::{Poll, Settings};
use crate::sim::{self, Scenario, SimTransport, Simulator};
use crate::triggers::webhook::WebhookAuth;

/// Where a command-line run goes when it is live, said in words (`None`: the simulator).
/// `--live` with the regional endpoint, or any run with an explicitly set endpoint.
pub fn cli_target(live: bool, endpoint: &Endpoint) -> Option<String> {
    match (live, endpoint) {
        (_, Endpoint::Fixed(url)) => Some(format!(
            "calling the ECS API at {url} (ECS_ROLLBACK_ECS_ENDPOINT)"
        )),
        (true, Endpoint::Regional) => Some(
            "calling the real ECS API at https://ecs.{region}.aliyuncs.com/ (--live)".to_owned(),
        ),
        (false, Endpoint::Regional) => None,
    }
}

pub fn load_scenario(path: Option<&PathBuf>) -> Result<Scenario, String> {
    match path {
        None => Ok(Scenario::default()),
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
        }
    }
}

/// Where the client sends its calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The command line (`invoke`, `status`, `release`): the built-in simulator unless asked
    /// for the real API, by `--live` (`live`) or by an explicitly set `ECS_ROLLBACK_ECS_ENDPOINT`.
    /// Credentials in the environment alone never reach a real account.
    Cli { live: bool },
    /// The built-in simulator, whatever the environment says.
    Simulator,
    /// The real API (or `ECS_ROLLBACK_ECS_ENDPOINT`); no credentials is an error (Lambda, unless
    /// `ECS_ROLLBACK_SIMULATE=1`).
    Api,
    /// The real API, signed with the environment's credentials or else with the ones the
    /// runtime sends with each invocation (Function Compute's role).
    ApiOrRuntime,
}

/// The handler, built once from the environment: client, settings, webhook secrets, drill.
pub fn build_handler(backend: Backend) -> Result<Handler, String> {
    let config = ClientConfig::from_env()?;
    let mut settings = Settings::from_env()?;
    let drill_fallback = match std::env::var("ECS_ROLLBACK_DRILL")
        .ok()
        .filter(|v| !v.is_empty())
    {
        Some(raw) => Some(
            crate::strict_json::from_str(&raw)
                .map_err(|e| format!("ECS_ROLLBACK_DRILL is not JSON: {e}"))?,
        ),
        None => None,
    };
    let use_sim = match backend {
        Backend::Simulator => true,
        Backend::Cli { live } => {
            let target = cli_target(live, &config.endpoint);
            if let Some(target) = &target {
                if config.credentials.is_none() {
                    return Err(format!(
                        "{target}, but no credentials: set ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET (README, \"Credentials\")"
                    ));
                }
                // Said on stderr whichever log level: a real account is about to be touched.
                eprintln!("ecs-rollback: LIVE: {target}");
            } else if config.credentials.is_some() {
                eprintln!(
                    "ecs-rollback: credentials are set, but without --live (or ECS_ROLLBACK_ECS_ENDPOINT) this runs against the built-in ECS simulator"
                );
            }
            target.is_none()
        }
        Backend::Api | Backend::ApiOrRuntime => false,
    };
    if let (Backend::Api, None, false) = (backend, &config.credentials, use_sim) {
        return Err("no credentials: set ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET (or ECS_ROLLBACK_SIMULATE=1 to use the built-in simulator)".into());
    }
    let (ecs, default_region) = if use_sim {
        let scenario = load_scenario(
            std::env::var_os("ECS_ROLLBACK_SIM_SCENARIO")
                .map(PathBuf::from)
                .as_ref(),
        )?;
        eprintln!(
            "ecs-rollback: {}: running against the built-in ECS simulator (nothing real is touched)",
            match backend {
                Backend::Cli { .. } => "no --live",
                _ => "simulator requested",
            }
        );
        // The built-in simulator knows its own tag read lag: the settle need not exceed it
        // by more than half (unless told).
        if std::env::var_os("ECS_ROLLBACK_TAG_SETTLE_MS").is_none() {
            settings.tag_settle =
                std::time::Duration::from_millis(scenario.timings.tag_read_lag_ms * 3 / 2);
        }
        let sim = Simulator::new(scenario)?;
        // The simulator's transitions take seconds at most: poll it often (unless told).
        if std::env::var_os("ECS_ROLLBACK_POLL_INITIAL_MS").is_none() {
            settings.poll = Poll {
                initial: std::time::Duration::from_millis(100),
                max: std::time::Duration::from_millis(500),
            };
        }
        let client = EcsClient::new(
            std::sync::Arc::new(SimTransport { sim }),
            crate::ecs::Endpoint::Regional,
            CredentialSource::Static(Credentials::new(
                sim::SIM_ACCESS_KEY_ID,
                sim::SIM_ACCESS_KEY_SECRET,
            )),
            RetryConfig::default(),
        )
        .with_signing(config.signing);
        (
            client,
            config.default_region.or_else(|| Some("cn-hangzhou".into())),
        )
    } else {
        let source = match (config.credentials, backend) {
            (Some(source), _) => source,
            (None, Backend::ApiOrRuntime) => CredentialSource::FromRuntime,
            (None, _) => return Err("no credentials".into()),
        };
        tracing::info!(endpoint = ?config.endpoint, "calling the ECS API");
        let client = EcsClient::new(
            std::sync::Arc::new(ReqwestTransport::default()),
            config.endpoint,
            source,
            RetryConfig::default(),
        )
        .with_signing(config.signing);
        (client, config.default_region)
    };
    Ok(Handler {
        ecs,
        settings,
        default_region,
        webhook: WebhookAuth::from_env(),
        triggers: crate::triggers::Context { drill_fallback },
        concurrency: 10,
        controls: crate::handler::gate::Controls::from_env()?,
        notifier: crate::notify::Notifier::from_env()?,
    })
}
