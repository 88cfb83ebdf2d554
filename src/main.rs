//! The `ecs-rollback` binary: a thin shell over the library (see `cli`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ecs_rollback::cli::main().await
}
