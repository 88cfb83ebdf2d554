//! The command line: parse arguments, set up logging, call into the library, map the outcome
//! to an exit code. No logic of its own.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::sim::{self, Scenario, Simulator};

#[derive(Parser, Debug)]
#[command(
    name = "ecs-rollback",
    version,
    about = "Roll an Alibaba Cloud ECS disk back to a snapshot, safely"
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
        LogFormat::Text => builder.with_target(false).try_init(),
    };
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

pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Simulate { port, scenario } => {
            let sim = match load_scenario(scenario.as_ref()).and_then(Simulator::new) {
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
            tracing::info!(%addr, "ECS simulator listening; access key {}", sim::SIM_ACCESS_KEY_ID);
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
