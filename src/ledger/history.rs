//! What a disk's finished rollbacks leave in its tags, beside the run record: the history of
//! keys (`ecs-rollback:history`) and the durations the last one measured
//! (`ecs-rollback:durations`). Formats only; `ledger.rs` decides from them.

use super::{short, HISTORY_KEYS};

/// The `ecs-rollback:durations` tag: milliseconds each step took, when it was measured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Durations {
    pub stop: Option<u64>,
    pub reset: Option<u64>,
    pub start: Option<u64>,
    pub snapshot: Option<u64>,
}

impl Durations {
    const FIELDS: [&'static str; 4] = ["s", "r", "a", "u"];

    fn slots(&mut self) -> [&mut Option<u64>; 4] {
        [
            &mut self.stop,
            &mut self.reset,
            &mut self.start,
            &mut self.snapshot,
        ]
    }

    /// At most 4 × 12 characters: within a tag value.
    pub fn encode(&self) -> String {
        let mut me = *self;
        Self::FIELDS
            .iter()
            .zip(me.slots())
            .filter_map(|(k, v)| v.map(|ms| format!("{k}={ms}")))
            .collect::<Vec<_>>()
            .join(";")
    }

    /// Lenient: a field that does not read is unknown, never an error.
    pub fn decode(v: &str) -> Self {
        let mut d = Self::default();
        for part in v.split(';') {
            let Some((k, ms)) = part.split_once('=') else {
                continue;
            };
            if let Some(i) = Self::FIELDS.iter().position(|f| *f == k) {
                *d.slots()[i] = ms.parse().ok();
            }
        }
        d
    }

    /// `newer`'s measurements over these.
    pub fn merge(mut self, mut newer: Durations) -> Self {
        for (old, new) in self.slots().into_iter().zip(newer.slots()) {
            if new.is_some() {
                *old = *new;
            }
        }
        self
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// The `ecs-rollback:history` tag.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    /// Unix time of the last successful rollback.
    pub last_success: Option<i64>,
    /// Newest first: (12-hex key prefix, failed).
    pub keys: Vec<(String, bool)>,
    /// Unix time of the last `ecs-rollback release`; the key it released is the newest one
    /// marked failed.
    pub released: Option<i64>,
}

impl History {
    pub fn encode(&self) -> String {
        let keys: Vec<String> = self
            .keys
            .iter()
            .take(HISTORY_KEYS)
            .map(|(k, failed)| if *failed { format!("{k}x") } else { k.clone() })
            .collect();
        let mut v = format!("t={};k={}", self.last_success.unwrap_or(0), keys.join(","));
        if let Some(r) = self.released {
            // At most 125 characters: t (12), seven keys with their marks (97), r (13).
            v.push_str(&format!(";r={r}"));
        }
        v
    }

    pub fn decode(value: &str) -> Self {
        let mut h = History::default();
        for kv in value.split(';') {
            match kv.split_once('=') {
                Some(("t", t)) => h.last_success = t.parse().ok().filter(|t| *t > 0),
                Some(("r", r)) => h.released = r.parse().ok().filter(|r| *r > 0),
                Some(("k", ks)) => {
                    h.keys = ks
                        .split(',')
                        .filter(|k| !k.is_empty())
                        .map(|k| match k.strip_suffix('x') {
                            Some(k) => (k.to_owned(), true),
                            None => (k.to_owned(), false),
                        })
                        .collect()
                }
                _ => {}
            }
        }
        h
    }

    /// Adds a finished key, newest first, keeping [`HISTORY_KEYS`].
    pub fn push(&mut self, digest: &str, failed: bool, now: i64) {
        let k = short(digest, 12);
        self.keys.retain(|(x, _)| x != &k);
        self.keys.insert(0, (k, failed));
        self.keys.truncate(HISTORY_KEYS);
        if !failed {
            self.last_success = Some(now);
        }
    }

    /// Remembers the key of a run taken over past its reset (the run tag is overwritten), so a
    /// redelivery of it never resets again; the last success stays as it was.
    pub fn remember(&mut self, key: &str, failed: bool) {
        if self.find(key).is_none() {
            self.keys.insert(0, (short(key, 12), failed));
            self.keys.truncate(HISTORY_KEYS);
        }
    }

    /// `Some(failed)` when the key finished before.
    pub fn find(&self, digest: &str) -> Option<bool> {
        let k = short(digest, 12);
        self.keys.iter().find(|(x, _)| *x == k).map(|(_, f)| *f)
    }
}
