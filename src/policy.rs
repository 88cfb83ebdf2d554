//! The remediation policy: which signals may roll a disk back on their own (`act`), which only
//! propose a rollback for someone to approve (`propose`), and which are dropped (`ignore`),
//! each rule with an optional cap (at most N rollbacks per window, across the region). Pure:
//! the rules, their validation and the decision; reading the instance's tags and counting the
//! cap are the handler's (`handler/gate.rs`).
//!
//! The policy comes from the deployment (`ECS_ROLLBACK_POLICY`, JSON, or
//! `ECS_ROLLBACK_POLICY_FILE`), is validated once at start (every error names its rule), and
//! every result names the rule that decided (its `policy` step).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What kind of signal asked for a rollback.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// An explicit request: `invoke`, SQS, the webhook, a custom event, an MNS message.
    Request,
    /// A recovery drill (in one invocation, or a workflow's target).
    Drill,
    /// An alarm the operator routed to the function: CloudWatch, CloudMonitor, Alertmanager, ARMS.
    Alarm,
    /// An ECS system event (`Disk:Stalled`, …), which nobody routed per disk.
    EcsEvent,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Request => "request",
            Source::Drill => "drill",
            Source::Alarm => "alarm",
            Source::EcsEvent => "ecs-event",
        }
    }

    /// The source of a trigger kind (`crate::request::Trigger::kind`) when the adapter said
    /// nothing more precise.
    pub fn of_trigger_kind(kind: &str) -> Self {
        match kind {
            "cloudmonitor" | "cloudmonitor-mns" | "alertmanager" | "arms" | "cloudwatch-alarm" => {
                Source::Alarm
            }
            "ecs-event" => Source::EcsEvent,
            "drill" | "workflow" => Source::Drill,
            k if k.ends_with("-drill") => Source::Drill,
            _ => Source::Request,
        }
    }
}

/// The signal behind one request, as the policy sees it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Signal {
    /// `None`: derived from the trigger kind.
    pub source: Option<Source>,
    /// The alarm's or the event's name (`Disk:Stalled`, an alert rule's name).
    pub name: Option<String>,
    /// The level or severity the signal carries (`CRITICAL`, `WARN`, `critical`).
    pub level: Option<String>,
}

impl Signal {
    pub fn new(source: Source, name: Option<String>, level: Option<String>) -> Self {
        Self {
            source: Some(source),
            name: name.filter(|n| !n.is_empty()),
            level: level.filter(|l| !l.is_empty()),
        }
    }

    pub fn source(&self, trigger_kind: &str) -> Source {
        self.source
            .unwrap_or_else(|| Source::of_trigger_kind(trigger_kind))
    }
}

/// What a rule does with a signal it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Act,
    Propose,
    Ignore,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Act => "act",
            Action::Propose => "propose",
            Action::Ignore => "ignore",
        }
    }
}

/// One value or several.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    pub fn items(&self) -> &[T] {
        match self {
            OneOrMany::One(t) => std::slice::from_ref(t),
            OneOrMany::Many(v) => v,
        }
    }
}

/// What a rule matches; every field given must match (a list: any of its items).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Match {
    pub source: Option<OneOrMany<Source>>,
    /// Trigger kinds as results name them (`sqs`, `alertmanager`, `eventbridge-alibaba`, …).
    pub trigger: Option<OneOrMany<String>>,
    /// The alarm or event name, exactly, or a prefix ending in `*` (`Disk:*`).
    pub name: Option<OneOrMany<String>>,
    /// The level, without regard to case.
    pub level: Option<OneOrMany<String>>,
    /// Tags the request's instance must carry (`key: value`; every one).
    pub instance_tags: Option<BTreeMap<String, String>>,
}

/// At most `max` rollbacks admitted by a rule per `windowSeconds`, across the region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Cap {
    pub max: u32,
    pub window_seconds: u64,
}

/// The most admissions one cap can hold: they are kept in one tag value of 128 characters
/// (`pause.rs`), 12 characters each.
pub const MAX_CAP: u32 = 10;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    #[serde(rename = "match", default)]
    pub matches: Match,
    pub action: Action,
    #[serde(default)]
    pub cap: Option<Cap>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policy {
    pub rules: Vec<Rule>,
    /// What a signal no rule matches gets (the rule named `default`).
    #[serde(default = "ignore")]
    pub default: Action,
}

fn ignore() -> Action {
    Action::Ignore
}

/// The rule that decided, and what it decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub rule: String,
    pub action: Action,
    pub cap: Option<Cap>,
}

/// A policy that cannot be used, naming the rule at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("remediation policy: {0}")]
pub struct PolicyError(pub String);

/// The name a decision takes when no rule matched.
pub const DEFAULT_RULE: &str = "default";

