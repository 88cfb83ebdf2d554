//! Polling shared by the runs of one drill: every run asks for its instance's status, and one
//! DescribeInstances call (per 100 IDs) answers all of them, so the calls per poll grow with
//! ceil(N/100), not N. A read at most `max_age` old is served from the last call. Reads that
//! guard a state-changing call bypass this and read fresh (`rollback/`).

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::ecs::model::Instance;
use crate::ecs::{EcsClient, EcsError, InstanceQuery};

/// Per region, per instance: when it was read, and what it was.
type Seen = HashMap<String, HashMap<String, (Instant, Instance)>>;

pub struct StatusCache<'a> {
    ecs: &'a EcsClient,
    max_age: Duration,
    /// Per region, the instances some run still polls. Registered before waiting for a refresh,
    /// so a refresh in flight serves everyone queued behind it.
    wanted: Mutex<HashMap<String, BTreeSet<String>>>,
    /// Per region, the last status seen of each instance. Held through a refresh, so concurrent
    /// askers wait for it instead of calling too.
    seen: tokio::sync::Mutex<Seen>,
}

impl<'a> StatusCache<'a> {
    pub fn new(ecs: &'a EcsClient, max_age: Duration) -> Self {
        Self {
            ecs,
            max_age,
            wanted: Mutex::new(HashMap::new()),
            seen: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    fn wanted_in(&self, region: &str) -> Vec<String> {
        self.wanted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(region)
            .map(|w| w.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The instance's status, from a call at most `max_age` old. `None`: not found.
    pub async fn get(&self, region: &str, id: &str) -> Result<Option<Instance>, EcsError> {
        self.wanted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(region.to_owned())
            .or_default()
            .insert(id.to_owned());
        let mut seen = self.seen.lock().await;
        let r = seen.entry(region.to_owned()).or_default();
        if let Some((at, inst)) = r.get(id) {
            if at.elapsed() < self.max_age {
                return Ok(Some(inst.clone()));
            }
        }
        let q = InstanceQuery {
            ids: self.wanted_in(region),
            ..Default::default()
        };
        let found = self.ecs.describe_instances(region, &q).await?;
        let now = Instant::now();
        for i in found {
            r.insert(i.instance_id.clone(), (now, i));
        }
        Ok(r.get(id).map(|(_, i)| i.clone()))
    }

    /// Stores a fresh read, so the next poll of any run sees it.
    pub async fn put(&self, region: &str, inst: &Instance) {
        let mut seen = self.seen.lock().await;
        seen.entry(region.to_owned())
            .or_default()
            .insert(inst.instance_id.clone(), (Instant::now(), inst.clone()));
    }

    /// A run that is done polls no more.
    pub async fn forget(&self, region: &str, id: &str) {
        if let Some(w) = self
            .wanted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(region)
        {
            w.remove(id);
        }
        if let Some(r) = self.seen.lock().await.get_mut(region) {
            r.remove(id);
        }
    }
}
