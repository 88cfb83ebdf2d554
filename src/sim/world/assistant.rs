//! Cloud Assistant in the simulated region: the agent of each instance (ready some time after
//! the instance is Running, never for the instances a scenario names), RunCommand with its
//! `ClientToken`, and the invocation as DescribeInvocations and DescribeInvocationResults show
//! it over time (Pending until delivered, Running, then Success or Failed with its exit code,
//! Timeout past the command's own timeout, Aborted with `DeliveryTimeout` when no agent took it
//! in time), the output base64 with the bytes past 24 KB counted in `Dropped`.
//!
//! Facts: shared/reference/ecs-snapshot-groups-and-cloud-assistant.md §3 (statuses and codes from
//! the SDK docs: Medium). What the command finds is the simulator's own model of the service:
//! it is healthy unless a disk of the instance holds a snapshot the scenario marks bad
//! (`cloudAssistant.badSnapshots`), and up once the agent is (the same moment, for simplicity).

use super::*;

/// Output bytes an invocation result carries; the rest is counted in `Dropped` (§3: 24 KB).
pub const MAX_OUTPUT: usize = 24 * 1024;

/// The scenario's Cloud Assistant: which agents never come up, which snapshots are bad, the
/// instances' addresses (the default fleet's are made up: 172.16.0.N in order of ID).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct AssistantSpec {
    /// Instances whose agent never reports ready.
    pub agent_never: Vec<String>,
    /// Snapshots that make a bad disk: after a rollback to one, the check inside fails (exit
    /// code 1) and the service does not answer.
    pub bad_snapshots: Vec<String>,
    /// Instance -> private IP (DescribeInstances `VpcAttributes.PrivateIpAddress`).
    pub private_ips: BTreeMap<String, String>,
    /// Instance -> public IP (`PublicIpAddress`); none by default.
    pub public_ips: BTreeMap<String, String>,
    /// Bytes the check writes to its output (beyond its two lines): to show the 24 KB limit.
    pub output_padding: usize,
}

#[derive(Clone, Debug)]
pub(super) struct SimInvocation {
    id: String,
    command_id: String,
    instance: String,
    script: String,
    timeout_s: u64,
    created: Instant,
    created_utc: DateTime<Utc>,
    /// Once known: (status, exit code, error code, output text).
    end: Option<(String, Option<i64>, String, String)>,
}

#[derive(Debug, Default)]
pub(super) struct Assistant {
    pub(super) spec: AssistantSpec,
    invocations: BTreeMap<String, SimInvocation>,
    /// RunCommand's `ClientToken`s: token -> (the call's parameters, the invocation).
    tokens: BTreeMap<String, (String, String)>,
    made: u64,
}

impl Assistant {
    pub(super) fn new(spec: AssistantSpec) -> Self {
        Self {
            spec,
            ..Default::default()
        }
    }
}

/// The output as DescribeInvocationResults carries it: base64 of at most [`MAX_OUTPUT`] bytes,
/// and how many were dropped.
pub fn encode_output(text: &str) -> (String, usize) {
    use base64::Engine as _;
    let bytes = text.as_bytes();
    let kept = &bytes[..bytes.len().min(MAX_OUTPUT)];
    (
        base64::engine::general_purpose::STANDARD.encode(kept),
        bytes.len() - kept.len(),
    )
}

impl World {
    /// When the agent of an instance reports ready (`None`: not while it is in this state).
    fn agent_ready_at(&self, id: &str) -> Option<Instant> {
        let i = self.instances.get(id)?;
        if i.status != "Running" || self.assistant.spec.agent_never.iter().any(|n| n == id) {
            return None;
        }
        let since = i.up_since?;
        Some(since + Duration::from_millis(self.timings.agent_ready_ms))
    }

    fn agent_ready(&self, id: &str, now: Instant) -> bool {
        self.agent_ready_at(id).is_some_and(|at| now >= at)
    }

    /// The bad snapshot a disk of the instance holds, if any.
    fn bad_content(&self, id: &str) -> Option<String> {
        self.disks
            .values()
            .filter(|d| d.spec.instance_id.as_deref() == Some(id))
            .find(|d| self.assistant.spec.bad_snapshots.contains(&d.content))
            .map(|d| d.content.clone())
    }

