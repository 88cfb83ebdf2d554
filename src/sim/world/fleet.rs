//! The fleet a scenario names (instances, disks, snapshots, snapshot-consistent groups, as
//! JSON), and the default fleet of the built-in simulator.

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

/// A snapshot-consistent group (ecs-snapshot-groups-and-cloud-assistant.md §2) whose member
/// snapshots are among the fleet's `snapshots`. Its status follows its members' (a `failed`
/// member fails it, a `progressing` one keeps it `progressing`) unless `status` pins it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnapshotGroupSpec {
    /// `ssg-…`.
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Shown only when every member comes from this one instance; absent, it is the members'
    /// instance when they share one.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// `progressing`, `accomplished` or `failed`: pins the group's status; absent, the members'
    /// statuses decide it.
    #[serde(default)]
    pub status: Option<String>,
    /// When the group was made (RFC 3339); absent, when the simulator started.
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    pub members: Vec<SnapshotGroupMemberSpec>,
}

/// One member of a [`SnapshotGroupSpec`]: a snapshot of the fleet's `snapshots`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnapshotGroupMemberSpec {
    pub snapshot_id: String,
    /// The member was deleted since the group was made (the snapshot need not be in the
    /// fleet): the group lists the others.
    #[serde(default)]
    pub deleted: bool,
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
    #[serde(default)]
    pub snapshot_groups: Vec<SnapshotGroupSpec>,
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
    let essd = |id: &str, instance: &str, kind: &str| DiskSpec {
        category: Some("cloud_essd".into()),
        ..disk(id, instance, kind, &BTreeMap::new())
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
    // db-05's two snapshot-consistent groups of its three ESSD disks: one member per disk, taken
    // at the group's time.
    let db_disks = [
        (DB_SYS, "sys", "s-bp1dbserv0sys0000"),
        (DB_DAT, "dat05", "s-bp1dbserv0dat0000"),
        (DB_DAT2, "dat15", "s-bp1dbserv0dat1000"),
    ];
    let db_groups = [
        (
            "ssg-bp1dbserv0000000001",
            "db-05-before-migration",
            "2026-11-27T02:00:00Z",
            1,
        ),
        (
            "ssg-bp1dbserv0000000002",
            "db-05-nightly",
            "2026-11-28T20:00:00Z",
            2,
        ),
    ];
    let db_snapshots = db_groups.iter().flat_map(|(_, name, at, n)| {
        db_disks.iter().map(move |(disk, part, prefix)| {
            snap(
                &format!("{prefix}{n}"),
                disk,
                &format!("{name}-{part}"),
                at,
                &[],
            )
        })
    });
    let snapshot_groups = db_groups
        .iter()
        .map(|(id, name, at, n)| SnapshotGroupSpec {
            id: (*id).into(),
            name: (*name).into(),
            description: String::new(),
            instance_id: Some(DB.into()),
            status: None,
            created_at: Some((*at).into()),
            tags: BTreeMap::new(),
            members: db_disks
                .iter()
                .map(|(_, _, prefix)| SnapshotGroupMemberSpec {
                    snapshot_id: format!("{prefix}{n}"),
                    deleted: false,
                })
                .collect(),
        })
        .collect();
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
            // Running, opted in on the instance, three ESSD disks and two snapshot-consistent
            // groups of them.
            inst(DB, "db-05", "Running", &opt_in, &[]),
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
            essd(DB_SYS, DB, "system"),
            essd(DB_DAT, DB, "data"),
            essd(DB_DAT2, DB, "data"),
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
        ]
        .into_iter()
        .chain(db_snapshots)
        .collect(),
        snapshot_groups,
    }
}

/// db-05 of the default fleet and its disks (all `cloud_essd`).
const DB: &str = "i-bp1dbserv00000005";
const DB_SYS: &str = "d-bp1dbserv0000sys05";
const DB_DAT: &str = "d-bp1dbserv0000dat05";
const DB_DAT2: &str = "d-bp1dbserv0000dat15";
