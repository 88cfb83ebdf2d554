//! The fleet a scenario names (instances, disks, snapshots, as JSON), and the default fleet of
//! the built-in simulator.

use super::*;

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstanceSpec {
    pub id: String,
    #[serde(default = "default_region")]
    pub region: String,
    #[serde(default)]
    pub name: String,
    /// `Running` or `Stopped`.
    #[serde(default = "default_running")]
    pub status: String,
    #[serde(default)]
    pub locks: Vec<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// StartInstance after a `StopCharging` stop fails with `OperationDenied.NoStock`.
    #[serde(default)]
    pub no_stock: bool,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DiskSpec {
    pub id: String,
    #[serde(default = "default_region")]
    pub region: String,
    #[serde(default)]
    pub name: String,
    /// The instance it is attached to (`In_use`); none means `Available`.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// `system` or `data`.
    #[serde(default = "default_system")]
    pub disk_type: String,
    #[serde(default = "default_size")]
    pub size: u32,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub locks: Vec<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnapshotSpec {
    pub id: String,
    pub disk_id: String,
    #[serde(default)]
    pub name: String,
    /// `accomplished`, `progressing` or `failed`.
    #[serde(default = "default_accomplished")]
    pub status: String,
    /// Hours before the simulator started (when `createdAt` is not given).
    #[serde(default)]
    pub age_hours: f64,
    /// When the snapshot was taken (RFC 3339); wins over `ageHours`.
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Taken by an automatic snapshot policy (`SnapshotType` `auto`): it does not count
    /// against the 256 manual snapshots of its disk.
    #[serde(default)]
    pub automatic: bool,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FleetSpec {
    #[serde(default)]
    pub instances: Vec<InstanceSpec>,
    #[serde(default)]
    pub disks: Vec<DiskSpec>,
    #[serde(default)]
    pub snapshots: Vec<SnapshotSpec>,
}

pub(super) fn default_region() -> String {
    "cn-hangzhou".into()
}
pub(super) fn default_running() -> String {
    "Running".into()
}
pub(super) fn default_system() -> String {
    "system".into()
}
pub(super) fn default_accomplished() -> String {
    "accomplished".into()
}
pub(super) fn default_size() -> u32 {
    40
}

/// The fleet the simulator starts with when no scenario says otherwise, and that the sample
/// events in `events/` refer to. All in `cn-hangzhou`.
pub fn default_fleet() -> FleetSpec {
    let opt_in: BTreeMap<String, String> =
        [("ecs-rollback".to_owned(), "enabled".to_owned())].into();
    let inst =
        |id: &str, name: &str, status: &str, tags: &BTreeMap<String, String>, locks: &[&str]| {
            InstanceSpec {
                id: id.into(),
                region: default_region(),
                name: name.into(),
                status: status.into(),
                locks: locks.iter().map(|s| (*s).to_owned()).collect(),
                tags: tags.clone(),
                no_stock: false,
            }
        };
    let disk = |id: &str, instance: &str, kind: &str, tags: &BTreeMap<String, String>| DiskSpec {
        id: id.into(),
        region: default_region(),
        name: String::new(),
        instance_id: Some(instance.into()),
        disk_type: kind.into(),
        size: if kind == "system" { 40 } else { 100 },
        category: None,
        locks: vec![],
        tags: tags.clone(),
    };
    // Fixed dates, not "hours ago": sample events with fixed trigger times keep finding a
    // snapshot taken before them.
    let snap =
        |id: &str, disk: &str, name: &str, created: &str, tags: &[(&str, &str)]| SnapshotSpec {
            id: id.into(),
            disk_id: disk.into(),
            name: name.into(),
            status: "accomplished".into(),
            age_hours: 0.0,
            created_at: Some(created.into()),
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            automatic: false,
        };
    let none = BTreeMap::new();
    FleetSpec {
        instances: vec![
            // Running, opted in on the instance: the main demo target.
            inst("i-bp1webapp00000001", "web-01", "Running", &opt_in, &[]),
            // Stopped, opted in on its disk.
            inst("i-bp1batch000000002", "batch-02", "Stopped", &none, &[]),
            // Running, not opted in: every rollback is refused.
            inst("i-bp1legacy00000003", "legacy-03", "Running", &none, &[]),
            // Opted in but locked for security: refused.
            inst(
                "i-bp1locked00000004",
                "locked-04",
                "Running",
                &opt_in,
                &["security"],
            ),
        ],
        disks: vec![
            disk(
                "d-bp1webapp0000sys01",
                "i-bp1webapp00000001",
                "system",
                &none,
            ),
            disk("d-bp1webapp0000dat01", "i-bp1webapp00000001", "data", &none),
            disk(
                "d-bp1batch00000sys02",
                "i-bp1batch000000002",
                "system",
                &opt_in,
            ),
            disk(
                "d-bp1legacy0000sys03",
                "i-bp1legacy00000003",
                "system",
                &none,
            ),
            disk(
                "d-bp1locked0000sys04",
                "i-bp1locked00000004",
                "system",
                &none,
            ),
        ],
        snapshots: vec![
            snap(
                "s-bp1webapp0sys00001",
                "d-bp1webapp0000sys01",
                "web-01-weekly",
                "2026-11-20T02:00:00Z",
                &[],
            ),
            snap(
                "s-bp1webapp0sys00002",
                "d-bp1webapp0000sys01",
                "before-release-42",
                "2026-11-26T10:00:00Z",
                &[("purpose", "pre-release")],
            ),
            snap(
                "s-bp1webapp0sys00003",
                "d-bp1webapp0000sys01",
                "web-01-nightly",
                "2026-11-28T20:00:00Z",
                &[],
            ),
            snap(
                "s-bp1webapp0dat00001",
                "d-bp1webapp0000dat01",
                "web-01-data-nightly",
                "2026-11-28T20:00:00Z",
                &[],
            ),
            snap(
                "s-bp1batch00sys00001",
                "d-bp1batch00000sys02",
                "batch-02-nightly",
                "2026-11-28T20:00:00Z",
                &[],
            ),
            snap(
                "s-bp1legacy0sys00001",
                "d-bp1legacy0000sys03",
                "legacy-03-nightly",
                "2026-11-28T20:00:00Z",
                &[],
            ),
            snap(
                "s-bp1locked0sys00001",
                "d-bp1locked0000sys04",
                "locked-04-nightly",
                "2026-11-28T20:00:00Z",
                &[],
            ),
        ],
    }
}