    /// The simulated service of an instance answers: Running, booted (its agent's moment), and
    /// no disk holding a bad snapshot. What a test's loopback server asks before answering.
    pub fn service_up(&mut self, id: &str, now: Instant) -> bool {
        self.tick(now);
        let booted = self.instances.get(id).is_some_and(|i| {
            i.status == "Running"
                && i.up_since
                    .is_some_and(|t| now >= t + Duration::from_millis(self.timings.agent_ready_ms))
        });
        booted && self.bad_content(id).is_none()
    }

    /// The instance's private IP: the scenario's, else 172.16.0.N (N: its place among the IDs).
    pub(super) fn private_ip(&self, id: &str) -> String {
        if let Some(ip) = self.assistant.spec.private_ips.get(id) {
            return ip.clone();
        }
        let n = self.instances.keys().position(|k| k == id).unwrap_or(0);
        format!("172.16.{}.{}", n / 250, n % 250 + 2)
    }

    pub(super) fn public_ip(&self, id: &str) -> Option<String> {
        self.assistant.spec.public_ips.get(id).cloned()
    }

    pub(super) fn describe_cloud_assistant_status(
        &self,
        req: &Req,
        now: Instant,
    ) -> Result<Value, ApiError> {
        let region = Self::check_region(req, true)?;
        // §3: `InstanceId.N`; at most 50 per call in the SDK model (Medium).
        let ids = req.repeat_list("InstanceId", 50)?;
        let items: Vec<Value> = self
            .instances
            .values()
            .filter(|i| Self::region_ok(region.as_deref(), &i.spec.region))
            .filter(|i| ids.is_empty() || ids.contains(&i.spec.id))
            .map(|i| {
                let ready = self.agent_ready(&i.spec.id, now);
                json!({"InstanceId": i.spec.id, "CloudAssistantStatus": ready.to_string(),
                       "CloudAssistantVersion": "2.2.3.317", "OSType": "Linux",
                       "SupportSessionManager": true})
            })
            .collect();
        Ok(
            json!({"TotalCount": items.len(), "PageNumber": 1, "PageSize": items.len(),
                  "InstanceCloudAssistantStatusSet": {"InstanceCloudAssistantStatus": items}}),
        )
    }

    pub(super) fn run_command(&mut self, req: &Req, now: Instant) -> Result<Value, ApiError> {
        let region = Self::check_region(req, true)?;
        let script = req.required("Type")?.to_owned();
        // Source: §3 (Type RunShellScript | RunPowerShellScript | RunBatScript); the code of the
        // refusal (InvalidParameter) is UNCONFIRMED for RunCommand.
        if !matches!(
            script.as_str(),
            "RunShellScript" | "RunPowerShellScript" | "RunBatScript"
        ) {
            return Err(invalid("Type"));
        }
        let content = req.required("CommandContent")?;
        // Source: §3 (CommandContent at most 18 KB); the refusal's code is UNCONFIRMED.
        if content.len() > 18 * 1024 {
            return Err(invalid("CommandContent"));
        }
        let timeout_s: u64 = match req.get("Timeout") {
            None | Some("") => 60,
            // Source: §3 (Timeout 10-86400 s, 60 by default); the refusal's code is UNCONFIRMED.
            Some(t) => t
                .parse()
                .ok()
                .filter(|t| (10..=86_400).contains(t))
                .ok_or_else(|| invalid("Timeout"))?,
        };
        let ids = req.repeat_list("InstanceId", 100)?;
        let [id] = ids.as_slice() else {
            // The simulator runs a command on one instance at a time (what the rollback asks).
            return Err(invalid("InstanceId.1"));
        };
        let token = req.get("ClientToken").filter(|t| !t.is_empty());
        let fingerprint = format!("{id}|{script}|{content}|{timeout_s}");
        if let Some(t) = token {
            if let Some((seen, invoke)) = self.assistant.tokens.get(t) {
                if *seen != fingerprint {
                    // Source: ecs-evidence.md §3, C3 (the code, for CreateSnapshot's ClientToken);
                    // ECS's idempotence page (help/en/doc-detail/25693) gives it for any call
                    // that takes one.
                    return Err(ApiError::new(
                        403,
                        "IdempotentParameterMismatch",
                        "The specified clientToken is used.",
                    ));
                }
                let command = self
                    .assistant
                    .invocations
                    .get(invoke)
                    .map(|i| i.command_id.clone())
                    .unwrap_or_default();
                return Ok(json!({"InvokeId": invoke, "CommandId": command}));
            }
        }
        match self.instances.get(id.as_str()) {
            Some(i) if Self::region_ok(region.as_deref(), &i.spec.region) => {
                // §3: "instance Running with the agent installed"; the answer's code, as for
                // other calls on an instance in the wrong state, is UNCONFIRMED for RunCommand.
                if i.status != "Running" {
                    return Err(incorrect_instance_status());
                }
            }
            _ => return Err(not_found("InvalidInstanceId.NotFound", "InstanceId")),
        }
        self.assistant.made += 1;
        let n = self.assistant.made;
        let invoke = format!("t-hz{:018x}", n * 0x9e37_79b9 + 0x1000);
        let command_id = format!("c-hz{:018x}", n * 0x7f4a_7c15 + 0x2000);
        self.assistant.invocations.insert(
            invoke.clone(),
            SimInvocation {
                id: invoke.clone(),
                command_id: command_id.clone(),
                instance: id.clone(),
                script,
                timeout_s,
                created: now,
                created_utc: Utc::now(),
                end: None,
            },
        );
        if let Some(t) = token {
            self.assistant
                .tokens
                .insert(t.to_owned(), (fingerprint, invoke.clone()));
        }
        let status = self
            .instances
            .get(id.as_str())
            .map(|i| i.status.clone())
            .unwrap_or_default();
        self.record("RunCommand", id, format!("InvokeId={invoke}"), status);
        Ok(json!({"InvokeId": invoke, "CommandId": command_id}))
    }

