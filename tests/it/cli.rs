//! The command line as a user meets it: where `invoke` sends its calls (the built-in simulator
//! unless `--live` or an explicitly set endpoint, and it says which), the help, the shell
//! completions and the man page.

use crate::common::{binary, binary_async, fast_scenario_file, fast_sim, serve, sim_env};
use std::path::PathBuf;

fn sample() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("events/rollback.json")
}

/// Keys in the environment (a shell where someone once exported them) and the README's first
/// command: the sample's IDs must not be rolled back in a real account. On the main branch of
/// issue 25 this called the real ECS API.
#[test]
fn keys_in_the_environment_alone_never_reach_a_real_account() {
    let out = binary()
        .args(["invoke"])
        .arg(sample())
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI-someones-real-key")
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "not-a-real-secret")
        .env("ALIBABA_CLOUD_REGION_ID", "cn-hangzhou")
        .env("ECS_ROLLBACK_SIM_SCENARIO", fast_scenario_file())
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("\"outcome\":\"succeeded\""), "{stdout}");
    assert!(
        stderr.contains("without --live") && stderr.contains("built-in ECS simulator"),
        "it says where the calls went: {stderr}"
    );
    assert!(!stderr.contains("LIVE"), "{stderr}");
}

/// `--live` without credentials stops before any call, naming what is missing.
#[test]
fn live_without_credentials_is_an_error_that_names_them() {
    let out = binary()
        .args(["invoke", "--live"])
        .arg(sample())
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--live") && stderr.contains("ALIBABA_CLOUD_ACCESS_KEY_ID"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    // --simulate and --live together are a usage error.
    let out = binary()
        .args(["invoke", "--live", "--simulate"])
        .arg(sample())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
}

/// An explicitly set endpoint is a live target: the run goes there, and stderr says so.
#[tokio::test]
async fn an_explicit_endpoint_is_live_and_said() {
    let sim = fast_sim();
    let base = serve(&sim).await;
    let out = binary_async()
        .envs(sim_env(&base))
        .env("ECS_ROLLBACK_POLL_INITIAL_MS", "10")
        .args(["invoke"])
        .arg(sample())
        .output()
        .await
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "LIVE: calling the ECS API at {base} (ECS_ROLLBACK_ECS_ENDPOINT)"
        )),
        "{stderr}"
    );
    assert!(
        sim.events().iter().any(|e| e.action == "ResetDisk"),
        "the served simulator got the calls"
    );
}

fn run(args: &[&str]) -> (i32, String) {
    let out = binary().args(args).output().expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The help says what a new user needs: examples, the environment, the exit codes; each
/// subcommand's arguments are explained.
#[test]
fn help_has_examples_environment_and_exit_codes() {
    let (code, help) = run(&["--help"]);
    assert_eq!(code, 0);
    for needle in [
        "Examples:",
        "ecs-rollback invoke --live",
        "Environment",
        "ALIBABA_CLOUD_ACCESS_KEY_ID",
        "ECS_ROLLBACK_ECS_ENDPOINT",
        "Exit codes:",
        "completions",
        "man",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
    let (_, invoke) = run(&["invoke", "--help"]);
    assert!(
        invoke.contains("--live") && invoke.contains("Examples:"),
        "{invoke}"
    );
    for sub in ["status", "release"] {
        let (_, h) = run(&[sub, "--help"]);
        assert!(h.contains("The disk") && h.contains("--live"), "{sub}: {h}");
    }
}

#[test]
fn completions_and_man_page() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, out) = run(&["completions", shell]);
        assert_eq!(code, 0, "{shell}");
        assert!(
            out.contains("ecs-rollback") && out.contains("invoke"),
            "{shell}"
        );
    }
    let (code, man) = run(&["man"]);
    assert_eq!(code, 0);
    assert!(man.starts_with(".ie") || man.contains(".TH"), "{man}");
    assert!(
        man.contains("ecs\\-rollback") && man.contains("Exit codes"),
        "roff: {man}"
    );
}
