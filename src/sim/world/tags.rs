//! Tags: TagResources, UntagResources, ListTagResources (ecs-api.md §5, ecs-evidence.md §2),
//! on instances, disks, snapshots and key pairs (ResourceType `keypair`, the ID being the key
//! pair's name: ListTagResources' ResourceType list,
//! <https://www.alibabacloud.com/help/en/ecs/developer-reference/api-ecs-2014-05-26-listtagresources>).

use super::*;

impl World {
    pub(super) fn tags_of(
        &mut self,
        rtype: &str,
        id: &str,
        region: &str,
    ) -> Option<&mut BTreeMap<String, String>> {
        match rtype {
            "instance" => self
                .instances
                .get_mut(id)
                .filter(|i| i.spec.region == region)
                .map(|i| &mut i.spec.tags),
            "disk" => self
                .disks
                .get_mut(id)
                .filter(|d| d.spec.region == region)
                .map(|d| &mut d.spec.tags),
            "snapshot" => {
                let region_ok = self
                    .snapshots
                    .get(id)
                    .is_some_and(|s| s.spec.region_of(self) == region);
                self.snapshots
                    .get_mut(id)
                    .filter(|_| region_ok)
                    .map(|s| &mut s.spec.tags)
            }
            "keypair" => self.key_pairs.get_mut(&format!("{region}/{id}")),
            _ => None,
        }
    }

    pub(super) fn resource_type(req: &Req) -> Result<String, ApiError> {
        let t = req.required("ResourceType")?;
        match t.to_ascii_lowercase().as_str() {
            t @ ("instance" | "disk" | "snapshot" | "keypair") => Ok(t.to_owned()),
            // Source: ecs-evidence.md §2, C13 (404 InvalidResourceType.NotFound; the message is
            // UNCONFIRMED).
            _ => Err(ApiError::new(
                404,
                "InvalidResourceType.NotFound",
                "The specified ResourceType is not found.",
            )),
        }
    }

    pub(super) fn resource_ids(req: &Req) -> Result<Vec<String>, ApiError> {
        if req.highest_index("ResourceId") > 50 {
            // Source: ecs-evidence.md §2, C12 ("400 NumberExceed.ResourceIds … Valid : 50").
            return Err(ApiError::new(
                400,
                "NumberExceed.ResourceIds",
                "The maximum number of ResourceIds is exceeded. Valid : 50",
            ));
        }
        let ids = req.repeat_list("ResourceId", 50)?;
        if ids.is_empty() {
            // Source: ecs-api.md §5.2 (400 MissingParameter).
            return Err(ApiError::new(
                400,
                "MissingParameter",
                "The input parameter \"ResourceId\" that is mandatory for processing this request is not supplied.",
            ));
        }
        Ok(ids)
    }

    pub(super) fn tag_resources(&mut self, req: &Req) -> Result<Value, ApiError> {
        let region = Self::check_region(req, true)?.unwrap_or_default();
        let rtype = Self::resource_type(req)?;
        let ids = Self::resource_ids(req)?;
        if req.highest_index("Tag") > 20 {
            // Source: ecs-evidence.md §2, C12 ("400 NumberExceed.Tags … Valid : 20").
            return Err(ApiError::new(
                400,
                "NumberExceed.Tags",
                "The maximum number of Tags is exceeded. Valid : 20",
            ));
        }
        let tags = req.tags()?;
        if tags.is_empty() {
            // Source: ecs-evidence.md §2, C13 (404 MissingParameter.Tags; message UNCONFIRMED).
            return Err(ApiError::new(
                404,
                "MissingParameter.Tags",
                "The input parameter \"Tags\" that is mandatory for processing this request is not supplied.",
            ));
        }
        let mut keys = std::collections::BTreeSet::new();
        if !tags.iter().all(|(k, _)| keys.insert(k.as_str())) {
            // Source: ecs-evidence.md §2, C11 ("400 Duplicate.TagKey The Tag.N.Key contain
            // duplicate key.").
            return Err(ApiError::new(
                400,
                "Duplicate.TagKey",
                "The Tag.N.Key contain duplicate key.",
            ));
        }
        for (k, v) in &tags {
            let lower = k.to_ascii_lowercase();
            if k.is_empty()
                || k.chars().count() > 128
                || lower.starts_with("aliyun")
                || lower.starts_with("acs:")
                || lower.contains("http://")
                || lower.contains("https://")
            {
                // Source: ecs-evidence.md §2 (key ≤128, not `aliyun`/`acs:`, no http(s)://).
                return Err(ApiError::new(
                    400,
                    "InvalidTagKey.Malformed",
                    "The specified Tag.n.Key is not valid.",
                ));
            }
            let vl = v.to_ascii_lowercase();
            if v.chars().count() > 128
                || vl.starts_with("aliyun")
                || vl.starts_with("acs:")
                || vl.contains("http://")
                || vl.contains("https://")
            {
                // Source: ecs-evidence.md §2, C14: the sources disagree on the value's prefix
                // (SDK 7.11.8: only no http(s)://; older ECS doc: not `acs:`; the Tag service:
                // not `aliyun` or `acs:`), so the stricter reading is kept (Medium): a client
                // that passes here passes every reading.
                return Err(ApiError::new(
                    400,
                    "InvalidTagValue.Malformed",
                    "The specified Tag.n.Value is not valid.",
                ));
            }
        }
        // Check every resource before changing any.
        let max_tags = self.max_tags;
        for id in &ids {
            let Some(existing) = self.tags_of(&rtype, id, &region) else {
                return Err(resource_not_found());
            };
            let new_keys = tags
                .iter()
                .filter(|(k, _)| !existing.contains_key(k))
                .count();
            if existing.len() + new_keys > max_tags {
                // Source: ecs-evidence.md §2, C1 ("400 OperationDenied.QuotaExceed The quota of
                // tags on resource is beyond permitted range."; the same tables list 403
                // `QuotaExceed.Tags`, which a scripted fault can answer). Only new keys count:
                // an overwrite does not (Medium, from terraform re-sending every key).
                return Err(ApiError::new(
                    400,
                    "OperationDenied.QuotaExceed",
                    "The quota of tags on resource is beyond permitted range.",
                ));
            }
        }
        for id in &ids {
            let mut before = None;
            if let Some(existing) = self.tags_of(&rtype, id, &region) {
                before = Some(existing.clone());
                for (k, v) in &tags {
                    existing.insert(k.clone(), v.clone());
                }
            }
            if let (Some(before), "disk") = (before, rtype.as_str()) {
                self.disk_tags_changed(id, before);
            }
            let detail = tags
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ");
            self.record("TagResources", id, detail, String::new());
        }
        Ok(json!({}))
    }

