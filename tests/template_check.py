#!/usr/bin/env python3
"""Checks template.yaml for what cfn-lint and `sam validate --lint` do not catch, and
deploy/s.yaml (the Function Compute deployment) for the same wiring.

Run by .ci/run after `pip install cfn-lint` (it reuses cfn-lint's YAML decoder, which knows the
CloudFormation tags). Prints one line per check and a closing 'N passed, N failed' line.
"""
import os
import re
import sys

from cfnlint.decode import decode

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
template, errors = decode(os.path.join(ROOT, "template.yaml"))
if errors or template is None:
    print("template.yaml does not parse:", errors)
    sys.exit(1)

resources = template["Resources"]
glob = template.get("Globals", {}).get("Function", {})
fn = resources["RollbackFunction"]
props = fn["Properties"]
env = props["Environment"]["Variables"]
source = "".join(
    open(os.path.join(dp, f), encoding="utf-8").read()
    for dp, _, files in os.walk(os.path.join(ROOT, "src"))
    for f in files
    if f.endswith(".rs")
)
cargo = open(os.path.join(ROOT, "Cargo.toml"), encoding="utf-8").read()

results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(("ok    " if ok else "FAIL  ") + name + ("" if ok else f": {detail}"))


def prop(key):
    return props.get(key, glob.get(key))


def text(value):
    """The literal text of a value, through Fn::Sub."""
    if isinstance(value, dict) and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        return sub if isinstance(sub, str) else sub[0]
    return value if isinstance(value, str) else ""


timeout = int(prop("Timeout"))
check("runtime is provided.al2023", prop("Runtime") == "provided.al2023", prop("Runtime"))
check("handler is bootstrap", prop("Handler") == "bootstrap", prop("Handler"))
check("architecture is arm64", list(prop("Architectures")) == ["arm64"], prop("Architectures"))
meta = fn.get("Metadata", {})
check("built with rust-cargolambda", meta.get("BuildMethod") == "rust-cargolambda", meta)
binary = meta.get("BuildProperties", {}).get("Binary")
check("the built binary is the crate's", f'name = "{binary}"' in cargo, binary)
check("timeout fits Lambda (<= 900 s)", 0 < timeout <= 900, timeout)
lease = 1200
m = re.search(r"lease: Duration::from_secs\((\d+)\)", source)
if m:
    lease = int(m.group(1))
check("the ledger lease outlives an invocation", lease > timeout, f"lease {lease} <= timeout {timeout}")


settings_rs = open(os.path.join(ROOT, "src", "settings.rs"), encoding="utf-8").read()
m = re.search(r"impl Default for Settings \{(.*?)\n\}", settings_rs, re.S)
settings_default = m.group(1) if m else ""
check("src/settings.rs has Settings::default()", bool(settings_default), "not found")


def default_secs(field, fallback):
    """A duration of Settings::default() in src/settings.rs (`field: Duration::from_secs(n)`)."""
    m = re.search(r"\b" + field + r": Duration::from_secs\((\d+)\)", settings_default)
    return int(m.group(1)) if m else fallback


# What a rollback needs before it may begin with the default estimates: stop + reset + start
# (+ the undo snapshot when preserveCurrent is on by default) + the deadline margin.
est = {k: default_secs("estimate_" + k, d) for k, d in
       [("stop", 60), ("reset", 120), ("start", 60), ("snapshot", 120)]}
snapshot_timeout = default_secs("snapshot_timeout", 3600)
m = re.search(r"const DEADLINE_MARGIN: Duration = Duration::from_secs\((\d+)\)", source)
margin = int(m.group(1)) if m else 2
m = re.search(r"\bpreserve_current: (true|false),", settings_default)
preserve_default = (m.group(1) == "true") if m else False
if str(env.get("ECS_ROLLBACK_PRESERVE_CURRENT", "")).lower() in ("1", "true", "yes", "on"):
    preserve_default = True
