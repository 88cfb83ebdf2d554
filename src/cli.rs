//! The command line: parse arguments, set up logging, call into the library, map the outcome
//! to an exit code. No logic of its own.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::handler::{PayloadError, Reply, Shape};
use crate::operate::{approve_cmd, pause_cmd, release_cmd, status_cmd};
use crate::sim::{self, Simulator};
use crate::startup::{build_handler, load_scenario, Backend};

/// Shown after the top-level help: examples, the environment, the exit codes.
const AFTER_HELP: &str = "\
Examples:
  ecs-rollback invoke events/rollback.json          # against the built-in ECS simulator
  ecs-rollback invoke --live my-event.json          # against your account (credentials below)
  ecs-rollback status d-bp1webapp0000sys01 --live   # who holds a disk
  ecs-rollback report drill.jsonl -o drill.html     # a drill's report
  ecs-rollback completions bash > /etc/bash_completion.d/ecs-rollback
  ecs-rollback man > ecs-rollback.1

Environment (README, \"Configuration\" and \"Credentials\"):
  ALIBABA_CLOUD_ACCESS_KEY_ID, ALIBABA_CLOUD_ACCESS_KEY_SECRET, ALIBABA_CLOUD_SECURITY_TOKEN
                              credentials (used by invoke/status/release only with --live)
  ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_PROVIDER_ARN, ALIBABA_CLOUD_OIDC_TOKEN_FILE
                              STS AssumeRole, or OIDC (RRSA)
  ALIBABA_CLOUD_PROFILE       the profile of ~/.aliyun/config.json
  ALIBABA_CLOUD_ECS_METADATA  the ECS instance RAM role (its name, or auto)
  ALIBABA_CLOUD_CREDENTIALS_URI
                              a URL answering temporary credentials
  ALIBABA_CLOUD_REGION_ID     the default region
  ECS_ROLLBACK_ECS_ENDPOINT   one base URL for every region; set, the CLI is live
  ECS_ROLLBACK_REQUIRE_TAG    the opt-in tag (default ecs-rollback=enabled)
  ECS_ROLLBACK_SIM_SCENARIO   a scenario file for the built-in simulator
  RUST_LOG                    the log filter (default info)

Exit codes:
  0  every result succeeded, duplicate, superseded, dry-run or ignored
  1  a result failed or was rejected (or a command failed)
  2  the command line or the input is wrong, or the setup is (e.g. --live without credentials)";

/// Shown after `invoke --help`.
const INVOKE_AFTER_HELP: &str = "\
Examples:
  ecs-rollback invoke events/rollback.json
  ecs-rollback invoke events/dry-run.json
  echo '{\"instanceId\": \"i-bp1webapp00000001\", \"dryRun\": true}' | ecs-rollback invoke -
  ecs-rollback invoke --live incident.json

Without --live (and without ECS_ROLLBACK_ECS_ENDPOINT) every call goes to the built-in ECS
simulator, whatever credentials the environment holds; stderr says which is used.";

#[derive(Parser, Debug)]
#[command(
    name = "ecs-rollback",
    version,
    about = "Roll an Alibaba Cloud ECS disk back to a snapshot, safely",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run one event (a rollback request, or {"requests": [...]}) and print one result event
    /// per request on stdout. Runs against the built-in ECS simulator unless --live.
    #[command(after_help = INVOKE_AFTER_HELP)]
    Invoke {
        /// The event file; `-` or nothing reads stdin.
        file: Option<PathBuf>,
        /// Use the built-in simulator (the default unless --live or ECS_ROLLBACK_ECS_ENDPOINT).
        #[arg(long, conflicts_with = "live")]
        simulate: bool,
        /// Call the real ECS API of your account with the credentials the environment gives.
        /// Without it (and without ECS_ROLLBACK_ECS_ENDPOINT) every call goes to the built-in
        /// simulator, whatever credentials are set.
        #[arg(long)]
        live: bool,
    },
    /// Serve as an Alibaba Cloud Function Compute custom runtime: POST /invoke and
    /// POST /initialize (or, with --http, an HTTP trigger's calls as the webhook) on 0.0.0.0,
    /// port FC_SERVER_PORT (default 9000). Started without arguments in a Function Compute
    /// environment (FC_FUNCTION_NAME set), this is the default.
    ServeFc {
        /// Port to listen on (overrides FC_SERVER_PORT); 0 picks a free one.
        #[arg(long)]
        port: Option<u16>,
        /// Address to listen on.
        #[arg(long, default_value = "0.0.0.0")]
        host: std::net::IpAddr,
        /// Serve an HTTP trigger (or custom domain): every request, whatever its method and
        /// path, is the webhook's (also `ECS_ROLLBACK_FC_MODE=http`). Without it, Function
        /// Compute's API calls: POST /invoke with the event.
        #[arg(long)]
        http: bool,
    },
    /// Show who holds a disk: the run (key digest, phase, since when, the power state it will
    /// restore, lease), its claims, the cooldown left and the recent keys. Same credentials and
    /// endpoint rules as `invoke` (none: the built-in simulator).
    Status {
        /// The disk (`d-…`).
        disk_id: String,
        /// The region (else ALIBABA_CLOUD_REGION_ID).
        #[arg(long)]
        region: Option<String>,
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
        /// Read the real ECS API (as `invoke --live`); without it, the built-in simulator.
        #[arg(long)]
        live: bool,
    },
    /// Clear a hold that a stuck or abandoned run left on a disk, when its key matches: shows
    /// what it will do, then removes the run and its claims from the ledger and records the
    /// release in the history. Never touches the instance or the disk contents.
    Release {
        /// The disk (`d-…`).
        disk_id: String,
        /// The idempotency key of the run that holds the disk.
        #[arg(long)]
        key: String,
        /// The region (else ALIBABA_CLOUD_REGION_ID).
        #[arg(long)]
        region: Option<String>,
        /// Release even though the hold's lease (or a claim's heartbeat) is live.
        #[arg(long)]
        force: bool,
        /// Do not ask (needed when stdin is not a terminal).
        #[arg(long)]
        yes: bool,
        /// Write to the real ECS API (as `invoke --live`); without it, the built-in simulator.
        #[arg(long)]
        live: bool,
    },
    /// Pause every rollback in a region (drills too): each is refused `Paused` before anything
    /// changes, until `resume`. Kept as a tag on the region's control key pair
    /// (`ECS_ROLLBACK_CONTROL_KEY_PAIR`, default `ecs-rollback-control`), which must exist.
    Pause {
        #[arg(long)]
        region: Option<String>,
        /// Why, shown by `status` and in every refusal.
        #[arg(long)]
        reason: Option<String>,
        /// Who pauses (default: $USER).
        #[arg(long)]
        by: Option<String>,
        /// Write to the real ECS API (as `invoke --live`); without it, the built-in simulator.
        #[arg(long)]
        live: bool,
    },
    /// Lift a region's pause.
    Resume {
        #[arg(long)]
        region: Option<String>,
        /// Write to the real ECS API (as `invoke --live`); without it, the built-in simulator.
        #[arg(long)]
        live: bool,
    },
    /// Approve a proposed rollback: runs exactly the request its token names, once (an
    /// expired, altered or used token runs nothing), and prints its result event.
    Approve {
        /// The token of the `proposed` result.
        token: String,
        /// Who approves (default: $USER); recorded in the result and on the disk.
        #[arg(long)]
        by: Option<String>,
        /// Write to the real ECS API (as `invoke --live`); without it, the built-in simulator.
        #[arg(long)]
        live: bool,
    },
    /// Render a drill's result events (the JSON lines `invoke` prints) as a self-contained HTML
    /// page or an SVG image: a timeline per target, recovery against the objective, failures.
    Report {
        /// The result events, one JSON object per line; `-` reads stdin.
        file: PathBuf,
        /// Where to write: `.html` or `.svg`.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Print a shell completion script on stdout.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout.
    Man,
    /// Serve the ECS simulator over HTTP on 127.0.0.1 (point ECS_ROLLBACK_ECS_ENDPOINT at it).
    Simulate {
        /// Port to listen on; 0 picks a free one (printed on stdout).
        #[arg(long, default_value_t = 9000)]
        port: u16,
        /// A scenario (JSON): fleet, timings, faults, access key.
        #[arg(long)]
        scenario: Option<PathBuf>,
    },
}

/// Logs to stderr; `RUST_LOG` filters (default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => {
            use std::io::IsTerminal;
            builder
                .with_target(false)
                .with_ansi(std::io::stderr().is_terminal())
                .try_init()
        }
    };
}

