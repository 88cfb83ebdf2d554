//! The operator's switches kept in ECS, where every invocation reads them: tags on a named
//! control resource in each region, the key pair `ecs-rollback-control` (`ECS_ROLLBACK_CONTROL_KEY_PAIR`).
//! A key pair costs nothing, is named by its name (its ID for the tag API), and ECS tags it
//! like a disk (`ResourceType=keypair`, ListTagResources / TagResources:
//! <https://www.alibabacloud.com/help/en/ecs/developer-reference/api-ecs-2014-05-26-listtagresources>).
//!
//! - `ecs-rollback:paused` = `<unix seconds> <who>[: <reason>]`: while it is there every
//!   rollback in the region is refused `Paused` before anything changes (drills too).
//! - `ecs-rollback:cap:<rule>` = the admissions of a capped policy rule within its window,
//!   12 characters each (the time in base 36, 7 characters, then 5 hex characters of the key's
//!   digest), at most 10 in the 128 characters a tag value holds.
//!
//! Pure: tag names and values; the reads and writes are the handler's and the CLI's.

use sha2::{Digest, Sha256};

pub const PAUSED_TAG: &str = "ecs-rollback:paused";
pub const CAP_PREFIX: &str = "ecs-rollback:cap:";
/// The resource type of the control resource in the tag API.
pub const CONTROL_TYPE: &str = "keypair";
pub const DEFAULT_CONTROL: &str = "ecs-rollback-control";
/// The tag on a disk naming who approved its rollback, when, and the approval's nonce: what
/// makes an approval usable once. Outside the ledger's own tags (`ledger.rs`).
pub const APPROVAL_TAG: &str = "ecs-rollback:approval";

/// A region's pause, as its tag says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paused {
    pub since: i64,
    pub by: String,
    pub reason: Option<String>,
}

/// Text safe for a tag value: no control characters, no `http(s)://`, not starting with
/// `aliyun` or `acs:` (ECS refuses those), cut to `max` characters.
pub fn tag_safe(raw: &str, max: usize) -> String {
    let mut s: String = raw
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .replace("://", "-");
    let lower = s.to_ascii_lowercase();
    if lower.starts_with("aliyun") || lower.starts_with("acs:") {
        s.insert(0, '_');
    }
    s.chars().take(max).collect()
}

impl Paused {
    pub fn encode(&self) -> String {
        let mut v = format!(
            "{} {}",
            self.since,
            tag_safe(&self.by, 40).replace(' ', "_")
        );
        if let Some(r) = &self.reason {
            v.push_str(": ");
            v.push_str(&tag_safe(r, 128));
        }
        v.chars().take(128).collect()
    }

    /// Any value means paused (a hand-written one too): the switch fails safe.
    pub fn decode(value: &str) -> Self {
        let (head, reason) = match value.split_once(": ") {
            Some((h, r)) => (h, Some(r.to_owned())),
            None => (value, None),
        };
        let mut parts = head.split_whitespace();
        let since = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        let by = parts.next().unwrap_or("unknown").to_owned();
        Self { since, by, reason }
    }
}

pub fn cap_tag(rule: &str) -> String {
    format!("{CAP_PREFIX}{rule}")
}

/// One admission under a cap.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Admission {
    pub at: i64,
    pub key: String,
}

const ENTRY: usize = 12;

/// The 5 hex characters of a key's SHA-256 an admission keeps.
pub fn key_mark(key: &str) -> String {
    let d = Sha256::digest(key.as_bytes());
    d.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        .chars()
        .take(5)
        .collect()
}

fn base36(mut n: u64) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = vec![b'0'; 7];
    for slot in out.iter_mut().rev() {
        *slot = digits[(n % 36) as usize];
        n /= 36;
    }
    String::from_utf8(out).unwrap_or_default()
}

pub fn encode_admissions(list: &[Admission]) -> String {
    list.iter()
        .map(|a| format!("{}{}", base36(a.at.max(0) as u64), a.key))
        .collect()
}

/// Entries that cannot be read are dropped (a hand-edited value does not block the cap).
pub fn decode_admissions(value: &str) -> Vec<Admission> {
    let bytes = value.as_bytes();
    bytes
        .chunks(ENTRY)
        .filter(|c| c.len() == ENTRY)
        .filter_map(|c| {
            let s = std::str::from_utf8(c).ok()?;
            let at = i64::from_str_radix(&s[..7], 36).ok()?;
            Some(Admission {
                at,
                key: s[7..].to_owned(),
            })
        })
        .collect()
}