need = est["stop"] + est["reset"] + est["start"] + margin + (est["snapshot"] if preserve_default else 0)
need_undo = est["stop"] + est["reset"] + est["start"] + est["snapshot"] + margin
check(f"the function timeout fits a rollback with the default estimates ({need} s)", timeout >= need,
      f"{timeout} < {need}")
check(f"and one with preserveCurrent ({need_undo} s)", timeout >= need_undo, f"{timeout} < {need_undo}")

sqs_events = [e for e in props.get("Events", {}).values() if e["Type"] == "SQS"]
check("an SQS event source", len(sqs_events) == 1, sqs_events)
for ev in sqs_events:
    p = ev["Properties"]
    check(
        "SQS reports partial batch failures",
        p.get("FunctionResponseTypes") == ["ReportBatchItemFailures"],
        p.get("FunctionResponseTypes"),
    )
    queue = resources[p["Queue"]["Fn::GetAtt"][0]]["Properties"]
    fifo = queue.get("FifoQueue") is True
    check("the request queue is FIFO", fifo, queue)
    if fifo:
        check("FIFO batch size <= 10", int(p.get("BatchSize", 10)) <= 10, p.get("BatchSize"))
        check("no batching window on FIFO", "MaximumBatchingWindowInSeconds" not in p, p)
    vis = int(queue.get("VisibilityTimeout", 30))
    # README, "How long an instance can stay stopped": a message cut off by the deadline comes
    # back visibility - timeout after it. Lambda refuses a visibility timeout under the function
    # timeout; AWS's "six times" (room for throttled invokes) is left on purpose: the ledger
    # makes the early twin harmless, and 6 x 900 s kept an instance Stopped 75 minutes.
    check("visibility timeout >= function timeout (Lambda refuses less)", vis >= timeout, f"{vis} < {timeout}")
    check("visibility timeout <= function timeout + 120 s (the shortest continuation)",
          vis <= timeout + 120, f"{vis} > {timeout} + 120: an instance cut off stays Stopped {vis - timeout} s")
    receives = int(queue.get("RedrivePolicy", {}).get("maxReceiveCount", 0))
    check("redeliveries outlast an undo snapshot and a lease before the DLQ",
          receives * vis >= snapshot_timeout + lease, f"{receives} x {vis} < {snapshot_timeout} + {lease}")
    redrive = queue.get("RedrivePolicy", {})
    dlq_ref = redrive.get("deadLetterTargetArn", {}).get("Fn::GetAtt", [None])[0]
    check("the queue has a dead-letter queue", dlq_ref in resources, redrive)
    if dlq_ref in resources and fifo:
        check("the DLQ of a FIFO queue is FIFO", resources[dlq_ref]["Properties"].get("FifoQueue") is True, dlq_ref)
    mc = p.get("ScalingConfig", {}).get("MaximumConcurrency")
    check("SQS maximum concurrency is 2 to 1000 when set", mc is None or 2 <= int(mc) <= 1000, mc)

eic = props.get("EventInvokeConfig", {})
check("async retries are 2 (each a chance to resume a run cut off)", int(eic.get("MaximumRetryAttempts", 2)) == 2, eic)
age = int(eic.get("MaximumEventAgeInSeconds", 21600))
# Lambda waits 1 min before the second attempt and 2 min before the third.
check("the async event age lets the third attempt start after two full ones",
      2 * timeout + 180 <= age <= 21600, f"{age} < 2 x {timeout} + 180")
dest = eic.get("DestinationConfig", {})
check("async success and failure destinations", "OnSuccess" in dest and "OnFailure" in dest, dest)
check("a Function URL", "FunctionUrlConfig" in props, props.keys())

check("the function has no schedule of its own (the state machine runs drills)",
      not [e for e in props.get("Events", {}).values() if e["Type"] == "ScheduleV2"], props.get("Events"))
