//! A dry run: every check plus the DryRun of every state-changing call ECS lets DryRun
//! (StopInstance, ResetDisk, StartInstance; CreateSnapshot has none); nothing changes.
//!
//! ECS answers a DryRun after the request's checks and, for ResetDisk and StartInstance, the
//! instance's state (ecs-api.md §6: DryRun checks "whether the RAM user has the required
//! authorization", ResetDisk's also the "resource state limits"). So a call the state forbids
//! now (ResetDisk or StartInstance while the instance runs) is dry-run all the same: ECS's
//! `IncorrectInstanceStatus` says the request got past its parameter and authorization checks
//! and only the state, which the run will change first, stopped it; the step is `planned`, and
//! says so. A refusal for anything else (`Forbidden.RAM`, `NoPermission`, a bad snapshot)
//! rejects the dry run as it would the real one. That authorization comes before the state
//! check is inferred from those pages (RAM is the gateway's, before the operation runs), not
//! stated by them.

use super::*;

impl Run<'_> {
    /// Every check, plus the DryRun of each call that can be dry-run now. Nothing changes.
    pub(super) async fn dry_run(&mut self, seen: &Seen, plan: &Plan) -> Res<Outcome> {
        let disk = self.disk_id();
        let running = seen
            .instance
            .as_ref()
            .is_some_and(|i| i.status == "Running");
        let opts = StopOptions {
            force_stop: self.req.force_stop,
            dry_run: true,
            ..Default::default()
        };
        if let Some(iid) = self.instance_id().filter(|_| running) {
            let t = Utc::now();
            let ack = self
                .ecs
                .stop_instance(&self.region, &iid, &opts)
                .await
                .map_err(|e| Halt::ecs(Outcome::Rejected, &e))?;
            self.step(
                "stop",
                StepStatus::DryRun,
                t,
                Some(ack.request_id),
                Some("StopInstance DryRun passed (StoppedMode=KeepCharging)".into()),
            );
            let t = Utc::now();
            let probe = self
                .ecs
                .reset_disk(&self.region, &disk, &plan.snapshot_id, true)
                .await;
            let (status, request_id, note) = state_only(probe, "ResetDisk")?;
            self.step(
                "reset",
                status,
                t,
                request_id,
                Some(format!("ResetDisk {disk} to {}: {note}", plan.snapshot_id)),
            );
        } else {
            let t = Utc::now();
            self.step(
                "stop",
                StepStatus::Skipped,
                t,
                None,
                Some("the instance is not running".into()),
            );
            let t = Utc::now();
            let ack = self
                .ecs
                .reset_disk(&self.region, &disk, &plan.snapshot_id, true)
                .await
                .map_err(|e| Halt::ecs(Outcome::Rejected, &e))?;
            self.step(
                "reset",
                StepStatus::DryRun,
                t,
                Some(ack.request_id),
                Some(format!(
                    "ResetDisk {disk} to {} DryRun passed",
                    plan.snapshot_id
                )),
            );
        }
        if self.req.preserve_current.unwrap_or(self.s.preserve_current) {
            // CreateSnapshot has no DryRun: said, not tried.
            self.step(
                "preserve",
                StepStatus::Skipped,
                Utc::now(),
                None,
                Some(format!(
                    "would snapshot {disk} after the stop and before the reset (preserveCurrent); CreateSnapshot has no dry run"
                )),
            );
        }
        self.dry_run_start(plan, running).await?;
        Ok(Outcome::DryRun)
    }

    /// The start's part of a dry run: its DryRun when the instance is stopped now and is to
    /// end running; planned when it runs now; skipped when it stays stopped.
    async fn dry_run_start(&mut self, plan: &Plan, running: bool) -> Res<()> {
        let t = Utc::now();
        match self.instance_id() {
            Some(iid) if plan.end_running && !running => {
                let ack = self
                    .ecs
                    .start_instance(&self.region, &iid, true)
                    .await
                    .map_err(|e| Halt::ecs(Outcome::Rejected, &e))?;
                self.step(
                    "start",
                    StepStatus::DryRun,
                    t,
                    Some(ack.request_id),
                    Some("StartInstance DryRun passed".into()),
                );
            }
            Some(iid) if plan.end_running => {
                let probe = self.ecs.start_instance(&self.region, &iid, true).await;
                let (status, request_id, note) = state_only(probe, "StartInstance")?;
                self.step(
                    "start",
                    status,
                    t,
                    request_id,
                    Some(format!("StartInstance after the reset: {note}")),
                );
            }
            _ => self.step(
                "start",
                StepStatus::Skipped,
                t,
                None,
                Some("the instance stays stopped".into()),
            ),
        }
        Ok(())
    }
}

/// A DryRun sent while the instance is in a state the call needs changed first: passed
/// (`dry-run`), refused for the instance's state alone (`planned`: the request and its
/// authorization passed), or refused for anything else (the dry run is rejected).
fn state_only(
    probe: Result<crate::ecs::model::Ack, crate::ecs::EcsError>,
    action: &str,
) -> Res<(StepStatus, Option<String>, String)> {
    match probe {
        Ok(ack) => Ok((
            StepStatus::DryRun,
            Some(ack.request_id),
            "DryRun passed".into(),
        )),
        Err(e) if e.code.as_deref() == Some("IncorrectInstanceStatus") => Ok((
            StepStatus::Planned,
            e.request_id.clone(),
            format!(
                "DryRun refused only for the instance's present state ({action} is allowed: its parameters and authorization passed); runs once the state allows"
            ),
        )),
        Err(e) => Err(Halt::ecs(Outcome::Rejected, &e)),
    }
}
