//! A drill's outcome as something people can look at: from the result events (the JSON lines
//! `invoke` prints, a drill's summary among them), a timeline per target with the stop, undo
//! snapshot, reset and start as bars on one time axis, each target's recovery time against the
//! objective, the failures with their codes, and the totals. Rendered as an SVG image (for
//! tickets) or a self-contained HTML page (no external assets, no script). Pure.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// The steps drawn as bars, in timeline order, with their colours.
pub const TIMELINE: [(&str, &str); 4] = [
    ("stop", "#d97706"),
    ("preserve", "#7c3aed"),
    ("reset", "#dc2626"),
    ("start", "#16a34a"),
];

/// Geometry of the SVG, in pixels (integers, so bars land on whole pixels).
pub const WIDTH: i64 = 1000;
pub const CHART_X: i64 = 250;
pub const CHART_W: i64 = 560;
pub const ROWS_Y: i64 = 96;
pub const ROW_H: i64 = 30;
pub const BAR_H: i64 = 16;

#[derive(Clone, Debug, PartialEq)]
pub struct Bar {
    pub step: String,
    pub status: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TargetRow {
    pub label: String,
    pub outcome: String,
    pub recovery_ms: Option<u64>,
    /// Stop to the service verified (`timings.verifiedMs`), when a `verify` passed.
    pub verified_ms: Option<u64>,
    /// The service check's result (`verified`, `unhealthy`, `unverified`), when one was made.
    pub verification: Option<String>,
    pub error: Option<(String, String)>,
    pub bars: Vec<Bar>,
}

impl TargetRow {
    /// The recovery time the report measures: to the service verified when the drill checked
    /// it, else to Running.
    pub fn recovery(&self, to_verified: bool) -> Option<u64> {
        if to_verified {
            self.verified_ms
        } else {
            self.recovery_ms
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Totals {
    pub targets: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub skipped: u64,
    pub ignored: u64,
    /// Rolled back by an earlier delivery (`duplicate`), or by a later rollback (`superseded`):
    /// nothing done now.
    pub already: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DrillReport {
    pub name: String,
    pub scheduled: Option<String>,
    pub rto_seconds: Option<u64>,
    pub objective_met: Option<bool>,
    pub totals: Totals,
    pub targets: Vec<TargetRow>,
    /// The drill checked the service (`verify`): recovery and the objective are measured to
    /// the service verified.
    pub to_verified: bool,
}

/// A drawn bar, placed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    pub row: usize,
    pub step: String,
    pub color: &'static str,
    pub x: i64,
    pub y: i64,
    pub w: i64,
    pub h: i64,
}

fn color_of(step: &str) -> Option<&'static str> {
    TIMELINE.iter().find(|(s, _)| *s == step).map(|(_, c)| *c)
}

fn time(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if c.is_control() => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

fn secs(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

impl DrillReport {
    /// Reads the JSON lines: result events (`ecs-rollback.<outcome>`) and at most one drill
    /// summary (`ecs-rollback.drill-summary`). Other lines are refused by line number.
    pub fn from_jsonl(text: &str) -> Result<Self, String> {
        let mut targets = Vec::new();
        let mut summary: Option<Value> = None;
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v = crate::strict_json::from_str(line)
                .map_err(|e| format!("line {}: not JSON: {e}", n + 1))?;
            let kind = v["type"].as_str().unwrap_or("");
            if kind == "ecs-rollback.drill-summary" {
                if summary.is_some() {
                    return Err(format!(
                        "line {}: a second drill summary (one drill per report)",
                        n + 1
                    ));
                }
                summary = Some(v);
            } else if kind.starts_with("ecs-rollback.") && v["data"].is_object() {
                targets.push(row(&v["data"]));
            } else {
                return Err(format!(
                    "line {}: not an ecs-rollback result event (type {kind:?})",
                    n + 1
                ));
            }
        }
        if targets.is_empty() {
            return Err("no result events".into());
        }
        let s = summary.as_ref().map(|s| &s["data"]);
        let count = |o: &[&str]| {
            targets
                .iter()
                .filter(|t| o.contains(&t.outcome.as_str()))
                .count() as u64
        };
        let computed = Totals {
            targets: targets.len() as u64,
            succeeded: count(&["succeeded", "dry-run"]),
            failed: count(&["failed", "rejected"]),
            skipped: 0,
            ignored: count(&["ignored"]),
            already: count(&["duplicate", "superseded"]),
        };
        let totals = match s {
            Some(d) => Totals {
                targets: d["targets"].as_u64().unwrap_or(computed.targets),
                succeeded: d["succeeded"].as_u64().unwrap_or(computed.succeeded),
                failed: d["failed"].as_u64().unwrap_or(computed.failed),
                skipped: d["skipped"].as_u64().unwrap_or(0),
                ignored: d["ignored"].as_u64().unwrap_or(computed.ignored),
                already: match (d["alreadyRolledBack"].as_u64(), d["superseded"].as_u64()) {
                    (None, None) => computed.already,
                    (a, b) => a.unwrap_or(0) + b.unwrap_or(0),
                },
            },
            None => computed,
        };
        Ok(DrillReport {
            name: s
                .and_then(|d| d["drill"].as_str())
                .unwrap_or("rollbacks")
                .to_owned(),
            scheduled: s
                .and_then(|d| d["scheduledTime"].as_str())
                .map(str::to_owned),
            rto_seconds: s.and_then(|d| d["rtoSeconds"].as_u64()),
            objective_met: s.and_then(|d| d["objectiveMet"].as_bool()),
            totals,
            to_verified: targets.iter().any(|t| t.verification.is_some()),
            targets,
        })
    }

    pub fn bar_count(&self) -> usize {
        self.targets.iter().map(|t| t.bars.len()).sum()
    }

    /// The time axis: the earliest bar's start and the span in milliseconds (at least 1 s).
    fn axis(&self) -> (Option<DateTime<Utc>>, i64) {
        let bars = self.targets.iter().flat_map(|t| &t.bars);
        let t0 = bars.clone().map(|b| b.start).min();
        let t1 = bars.map(|b| b.end).max();
        let span = match (t0, t1) {
            (Some(a), Some(b)) => (b - a).num_milliseconds().max(1000),
            _ => 1000,
        };
        (t0, span)
    }

    /// Every bar with its place in the SVG.
    pub fn placed(&self) -> Vec<Placed> {
        let (t0, span) = self.axis();
        let Some(t0) = t0 else { return vec![] };
        let px = |t: DateTime<Utc>| CHART_X + ((t - t0).num_milliseconds() * CHART_W) / span;
        let mut out = Vec::new();
        for (row, t) in self.targets.iter().enumerate() {
            for b in &t.bars {
                let x = px(b.start);
                let w = (px(b.end) - x).max(4);
                out.push(Placed {
                    row,
                    step: b.step.clone(),
                    color: color_of(&b.step).unwrap_or("#6b7280"),
                    x,
                    y: ROWS_Y + row as i64 * ROW_H + (ROW_H - BAR_H) / 2,
                    w,
                    h: BAR_H,
                });
            }
        }
        out
    }

    pub fn height(&self) -> i64 {
        let failures = self.targets.iter().filter(|t| t.error.is_some()).count() as i64;
        ROWS_Y + self.targets.len() as i64 * ROW_H + 60 + failures * 18 + 20
    }

    /// The SVG image, standalone.
    pub fn svg(&self) -> String {
        let (t0, span) = self.axis();
        let h = self.height();
        let mut o = String::new();
        let _ = writeln!(
            o,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{h}" viewBox="0 0 {WIDTH} {h}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">"#
        );
        let _ = writeln!(
            o,
            r##"<rect x="0" y="0" width="{WIDTH}" height="{h}" fill="#ffffff"/>"##
        );
        let title = match &self.scheduled {
            Some(t) => format!("Drill {} · {}", self.name, t),
            None => format!("Drill {}", self.name),
        };
        let _ = writeln!(
            o,
            r#"<text x="16" y="26" font-size="17" font-weight="bold">{}</text>"#,
            esc(&title)
        );
        let t = &self.totals;
        let mut line = format!(
            "{} targets: {} succeeded, {} failed, {} skipped",
            t.targets, t.succeeded, t.failed, t.skipped
        );
        if t.ignored > 0 {
            let _ = write!(line, ", {} ignored", t.ignored);
        }
        if t.already > 0 {
            let _ = write!(line, ", {} rolled back before", t.already);
        }
        if self.to_verified {
            let n = |r: &str| {
                self.targets
                    .iter()
                    .filter(|t| t.verification.as_deref() == Some(r))
                    .count()
            };
            let _ = write!(
                line,
                " · service verified on {}, check failed on {}, unverified {}",
                n("verified"),
                n("unhealthy"),
                n("unverified")
            );
        }
        if let Some(rto) = self.rto_seconds {
            // Met: every target that recovered did so in time; failures are beside it.
            let _ = write!(
                line,
                " · objective {rto} s: {}",
                match self.objective_met {
                    Some(true) => "met by every target that recovered",
                    Some(false) => "MISSED",
                    None => "-",
                }
            );
        }
        let _ = writeln!(o, r#"<text x="16" y="48">{}</text>"#, esc(&line));
        // The axis: about eight ticks at 1, 2 or 5 times a power of ten seconds.
        let step_ms = {
            let raw = (span as f64 / 8.0).max(1.0);
            let p = 10f64.powf(raw.log10().floor());
            let m = [1.0, 2.0, 5.0, 10.0]
                .into_iter()
                .find(|m| m * p >= raw)
                .unwrap_or(10.0);
            (m * p) as i64
        };
        let axis_y = ROWS_Y - 8;
        let _ = writeln!(
            o,
            r##"<line x1="{CHART_X}" y1="{axis_y}" x2="{}" y2="{axis_y}" stroke="#9ca3af"/>"##,
            CHART_X + CHART_W
        );
        let mut tick = 0;
        while tick <= span {
            let x = CHART_X + tick * CHART_W / span;
            let _ = writeln!(
                o,
                r##"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#e5e7eb"/><text x="{x}" y="{}" text-anchor="middle" fill="#4b5563" font-size="11">{}</text>"##,
                axis_y,
                ROWS_Y + self.targets.len() as i64 * ROW_H,
                axis_y - 6,
                if step_ms >= 1000 {
                    format!("{} s", tick / 1000)
                } else {
                    format!("{:.1} s", tick as f64 / 1000.0)
                }
            );
            tick += step_ms.max(1);
        }
        let placed = self.placed();
        for (row, target) in self.targets.iter().enumerate() {
            let y = ROWS_Y + row as i64 * ROW_H;
            if row % 2 == 1 {
                let _ = writeln!(
                    o,
                    r##"<rect x="8" y="{y}" width="{}" height="{ROW_H}" fill="#f9fafb"/>"##,
                    WIDTH - 16
                );
            }
            let mark = match target.outcome.as_str() {
                "succeeded" | "duplicate" | "dry-run" => ("#16a34a", "✓"),
                "ignored" => ("#6b7280", "–"),
                _ => ("#dc2626", "✗"),
            };
            let _ = writeln!(
                o,
                r#"<text x="16" y="{}" fill="{}">{}</text><text x="32" y="{}">{}</text>"#,
                y + 19,
                mark.0,
                mark.1,
                y + 19,
                esc(&cut(&target.label, 30))
            );
            for p in placed.iter().filter(|p| p.row == row) {
                let bar = target
                    .bars
                    .iter()
                    .find(|b| b.step == p.step)
                    .map(|b| {
                        format!(
                            "{}: {} ({})",
                            b.step,
                            secs((b.end - b.start).num_milliseconds().max(0) as u64),
                            b.status
                        )
                    })
                    .unwrap_or_default();
                let failed = target
                    .bars
                    .iter()
                    .any(|b| b.step == p.step && b.status == "failed");
                let _ = writeln!(
                    o,
                    r##"<rect class="bar{}" data-target="{}" data-step="{}" x="{}" y="{}" width="{}" height="{}" fill="{}" shape-rendering="crispEdges"{}><title>{}</title></rect>"##,
                    if failed { " failed" } else { "" },
                    esc(&target.label),
                    esc(&p.step),
                    p.x,
                    p.y,
                    p.w,
                    p.h,
                    p.color,
                    if failed {
                        r##" stroke="#7f1d1d" stroke-width="2""##
                    } else {
                        ""
                    },
                    esc(&bar)
                );
            }
            // The objective, from the moment the stop began.
            if let (Some(rto), Some(t0), Some(stop)) = (
                self.rto_seconds,
                t0,
                target.bars.iter().find(|b| b.step == "stop"),
            ) {
                let at = (stop.start - t0).num_milliseconds() + rto as i64 * 1000;
                if at <= span {
                    let x = CHART_X + at * CHART_W / span;
                    let _ = writeln!(
                        o,
                        r##"<line class="rto" x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#111827" stroke-dasharray="3,3"/>"##,
                        y + 3,
                        y + ROW_H - 3
                    );
                }
            }
            let recovery = match (target.recovery(self.to_verified), self.rto_seconds) {
                (Some(ms), Some(rto)) if ms <= rto * 1000 => {
                    format!("{} · within {rto} s", secs(ms))
                }
                (Some(ms), Some(rto)) => format!("{} · OVER {rto} s", secs(ms)),
                (Some(ms), None) => secs(ms),
                (None, _) => match &target.error {
                    Some((code, _)) => cut(code, 20),
                    None if target.outcome == "succeeded" && !self.to_verified => {
                        "no downtime".into()
                    }
                    None => target.outcome.clone(),
                },
            };
            let _ = writeln!(
                o,
                r#"<text x="{}" y="{}">{}</text>"#,
                CHART_X + CHART_W + 14,
                y + 19,
                esc(&recovery)
            );
        }
        // Legend.
        let ly = ROWS_Y + self.targets.len() as i64 * ROW_H + 24;
        let mut lx = CHART_X;
        for (step, color) in TIMELINE {
            let _ = writeln!(
                o,
                r#"<rect x="{lx}" y="{}" width="12" height="12" fill="{color}"/><text x="{}" y="{}">{step}</text>"#,
                ly - 10,
                lx + 16,
                ly
            );
            lx += 90;
        }
        if self.rto_seconds.is_some() {
            let _ = writeln!(
                o,
                r##"<line x1="{lx}" y1="{}" x2="{lx}" y2="{}" stroke="#111827" stroke-dasharray="3,3"/><text x="{}" y="{ly}">objective (from the stop)</text>"##,
                ly - 11,
                ly + 1,
                lx + 6
            );
        }
        let _ = writeln!(
            o,
            r##"<text x="16" y="{ly}" fill="#4b5563">recovery: stop asked → {}</text>"##,
            if self.to_verified {
                "service verified"
            } else {
                "running again"
            }
        );
        let mut fy = ly + 26;
        for t in &self.targets {
            if let Some((code, message)) = &t.error {
                let _ = writeln!(
                    o,
                    r##"<text class="failure" x="16" y="{fy}" fill="#991b1b">{}: {} {}: {}</text>"##,
                    esc(&cut(&t.label, 30)),
                    esc(&t.outcome),
                    esc(&cut(code, 40)),
                    esc(&cut(message, 110))
                );
                fy += 18;
            }
        }
        o.push_str("</svg>\n");
        o
    }

    /// The HTML page: the SVG inline, then the per-target and failure tables.
    pub fn html(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Drill {}</title>\n<style>body{{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;margin:24px;color:#111827}}table{{border-collapse:collapse;margin:16px 0}}td,th{{border:1px solid #e5e7eb;padding:4px 10px;text-align:left;font-size:13px}}th{{background:#f3f4f6}}.bad{{color:#991b1b}}</style></head><body>",
            esc(&self.name)
        );
        o.push_str(&self.svg());
        if let Some(rto) = self.rto_seconds {
            let _ = writeln!(
                o,
                "<p>Objective: {rto} s from the stop to {}. It is met when every target that recovered did so within it; failed and skipped targets did not recover and are counted beside it, so \"met\" with failures means broken, not slow.</p>",
                if self.to_verified {
                    "the service verified (a verify check after the start)"
                } else {
                    "Running again"
                }
            );
        }
        let _ = writeln!(
            o,
            "<h2>Targets</h2>\n<table><tr><th>target</th><th>outcome</th><th>{}</th><th>objective</th><th>service check</th><th>steps</th></tr>",
            if self.to_verified {
                "verified recovery"
            } else {
                "recovery"
            }
        );
        for t in &self.targets {
            let within = match (t.recovery(self.to_verified), self.rto_seconds) {
                (Some(ms), Some(rto)) => {
                    if ms <= rto * 1000 {
                        "within"
                    } else {
                        "OVER"
                    }
                }
                _ => "-",
            };
            let steps: Vec<String> = t
                .bars
                .iter()
                .map(|b| {
                    format!(
                        "{} {}",
                        b.step,
                        secs((b.end - b.start).num_milliseconds().max(0) as u64)
                    )
                })
                .collect();
            let _ = writeln!(
                o,
                "<tr class=\"target\" data-outcome=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&t.outcome),
                esc(&t.label),
                esc(&t.outcome),
                t.recovery(self.to_verified)
                    .map(secs)
                    .unwrap_or_else(|| "-".into()),
                within,
                esc(t.verification.as_deref().unwrap_or("-")),
                esc(&steps.join(", "))
            );
        }
        o.push_str("</table>\n");
        let failures: Vec<&TargetRow> = self.targets.iter().filter(|t| t.error.is_some()).collect();
        if !failures.is_empty() {
            o.push_str("<h2>Failures</h2>\n<table><tr><th>target</th><th>outcome</th><th>code</th><th>message</th></tr>\n");
            for t in failures {
                if let Some((code, message)) = &t.error {
                    let _ = writeln!(
                        o,
                        "<tr class=\"bad\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        esc(&t.label),
                        esc(&t.outcome),
                        esc(code),
                        esc(message)
                    );
                }
            }
            o.push_str("</table>\n");
        }
        o.push_str("</body></html>\n");
        o
    }
}

/// One result event's data as a row: the timeline steps that ran (done or failed).
fn row(d: &Value) -> TargetRow {
    let target = &d["target"];
    let label = target["diskId"]
        .as_str()
        .or_else(|| target["instanceId"].as_str())
        .unwrap_or("-")
        .to_owned();
    let bars = d["steps"]
        .as_array()
        .map(|steps| {
            TIMELINE
                .iter()
                .filter_map(|(name, _)| {
                    // A whole-instance target has the step once per disk (`reset:d-…`): one
                    // bar from the first start to the last end.
                    let ran: Vec<&Value> = steps
                        .iter()
                        .filter(|s| s["name"].as_str().map(crate::report::step_kind) == Some(*name))
                        .filter(|s| matches!(s["status"].as_str(), Some("done" | "failed")))
                        .collect();
                    let status = if ran.iter().any(|s| s["status"] == "failed") {
                        "failed"
                    } else {
                        "done"
                    };
                    Some(Bar {
                        step: (*name).to_owned(),
                        status: status.to_owned(),
                        start: ran.iter().filter_map(|s| time(&s["startedAt"])).min()?,
                        end: ran.iter().filter_map(|s| time(&s["finishedAt"])).max()?,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    TargetRow {
        label,
        outcome: d["outcome"].as_str().unwrap_or("?").to_owned(),
        recovery_ms: d["timings"]["downtimeMs"].as_u64(),
        verified_ms: d["timings"]["verifiedMs"].as_u64(),
        verification: d["verification"]["result"].as_str().map(str::to_owned),
        error: d["error"]["code"].as_str().map(|c| {
            (
                c.to_owned(),
                d["error"]["message"].as_str().unwrap_or("").to_owned(),
            )
        }),
        bars,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_bars_are_the_timed_steps() {
        let names: Vec<&str> = TIMELINE.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, crate::report::TIMED_STEPS);
    }

    use super::*;
    use serde_json::json;

    fn result(
        disk: &str,
        outcome: &str,
        steps: &[(&str, &str, u64, u64)],
        error: Option<(&str, &str)>,
    ) -> String {
        let base = DateTime::parse_from_rfc3339("2026-11-29T03:00:00Z")
            .expect("t")
            .with_timezone(&Utc);
        let at = |ms: u64| (base + chrono::Duration::milliseconds(ms as i64)).to_rfc3339();
        json!({
            "type": format!("ecs-rollback.{outcome}"),
            "data": {
                "outcome": outcome,
                "target": {"diskId": disk},
                "steps": steps.iter().map(|(n, s, a, b)| json!({"name": n, "status": s, "startedAt": at(*a), "finishedAt": at(*b)})).collect::<Vec<_>>(),
                "timings": {"downtimeMs": if outcome == "succeeded" { Some(9000) } else { None }},
                "error": error.map(|(c, m)| json!({"code": c, "message": m})),
            }
        })
        .to_string()
    }

    fn sample() -> String {
        let summary = json!({"type": "ecs-rollback.drill-summary", "data": {"drill": "weekly", "targets": 3, "succeeded": 1, "failed": 2, "skipped": 0, "ignored": 0, "rtoSeconds": 8, "objectiveMet": false}});
        [
            result(
                "d-a",
                "succeeded",
                &[
                    ("preflight", "done", 0, 5),
                    ("stop", "done", 10, 2000),
                    ("reset", "done", 2000, 2100),
                    ("start", "done", 2100, 9000),
                ],
                None,
            ),
            result(
                "d-<b>",
                "failed",
                &[
                    ("stop", "done", 0, 1500),
                    ("preserve", "failed", 1500, 1600),
                    ("start", "done", 1600, 3000),
                ],
                Some(("UndoSnapshotFailed", "quota <exceeded>")),
            ),
            result(
                "d-c",
                "rejected",
                &[("preflight", "failed", 0, 3)],
                Some(("NotOptedIn", "no tag")),
            ),
            summary.to_string(),
        ]
        .join("\n")
    }

    #[test]
    fn one_bar_per_step_that_ran_placed_on_one_axis() {
        let r = DrillReport::from_jsonl(&sample()).expect("report");
        assert_eq!(r.name, "weekly");
        assert_eq!(r.targets.len(), 3);
        assert_eq!(r.bar_count(), 6);
        let p = r.placed();
        assert_eq!(p.len(), 6);
        // The axis spans 0..9 s: the first stop starts at the left edge, the last start ends at
        // the right edge.
        assert_eq!(p.iter().map(|b| b.x).min(), Some(CHART_X));
        assert_eq!(p.iter().map(|b| b.x + b.w).max(), Some(CHART_X + CHART_W));
        assert!(p.iter().all(|b| b.w >= 4));
        let svg = r.svg();
        assert_eq!(svg.matches("<rect class=\"bar").count(), 6);
        assert!(svg.contains("class=\"bar failed\""));
        assert!(svg.contains("objective 8 s: MISSED"));
        assert!(svg.contains("OVER 8 s"), "9 s against 8 s");
        // Input text is escaped, never markup.
        assert!(!svg.contains("<b>") && svg.contains("d-&lt;b&gt;"));
        assert!(svg.contains("quota &lt;exceeded&gt;"));
        let html = r.html();
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(!html.contains("<script"), "no script");
        assert_eq!(
            html.matches("http").count(),
            1,
            "no external asset: only the SVG namespace"
        );
        assert!(
            !html.contains("src=") && !html.contains("href="),
            "no external assets"
        );
        assert!(html.contains("NotOptedIn"));
    }

    #[test]
    fn bad_input_is_refused_by_line() {
        assert!(DrillReport::from_jsonl("")
            .unwrap_err()
            .contains("no result events"));
        assert!(DrillReport::from_jsonl(
            "{\"type\":\"ecs-rollback.succeeded\",\"data\":{}}\nnot json"
        )
        .unwrap_err()
        .contains("line 2"));
        assert!(DrillReport::from_jsonl("{\"type\":\"other\"}")
            .unwrap_err()
            .contains("line 1"));
    }
}
