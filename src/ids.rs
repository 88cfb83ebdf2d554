//! Resource IDs, parsed once at the edge: a value of these types has the right shape, so no
//! malformed ID ever reaches a call to ECS.

use std::fmt;

use serde::Serialize;

/// Checks `<prefix>-<8 to 40 lowercase letters or digits>`.
fn parse_id(prefix: &str, raw: &str) -> Result<String, String> {
    let Some(rest) = raw.strip_prefix(prefix).and_then(|r| r.strip_prefix('-')) else {
        return Err(format!("must start with \"{prefix}-\""));
    };
    if !(8..=40).contains(&rest.len()) {
        return Err(format!(
            "\"{prefix}-\" must be followed by 8 to 40 characters"
        ));
    }
    if !rest
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err("may hold only lowercase letters and digits after the prefix".into());
    }
    Ok(raw.to_owned())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(raw: &str) -> Result<Self, String> {
                parse_id($prefix, raw).map(Self)
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// `i-…`
    InstanceId,
    "i"
);
id_type!(
    /// `d-…`
    DiskId,
    "d"
);
id_type!(
    /// `s-…`
    SnapshotId,
    "s"
);
id_type!(
    /// `ssg-…`: a snapshot-consistent group (CreateSnapshotGroup).
    SnapshotGroupId,
    "ssg"
);

/// `cn-hangzhou`, `ap-southeast-1`, …: lowercase words joined by `-`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct RegionId(String);

impl RegionId {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let parts: Vec<&str> = raw.split('-').collect();
        let ok = raw.len() <= 32
            && parts.len() >= 2
            && parts[0].len() >= 2
            && parts[0].bytes().all(|b| b.is_ascii_lowercase())
            && parts.iter().all(|p| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            });
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err("is not a region ID such as cn-hangzhou".into())
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RegionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(InstanceId::parse("i-bp67acfmxazb4ph1").is_ok());
        assert!(DiskId::parse("d-bp18um4r4f2fve24ab").is_ok());
        assert!(SnapshotId::parse("s-bp67acfmxazb4p01").is_ok());
        for bad in [
            "",
            "i-",
            "i-short",
            "x-bp67acfmxazb4ph1",
            "d-bp67acfmxazb4ph1",
            "i-bp67acfmxazb4p****",
            "i-BP67ACFMXAZB4PH1",
            "i-bp67acfm xazb4ph1",
            "i-bp67acfm\"xazb4ph1",
            "i-../../etc/passwd00",
            "i-bp67acfmxazb4ph1\n",
            "i-ü1234567890",
        ] {
            assert!(InstanceId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(InstanceId::parse(&format!("i-{}", "a".repeat(41))).is_err());
    }

    #[test]
    fn regions() {
        for ok in ["cn-hangzhou", "ap-southeast-1", "us-west-1", "cn-hongkong"] {
            assert!(RegionId::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "cn",
            "CN-hangzhou",
            "cn_hangzhou",
            "cn-",
            "-cn",
            "evil.com/x",
            "cn--x",
        ] {
            assert!(RegionId::parse(bad).is_err(), "{bad}");
        }
    }
}
