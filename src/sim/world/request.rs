//! One request as the world reads it (`Req`: parameters, flags, lists, tags, paging), and the
//! error answers and JSON pieces every call shares.

use super::*;

/// A request, decoded: the parameters and what the caller is allowed to see.
pub struct Req<'a> {
    pub params: &'a BTreeMap<String, String>,
}

impl<'a> Req<'a> {
    pub fn get(&self, k: &str) -> Option<&'a str> {
        self.params.get(k).map(String::as_str)
    }
    pub(super) fn required(&self, k: &str) -> Result<&'a str, ApiError> {
        match self.get(k) {
            Some(v) if !v.is_empty() => Ok(v),
            // Source: ecs-api.md §5.2 (400 MissingParameter).
            _ => Err(ApiError::new(
                400,
                "MissingParameter",
                format!("The input parameter \"{k}\" that is mandatory for processing this request is not supplied."),
            )),
        }
    }
    pub(super) fn flag(&self, k: &str) -> Result<bool, ApiError> {
        match self.get(k) {
            None | Some("") => Ok(false),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(_) => Err(invalid(k)),
        }
    }
    /// A JSON-array parameter such as `InstanceIds`: at most 100 strings.
    pub(super) fn json_ids(&self, k: &str) -> Result<Option<Vec<String>>, ApiError> {
        let Some(raw) = self.get(k) else {
            return Ok(None);
        };
        let ids: Vec<String> = serde_json::from_str(raw).map_err(|_| invalid(k))?;
        if ids.len() > 100 {
            return Err(invalid(k));
        }
        Ok(Some(ids))
    }
    /// `Prefix.1`, `Prefix.2`, …: the values in N order, N from 1 to `max`.
    pub(super) fn repeat_list(&self, prefix: &str, max: usize) -> Result<Vec<String>, ApiError> {
        let mut out: Vec<(usize, String)> = Vec::new();
        for (k, v) in self.params.iter() {
            if let Some(n) = k.strip_prefix(prefix).and_then(|r| r.strip_prefix('.')) {
                let n: usize = n.parse().map_err(|_| invalid(k))?;
                if n == 0 || n > max {
                    return Err(invalid(k));
                }
                out.push((n, v.clone()));
            }
        }
        out.sort();
        Ok(out.into_iter().map(|(_, v)| v).collect())
    }
    /// The highest N of the `Prefix.N…` parameters (0 when there is none).
    pub(super) fn highest_index(&self, prefix: &str) -> usize {
        self.params
            .keys()
            .filter_map(|k| k.strip_prefix(prefix)?.strip_prefix('.'))
            .filter_map(|rest| rest.split('.').next()?.parse::<usize>().ok())
            .max()
            .unwrap_or(0)
    }
    /// `Tag.N.Key` / `Tag.N.Value`, N from 1 to 20.
    pub(super) fn tags(&self) -> Result<Vec<(String, String)>, ApiError> {
        let mut out: BTreeMap<usize, (String, String)> = BTreeMap::new();
        for (k, v) in self.params.iter() {
            let Some(rest) = k.strip_prefix("Tag.") else {
                continue;
            };
            let Some((n, field)) = rest.split_once('.') else {
                return Err(invalid(k));
            };
            let n: usize = n.parse().map_err(|_| invalid(k))?;
            if n == 0 || n > 20 {
                return Err(invalid(k));
            }
            let e = out.entry(n).or_default();
            match field {
                "Key" => e.0 = v.clone(),
                "Value" => e.1 = v.clone(),
                _ => return Err(invalid(k)),
            }
        }
        Ok(out.into_values().collect())
    }
    pub(super) fn max_results(
        &self,
        default: usize,
        min: usize,
        max: usize,
    ) -> Result<usize, ApiError> {
        match self.get("MaxResults") {
            None | Some("") => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .map(|n| n.clamp(min, max))
                .map_err(|_| invalid("MaxResults")),
        }
    }
}

pub(super) fn invalid(k: &str) -> ApiError {
    // Source: ecs-api.md §5.2 (400 InvalidParameter); the message is UNCONFIRMED.
    ApiError::new(
        400,
        "InvalidParameter",
        format!("The specified parameter \"{k}\" is not valid."),
    )
}

pub(super) fn not_found(code: &str, what: &str) -> ApiError {
    // Source: ResetDisk-api.md (404 InvalidDiskId.NotFound, InvalidSnapshotId.NotFound, InvalidInstanceId.NotFound); the message's form is UNCONFIRMED for others.
    ApiError::new(404, code, format!("The specified {what} does not exist."))
}

pub(super) fn incorrect_instance_status() -> ApiError {
    // Source: ResetDisk-api.md; ecs-evidence.md §4 (403 IncorrectInstanceStatus).
    ApiError::new(
        403,
        "IncorrectInstanceStatus",
        "The current status of the resource does not support this operation.",
    )
}

pub(super) fn incorrect_disk_status() -> ApiError {
    // Source: ResetDisk-api.md (403 IncorrectDiskStatus).
    ApiError::new(
        403,
        "IncorrectDiskStatus",
        "The current disk status does not support this operation.",
    )
}

pub(super) fn dry_run_passed() -> ApiError {
    // Source: ecs-api.md §5.2 (400 DryRunOperation, W-RESET).
    ApiError::new(
        400,
        "DryRunOperation",
        "Request validation has been passed with DryRun flag set.",
    )
}

pub(super) fn check_locks(locks: &[String]) -> Result<(), ApiError> {
    for l in locks {
        if l.eq_ignore_ascii_case("security") {
            // Source: ResetDisk-api.md (403 InstanceLockedForSecurity).
            return Err(ApiError::new(
                403,
                "InstanceLockedForSecurity",
                "The instance is locked due to security.",
            ));
        }
        if l.eq_ignore_ascii_case("financial") {
            // Source: ResetDisk-api.md (403 InstanceExpiredOrInArrears).
            return Err(ApiError::new(
                403,
                "InstanceExpiredOrInArrears",
                "The specified operation is denied as your prepay instance is expired (prepay mode) or in arrears (afterpay mode).",
            ));
        }
    }
    Ok(())
}

pub(super) fn tag_list(tags: &BTreeMap<String, String>) -> Value {
    json!({ "Tag": tags.iter().map(|(k, v)| json!({"TagKey": k, "TagValue": v})).collect::<Vec<_>>() })
}

pub(super) fn minutes(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%MZ").to_string()
}

pub(super) fn seconds(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Pages a sorted list: returns the page and the next token (empty on the last page).
pub(super) fn page(
    items: Vec<Value>,
    req: &Req,
    max: usize,
) -> Result<(Vec<Value>, String), ApiError> {
    let start = match req.get("NextToken") {
        None | Some("") => 0,
        Some(t) => t
            .strip_prefix("sim-")
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n <= items.len())
            .ok_or_else(|| invalid("NextToken"))?,
    };
    let end = (start + max).min(items.len());
    let next = if end < items.len() {
        format!("sim-{end}")
    } else {
        String::new()
    };
    Ok((items[start..end].to_vec(), next))
}
