//! Snapshot-consistent groups through the ECS client over loopback HTTP: the default fleet's
//! two groups of db-05, a group made and read back, IDs asked 10 at a time, pages followed,
//! the run's fence before CreateSnapshotGroup, and a refusal as the client reports it.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use ecs_rollback::ecs::client::{fenced, Fence};
use ecs_rollback::ecs::{ErrorKind, GroupDisks, Retry, SnapshotGroupRequest};
use ecs_rollback::sim::world::SnapshotGroupSpec;
use ecs_rollback::sim::{default_fleet, Scenario, Timings};

const T: Duration = Duration::from_secs(5);
const DB: &str = "i-bp1dbserv00000005";
const DB_SYS: &str = "d-bp1dbserv0000sys05";
const DB_DAT: &str = "d-bp1dbserv0000dat05";
const DB_DAT2: &str = "d-bp1dbserv0000dat15";
const GROUP_1: &str = "ssg-bp1dbserv0000000001";
const GROUP_2: &str = "ssg-bp1dbserv0000000002";

fn request<'a>(disks: GroupDisks<'a>, token: &'a str) -> SnapshotGroupRequest<'a> {
    SnapshotGroupRequest {
        disks,
        instant_access: Some(true),
        name: "db-05-before-upgrade",
        description: "made by a test",
        tags: &[],
        client_token: token,
    }
}

#[tokio::test]
async fn the_default_fleet_has_two_groups_of_db_05() {
    let sim = fast_sim();
    let base = serve(&sim).await;
    let c = http_client(&base, sim_credentials(), T);
    let groups = c
        .describe_snapshot_groups(REGION, &[], Some(DB))
        .await
        .expect("described");
    let ids: Vec<&str> = groups
        .iter()
        .map(|g| g.snapshot_group_id.as_str())
        .collect();
    assert_eq!(ids, [GROUP_2, GROUP_1], "newest first");
    let [nightly, before] = &groups[..] else {
        unreachable!()
    };
    assert_eq!(before.name, "db-05-before-migration");
    assert_eq!(nightly.name, "db-05-nightly");
    assert_eq!(
        before.creation_time.map(|t| t.to_rfc3339()).as_deref(),
        Some("2026-11-27T02:00:00+00:00")
    );
    for (g, n) in [(before, 1), (nightly, 2)] {
        assert!(g.is_accomplished(), "{g:?}");
        assert_eq!(g.instance_id.as_deref(), Some(DB));
        let members: Vec<(&str, &str, &str)> = g
            .snapshots
            .iter()
            .map(|m| {
                (
                    m.snapshot_id.as_str(),
                    m.source_disk_id.as_str(),
                    m.source_disk_type.as_str(),
                )
            })
            .collect();
        assert_eq!(
            members,
            [
                (format!("s-bp1dbserv0sys0000{n}").as_str(), DB_SYS, "system"),
                (format!("s-bp1dbserv0dat0000{n}").as_str(), DB_DAT, "data"),
                (format!("s-bp1dbserv0dat1000{n}").as_str(), DB_DAT2, "data"),
            ]
        );
        assert!(g
            .snapshots
            .iter()
            .all(|m| m.available && m.progress == "100%" && m.instant_access == Some(true)));
    }
}

#[tokio::test]
async fn a_group_made_through_the_client_reads_back() {
    let sim = fast_sim();
    let base = serve(&sim).await;
    let c = http_client(&base, sim_credentials(), T);
    let tags = [("purpose".to_owned(), "upgrade".to_owned())];
    let ask = SnapshotGroupRequest {
        tags: &tags,
        ..request(
            GroupDisks::Instance {
                instance_id: DB,
                exclude: &[],
            },
            "group-token-1",
        )
    };
    let id = c
        .create_snapshot_group(REGION, &ask)
        .await
        .expect("created");
    assert!(id.starts_with("ssg-"), "{id}");
    let found = c
        .describe_snapshot_groups(REGION, std::slice::from_ref(&id), None)
        .await
        .expect("described");
    assert_eq!(found.len(), 1);
    let g = &found[0];
    assert_eq!(
        (g.name.as_str(), g.description.as_str()),
        ("db-05-before-upgrade", "made by a test")
    );
    assert_eq!(g.instance_id.as_deref(), Some(DB));
    assert_eq!(g.snapshots.len(), 3);
    for disk in [DB_SYS, DB_DAT, DB_DAT2] {
        let m = g.member_of_disk(disk).expect("one snapshot per disk");
        assert_eq!(m.tags.get("purpose"), Some("upgrade"));
        // ESSD: usable while being taken (instant access).
        assert!(m.available);
    }
    // The same token and parameters: the same group (once the first is no longer processing).
    tokio::time::sleep(Duration::from_millis(50)).await;
    let again = c
        .create_snapshot_group(REGION, &ask)
        .await
        .expect("the same");
    assert_eq!(again, id);
    assert_eq!(
        sim.events()
            .iter()
            .filter(|e| e.action == "CreateSnapshotGroup")
            .count(),
        3,
        "one group of three disks"
    );
    // progressing, then accomplished (Timings::fast: snapshots take 60 ms).
    let mut status = g.status.clone();
    for _ in 0..100 {
        if status == "accomplished" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        status = c
            .describe_snapshot_groups(REGION, std::slice::from_ref(&id), None)
            .await
            .expect("described")[0]
            .status
            .clone();
    }
    assert_eq!(status, "accomplished");
    let all = c
        .describe_snapshot_groups(REGION, &[], Some(DB))
        .await
        .expect("described");
    assert_eq!(all.len(), 3, "the fleet's two and this one");
}

