//! Reading ECS: the disk with its ledger, the instance, the snapshots; polls inside waits
//! (shared by a drill's runs through the status cache), fresh reads before a call.

use super::*;

impl Run<'_> {
    pub(super) fn disk_id(&self) -> String {
        self.target.disk_id.clone().unwrap_or_default()
    }

    pub(super) fn instance_id(&self) -> Option<String> {
        self.target.instance_id.clone()
    }

    pub(super) async fn read_instance(&self, id: &str) -> Res<Instance> {
        let q = InstanceQuery {
            ids: vec![id.to_owned()],
            ..Default::default()
        };
        let found = self
            .ecs
            .describe_instances(&self.region, &q)
            .await
            .map_err(|e| Halt::ecs(self.failed_or_rejected(), &e))?;
        found
            .into_iter()
            .find(|i| i.instance_id == id)
            .ok_or_else(|| Halt {
                outcome: self.failed_or_rejected(),
                error: ErrorInfo::new(
                    "InvalidInstanceId.NotFound",
                    format!("instance {id} not found in {}", self.region),
                    false,
                ),
            })
    }

    pub(super) async fn read_disk(&self, id: &str) -> Res<Disk> {
        let q = DiskQuery {
            ids: vec![id.to_owned()],
            ..Default::default()
        };
        let found = self
            .ecs
            .describe_disks(&self.region, &q)
            .await
            .map_err(|e| Halt::ecs(self.failed_or_rejected(), &e))?;
        found
            .into_iter()
            .find(|d| d.disk_id == id)
            .ok_or_else(|| Halt {
                outcome: self.failed_or_rejected(),
                error: ErrorInfo::new(
                    "InvalidDiskId.NotFound",
                    format!("disk {id} not found in {}", self.region),
                    false,
                ),
            })
    }

    /// Reads the instance inside a wait: a failure a retry can fix only costs one poll
    /// (`Ok(None)`: it slept, read again), until the wait's end.
    pub(super) async fn poll_instance(
        &mut self,
        id: &str,
        until: Instant,
        pause: &mut Duration,
    ) -> Res<Option<Instance>> {
        let read = match self.cache {
            Some(cache) => match cache.get(&self.region, id).await {
                Ok(Some(i)) => Ok(i),
                Ok(None) => Err(Halt {
                    outcome: self.failed_or_rejected(),
                    error: ErrorInfo::new(
                        "InvalidInstanceId.NotFound",
                        format!("instance {id} not found in {}", self.region),
                        false,
                    ),
                }),
                Err(e) => Err(Halt::ecs(self.failed_or_rejected(), &e)),
            },
            None => self.read_instance(id).await,
        };
        match read {
            Ok(i) => Ok(Some(i)),
            Err(h) if h.error.retryable && Instant::now() < until => {
                tracing::warn!(error = %h.error.message, "reading the instance failed; waiting, then reading again");
                self.wait_a_little(pause).await?;
                Ok(None)
            }
            Err(h) => Err(h),
        }
    }

    /// How to wait for a step that took `learned` ms on this disk last time (if known).
    pub(super) fn cadence(&self, learned: Option<u64>) -> cadence::Cadence {
        cadence::Cadence {
            expected: learned.map(Duration::from_millis),
            dense: self.s.poll.initial,
            max: self.s.poll.max,
        }
    }

    /// Between two reads of a wait that began at `since`: sleeps as long as `cadence` says for
    /// that point of the step (the claim is renewed beside the run: `lease.rs`).
    pub(super) async fn wait_on(&mut self, cadence: &cadence::Cadence, since: Instant) -> Res<()> {
        self.sleep(cadence.pause(since.elapsed())).await
    }

    /// Between two polls: sleep `pause`, then grow it.
    pub(super) async fn wait_a_little(&mut self, pause: &mut Duration) -> Res<()> {
        self.sleep(*pause).await?;
        *pause = self.s.poll.next(*pause);
        Ok(())
    }

    /// Every wait of a run that holds the disk: sleeps `pause`, and ends the run at once
    /// (`ClaimLapsed`, retryable) when its lease lapses meanwhile (renewals refused or throttled
    /// past the heartbeat timeout): another delivery may hold the disk by then, so this one
    /// changes nothing more and says so, rather than waiting on until its deadline.
    pub(super) async fn sleep(&self, pause: Duration) -> Res<()> {
        let end = Instant::now() + pause;
        loop {
            self.lease_held()?;
            let wake = self
                .lease
                .lapses_at()
                .map_or(end, |l| l.max(Instant::now()).min(end));
            tokio::time::sleep_until(wake.into()).await;
            if Instant::now() >= end {
                return self.lease_held();
            }
        }
    }

    /// `Err(ClaimLapsed)` once this delivery's lease is lost.
    pub(super) fn lease_held(&self) -> Res<()> {
        if !self.lease.lapsed("wait") {
            return Ok(());
        }
        Err(Halt {
            outcome: self.failed_or_rejected(),
            error: ErrorInfo::new(
                Code::ClaimLapsed,
                format!(
                    "this delivery's claim on the disk could not be renewed within the heartbeat timeout ({} s), so it changed nothing more and stopped waiting; the next delivery resumes from the ledger",
                    self.s.heartbeat_timeout.as_secs()
                ),
                true,
            ),
        })
    }

    /// Right before a state-changing call: a fresh read when the poll may have been served from
    /// the shared cache (it is stored back for the others). `true` when `status` still holds.
    pub(super) async fn still(&mut self, id: &str, status: &str) -> Res<bool> {
        let Some(cache) = self.cache else {
            return Ok(true);
        };
        let fresh = self.read_instance(id).await?;
        cache.put(&self.region, &fresh).await;
        Ok(fresh.status == status)
    }

    /// Reads the disk (with its tags, the ledger), its instance and its snapshots, each read
    /// sent as soon as what it needs is known (issue 26): a request naming the disk reads the
    /// disk, its snapshots and the instance it names at once; one naming the instance alone
    /// reads the instance beside its disks, then the snapshots. The instance read is the
    /// disk's own: a guess that turns out to be another instance's (the disk moved, or is
    /// detached) is dropped and the disk's instance read after.
    pub(super) async fn observe(&mut self) -> Res<Seen> {
        let named = self.req.instance.as_ref().map(ToString::to_string);
        let guess = async {
            match &named {
                Some(id) => Some(self.read_instance(id).await),
                None => None,
            }
        };
        let (disk, guessed, snapshots) = match &self.req.disk {
            Some(id) => {
                let (disk, guessed, snapshots) = tokio::join!(
                    self.read_disk(id.as_str()),
                    guess,
                    self.read_snapshots(id.as_str())
                );
                (disk?, guessed, Some(snapshots))
            }
            None => {
                let Some(instance) = &self.req.instance else {
                    return Err(Halt::reject(Code::InvalidRequest, "diskId: missing", false));
                };
                let (disk, guessed) = tokio::join!(self.system_disk(instance.as_str()), guess);
                (disk?, guessed, None)
            }
        };
        self.target.disk_id = Some(disk.disk_id.clone());
        let instance_id = if disk.instance_id.is_empty() {
            self.req.instance.as_ref().map(ToString::to_string)
        } else {
            Some(disk.instance_id.clone())
        };
        let attached = (!disk.instance_id.is_empty()).then(|| disk.instance_id.clone());
        // The guess, when it is the disk's instance; else the disk's instance read now (beside
        // the snapshots, if they wait for the disk's ID).
        let guessed = guessed.filter(|_| attached.is_some() && attached == named);
        let read_instance = async {
            match (&attached, guessed) {
                (Some(_), Some(read)) => read.map(Some),
                (Some(id), None) => self.read_instance(id).await.map(Some),
                (None, _) => Ok(None),
            }
        };
        let read_snapshots = async {
            match snapshots {
                Some(read) => read,
                None => self.read_snapshots(&disk.disk_id).await,
            }
        };
        let (instance, snapshots) = tokio::join!(read_instance, read_snapshots);
        let (instance, snapshots) = (instance?, snapshots?);
        self.target.instance_id = instance_id;
        Ok(Seen {
            disk,
            instance,
            snapshots,
        })
    }

    /// The instance's system disk (a request that names the instance alone).
    async fn system_disk(&self, instance: &str) -> Res<Disk> {
        let q = DiskQuery {
            instance_id: Some(instance.to_owned()),
            disk_type: Some("system".into()),
            ..Default::default()
        };
        let disks = self
            .ecs
            .describe_disks(&self.region, &q)
            .await
            .map_err(|e| Halt::ecs(Outcome::Rejected, &e))?;
        disks
            .into_iter()
            .find(|d| d.disk_type == "system")
            .ok_or_else(|| {
                Halt::reject(
                    "InvalidInstanceId.NotFound",
                    format!(
                        "instance {instance} has no system disk in {} (does it exist?)",
                        self.region
                    ),
                    false,
                )
            })
    }

    /// The disk's snapshots.
    async fn read_snapshots(&self, disk: &str) -> Res<Vec<Snapshot>> {
        let q = SnapshotQuery {
            disk_id: Some(disk.to_owned()),
            ..Default::default()
        };
        self.ecs
            .describe_snapshots(&self.region, &q)
            .await
            .map_err(|e| Halt::ecs(self.failed_or_rejected(), &e))
    }

    /// One read of the instance for `start`: fresh when a shared poll could have served it.
    pub(super) async fn read_for_start(&self, iid: &str) -> Res<Instance> {
        if let Some(cache) = self.cache {
            if let Ok(Some(i)) = cache.get(&self.region, iid).await {
                if i.status != "Stopped" {
                    return Ok(i);
                }
            }
        }
        let fresh = self.read_instance(iid).await?;
        if let Some(cache) = self.cache {
            cache.put(&self.region, &fresh).await;
        }
        Ok(fresh)
    }
}