pub async fn main() -> ExitCode {
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        return lambda_main().await;
    }
    // Function Compute starts the custom runtime's command, by default with no arguments.
    if std::env::args_os().len() == 1 && std::env::var_os("FC_FUNCTION_NAME").is_some() {
        init_logging(LogFormat::Json);
        return fc_main(None, std::net::Ipv4Addr::UNSPECIFIED.into(), false).await;
    }
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Invoke {
            file,
            simulate,
            live,
        } => invoke(file, simulate, live).await,
        Command::ServeFc { port, host, http } => fc_main(port, host, http).await,
        Command::Status {
            disk_id,
            region,
            json,
            live,
        } => status_cmd(&disk_id, region, json, live).await,
        Command::Release {
            disk_id,
            key,
            region,
            force,
            yes,
            live,
        } => release_cmd(&disk_id, &key, region, force, yes, live).await,
        Command::Report { file, output } => report_cmd(&file, &output),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "ecs-rollback", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Man => {
            use clap::CommandFactory;
            let man = clap_mangen::Man::new(Cli::command());
            match man.render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("ecs-rollback man: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Pause {
            region,
            reason,
            by,
            live,
        } => pause_cmd(region, true, reason, by, live).await,
        Command::Resume { region, live } => pause_cmd(region, false, None, None, live).await,
        Command::Approve { token, by, live } => approve_cmd(&token, by, live).await,
        Command::Simulate { port, scenario } => {
            let loaded = load_scenario(scenario.as_ref());
            let access_key = loaded
                .as_ref()
                .map(|s| s.access_key_id.clone())
                .unwrap_or_default();
            let sim = match loaded.and_then(Simulator::new) {
                Ok(sim) => sim,
                Err(e) => {
                    eprintln!("ecs-rollback simulate: {e}");
                    return ExitCode::from(2);
                }
            };
            let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("ecs-rollback simulate: cannot listen on 127.0.0.1:{port}: {e}");
                    return ExitCode::from(2);
                }
            };
            let addr = match listener.local_addr() {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("ecs-rollback simulate: {e}");
                    return ExitCode::from(2);
                }
            };
            // The one line on stdout: where to point ECS_ROLLBACK_ECS_ENDPOINT.
            println!("http://{addr}/");
            tracing::info!(%addr, access_key_id = %access_key, "ECS simulator listening");
            match sim::server::serve(sim, listener).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("ecs-rollback simulate: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// The event: the one size limit, then strict JSON (`handler::read_payload`). Input that is
/// not JSON is an error of the command line; an event over the limit is a `rejected` result.
fn read_input(file: Option<&PathBuf>) -> Result<Result<serde_json::Value, Reply>, String> {
    use std::io::Read;
    use std::io::Seek;
    let limit = crate::handler::MAX_ENVELOPE as u64 + 1;
    let (name, bytes) = match file {
        Some(p) if p.as_os_str() != "-" => {
            let mut f =
                std::fs::File::open(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            let len = f
                .seek(std::io::SeekFrom::End(0))
                .and_then(|l| f.rewind().map(|()| l))
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            let mut bytes = Vec::new();
            f.take(limit)
                .read_to_end(&mut bytes)
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            if len >= limit {
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                return Ok(Err(PayloadError::TooLarge { len }.reply()));
            }
            (p.display().to_string(), bytes)
        }
        _ => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .take(limit)
                .read_to_end(&mut bytes)
                .map_err(|e| format!("cannot read stdin: {e}"))?;
            ("stdin".to_owned(), bytes)
        }
    };
    match crate::handler::read_payload(&bytes) {
        Ok(event) => Ok(Ok(event)),
        Err(e @ PayloadError::TooLarge { .. }) => Ok(Err(e.reply())),
        Err(PayloadError::NotJson(e)) => Err(format!("{name} is not JSON: {e}")),
        Err(e) => Err(format!("{name}: {e}")),
    }
}

async fn invoke(file: Option<PathBuf>, simulate: bool, live: bool) -> ExitCode {
    let event = match read_input(file.as_ref()) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("ecs-rollback invoke: {e}");
            return ExitCode::from(2);
        }
    };
    let handler = match build_handler(if simulate {
        Backend::Simulator
    } else {
        Backend::Cli { live }
    }) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("ecs-rollback invoke: {e}");
            return ExitCode::from(2);
        }
    };
    let reply = match event {
        Ok(event) => handler.handle(&event, None).await,
        Err(refused) => refused,
    };
    if let Shape::Workflow { .. } = reply.shape {
        // A workflow step: what the engine would get, its output or the failure type.
        let answer = crate::answer::Answer::of(reply);
        return match &answer.failure {
            None => {
                println!("{}", answer.results());
                ExitCode::SUCCESS
            }
            Some(f) => {
                println!(
                    "{}",
                    serde_json::json!({"errorType": f.error_type, "errorMessage": f.message})
                );
                ExitCode::FAILURE
            }
        };
    }
    match &reply.shape {
        Shape::Http { status } => eprintln!("ecs-rollback invoke: HTTP {status}"),
        Shape::Sqs { failures } => {
            eprintln!("ecs-rollback invoke: batchItemFailures {failures:?}")
        }
        Shape::Results => {}
        Shape::Workflow { .. } => {}
    }
    let mut all_ok = true;
    for r in reply.reports() {
        all_ok &= r.outcome.is_ok();
        println!("{}", r.to_cloud_event());
    }
    // A drill's summary comes after its targets' results.
    for s in &reply.summaries {
        println!("{s}");
    }
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn report_cmd(file: &PathBuf, output: &PathBuf) -> ExitCode {
    let text = if file.as_os_str() == "-" {
        use std::io::Read;
        let mut s = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut s) {
            eprintln!("ecs-rollback report: cannot read stdin: {e}");
            return ExitCode::from(2);
        }
        s
    } else {
        match std::fs::read_to_string(file) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("ecs-rollback report: cannot read {}: {e}", file.display());
                return ExitCode::from(2);
            }
        }
    };
    let report = match crate::drill_report::DrillReport::from_jsonl(&text) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ecs-rollback report: {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let rendered = match output.extension().and_then(|e| e.to_str()) {
        Some("html" | "htm") => report.html(),
        Some("svg") => report.svg(),
        _ => {
            eprintln!(
                "ecs-rollback report: {}: the output must end in .html or .svg",
                output.display()
            );
            return ExitCode::from(2);
        }
    };
    if let Err(e) = std::fs::write(output, rendered) {
        eprintln!(
            "ecs-rollback report: cannot write {}: {e}",
            output.display()
        );
        return ExitCode::from(2);
    }
    eprintln!(
        "ecs-rollback report: {} targets, {} bars -> {}",
        report.targets.len(),
        report.bar_count(),
        output.display()
    );
    ExitCode::SUCCESS
}