#[tokio::test]
async fn ids_go_ten_at_a_time_and_pages_are_followed() {
    // 105 groups (no members needed) on top of the default fleet's two.
    let mut fleet = default_fleet();
    for i in 0..105 {
        fleet.snapshot_groups.push(SnapshotGroupSpec {
            id: format!("ssg-bp1many{i:013}"),
            name: format!("many-{i}"),
            description: String::new(),
            instance_id: None,
            status: None,
            created_at: Some("2026-11-01T00:00:00Z".into()),
            tags: Default::default(),
            members: vec![],
        });
    }
    let sim = sim_with(Scenario {
        fleet: Some(fleet),
        timings: Timings::fast(),
        ..Scenario::default()
    });
    let base = serve(&sim).await;
    let c = http_client(&base, sim_credentials(), T);
    let all = c
        .describe_snapshot_groups(REGION, &[], None)
        .await
        .expect("all pages");
    assert_eq!(all.len(), 107);
    assert_eq!(sim.call_counts()["DescribeSnapshotGroups"], 2, "two pages");
    let mut ids: Vec<String> = (0..11).map(|i| format!("ssg-bp1many{i:013}")).collect();
    ids.push(GROUP_1.into());
    let some = c
        .describe_snapshot_groups(REGION, &ids, None)
        .await
        .expect("two chunks");
    assert_eq!(some.len(), 12);
    assert_eq!(sim.call_counts()["DescribeSnapshotGroups"], 4, "10 + 2 IDs");
}

#[tokio::test]
async fn create_snapshot_group_passes_the_fence() {
    let sim = fast_sim();
    let base = serve(&sim).await;
    let c = http_client(&base, sim_credentials(), T);
    let shut: Fence = Arc::new(|_action: &str| Err((ErrorKind::Fenced, "lapsed".to_owned())));
    let disks = [DB_SYS.to_owned()];
    let e = fenced(
        shut,
        c.create_snapshot_group(REGION, &request(GroupDisks::Disks(&disks), "")),
    )
    .await
    .expect_err("fenced");
    assert_eq!(e.kind, ErrorKind::Fenced);
    assert!(!sim.call_counts().contains_key("CreateSnapshotGroup"));
    // Reads are not fenced: the same closed fence lets DescribeSnapshotGroups through.
    let shut: Fence = Arc::new(|_action: &str| Err((ErrorKind::Fenced, "lapsed".to_owned())));
    fenced(shut, c.describe_snapshot_groups(REGION, &[], None))
        .await
        .expect("a read passes");
}

#[tokio::test]
async fn a_refusal_is_reported_with_its_code() {
    let mut fleet = default_fleet();
    for d in fleet.disks.iter_mut().filter(|d| d.id == WEB_SYS) {
        d.category = Some("cloud_efficiency".into());
    }
    // A failed member of db-05's first group fails the group.
    for s in fleet
        .snapshots
        .iter_mut()
        .filter(|s| s.id == "s-bp1dbserv0dat00001")
    {
        s.status = "failed".into();
    }
    let sim = sim_with(Scenario {
        fleet: Some(fleet),
        timings: Timings::fast(),
        ..Scenario::default()
    });
    let base = serve(&sim).await;
    let c = http_client(&base, sim_credentials(), T);
    let disks = [WEB_SYS.to_owned(), DB_SYS.to_owned()];
    let e = c
        .create_snapshot_group(REGION, &request(GroupDisks::Disks(&disks), "t-2"))
        .await
        .expect_err("not ESSD");
    assert_eq!(e.code(), Some("DiskCategory.OperationNotSupported"));
    assert_eq!(e.retry, Retry::NotRetryable);
    assert!(sim.events().is_empty());
    let g = c
        .describe_snapshot_groups(REGION, &[GROUP_1.to_owned()], None)
        .await
        .expect("described");
    assert_eq!(g[0].status, "failed");
    // A deleted member: the group lists the rest.
    assert!(sim.delete_snapshot("s-bp1dbserv0sys00002"));
    let g = c
        .describe_snapshot_groups(REGION, &[GROUP_2.to_owned()], None)
        .await
        .expect("described");
    assert_eq!(g[0].snapshots.len(), 2);
    assert!(g[0].member_of_disk(DB_SYS).is_none());
}
