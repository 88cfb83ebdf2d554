//! Verify: once the instance is Running again, the service is checked before the run says
//! `succeeded` (`crate::verify` holds the rules; docs/rollback-protocol.md, "Verifying").
//!
//! Requires: the start done, the instance to end running. Ledger: phase `verifying`, and the
//! check's progress in the disk's `ecs-rollback:verify` tag (`verify::VerifyMark`): the round,
//! the stage, the Cloud Assistant invocation once RunCommand named it. Calls: the agent's
//! readiness (DescribeCloudAssistantStatus), RunCommand with a `ClientToken` derived from the
//! key and the round, DescribeInvocations until the invocation ends, DescribeInvocationResults
//! once; the probe from the function to the instance's own address. Records: each check in the
//! result's `verification`, with the time from the stop to the service verified.
//!
//! A redelivery follows the invocation its mark names (and RunCommand with the same token
//! returns the same invocation), so a command is never run twice for one round. With
//! `onVerifyFailure: undo` a failed first round rolls the disk back to this run's undo snapshot
//! (the mark says `undoing` before the stop, `undo reset` once ResetDisk was accepted and
//! before the instance is started: the disk is never reset again after that), starts the
//! instance and checks a second and last round.

use super::*;
use crate::ecs::RunCommandSpec;
use crate::report::{Check, Verification};
use crate::verify::{self as v, OnVerifyFailure, Probe, Stage, Verdict, VerifyMark, VerifySpec};

/// One round's checks and what they add up to.
struct Round {
    verdict: Verdict,
    checks: Vec<Check>,
}

impl Round {
    /// Unhealthy if any check says so; else could not verify if any could not; else healthy.
    fn of(checks: Vec<Check>) -> Self {
        let any = |w: &str| checks.iter().any(|c| c.verdict == w);
        let verdict = if any("unhealthy") {
            Verdict::Unhealthy
        } else if any("could-not-verify") {
            Verdict::CouldNotVerify
        } else {
            Verdict::Healthy
        };
        Round { verdict, checks }
    }

    fn failures(&self) -> String {
        self.checks
            .iter()
            .filter(|c| c.verdict != "healthy")
            .map(|c| format!("{} {}: {}", c.kind, c.target, c.detail))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn verdict_str(v: &Verdict) -> &'static str {
    match v {
        Verdict::Healthy => "healthy",
        Verdict::Unhealthy => "unhealthy",
        Verdict::CouldNotVerify => "could-not-verify",
    }
}

/// The longest single probe attempt.
const PROBE_TRY: Duration = Duration::from_secs(5);
/// Added to a command's own timeout before its invocation is given up on: the delivery (an
/// invocation not delivered within a minute is `Aborted`, §3) and the agent's report.
const COMMAND_SLACK: Duration = Duration::from_secs(90);

impl Run<'_> {
    fn preserving(&self) -> bool {
        self.req.preserve_current.unwrap_or(self.s.preserve_current)
    }

    /// The check this run makes, and what a failure leads to: the request's, else the
    /// deployment's. `undo` only with an undo snapshot (the request's parse refuses `undo`
    /// without `preserveCurrent`; a deployment default falls back to `report`).
    pub(super) fn verify_plan(&self) -> Option<(VerifySpec, OnVerifyFailure)> {
        let spec = self.req.verify.clone().or_else(|| self.s.verify.clone())?;
        let on = self
            .req
            .on_verify_failure
            .unwrap_or(self.s.on_verify_failure);
        let on = match on {
            OnVerifyFailure::Undo if !self.preserving() => OnVerifyFailure::Report,
            other => other,
        };
        Some((spec, on))
    }