machine = resources["DrillStateMachine"]
mprops = machine["Properties"]
drills = [e for e in mprops.get("Events", {}).values() if e["Type"] == "ScheduleV2"]
check("a drill schedule, on the state machine", len(drills) == 1, drills)
for d in drills:
    state = d["Properties"].get("State")
    default = template["Parameters"][state["Ref"]]["Default"] if isinstance(state, dict) else state
    check("the drill schedule is disabled by default", default == "DISABLED", default)
    check("the drill input carries a drill and its scheduled time",
          '"drill"' in text(d["Properties"].get("Input")) and "<aws.scheduler.scheduled-time>" in text(d["Properties"].get("Input")),
          d["Properties"].get("Input"))

    import json
    rendered = text(d["Properties"].get("Input")).replace("${DrillTargets}", '[{"instanceId": "i-bp1webapp00000001"}]')
    try:
        json.loads(rendered)
        renders = True
    except ValueError as e:
        renders = str(e)
    check("the drill input renders to JSON", renders is True, renders)

# The drill state machine: what cfn-lint and asl-validator do not know about this function.
states = mprops["Definition"]["States"]
check("a STANDARD state machine (a Distributed Map needs one)", mprops.get("Type") == "STANDARD", mprops.get("Type"))
check("plan, map, summary", [states["Plan"]["Type"], states["Targets"]["Type"], states["Summary"]["Type"]] == ["Task", "Map", "Task"], list(states))
tmap = states["Targets"]
check("the map is distributed", tmap["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED", tmap["ItemProcessor"]["ProcessorConfig"])
check("the map's concurrency and tolerated failures come from the plan (the drill's concurrency and maxErrors)",
      tmap.get("MaxConcurrencyPath") == "$.plan.maxConcurrency"
      and tmap.get("ToleratedFailureCountPath") == "$.plan.toleratedFailureCount"
      and tmap.get("ToleratedFailurePercentagePath") == "$.plan.toleratedFailurePercentage", tmap)
target_state = tmap["ItemProcessor"]["States"]["Target"]
retry = [r for r in target_state.get("Retry", []) if "Retryable" in r["ErrorEquals"]]
check("a target's Retryable failure is retried within seconds", len(retry) == 1 and retry[0]["IntervalSeconds"] <= 10, retry)
if retry:
    r = retry[0]
    waits, w = 0, r["IntervalSeconds"]
    for _ in range(r["MaxAttempts"]):
        waits += min(w, r.get("MaxDelaySeconds", w))
        w *= r.get("BackoffRate", 2)
    check("the retries outlast a dead invocation's claim (heartbeat timeout 120 s)", waits > 120, waits)
for name in ["Plan", "Summary"]:
    check(f"{name} passes its workflow step", states[name]["Parameters"]["Payload"]["workflow"] == name.lower(), states[name]["Parameters"])
check("a stopped map still reaches the summary", any(c["Next"] == "MapStopped" for c in tmap.get("Catch", [])) and states["MapStopped"]["Next"] == "Summary", tmap.get("Catch"))
workflow_src = open(os.path.join(ROOT, "src", "workflow.rs"), encoding="utf-8").read()
for key in ["maxConcurrency", "toleratedFailureCount", "toleratedFailurePercentage"]:
    check(f"the plan answers {key}", f'"{key}"' in workflow_src, key)
policies = mprops.get("Policies", [])
invoke = [p["LambdaInvokePolicy"] for p in policies if isinstance(p, dict) and "LambdaInvokePolicy" in p]
check("the state machine invokes only this function", invoke == [{"FunctionName": {"Ref": "RollbackFunction"}}], invoke)
statements = [st for p in policies if isinstance(p, dict) for st in p.get("Statement", [])]
actions = sorted(a for st in statements for a in st["Action"])
check("and only starts, describes and stops its own executions",
      actions == ["states:DescribeExecution", "states:StartExecution", "states:StopExecution"]
      and all("ecs-rollback-drill" in text(st["Resource"]) for st in statements), statements)
check("the state machine's name is the one its policy names", mprops.get("Name") == "ecs-rollback-drill", mprops.get("Name"))

NOTIFY_SECRETS = ["ECS_ROLLBACK_APPROVAL_SECRET", "ECS_ROLLBACK_NOTIFY_DINGTALK_URL", "ECS_ROLLBACK_NOTIFY_DINGTALK_SECRET",
                  "ECS_ROLLBACK_NOTIFY_LARK_URL", "ECS_ROLLBACK_NOTIFY_LARK_SECRET", "ECS_ROLLBACK_NOTIFY_SLACK_URL",
                  "ECS_ROLLBACK_NOTIFY_CLOUDEVENTS_URL", "ECS_ROLLBACK_NOTIFY_CLOUDEVENTS_SECRET"]
# The Alibaba AccessKey: read at run time from Secrets Manager through the Parameters and
# Secrets Lambda Extension, never in the function's configuration.
for name in ["ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET", "ALIBABA_CLOUD_SECURITY_TOKEN"]:
    check(f"{name} is not in the function's environment", name not in env, env.get(name))
check("the secret's name reaches the code", env.get("ECS_ROLLBACK_ALIBABA_SECRET_ID") == {"Ref": "AlibabaCredentialsSecret"},
      env.get("ECS_ROLLBACK_ALIBABA_SECRET_ID"))
layers = props.get("Layers", [])
check("the Parameters and Secrets Lambda Extension is a layer", layers == [{"Ref": "ParamsAndSecretsExtensionLayerArn"}], layers)
layer_param = template["Parameters"].get("ParamsAndSecretsExtensionLayerArn", {})
check("the extension layer is the arm64 one, as the function",
      "Arm64" in layer_param.get("AllowedPattern", "") and glob.get("Architectures") == ["arm64"], layer_param)
fn_statements = [st for p in props.get("Policies", []) if isinstance(p, dict) for st in p.get("Statement", [])]
check("the function may read that one secret and nothing else",
      [a for st in fn_statements for a in st["Action"]] == ["secretsmanager:GetSecretValue"]
      and all("${AlibabaCredentialsSecret}-??????" in text(st["Resource"]) for st in fn_statements), fn_statements)
for name in ["ECS_ROLLBACK_WEBHOOK_SECRET", "ECS_ROLLBACK_WEBHOOK_TOKEN"] + NOTIFY_SECRETS:
    v = text(env.get(name))
    check(f"{name} comes from Secrets Manager or SSM, not plain text",
          v.startswith("{{resolve:secretsmanager:") or v.startswith("{{resolve:ssm"), env.get(name))
# Read by the extension, not by the code.
EXTENSION_VARIABLES = ["SECRETS_MANAGER_TTL"]
for name in env:
    check(f"the code reads {name}", f'"{name}"' in source or name in ["RUST_LOG"] + EXTENSION_VARIABLES, name)

# deploy/s.yaml: the Function Compute deployment (Serverless Devs, fc3 component).
import json
import yaml

fc = yaml.safe_load(open(os.path.join(ROOT, "deploy", "s.yaml"), encoding="utf-8"))
fprops = fc["resources"]["ecs-rollback"]["props"]
crc = fprops.get("customRuntimeConfig", {})
check("s.yaml: a custom runtime", str(fprops.get("runtime", "")).startswith("custom"), fprops.get("runtime"))
check("s.yaml: starts the binary as serve-fc", crc.get("args") == ["serve-fc"], crc)
port = re.search(r"pub const DEFAULT_PORT: u16 = (\d+);", source)
check("s.yaml: listens where serve-fc does", port is not None and crc.get("port") == int(port.group(1)), crc.get("port"))
check("s.yaml: timeout as the Lambda one", fprops.get("timeout") == timeout, fprops.get("timeout"))
check("s.yaml: the ledger lease outlives an invocation", lease > int(fprops.get("timeout", 0)), fprops.get("timeout"))
check("s.yaml: a RAM role, no AccessKey in the environment",
      "role" in fprops and not any(k.startswith("ALIBABA_CLOUD_ACCESS_KEY") for k in fprops.get("environmentVariables", {})),
      fprops.get("environmentVariables"))
fenv = fprops.get("environmentVariables", {})
for name in ["ECS_ROLLBACK_WEBHOOK_SECRET", "ECS_ROLLBACK_WEBHOOK_TOKEN", "ECS_ROLLBACK_POLICY"] + NOTIFY_SECRETS:
    check(f"s.yaml: {name} comes from the deploying environment, not plain text",
          str(fenv.get(name, "")).startswith("${env("), fenv.get(name))
for name in fenv:
    check(f"s.yaml: the code reads {name}", f'"{name}"' in source or name == "RUST_LOG", name)
ftimeout = int(fprops.get("timeout", 0))
check(f"s.yaml: the timeout fits a rollback with the default estimates ({need} s)", ftimeout >= need, ftimeout)
for res in ["ecs-rollback", "ecs-rollback-webhook"]:
    aic = fc["resources"].get(res, {}).get("props", {}).get("asyncInvokeConfig", {})
    retries = aic.get("maxAsyncRetryAttempts")
    check(f"s.yaml: {res}: async retries are 2 (each a chance to resume a run cut off)",
          retries is not None and int(retries) == 2, retries)
    fage = int(aic.get("maxAsyncEventAgeInSeconds", 0))
    # FC does not document the wait between retries of a function error: at least the attempts.
    check(f"s.yaml: {res}: the event age lets the last attempt start after the others ran in full",
          (int(retries or 0)) * ftimeout <= fage, f"{fage} < {retries} x {ftimeout}")
check("s.yaml: failed async invocations have a destination",
      "onFailure" in fprops.get("asyncInvokeConfig", {}).get("destinationConfig", {}), fprops.get("asyncInvokeConfig"))
triggers = fprops.get("triggers", [])
mns = [t for t in triggers if t["triggerType"] == "eventbridge"
       and t["triggerConfig"]["eventSourceConfig"]["eventSourceType"] == "MNS"]
check("s.yaml: an MNS queue trigger", len(mns) == 1, [t["triggerName"] for t in triggers])
if mns:
    ro = mns[0]["triggerConfig"].get("runOptions", {})
    check("s.yaml: MNS messages one per invocation (no partial batch answers on FC)",
          str(ro.get("batchWindow", {}).get("CountBasedWindow")) == "1", ro.get("batchWindow"))
    check("s.yaml: the MNS stream has a dead-letter queue", "deadLetterQueue" in ro, ro)
timers = [t for t in triggers if t["triggerType"] == "timer"]
check("s.yaml: a drill timer", len(timers) == 1, [t["triggerName"] for t in triggers])
if timers:
    tc = timers[0]["triggerConfig"]
    check("s.yaml: the drill timer is disabled by default", tc.get("enable") is False, tc.get("enable"))
    try:
        drill = json.loads(tc.get("payload", ""))["drill"]
        payload_ok = bool(drill.get("name")) and ("targets" in drill or "selector" in drill)
    except (ValueError, KeyError, TypeError) as e:
        payload_ok = str(e)
    check("s.yaml: the drill payload is a drill", payload_ok is True, payload_ok)
# What the fc3 component's own schema (devsapp/fc3 src/schema.json) requires of these props.
check("s.yaml: runtime is one the fc3 component knows", fprops.get("runtime") in ("custom", "custom.debian10"), fprops.get("runtime"))
mem = fprops.get("memorySize")
check("s.yaml: memorySize is 128 to 32768 in steps of 64", isinstance(mem, int) and 128 <= mem <= 32768 and mem % 64 == 0, mem)
cpu = fprops.get("cpu")
check("s.yaml: cpu 0.05 to 16, 1:1 to 1:4 against memory in GB",
      isinstance(cpu, (int, float)) and 0.05 <= cpu <= 16 and isinstance(mem, int) and 1 <= (mem / 1024) / cpu <= 4,
      (cpu, mem))
check("s.yaml: diskSize 512 or 10240", fprops.get("diskSize") in (512, 10240), fprops.get("diskSize"))
check("s.yaml: timeout 1 to 86400 s", isinstance(fprops.get("timeout"), int) and 1 <= fprops["timeout"] <= 86400, fprops.get("timeout"))
check("s.yaml: environment values are strings", all(isinstance(v, str) for v in fenv.values()), fenv)
for t in triggers:
    tc = t.get("triggerConfig", {})
    if t.get("triggerType") == "eventbridge":
        need = ["asyncInvocationType", "eventRuleFilterPattern", "eventSinkConfig", "eventSourceConfig", "runOptions", "triggerEnable"]
        check(f"s.yaml: trigger {t.get('triggerName')} has every field fc3 requires of an EventBridge trigger",
              all(k in tc for k in need)
              and all(k in tc.get("eventSourceConfig", {}) for k in ["eventSourceParameters", "eventSourceType"])
              and "deliveryOption" in tc.get("eventSinkConfig", {}),
              sorted(tc))
        try:
            json.loads(tc.get("eventRuleFilterPattern", ""))
            pattern_ok = True
        except ValueError as e:
            pattern_ok = str(e)
        check(f"s.yaml: trigger {t.get('triggerName')} filter pattern is JSON", pattern_ok is True, pattern_ok)
    if t.get("triggerType") == "timer":
        check(f"s.yaml: trigger {t.get('triggerName')} has cronExpression and enable",
              "cronExpression" in tc and isinstance(tc.get("enable"), bool), sorted(tc))
default_bus = [t for t in triggers if t["triggerType"] == "eventbridge"
               and t["triggerConfig"]["eventSourceConfig"]["eventSourceType"] == "Default"]
check("s.yaml: an EventBridge trigger for alerts and requests", len(default_bus) == 1, [t["triggerName"] for t in triggers])
if default_bus:
    pattern = json.loads(default_bus[0]["triggerConfig"]["eventRuleFilterPattern"])
    check("s.yaml: the EventBridge rule takes ECS events", "acs.ecs" in pattern.get("source", []), pattern)
    # Narrowed to the ECS events the remediation policy knows: every acs.ecs event must match
    # a branch that names its type.
    branches = pattern.get("$or", [])
    ecs_branches = [b for b in branches if "acs.cloudmonitor" not in b.get("source", []) ]
    check("s.yaml: the rule takes only the ECS event types the policy knows (Disk:Stalled)",
          len(ecs_branches) == 1 and ecs_branches[0].get("type") == [{"prefix": "ecs:Disk:Stalled"}]
          and "acs.ecs" not in sum((b.get("source", []) for b in branches), []), pattern)

# The webhook: a second function of the same code in HTTP mode, behind an HTTP trigger.
wh = fc["resources"].get("ecs-rollback-webhook", {}).get("props", {})
whc = wh.get("customRuntimeConfig", {})
check("s.yaml: a webhook function", bool(wh), sorted(fc["resources"]))
check("s.yaml: the webhook function serves HTTP calls (serve-fc --http)", whc.get("args") == ["serve-fc", "--http"], whc)
check("s.yaml: the webhook function listens where serve-fc does", port is not None and whc.get("port") == int(port.group(1)), whc.get("port"))
check("s.yaml: the webhook runs the same code", wh.get("code") == fprops.get("code") and wh.get("runtime") == fprops.get("runtime"), wh.get("code"))
check("s.yaml: the webhook function has the same environment", wh.get("environmentVariables") == fenv, wh.get("environmentVariables"))
check("s.yaml: the webhook function has the same role", wh.get("role") == fprops.get("role"), wh.get("role"))
http = [t for t in wh.get("triggers", []) if t.get("triggerType") == "http"]
check("s.yaml: one HTTP trigger, on the webhook function", len(http) == 1
      and not any(t.get("triggerType") == "http" for t in triggers), [t.get("triggerName") for t in wh.get("triggers", [])])
if http:
    hc = http[0].get("triggerConfig", {})
    check("s.yaml: the HTTP trigger takes POST", hc.get("methods") == ["POST"], hc.get("methods"))
    check("s.yaml: the HTTP trigger leaves authentication to the webhook (anonymous)", hc.get("authType") == "anonymous", hc.get("authType"))
    check("s.yaml: the HTTP trigger fields are ones fc3 knows",
          set(hc) <= {"authType", "authConfig", "methods", "disableURLInternet", "corsConfig"}, sorted(hc))

passed = sum(results)
failed = len(results) - passed
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