    /// The invocation's per-instance state now: (status, exit code, error code, output).
    fn invocation_state(
        &mut self,
        invoke: &str,
        now: Instant,
    ) -> Option<(String, Option<i64>, String, String)> {
        let inv = self.assistant.invocations.get(invoke)?.clone();
        if let Some(end) = &inv.end {
            return Some(end.clone());
        }
        let delivery_timeout = Duration::from_millis(self.timings.delivery_timeout_ms);
        let delivered = match self.agent_ready_at(&inv.instance) {
            Some(at) if at <= inv.created + delivery_timeout => Some(at.max(inv.created)),
            _ => None,
        };
        let Some(delivered) = delivered.filter(|d| now >= *d) else {
            if now >= inv.created + delivery_timeout {
                // §3: "Aborted": not delivered within one minute.
                let end = (
                    "Aborted".to_owned(),
                    None,
                    "DeliveryTimeout".to_owned(),
                    String::new(),
                );
                self.assistant.invocations.get_mut(invoke)?.end = Some(end.clone());
                return Some(end);
            }
            return Some(("Pending".into(), None, String::new(), String::new()));
        };
        let runs = Duration::from_millis(self.timings.command_ms);
        let timeout = Duration::from_secs(inv.timeout_s);
        if runs > timeout && now >= delivered + timeout {
            let end = (
                "Timeout".to_owned(),
                None,
                "ExecutionTimeout".to_owned(),
                String::new(),
            );
            self.assistant.invocations.get_mut(invoke)?.end = Some(end.clone());
            return Some(end);
        }
        if now < delivered + runs {
            return Some(("Running".into(), None, String::new(), String::new()));
        }
        let pad = "#".repeat(self.assistant.spec.output_padding);
        let end = match self.bad_content(&inv.instance) {
            None => (
                "Success".to_owned(),
                Some(0),
                String::new(),
                format!("{pad}DISK_DEVICE_OK\nSERVICE_OK\n"),
            ),
            Some(bad) => (
                "Failed".to_owned(),
                Some(1),
                "ExitCodeNonzero".to_owned(),
                format!(
                    "{pad}DISK_DEVICE_OK\nSERVICE_DOWN: the application did not come up on {bad}\n"
                ),
            ),
        };
        self.assistant.invocations.get_mut(invoke)?.end = Some(end.clone());
        Some(end)
    }