/// What a cap says of one more admission.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CapCheck {
    /// Already admitted in the window (a redelivery): nothing to write.
    AlreadyIn,
    /// Admitted: the value to write.
    Admit(String),
    /// Full: the admissions in the window, and when the oldest leaves it.
    Full { count: usize, frees_at: i64 },
}

/// Whether `key` may be admitted at `now` under at most `max` per `window` seconds, given the
/// tag's value.
pub fn cap_check(value: Option<&str>, key: &str, now: i64, max: u32, window: u64) -> CapCheck {
    let mark = key_mark(key);
    let mut live: Vec<Admission> = value
        .map(decode_admissions)
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a.at > now - window as i64)
        .collect();
    live.sort();
    if live.iter().any(|a| a.key == mark) {
        return CapCheck::AlreadyIn;
    }
    if live.len() >= max as usize {
        return CapCheck::Full {
            count: live.len(),
            frees_at: live.first().map(|a| a.at + window as i64).unwrap_or(now),
        };
    }
    live.push(Admission { at: now, key: mark });
    CapCheck::Admit(encode_admissions(&live))
}

/// Whether `key` is among the first `max` admissions of the window (after a write and its
/// settle: a concurrent writer may have replaced the value).
pub fn cap_holds(value: Option<&str>, key: &str, now: i64, max: u32, window: u64) -> Option<bool> {
    let mark = key_mark(key);
    let mut live: Vec<Admission> = value
        .map(decode_admissions)
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a.at > now - window as i64)
        .collect();
    live.sort();
    let pos = live.iter().position(|a| a.key == mark)?;
    Some(pos < max as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paused_round_trips_and_any_value_pauses() {
        let p = Paused {
            since: 1_800_000_000,
            by: "alice smith".into(),
            reason: Some("incident 42: https://x".into()),
        };
        let v = p.encode();
        assert!(v.len() <= 128 && !v.contains("://"), "{v}");
        let d = Paused::decode(&v);
        assert_eq!((d.since, d.by.as_str()), (1_800_000_000, "alice_smith"));
        assert_eq!(d.reason.as_deref(), Some("incident 42: https-x"));
        assert_eq!(Paused::decode("yes").by, "unknown");
        assert!(tag_safe("acs:x", 10).starts_with('_'));
    }

    #[test]
    fn a_cap_admits_max_per_window_and_forgets_the_old() {
        let (max, window) = (3, 3600);
        let mut value: Option<String> = None;
        for (i, now) in [1_000_000i64, 1_000_010, 1_000_020].iter().enumerate() {
            match cap_check(value.as_deref(), &format!("k{i}"), *now, max, window) {
                CapCheck::Admit(v) => value = Some(v),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(value.as_deref().map(str::len), Some(36));
        assert_eq!(
            cap_check(value.as_deref(), "k1", 1_000_030, max, window),
            CapCheck::AlreadyIn
        );
        assert_eq!(
            cap_check(value.as_deref(), "k9", 1_000_030, max, window),
            CapCheck::Full {
                count: 3,
                frees_at: 1_003_600
            }
        );
        // The first leaves the window.
        assert!(matches!(
            cap_check(value.as_deref(), "k9", 1_003_601, max, window),
            CapCheck::Admit(_)
        ));
        assert_eq!(
            cap_holds(value.as_deref(), "k2", 1_000_030, 3, window),
            Some(true)
        );
        assert_eq!(
            cap_holds(value.as_deref(), "k2", 1_000_030, 2, window),
            Some(false)
        );
        assert_eq!(
            cap_holds(value.as_deref(), "k7", 1_000_030, 3, window),
            None
        );
        // Ten fill a tag value exactly.
        let ten: Vec<Admission> = (0..10)
            .map(|i| Admission {
                at: 1_900_000_000 + i,
                key: key_mark(&i.to_string()),
            })
            .collect();
        let v = encode_admissions(&ten);
        assert_eq!(v.len(), 120);
        assert_eq!(decode_admissions(&v), ten);
    }
}