/// Function Compute mode: the handler behind `fc::router`, on `FC_SERVER_PORT` (or `port`).
pub async fn fc_main(port: Option<u16>, host: std::net::IpAddr, http: bool) -> ExitCode {
    let mode = match (http, crate::fc::Mode::from_env()) {
        (true, _) => crate::fc::Mode::Http,
        (false, Ok(m)) => m,
        (false, Err(e)) => {
            eprintln!("ecs-rollback serve-fc: {e}");
            return ExitCode::from(2);
        }
    };
    let port = match port {
        Some(p) => p,
        None => match std::env::var("FC_SERVER_PORT")
            .ok()
            .filter(|v| !v.is_empty())
        {
            None => crate::fc::DEFAULT_PORT,
            Some(raw) => match raw.trim().parse() {
                Ok(p) => p,
                Err(_) => {
                    eprintln!("ecs-rollback serve-fc: FC_SERVER_PORT {raw:?} is not a port");
                    return ExitCode::from(2);
                }
            },
        },
    };
    let simulate = std::env::var("ECS_ROLLBACK_SIMULATE").is_ok_and(|v| v == "1");
    let handler = match build_handler(if simulate {
        Backend::Simulator
    } else {
        Backend::ApiOrRuntime
    }) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("ecs-rollback serve-fc: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind((host, port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ecs-rollback serve-fc: cannot listen on {host}:{port}: {e}");
            return ExitCode::from(2);
        }
    };
    match listener.local_addr() {
        Ok(addr) => {
            // Also on stderr for whoever started it with port 0.
            eprintln!("ecs-rollback serve-fc: listening on {addr}");
            tracing::info!(%addr, ?mode, "Function Compute custom runtime listening");
        }
        Err(e) => {
            eprintln!("ecs-rollback serve-fc: {e}");
            return ExitCode::from(2);
        }
    }
    match crate::fc::serve(handler, listener, mode).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ecs-rollback serve-fc: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Lambda mode: logs on stdout as the function's log settings say (`logging`), the handler
/// served through the Runtime API.
pub async fn lambda_main() -> ExitCode {
    // Lambda's log settings (AWS_LAMBDA_LOG_FORMAT, AWS_LAMBDA_LOG_LEVEL): `logging`.
    crate::logging::init_lambda();
    let simulate = std::env::var("ECS_ROLLBACK_SIMULATE").is_ok_and(|v| v == "1");
    let handler = match build_handler(if simulate {
        Backend::Simulator
    } else {
        Backend::Api
    }) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("ecs-rollback: {e}");
            return ExitCode::FAILURE;
        }
    };
    match crate::lambda::serve(handler).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ecs-rollback: the Lambda runtime stopped: {e}");
            ExitCode::FAILURE
        }
    }
}
