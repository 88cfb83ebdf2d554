//! A dry run: every check plus the DryRun of each call that can be dry-run now; nothing
//! changes.

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
            self.step(
                "reset",
                StepStatus::Planned,
                t,
                None,
                Some(format!(
                    "ResetDisk {disk} to {} once Stopped (cannot be dry-run while Running)",
                    plan.snapshot_id
                )),
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
            Some(_) if plan.end_running => {
                self.step(
                    "start",
                    StepStatus::Planned,
                    t,
                    None,
                    Some("StartInstance after the reset".into()),
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