    /// §3: the overall status of a one-instance invocation.
    fn overall(per_instance: &str) -> &'static str {
        match per_instance {
            "Pending" => "Pending",
            "Running" => "Running",
            "Success" => "Success",
            _ => "Failed",
        }
    }

    pub(super) fn describe_invocations(
        &mut self,
        req: &Req,
        now: Instant,
    ) -> Result<Value, ApiError> {
        Self::check_region(req, true)?;
        let wanted = req.get("InvokeId").filter(|i| !i.is_empty());
        let ids: Vec<String> = self
            .assistant
            .invocations
            .keys()
            .filter(|k| wanted.is_none_or(|w| w == k.as_str()))
            .cloned()
            .collect();
        let mut items = Vec::new();
        for id in ids {
            let Some((status, exit, code, _)) = self.invocation_state(&id, now) else {
                continue;
            };
            let Some(inv) = self.assistant.invocations.get(&id) else {
                continue;
            };
            items.push(json!({
                "InvokeId": inv.id, "CommandId": inv.command_id, "CommandType": inv.script,
                "InvocationStatus": Self::overall(&status), "Timeout": inv.timeout_s,
                "CreationTime": seconds(inv.created_utc),
                "InvokeInstances": {"InvokeInstance": [{
                    "InstanceId": inv.instance, "InvocationStatus": status,
                    "ExitCode": exit, "ErrorCode": code,
                }]},
            }));
        }
        Ok(
            json!({"TotalCount": items.len(), "PageNumber": 1, "PageSize": 10,
                  "Invocations": {"Invocation": items}}),
        )
    }

    pub(super) fn describe_invocation_results(
        &mut self,
        req: &Req,
        now: Instant,
    ) -> Result<Value, ApiError> {
        Self::check_region(req, true)?;
        let invoke = req.required("InvokeId")?.to_owned();
        let instance = req.get("InstanceId").filter(|i| !i.is_empty());
        let mut items = Vec::new();
        if let Some((status, exit, code, output)) = self.invocation_state(&invoke, now) {
            if let Some(inv) = self.assistant.invocations.get(&invoke) {
                if instance.is_none_or(|i| i == inv.instance) {
                    let (b64, dropped) = encode_output(&output);
                    items.push(json!({
                        "InvokeId": inv.id, "CommandId": inv.command_id, "InstanceId": inv.instance,
                        "InvocationStatus": status,
                        "InvokeRecordStatus": if matches!(status.as_str(), "Pending" | "Running") { "Running" } else { "Finished" },
                        "ExitCode": exit, "Output": b64, "Dropped": dropped,
                        "ErrorCode": code, "ErrorInfo": "",
                    }));
                }
            }
        }
        Ok(
            json!({"Invocation": {"TotalCount": items.len(), "PageNumber": 1, "PageSize": 10,
                  "InvocationResults": {"InvocationResult": items}}}),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;

    fn world(spec: AssistantSpec) -> World {
        let mut w = World::new(&default_fleet(), Timings::fast()).expect("fleet");
        w.assistant = assistant::Assistant::new(spec);
        w
    }

    fn call(w: &mut World, action: &str, params: &[(&str, &str)], at: Instant) -> Value {
        let mut p: BTreeMap<String, String> = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        p.entry("RegionId".into()).or_insert("cn-hangzhou".into());
        w.apply(action, &Req { params: &p }, at).expect("accepted")
    }

    const WEB: &str = "i-bp1webapp00000001";

    fn run(w: &mut World, token: &str, at: Instant) -> String {
        let v = call(
            w,
            "RunCommand",
            &[
                ("InstanceId.1", WEB),
                ("Type", "RunShellScript"),
                ("CommandContent", "dHJ1ZQ=="),
                ("ClientToken", token),
            ],
            at,
        );
        v["InvokeId"].as_str().expect("id").to_owned()
    }

    fn result(w: &mut World, id: &str, at: Instant) -> Value {
        let v = call(w, "DescribeInvocationResults", &[("InvokeId", id)], at);
        v["Invocation"]["InvocationResults"]["InvocationResult"][0].clone()
    }

    #[test]
    fn a_command_runs_to_its_end_once_per_client_token() {
        // §3: RunCommand answers InvokeId; the per-instance status goes to Success with ExitCode.
        let mut w = world(AssistantSpec::default());
        let t0 = Instant::now();
        let id = run(&mut w, "tok-1", t0);
        assert_eq!(
            run(&mut w, "tok-1", t0),
            id,
            "the same token, the same invocation"
        );
        assert_ne!(run(&mut w, "tok-2", t0), id);
        let later = t0 + Duration::from_secs(5);
        let r = result(&mut w, &id, later);
        assert_eq!(
            (r["InvocationStatus"].as_str(), r["ExitCode"].as_i64()),
            (Some("Success"), Some(0))
        );
        let inv = call(&mut w, "DescribeInvocations", &[("InvokeId", &id)], later);
        assert_eq!(
            inv["Invocations"]["Invocation"][0]["InvocationStatus"],
            "Success"
        );
        let runs = w
            .events()
            .iter()
            .filter(|e| e.action == "RunCommand")
            .count();
        assert_eq!(runs, 2);
    }

    #[test]
    fn a_bad_snapshot_fails_the_check_and_an_absent_agent_aborts_it() {
        let mut w = world(AssistantSpec {
            bad_snapshots: vec!["original".into()],
            agent_never: vec!["i-bp1legacy00000003".into()],
            ..Default::default()
        });
        let t0 = Instant::now();
        let id = run(&mut w, "tok", t0);
        let r = result(&mut w, &id, t0 + Duration::from_secs(5));
        assert_eq!(r["InvocationStatus"], "Failed");
        assert_eq!(r["ErrorCode"], "ExitCodeNonzero");
        assert_eq!(r["ExitCode"], 1);
        let status = call(
            &mut w,
            "DescribeCloudAssistantStatus",
            &[("InstanceId.1", "i-bp1legacy00000003")],
            t0,
        );
        assert_eq!(
            status["InstanceCloudAssistantStatusSet"]["InstanceCloudAssistantStatus"][0]
                ["CloudAssistantStatus"],
            "false"
        );
    }

    #[test]
    fn a_command_past_its_timeout_and_one_never_delivered() {
        // §3: status Timeout with ExecutionTimeout; Aborted with DeliveryTimeout ("not
        // delivered within one minute"; the simulator's minute is `delivery_timeout_ms`).
        let mut w = world(AssistantSpec {
            agent_never: vec!["i-bp1legacy00000003".into()],
            ..Default::default()
        });
        w.timings.command_ms = 90_000; // past the default Timeout of 60 s
        let t0 = Instant::now();
        let id = run(&mut w, "slow", t0);
        let r = result(&mut w, &id, t0 + Duration::from_secs(5));
        assert_eq!(r["InvocationStatus"], "Running");
        let r = result(&mut w, &id, t0 + Duration::from_secs(61));
        assert_eq!(
            (r["InvocationStatus"].as_str(), r["ErrorCode"].as_str()),
            (Some("Timeout"), Some("ExecutionTimeout"))
        );
        let v = call(
            &mut w,
            "RunCommand",
            &[
                ("InstanceId.1", "i-bp1legacy00000003"),
                ("Type", "RunShellScript"),
                ("CommandContent", "dHJ1ZQ=="),
            ],
            t0,
        );
        let lost = v["InvokeId"].as_str().expect("id").to_owned();
        assert_eq!(result(&mut w, &lost, t0)["InvocationStatus"], "Pending");
        let r = result(&mut w, &lost, t0 + Duration::from_secs(2));
        assert_eq!(
            (r["InvocationStatus"].as_str(), r["ErrorCode"].as_str()),
            (Some("Aborted"), Some("DeliveryTimeout"))
        );
        let inv = call(
            &mut w,
            "DescribeInvocations",
            &[("InvokeId", &lost)],
            t0 + Duration::from_secs(2),
        );
        assert_eq!(
            inv["Invocations"]["Invocation"][0]["InvocationStatus"],
            "Failed"
        );
    }

    #[test]
    fn output_is_base64_and_capped_at_24_kb() {
        use base64::Engine as _;
        let (b64, dropped) = encode_output(&"x".repeat(MAX_OUTPUT + 10));
        assert_eq!(dropped, 10);
        let back = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64");
        assert_eq!(back.len(), MAX_OUTPUT);
        let mut w = world(AssistantSpec {
            output_padding: 30_000,
            ..Default::default()
        });
        let t0 = Instant::now();
        let id = run(&mut w, "tok", t0);
        let r = result(&mut w, &id, t0 + Duration::from_secs(5));
        assert!(r["Dropped"].as_u64().is_some_and(|d| d > 0), "{r}");
    }
}
