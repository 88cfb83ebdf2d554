//! Polling shared by the runs of one drill: every run asks for its instance's status, and one
//! DescribeInstances call (per 100 IDs) answers all of them, so the calls per poll grow with
//! ceil(N/100), not N. A read at most `max_age` old is served from the last call. Reads that
//! guard a state-changing call bypass this and read fresh (`rollback.rs`).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::ecs::model::Instance;
use crate::ecs::{EcsClient, EcsError, InstanceQuery};

#[derive(Default)]
struct Region {
    /// Instances some run still polls.
    wanted: BTreeSet<String>,
    seen: HashMap<String, (Instant, Instance)>,
}

pub struct StatusCache<'a> {
    ecs: &'a EcsClient,
    max_age: Duration,
    regions: tokio::sync::Mutex<HashMap<String, Region>>,
}

impl<'a> StatusCache<'a> {
    pub fn new(ecs: &'a EcsClient, max_age: Duration) -> Self {
        Self {
            ecs,
            max_age,
            regions: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The instance's status, from a call at most `max_age` old. `None`: not found. Holding the
    /// lock through the call makes concurrent askers wait for it instead of calling too.
    pub async fn get(&self, region: &str, id: &str) -> Result<Option<Instance>, EcsError> {
        let mut regions = self.regions.lock().await;
        let r = regions.entry(region.to_owned()).or_default();
        r.wanted.insert(id.to_owned());
        if let Some((at, inst)) = r.seen.get(id) {
            if at.elapsed() < self.max_age {
                return Ok(Some(inst.clone()));
            }
        }
        let q = InstanceQuery {
            ids: r.wanted.iter().cloned().collect(),
            ..Default::default()
        };
        let found = self.ecs.describe_instances(region, &q).await?;
        let now = Instant::now();
        for i in found {
            r.seen.insert(i.instance_id.clone(), (now, i));
        }
        Ok(r.seen.get(id).map(|(_, i)| i.clone()))
    }

    /// Stores a fresh read, so the next poll of any run sees it.
    pub async fn put(&self, region: &str, inst: &Instance) {
        let mut regions = self.regions.lock().await;
        let r = regions.entry(region.to_owned()).or_default();
        r.seen
            .insert(inst.instance_id.clone(), (Instant::now(), inst.clone()));
    }

    /// A run that is done polls no more.
    pub async fn forget(&self, region: &str, id: &str) {
        if let Some(r) = self.regions.lock().await.get_mut(region) {
            r.wanted.remove(id);
            r.seen.remove(id);
        }
    }
}