    pub(super) async fn verify(&mut self) -> Res<()> {
        let t = self.now();
        let record = self.record()?;
        let Some((spec, on_failure)) = self.verify_plan() else {
            // A delivery without the block found an earlier one's check under way: nothing to
            // check against; the run finishes as the rollback it is.
            self.warnings.push(
                "an earlier delivery of this key was verifying the service; this one carries no verify block, so the check was not made".into(),
            );
            return Ok(());
        };
        let asked = self
            .req
            .on_verify_failure
            .unwrap_or(self.s.on_verify_failure);
        if asked == OnVerifyFailure::Undo && on_failure != asked {
            self.warnings.push(
                "onVerifyFailure undo needs preserveCurrent; this run reports a failed check instead".into(),
            );
        }
        let iid = match self.instance_id() {
            Some(iid) if record.end_running => iid,
            _ => {
                self.step(
                    "verify",
                    StepStatus::Skipped,
                    t,
                    None,
                    Some("the instance stays stopped: no service to check".into()),
                );
                return Ok(());
            }
        };
        if self.phase() < Phase::Verifying {
            // Like `starting`: if even this cannot be written, the check runs all the same (a
            // resume from `starting` finds the instance Running and checks again; RunCommand's
            // token keeps it to one command).
            if let Err(h) = self.set_phase(Phase::Verifying).await {
                if self.lease.is_lost() {
                    return Err(h);
                }
                tracing::warn!(error = %h.error.message, "could not record phase verifying; checking all the same");
                self.warnings.push(format!(
                    "phase verifying could not be recorded: {}",
                    h.error.message
                ));
            }
        }
        let mark = self.read_mark().await?;
        let mut verification = Verification::default();
        let (round, stage, invoke) = match mark {
            Some(m) => (m.round, m.stage, m.invoke_id),
            None => (1, Stage::Checking, None),
        };
        if round == 1 && stage == Stage::Checking {
            let first = self.check_round(&spec, &iid, 1, invoke).await?;
            verification.checks.extend(first.checks.iter().cloned());
            match (&first.verdict, on_failure) {
                (Verdict::Healthy, _) => {
                    verification.result = "verified".into();
                    verification.verified_ms = self.since_stop_ms();
                    self.verification = Some(verification);
                    self.remove_tag(ledger::VERIFY_TAG).await;
                    return Ok(());
                }
                (Verdict::CouldNotVerify, _) => {
                    verification.result = "unverified".into();
                    self.verification = Some(verification);
                    let message = format!(
                        "the rollback ran and the instance is Running, but the service could not be checked: {}. Check it by hand; a command check needs the Cloud Assistant agent installed and running (DescribeCloudAssistantStatus), a probe needs a network path from the function to the address",
                        first.failures()
                    );
                    return Err(self
                        .end_verify(Outcome::Unverified, Code::Unverified, message)
                        .await);
                }
                (Verdict::Unhealthy, OnVerifyFailure::Report) => {
                    verification.result = "unhealthy".into();
                    self.verification = Some(verification);
                    let undo = record
                        .undo
                        .clone()
                        .or_else(|| self.target.undo_snapshot_id.clone());
                    let message = format!(
                        "the service check failed after the rollback to {}: {}. The instance is Running on the rolled-back disk. {}",
                        record.snapshot,
                        first.failures(),
                        match undo {
                            Some(u) => format!("To go back, roll the disk back to the undo snapshot {u} (or ask onVerifyFailure: undo next time)"),
                            None => "Roll the disk back to another snapshot, or look at the instance by hand; with preserveCurrent and onVerifyFailure: undo the run goes back by itself".into(),
                        }
                    );
                    return Err(self
                        .end_verify(
                            Outcome::VerificationFailed,
                            Code::VerificationFailed,
                            message,
                        )
                        .await);
                }
                (Verdict::Unhealthy, OnVerifyFailure::Undo) => {}
            }
        } else {
            verification.checks.push(Check {
                round: 1,
                kind: "earlier".into(),
                target: "-".into(),
                verdict: "unhealthy".into(),
                detail: "the first round failed (recorded by an earlier delivery of this key)"
                    .into(),
                took_ms: 0,
                invoke_id: None,
                output_tail: None,
            });
        }
        // The undo: at most once, never again after the second round.
        verification.undone = true;
        if round == 1 && stage != Stage::UndoReset {
            if let Err(h) = self.undo_reset(&iid).await {
                if h.error.retryable || self.lease.is_lost() {
                    self.verification = Some(verification);
                    return Err(h);
                }
                // The undo cannot be made: the instance comes back on the rolled-back disk.
                let back = self.start(&iid, self.now()).await;
                verification.result = "unhealthy".into();
                verification.undone = false;
                self.verification = Some(verification);
                let mut message = format!(
                    "the service check failed after the rollback to {}, and the undo could not be made: {}",
                    record.snapshot, h.error.message
                );
                if let Err(b) = back {
                    message.push_str(&format!(
                        "; starting the instance again failed: {}",
                        b.error.message
                    ));
                    return Err(b);
                }
                return Err(self
                    .end_verify(
                        Outcome::VerificationFailed,
                        Code::VerificationFailed,
                        message,
                    )
                    .await);
            }
        }
        self.start(&iid, self.now()).await?;
        let second_invoke = match self.read_mark().await? {
            Some(m) if m.round == 2 => m.invoke_id,
            _ => None,
        };
        let second = self.check_round(&spec, &iid, 2, second_invoke).await?;
        verification.checks.extend(second.checks.iter().cloned());
        verification.result = match second.verdict {
            Verdict::Healthy => "verified",
            Verdict::Unhealthy => "unhealthy",
            Verdict::CouldNotVerify => "unverified",
        }
        .into();
        if second.verdict == Verdict::Healthy {
            verification.verified_ms = self.since_stop_ms();
        }
        let undo = self
            .undo_snapshot()
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| "-".into());
        self.verification = Some(verification);
        let message = format!(
            "the service check failed after the rollback to {}, so the disk was rolled back to the undo snapshot {undo} (the disk as it was before this run) and the instance started again; the check after the undo: {}",
            record.snapshot,
            match second.verdict {
                Verdict::Healthy => "healthy".to_owned(),
                _ => format!("{}: {}; look at the instance by hand (no further undo is made)", verdict_str(&second.verdict), second.failures()),
            }
        );
        Err(self
            .end_verify(Outcome::RolledBackToUndo, Code::RolledBackToUndo, message)
            .await)
    }

    /// From the stop to now, in ms: this delivery's own stop to the millisecond, else the
    /// ledger's second.
    fn since_stop_ms(&self) -> Option<u64> {
        let from = match self.stop_asked {
            Some(at) => Some(at.timestamp_millis()),
            None => self
                .record
                .as_ref()
                .and_then(|r| r.stop_at)
                .map(|s| s * 1000),
        }?;
        Some((self.now().timestamp_millis() - from).max(0) as u64)
    }

    /// Records the end (`failed`, with the outcome's code, so a redelivery reports it again and
    /// never runs it twice) and removes the mark; the halt to report.
    async fn end_verify(&mut self, outcome: Outcome, code: Code, message: String) -> Halt {
        let retryable_write = self.write_final(Phase::Failed, Some(code.as_str())).await;
        let mut error = ErrorInfo::new(code, message, false);
        if let Err(h) = retryable_write {
            // The check's answer stands; the next delivery records it (following the same
            // invocation, so the command is not run again).
            error.message = format!(
                "{}; the end could not be recorded in the ledger ({}), so the next delivery records it",
                error.message, h.error.message
            );
            error.retryable = true;
        } else {
            self.remove_tag(ledger::VERIFY_TAG).await;
        }
        tracing::warn!(code = %error.code, "{}", error.message);
        Halt { outcome, error }
    }

    /// This key's mark, if the disk carries one.
    pub(super) async fn read_mark(&self) -> Res<Option<VerifyMark>> {
        let disk = self.read_disk(&self.disk_id()).await.map_err(|mut h| {
            h.outcome = Outcome::Failed;
            h.error.retryable = true;
            h
        })?;
        let me = ledger::run_key(&self.digest);
        Ok(disk
            .tags
            .get(ledger::VERIFY_TAG)
            .and_then(VerifyMark::decode)
            .filter(|m| m.key == me))
    }

    pub(super) async fn write_mark(
        &self,
        round: u8,
        stage: Stage,
        invoke_id: Option<String>,
    ) -> Res<()> {
        let mark = VerifyMark {
            key: ledger::run_key(&self.digest),
            round,
            stage,
            invoke_id,
        };
        self.write_tags(&[(ledger::VERIFY_TAG.to_owned(), mark.encode())])
            .await
            .map_err(|e| {
                let mut h = Halt::ecs(Outcome::Failed, &e);
                h.error.code = Code::LedgerWriteFailed.into();
                h.error.retryable = true;
                h.error.message = format!("could not record the check's progress on the disk, so the next call was not made: {e}");
                h
            })
    }

    async fn check_round(
        &mut self,
        spec: &VerifySpec,
        iid: &str,
        round: u8,
        invoke: Option<String>,
    ) -> Res<Round> {
        let mut checks = Vec::new();
        if let Some(cmd) = &spec.command {
            checks.push(self.command_check(spec, cmd, iid, round, invoke).await?);
        }
        if let Some(probe) = &spec.probe {
            checks.push(self.probe_check(spec, probe, iid, round).await?);
        }
        Ok(Round::of(checks))
    }

    /// Waits for the agent (unless the invocation is known), runs the command once per round,
    /// follows it to its end, and reads the instance's result.
    async fn command_check(
        &mut self,
        spec: &VerifySpec,
        cmd: &v::CommandCheck,
        iid: &str,
        round: u8,
        invoke: Option<String>,
    ) -> Res<Check> {
        let t = self.now();
        let since = Instant::now();
        let mut check = Check {
            round,
            kind: "command".into(),
            target: cmd.script.clone(),
            verdict: String::new(),
            detail: String::new(),
            took_ms: 0,
            invoke_id: None,
            output_tail: None,
        };
        let invoke = match invoke {
            Some(i) => i,
            None => {
                if let Some(why) = self.wait_agent(iid, spec.agent_wait_seconds).await? {
                    return Ok(self.could_not_verify(check, t, since, why));
                }
                self.before_change("RunCommand")?;
                let token = v::client_token(&self.digest, round);
                let name = format!("ecs-rollback-verify-{}", ledger::run_key(&self.digest));
                let spec = RunCommandSpec {
                    script: &cmd.script,
                    content: &cmd.content,
                    timeout_seconds: cmd.timeout_seconds,
                    name: &name,
                    client_token: &token,
                };
                let id = match self.ecs.run_command(&self.region, iid, &spec).await {
                    Ok((id, _)) => id,
                    // The same token returns the same invocation: a redelivery may ask again.
                    Err(e) if e.can_pass() || e.may_have_applied => {
                        let mut h = Halt::ecs(Outcome::Failed, &e);
                        h.error.retryable = true;
                        h.error.message = format!("RunCommand (the service check) failed: {e}");
                        return Err(h);
                    }
                    // Refused for good (a permission, the instance's state, an unknown code):
                    // nothing ran, so nothing is known of the service.
                    Err(e) => {
                        let why = format!("RunCommand refused: {e}");
                        return Ok(self.could_not_verify(check, t, since, why));
                    }
                };
                if let Err(h) = self
                    .write_mark(round, Stage::Checking, Some(id.clone()))
                    .await
                {
                    // The token still leads a redelivery to this invocation.
                    tracing::warn!(error = %h.error.message, "the invocation could not be recorded; its ClientToken still leads to it");
                }
                id
            }
        };
        check.invoke_id = Some(invoke.clone());
        let budget =
            self.wait_budget(Duration::from_secs(cmd.timeout_seconds.into()) + COMMAND_SLACK);
        let until = Instant::now() + budget;
        let mut pause = self.s.poll.initial;
        // Reads refused for good in a row: a missing permission ends the wait early.
        let (mut refused, mut last_error) = (0u32, None::<String>);
        let result = loop {
            let mut failed = |e: EcsError| {
                refused = if e.can_pass() { 0 } else { refused + 1 };
                last_error = Some(e.to_string());
            };
            let ended = match self.ecs.invocation_status(&self.region, &invoke).await {
                Ok(Some(s)) => v::invocation_finished(&s),
                Ok(None) => false,
                Err(e) => {
                    failed(e);
                    false
                }
            };
            if ended {
                match self.ecs.invocation_result(&self.region, &invoke, iid).await {
                    Ok(Some(r))
                        if v::classify(
                            &r.invocation_status,
                            r.exit_code,
                            &r.error_code,
                            cmd.expected_exit_code,
                        )
                        .is_some() =>
                    {
                        break Some(r)
                    }
                    Ok(_) => {}
                    Err(e) => failed(e),
                }
            }
            if Instant::now() >= until || refused >= 5 {
                break None;
            }
            self.wait_a_little(&mut pause).await?;
        };
        check.took_ms = since.elapsed().as_millis() as u64;
        let Some(r) = result else {
            let full = Duration::from_secs(cmd.timeout_seconds.into()) + COMMAND_SLACK;
            if budget < full {
                // The deadline came first: the next delivery follows the same invocation.
                return Err(self.timed_out(
                    &format!("the service check's invocation {invoke} had not ended"),
                    full,
                ));
            }
            let why = format!(
                "invocation {invoke} did not end within {} s{}",
                budget.as_secs(),
                last_error
                    .map(|e| format!(" (last answer: {e})"))
                    .unwrap_or_default()
            );
            return Ok(self.could_not_verify(check, t, since, why));
        };
        let verdict = v::classify(
            &r.invocation_status,
            r.exit_code,
            &r.error_code,
            cmd.expected_exit_code,
        )
        .unwrap_or(Verdict::CouldNotVerify);
        let output = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(r.output.trim())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        let mut detail = r.invocation_status.clone();
        if let Some(c) = r.exit_code {
            detail.push_str(&format!(
                ", exit code {c} (expected {})",
                cmd.expected_exit_code
            ));
        }
        if !r.error_code.is_empty() {
            detail.push_str(&format!(", {}", r.error_code));
        }
        if let Some(d) = r.dropped.filter(|d| *d > 0) {
            detail.push_str(&format!(", {d} bytes of output dropped"));
        }
        check.verdict = verdict_str(&verdict).into();
        check.detail = detail;
        check.output_tail = Some(v::tail(&output)).filter(|o| !o.is_empty());
        let status = if verdict == Verdict::Healthy {
            StepStatus::Done
        } else {
            StepStatus::Failed
        };
        self.step(
            "verify",
            status,
            t,
            None,
            Some(format!(
                "command {}: {} ({invoke})",
                check.verdict, check.detail
            )),
        );
        Ok(check)
    }

    /// A check that could not be made, recorded as such.
    fn could_not_verify(
        &mut self,
        mut check: Check,
        t: DateTime<Utc>,
        since: Instant,
        why: String,
    ) -> Check {
        check.verdict = verdict_str(&Verdict::CouldNotVerify).into();
        check.detail = why;
        check.took_ms = since.elapsed().as_millis() as u64;
        self.step(
            "verify",
            StepStatus::Failed,
            t,
            None,
            Some(check.detail.clone()),
        );
        check
    }

    /// `None` once the agent is up; else why not (within `secs`).
    async fn wait_agent(&mut self, iid: &str, secs: u64) -> Res<Option<String>> {
        let full = Duration::from_secs(secs);
        let budget = self.wait_budget(full);
        let until = Instant::now() + budget;
        let mut pause = self.s.poll.initial;
        loop {
            let last = match self.ecs.cloud_assistant_ready(&self.region, iid).await {
                Ok(true) => return Ok(None),
                Ok(false) => "CloudAssistantStatus false".to_owned(),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= until {
                if budget < full {
                    return Err(self.timed_out("the Cloud Assistant agent was not ready yet", full));
                }
                return Ok(Some(format!(
                    "the Cloud Assistant agent did not report ready within {} s of the start ({last})",
                    budget.as_secs()
                )));
            }
            self.wait_a_little(&mut pause).await?;
        }
    }

    /// The probe, retried until it says healthy or the window ends.
    async fn probe_check(
        &mut self,
        spec: &VerifySpec,
        probe: &Probe,
        iid: &str,
        round: u8,
    ) -> Res<Check> {
        let t = self.now();
        let since = Instant::now();
        let kind = match probe {
            Probe::Http { .. } => "http",
            Probe::Tcp { .. } => "tcp",
        };
        let inst = match self.read_instance(iid).await {
            Ok(i) => i,
            Err(mut h) if h.error.retryable => {
                h.outcome = Outcome::Failed;
                return Err(h);
            }
            Err(h) => {
                let check = Check {
                    round,
                    kind: kind.into(),
                    target: "-".into(),
                    verdict: String::new(),
                    detail: String::new(),
                    took_ms: 0,
                    invoke_id: None,
                    output_tail: None,
                };
                let why = format!(
                    "the instance's address could not be read: {}",
                    h.error.message
                );
                return Ok(self.could_not_verify(check, t, since, why));
            }
        };
        let (private, public) = inst.own_addresses();
        let own = v::OwnAddresses {
            private: private.and_then(|p| p.parse().ok()),
            public: public.and_then(|p| p.parse().ok()),
        };
        let mut check = Check {
            round,
            kind: kind.into(),
            target: String::new(),
            verdict: String::new(),
            detail: String::new(),
            took_ms: 0,
            invoke_id: None,
            output_tail: None,
        };
        let target = match v::render(probe, &own) {
            Ok(target) => target,
            Err(why) => {
                check.target = "-".into();
                check.verdict = verdict_str(&Verdict::CouldNotVerify).into();
                check.detail = why;
                self.step(
                    "verify",
                    StepStatus::Failed,
                    t,
                    None,
                    Some(check.detail.clone()),
                );
                return Ok(check);
            }
        };
        check.target = target.describe();
        let full = Duration::from_secs(spec.window_seconds);
        let window = self.wait_budget(full);
        let until = Instant::now() + window;
        let mut pause = self.s.poll.initial;
        let answer = loop {
            let left = until.saturating_duration_since(Instant::now());
            let answer = crate::probe::once(
                probe,
                &target,
                PROBE_TRY.min(left.max(Duration::from_millis(200))),
            )
            .await;
            if answer.verdict == Verdict::Healthy || Instant::now() >= until {
                break answer;
            }
            self.wait_a_little(&mut pause).await?;
            pause = pause.min(Duration::from_secs(5));
        };
        check.took_ms = since.elapsed().as_millis() as u64;
        if answer.verdict != Verdict::Healthy && window < full {
            return Err(self.timed_out("the service probe had not passed yet", full));
        }
        check.verdict = verdict_str(&answer.verdict).into();
        check.detail = answer.detail;
        let status = if answer.verdict == Verdict::Healthy {
            StepStatus::Done
        } else {
            StepStatus::Failed
        };
        self.step(
            "verify",
            status,
            t,
            None,
            Some(format!("{kind} {}: {}", check.verdict, check.detail)),
        );
        Ok(check)
    }

    /// This run's undo snapshot: the record's, the target's, or found by its tag.
    async fn undo_snapshot(&self) -> Res<Option<String>> {
        if let Some(u) = self
            .record
            .as_ref()
            .and_then(|r| r.undo.clone())
            .or_else(|| self.target.undo_snapshot_id.clone())
        {
            return Ok(Some(u));
        }
        self.find_undo().await
    }

    /// Stops the instance and resets the disk to the undo snapshot: the mark says `undoing`
    /// first (a crash repeats the stop and the reset, and the instance is not started while it
    /// says so), then `undo reset` once ResetDisk was accepted (never reset again).
    async fn undo_reset(&mut self, iid: &str) -> Res<()> {
        let Some(undo) = self.undo_snapshot().await? else {
            return Err(Halt::fail(ErrorInfo::new(
                Code::UndoSnapshotFailed,
                "no undo snapshot of this run was found",
                false,
            )));
        };
        self.write_mark(1, Stage::Undoing, None).await?;
        let t = self.now();
        let inst = self.read_instance(iid).await?;
        if inst.status == "Running" {
            self.before_change("StopInstance")?;
            self.confirm_holder("StopInstance (undo)").await?;
            let o = StopOptions {
                force_stop: self.req.force_stop,
                ..Default::default()
            };
            if let Err(e) = self.ecs.stop_instance(&self.region, iid, &o).await {
                if !e.is_code("IncorrectInstanceStatus") {
                    let mut h = Halt::ecs(Outcome::Failed, &e);
                    h.error.retryable = e.can_pass() || e.may_have_applied;
                    return Err(h);
                }
            }
        }
        let until = Instant::now() + self.wait_budget(self.s.stop_timeout);
        let mut pause = self.s.poll.initial;
        loop {
            if let Some(i) = self.poll_instance(iid, until, &mut pause).await? {
                if i.status == "Stopped" {
                    break;
                }
            }
            if Instant::now() >= until {
                return Err(self.timed_out(
                    "the instance did not stop for the undo",
                    self.s.stop_timeout,
                ));
            }
            self.wait_a_little(&mut pause).await?;
        }
        self.step(
            "undo-stop",
            StepStatus::Done,
            t,
            None,
            Some("Stopped".into()),
        );
        let t = self.now();
        self.before_change("ResetDisk")?;
        self.confirm_holder("ResetDisk (undo)").await?;
        if self.read_instance(iid).await?.status != "Stopped" {
            return Err(Halt::fail(ErrorInfo::new(
                Code::RollbackInProgress,
                "the instance was started again before the undo's reset; nothing was reset",
                true,
            )));
        }
        let disk = self.disk_id();
        let request_id = match self.ecs.reset_disk(&self.region, &disk, &undo, false).await {
            Ok(ack) => Some(ack.request_id),
            // A reset of an earlier delivery still runs: it is this very reset.
            Err(e) if e.is_code("InvalidOperation.DiskResetInProgress") => None,
            Err(e) => {
                let mut h = Halt::ecs(Outcome::Failed, &e);
                h.error.retryable = e.can_pass() || e.may_have_applied;
                return Err(h);
            }
        };
        self.write_mark(1, Stage::UndoReset, None).await?;
        self.step(
            "undo-reset",
            StepStatus::Done,
            t,
            request_id,
            Some(format!("disk {disk} reset to the undo snapshot {undo}")),
        );
        Ok(())
    }
}