impl Default for Policy {
    /// Explicit requests, drills and the alarms the operator routed to the function act; ECS
    /// system events propose; anything else is ignored.
    fn default() -> Self {
        let rule = |name: &str, source: Source, action: Action| Rule {
            name: name.into(),
            matches: Match {
                source: Some(OneOrMany::One(source)),
                ..Match::default()
            },
            action,
            cap: None,
        };
        Policy {
            rules: vec![
                rule("requests", Source::Request, Action::Act),
                rule("drills", Source::Drill, Action::Act),
                rule("routed-alarms", Source::Alarm, Action::Act),
                rule("ecs-events", Source::EcsEvent, Action::Propose),
            ],
            default: Action::Ignore,
        }
    }
}

fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

impl Policy {
    /// Parses and validates a policy (JSON); every error names its rule.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let policy: Policy = serde_path_to_error::deserialize(de)
            .map_err(|e| PolicyError(format!("at {}: {}", e.path(), e.inner())))?;
        policy.validate()?;
        Ok(policy)
    }

    pub fn validate(&self) -> Result<(), PolicyError> {
        let mut seen = std::collections::BTreeSet::new();
        for (i, r) in self.rules.iter().enumerate() {
            let at = |why: String| PolicyError(format!("rules[{i}] {:?}: {why}", r.name));
            let valid_name = !r.name.is_empty()
                && r.name.len() <= 40
                && r.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid_name {
                return Err(at(
                    "the name must be 1 to 40 letters, digits, '-' or '_' (it names a tag)".into(),
                ));
            }
            if r.name == DEFAULT_RULE {
                return Err(at(format!("{DEFAULT_RULE:?} names the fallback")));
            }
            if !seen.insert(r.name.as_str()) {
                return Err(at("a second rule of this name".into()));
            }
            let m = &r.matches;
            let lists = [
                m.trigger.as_ref().map(|l| l.items().len()),
                m.name.as_ref().map(|l| l.items().len()),
                m.level.as_ref().map(|l| l.items().len()),
                m.source.as_ref().map(|l| l.items().len()),
            ];
            if lists.contains(&Some(0)) {
                return Err(at("an empty list matches nothing".into()));
            }
            for pattern in m.name.iter().flat_map(|n| n.items()) {
                if pattern.is_empty() || pattern[..pattern.len() - 1].contains('*') {
                    return Err(at(format!(
                        "name {pattern:?}: an exact name, or a prefix ending in '*'"
                    )));
                }
            }
            if m.instance_tags.as_ref().is_some_and(|t| t.is_empty()) {
                return Err(at("instanceTags is empty".into()));
            }
            if let Some(cap) = r.cap {
                if r.action == Action::Ignore {
                    return Err(at("a cap on a rule that ignores".into()));
                }
                if cap.max == 0 || cap.max > MAX_CAP {
                    return Err(at(format!("cap.max must be 1 to {MAX_CAP}")));
                }
                if !(60..=7 * 86_400).contains(&cap.window_seconds) {
                    return Err(at("cap.windowSeconds must be 60 to 604800 (a week)".into()));
                }
            }
        }
        Ok(())
    }

    /// Whether some rule looks at the instance's tags (then the handler reads them first).
    pub fn needs_instance_tags(&self) -> bool {
        self.rules.iter().any(|r| r.matches.instance_tags.is_some())
    }

    /// The first rule that matches decides; none: the default. `tags` are the instance's,
    /// `None` when they were not read (a rule on tags then does not match).
    pub fn decide(
        &self,
        signal: &Signal,
        trigger_kind: &str,
        tags: Option<&BTreeMap<String, String>>,
    ) -> Decision {
        let source = signal.source(trigger_kind);
        for r in &self.rules {
            let m = &r.matches;
            let ok = m
                .source
                .as_ref()
                .is_none_or(|s| s.items().contains(&source))
                && m.trigger
                    .as_ref()
                    .is_none_or(|t| t.items().iter().any(|k| k == trigger_kind))
                && m.name.as_ref().is_none_or(|n| {
                    signal
                        .name
                        .as_deref()
                        .is_some_and(|name| n.items().iter().any(|p| name_matches(p, name)))
                })
                && m.level.as_ref().is_none_or(|l| {
                    signal
                        .level
                        .as_deref()
                        .is_some_and(|lv| l.items().iter().any(|x| x.eq_ignore_ascii_case(lv)))
                })
                && m.instance_tags.as_ref().is_none_or(|want| {
                    tags.is_some_and(|have| want.iter().all(|(k, v)| have.get(k) == Some(v)))
                });
            if ok {
                return Decision {
                    rule: r.name.clone(),
                    action: r.action,
                    cap: r.cap,
                };
            }
        }
        Decision {
            rule: DEFAULT_RULE.into(),
            action: self.default,
            cap: None,
        }
    }

    /// The ECS system event names some rule may act on or propose (for the deployment's
    /// event rule); `None` when a rule takes every ECS event (no `name` on it).
    pub fn ecs_event_names(&self) -> Option<Vec<String>> {
        let mut names = Vec::new();
        for r in &self.rules {
            let takes_ecs = r
                .matches
                .source
                .as_ref()
                .is_none_or(|s| s.items().contains(&Source::EcsEvent));
            if !takes_ecs || r.action == Action::Ignore {
                continue;
            }
            match &r.matches.name {
                Some(n) => names.extend(n.items().iter().cloned()),
                None => return None,
            }
        }
        Some(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ecs(name: &str, level: &str) -> Signal {
        Signal::new(Source::EcsEvent, Some(name.into()), Some(level.into()))
    }

    #[test]
    fn the_default_acts_on_requests_and_proposes_ecs_events() {
        let p = Policy::default();
        p.validate().expect("valid");
        let d = p.decide(&ecs("Disk:Stalled", "CRITICAL"), "ecs-event", None);
        assert_eq!((d.rule.as_str(), d.action), ("ecs-events", Action::Propose));
        let d = p.decide(&Signal::default(), "sqs", None);
        assert_eq!((d.rule.as_str(), d.action), ("requests", Action::Act));
        let d = p.decide(&Signal::default(), "drill", None);
        assert_eq!((d.rule.as_str(), d.action), ("drills", Action::Act));
        let d = p.decide(&Signal::default(), "alertmanager", None);
        assert_eq!((d.rule.as_str(), d.action), ("routed-alarms", Action::Act));
        let d = p.decide(&Signal::default(), "ecs-event", None);
        assert_eq!(d.action, Action::Propose);
    }

    #[test]
    fn first_match_wins_and_unmatched_is_the_default() {
        let p = Policy::parse(
            r#"{"rules": [
              {"name": "stalled-prod", "match": {"source": "ecs-event", "name": "Disk:*",
                "level": ["critical"], "instanceTags": {"env": "prod"}}, "action": "propose",
               "cap": {"max": 3, "windowSeconds": 3600}},
              {"name": "pager", "match": {"trigger": ["alertmanager", "arms"], "name": "DiskCorrupt"}, "action": "act"}
            ]}"#,
        )
        .expect("valid");
        let prod: BTreeMap<String, String> = [("env".into(), "prod".into())].into();
        let d = p.decide(&ecs("Disk:Stalled", "CRITICAL"), "ecs-event", Some(&prod));
        assert_eq!(d.rule, "stalled-prod");
        assert_eq!(d.cap.map(|c| c.max), Some(3));
        // Without the tags, or with others, the rule does not match: the default ignores.
        let d = p.decide(&ecs("Disk:Stalled", "CRITICAL"), "ecs-event", None);
        assert_eq!((d.rule.as_str(), d.action), (DEFAULT_RULE, Action::Ignore));
        let d = p.decide(&ecs("Disk:Stalled", "WARN"), "ecs-event", Some(&prod));
        assert_eq!(d.action, Action::Ignore);
        let alert = Signal::new(Source::Alarm, Some("DiskCorrupt".into()), None);
        assert_eq!(p.decide(&alert, "arms", None).rule, "pager");
        assert_eq!(p.decide(&alert, "cloudmonitor", None).rule, DEFAULT_RULE);
        assert!(p.needs_instance_tags());
        // A rule with no source takes ECS events of its names too.
        assert_eq!(
            p.ecs_event_names(),
            Some(vec!["Disk:*".to_owned(), "DiskCorrupt".to_owned()])
        );
        assert_eq!(Policy::default().ecs_event_names(), None);
    }

    #[test]
    fn errors_name_the_rule() {
        let cases = [
            (
                r#"{"rules": [{"name": "a", "action": "act"}, {"name": "a", "action": "act"}]}"#,
                "rules[1] \"a\": a second rule",
            ),
            (
                r#"{"rules": [{"name": "x", "action": "act", "cap": {"max": 11, "windowSeconds": 3600}}]}"#,
                "rules[0] \"x\": cap.max must be 1 to 10",
            ),
            (
                r#"{"rules": [{"name": "x", "action": "act", "cap": {"max": 1, "windowSeconds": 5}}]}"#,
                "rules[0] \"x\": cap.windowSeconds",
            ),
            (
                r#"{"rules": [{"name": "x", "action": "ignore", "cap": {"max": 1, "windowSeconds": 60}}]}"#,
                "a cap on a rule that ignores",
            ),
            (
                r#"{"rules": [{"name": "bad name", "action": "act"}]}"#,
                "rules[0] \"bad name\": the name",
            ),
            (
                r#"{"rules": [{"name": "x", "action": "act", "match": {"name": "a*b"}}]}"#,
                "rules[0] \"x\": name \"a*b\"",
            ),
            (
                r#"{"rules": [{"name": "x", "action": "act", "match": {"name": []}}]}"#,
                "an empty list",
            ),
            (
                r#"{"rules": [{"name": "x", "action": "maybe"}]}"#,
                "at rules[0].action",
            ),
            (
                r#"{"rules": [{"name": "x", "action": "act", "match": {"sauce": "y"}}]}"#,
                "at rules[0].match",
            ),
            (
                r#"{"rules": [{"name": "x", "action": "act", "match": {"source": "email"}}]}"#,
                "at rules[0].match.source",
            ),
        ];
        for (text, want) in cases {
            let e = Policy::parse(text).expect_err(text).to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