    pub(super) fn untag_resources(&mut self, req: &Req) -> Result<Value, ApiError> {
        let region = Self::check_region(req, true)?.unwrap_or_default();
        let rtype = Self::resource_type(req)?;
        let ids = Self::resource_ids(req)?;
        let keys = req.repeat_list("TagKey", 20)?;
        let all = req.flag("All")?;
        if keys.is_empty() && !all {
            // Source: ecs-api.md §5.2 (400 MissingParameter).
            return Err(ApiError::new(
                400,
                "MissingParameter",
                "The input parameter \"TagKey\" that is mandatory for processing this request is not supplied.",
            ));
        }
        for id in &ids {
            if self.tags_of(&rtype, id, &region).is_none() {
                return Err(resource_not_found());
            }
        }
        for id in &ids {
            let mut before = None;
            if let Some(existing) = self.tags_of(&rtype, id, &region) {
                before = Some(existing.clone());
                if all && keys.is_empty() {
                    existing.clear();
                } else {
                    for k in &keys {
                        existing.remove(k);
                    }
                }
            }
            if let (Some(before), "disk") = (before, rtype.as_str()) {
                self.disk_tags_changed(id, before);
            }
            self.record("UntagResources", id, keys.join(" "), String::new());
        }
        Ok(json!({}))
    }

    pub(super) fn list_tag_resources(&mut self, req: &Req) -> Result<Value, ApiError> {
        let region = Self::check_region(req, true)?.unwrap_or_default();
        let rtype = Self::resource_type(req)?;
        let ids = req.repeat_list("ResourceId", 50)?;
        let filter = req.tags()?;
        let mut rows = Vec::new();
        let candidates: Vec<String> = if ids.is_empty() {
            match rtype.as_str() {
                "instance" => self.instances.keys().cloned().collect(),
                "disk" => self.disks.keys().cloned().collect(),
                "keypair" => self
                    .key_pairs
                    .keys()
                    .filter_map(|k| k.strip_prefix(&format!("{region}/")).map(str::to_owned))
                    .collect(),
                _ => self.snapshots.keys().cloned().collect(),
            }
        } else {
            ids
        };
        for id in candidates {
            let lagged = match (rtype.as_str(), self.disks.get(&id)) {
                ("disk", Some(d)) if d.spec.region == region => {
                    Some(self.disk_tags_seen(d).clone())
                }
                _ => None,
            };
            let tags = match lagged {
                Some(t) => t,
                None => match self.tags_of(&rtype, &id, &region) {
                    Some(t) => t.clone(),
                    None => continue,
                },
            };
            if !filter.iter().all(|(k, v)| tags.get(k) == Some(v)) {
                continue;
            }
            for (k, v) in tags.iter() {
                rows.push(
                    json!({"ResourceType": rtype, "ResourceId": id, "TagKey": k, "TagValue": v}),
                );
            }
        }
        let (items, next) = page(rows, req, 50)?;
        Ok(json!({"NextToken": next, "TagResources": {"TagResource": items}}))
    }
}

/// Source: ecs-evidence.md §2, C13 ("404 InvalidResourceId.NotFound The specified ResourceIds
/// are not found in our records.").
fn resource_not_found() -> ApiError {
    ApiError::new(
        404,
        "InvalidResourceId.NotFound",
        "The specified ResourceIds are not found in our records.",
    )
}
