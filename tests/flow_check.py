#!/usr/bin/env python3
"""Checks deploy/drill-flow.yaml against CloudFlow's documented flow language, and the RAM
policy files deploy/ram-policy.json and deploy/ram-policy-flow.json.

No CloudFlow validator or engine is available offline, so the rules below are the documented
ones, each with the page it comes from:
- FDL basics: https://www.alibabacloud.com/help/en/serverless-workflow/latest/process-definition-introduction
- FC integration: https://www.alibabacloud.com/help/en/serverless-workflow/latest/integrated-function-compute
- Retry / Catch / error names: https://www.alibabacloud.com/help/en/serverless-workflow/latest/error-handling
- Map modes: https://www.alibabacloud.com/help/en/serverless-workflow/latest/inline-mode and
  https://www.alibabacloud.com/help/en/serverless-workflow/latest/distributed-mode
- $Context: https://www.alibabacloud.com/help/en/serverless-workflow/latest/data-transfer
- 64 KiB per state input/output, $Output only in an output constructor:
  https://www.alibabacloud.com/help/en/serverless-workflow/latest/input-and-output
- Naming (1 to 128 letters, digits, _ and -, starting with a letter or _):
  https://www.alibabacloud.com/help/en/serverless-workflow/latest/limits
- Function Compute's error codes (FC.{ErrorCode}): https://www.alibabacloud.com/help/en/functioncompute/error-codes
- RAM tag conditions for ECS (acs:ResourceTag/<key>):
  https://www.alibabacloud.com/help/en/ecs/user-guide/manage-resource-permissions-with-tags

Usage: flow_check.py [flow.yaml]. Without an argument it checks deploy/drill-flow.yaml and the
policies, and also checks that tests/data/drill-flow-invalid.yaml (the flow as it was before
issue 25) is refused for the reasons the issue gave. Prints one line per check; exits 1 on a
failure.
"""
import json
import os
import re
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KIB = 1024
STATE_LIMIT = 64 * KIB

STATE_TYPES = {"Task", "Pass", "Wait", "Choice", "Parallel", "Map", "Succeed", "Fail"}
COMMON = {"Name", "Description", "Type", "InputConstructor", "OutputConstructor", "Next", "End"}
FIELDS = {
    "Task": COMMON | {"Action", "TaskMode", "Parameters", "Retry", "Catch", "Timeout"},
    "Pass": COMMON,
    "Wait": COMMON | {"Seconds", "Timestamp"},
    "Choice": {"Name", "Description", "Type", "InputConstructor", "OutputConstructor", "Branches", "Default"},
    "Parallel": COMMON | {"Branches", "Retry", "Catch"},
    "Succeed": {"Name", "Description", "Type", "InputConstructor", "OutputConstructor", "End"},
    "Fail": {"Name", "Description", "Type", "Code", "Detail", "End"},
}
MAP_INLINE = COMMON | {"ItemsPath", "Processor", "Retry", "Catch", "MaxConcurrency"}
MAP_DISTRIBUTED = MAP_INLINE | {
    "ProcessorConfig", "ItemBatcher", "ItemReader", "ItemConstructor", "ResultWriter",
    "MaxItems", "ToleratedFailurePercentage", "ToleratedFailureCount",
}
RETRY_REQUIRED = {"Errors", "Description", "MaxAttempts", "IntervalSeconds"}
RETRY_FIELDS = RETRY_REQUIRED | {"BackoffRate", "MaxBackoffSeconds"}
CATCH_REQUIRED = {"Errors", "Description", "Next"}
CATCH_FIELDS = CATCH_REQUIRED | {"OutputConstructor"}
# Function Compute's error codes (its error-code page); CloudFlow names them FC.{ErrorCode}.
FC_ERROR_CODES = {
    "InvalidArgument", "MissingRequiredHeader", "PathNotSupported", "EntityTooLarge",
    "AccessDenied", "SignatureNotMatch", "InvalidAccessKeyID", "FunctionNotFound",
    "AliasNotFound", "VersionNotFound", "ConcurrentUpdateError", "ResourceExhausted",
    "ClientClosedRequest", "InternalServerError", "ResourceThrottled",
}
CONTEXT = {
    "Execution": {"Name", "Input", "RoleArn"},
    "Current": {"Name", "Input", "Output", "Error", "RetryCount", "TaskToken"},
}
TASK_MODES = {"RequestComplete", "WaitForSystemCallback", "WaitForCustomCallback"}
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,127}$")


def problems_of(flow):
    """Every rule the flow breaks, as text."""
    out = []
    if not isinstance(flow, dict):
        return ["the flow is not a mapping"]
    if flow.get("Type") != "StateMachine":
        out.append(f"Type must be StateMachine, not {flow.get('Type')!r}")
    if flow.get("SpecVersion") != "v1":
        out.append(f"SpecVersion must be v1, not {flow.get('SpecVersion')!r}")
    if not NAME.match(str(flow.get("Name", ""))):
        out.append(f"flow Name {flow.get('Name')!r} breaks the naming rule")
    scope(flow, "flow", out)
    text = json.dumps(flow)
    if re.search(r"\b\d{12,}\b", text) or "{AccountID}" in text or "AccountID" in text:
        out.append("an account ID is written in")
    region = re.search(r"\b(cn|ap|eu|us|me|na|sa)-[a-z]+(-\d+)?\b", text)
    if region:
        out.append(f"a region is written in: {region.group(0)}")
    return out


def scope(block, where, out):
    """A StartAt / States scope: the flow, or a Map's Processor."""
    states = block.get("States")
    if not isinstance(states, list) or not states:
        out.append(f"{where}: States must be a non-empty list")
        return
    names = [s.get("Name") for s in states if isinstance(s, dict)]
    if block.get("StartAt") not in names:
        out.append(f"{where}: StartAt {block.get('StartAt')!r} is not one of its states")
    for s in states:
        state(s, names, f"{where}/{s.get('Name')}", out)


def state(s, siblings, where, out):
    kind = s.get("Type")
    if kind not in STATE_TYPES:
        out.append(f"{where}: unknown Type {kind!r}")
        return
    if not NAME.match(str(s.get("Name", ""))):
        out.append(f"{where}: Name breaks the naming rule")
    if kind == "Map":
        distributed = "ProcessorConfig" in s
        allowed = MAP_DISTRIBUTED if distributed else MAP_INLINE
        for f in ("ItemsPath", "Processor"):
            if f not in s:
                out.append(f"{where}: a Map needs {f}")
        if distributed:
            mode = (s.get("ProcessorConfig") or {}).get("ExecutionMode")
            if mode not in ("Standard", "Express"):
                out.append(f"{where}: ProcessorConfig.ExecutionMode must be Standard or Express, not {mode!r}")
        cap = 100 if distributed else 40
        mc = s.get("MaxConcurrency")
        if mc is not None and not (isinstance(mc, int) and 1 <= mc <= cap):
            out.append(f"{where}: MaxConcurrency {mc!r} outside 1..{cap}")
        if isinstance(s.get("Processor"), dict):
            scope(s["Processor"], where, out)
        if "ItemConstructor" in s and not distributed:
            out.append(f"{where}: ItemConstructor exists only in distributed mode (no ProcessorConfig)")
    else:
        allowed = FIELDS[kind]
    for f in s:
        if f not in allowed:
            out.append(f"{where}: unknown field {f}")
    if kind not in ("Choice", "Fail", "Succeed"):
        if s.get("End") is not True and s.get("Next") not in siblings:
            out.append(f"{where}: neither End: true nor a Next that names a state of its scope")
    if kind == "Task":
        if s.get("TaskMode") not in TASK_MODES:
            out.append(f"{where}: TaskMode {s.get('TaskMode')!r}")
        if s.get("Action") == "FC:InvokeFunction":
            p = s.get("Parameters") or {}
            if "resourceArn" not in p:
                out.append(f"{where}: FC:InvokeFunction needs Parameters.resourceArn")
            if p.get("invocationType") not in ("Sync", "Async"):
                out.append(f"{where}: invocationType must be Sync or Async")
    for i, r in enumerate(s.get("Retry") or []):
        w = f"{where}: Retry[{i}]"
        for f in RETRY_REQUIRED - set(r):
            out.append(f"{w} needs {f}")
        for f in set(r) - RETRY_FIELDS:
            out.append(f"{w}: unknown field {f}" + (" (the cap is MaxBackoffSeconds)" if f == "MaxDelaySeconds" else ""))
        for f in ("IntervalSeconds", "MaxBackoffSeconds"):
            if f in r and not (isinstance(r[f], int) and 0 < r[f] <= 86400):
                out.append(f"{w}: {f} {r[f]!r} outside 1..86400")
        errors(r.get("Errors"), w, out)
    for i, c in enumerate(s.get("Catch") or []):
        w = f"{where}: Catch[{i}]"
        for f in CATCH_REQUIRED - set(c):
            out.append(f"{w} needs {f}")
        for f in set(c) - CATCH_FIELDS:
            out.append(f"{w}: unknown field {f}")
        if "Next" in c and c["Next"] not in siblings:
            out.append(f"{w}: Next {c['Next']!r} is not a state of its scope")
        errors(c.get("Errors"), w, out)
    expressions(s, where, out, inside=None)


def errors(names, where, out):
    if not isinstance(names, list) or not names:
        out.append(f"{where}: Errors must be a non-empty list")
        return
    for e in names:
        if e == "FnF.ALL":
            continue
        if isinstance(e, str) and e.startswith("FC."):
            if e[3:] not in FC_ERROR_CODES:
                out.append(f"{where}: {e} is not FC.{{ErrorCode}} of a Function Compute error code")
            continue
        out.append(
            f"{where}: {e!r} is not an error name CloudFlow delivers for a Function Compute task "
            "(FC.{ErrorCode}, or FnF.ALL)"
        )


def expressions(node, where, out, inside):
    """$Context paths; $Output only in an output constructor; $Item only in ItemConstructor."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "Processor":
                continue  # its own scope, checked as such
            here = k if k in ("OutputConstructor", "ItemConstructor", "InputConstructor") else inside
            if k.endswith(".$") or k in ("ItemsPath",):
                expression(str(v), f"{where}.{k}", out, here)
            expressions(v, f"{where}.{k}", out, here)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            expressions(v, f"{where}[{i}]", out, inside)


def expression(text, where, out, inside):
    for m in re.finditer(r"\$Context((?:\.[A-Za-z]+)*)", text):
        parts = m.group(1).split(".")[1:]
        if not parts or parts[0] not in CONTEXT:
            out.append(f"{where}: $Context{m.group(1)}: $Context has Execution and Current only")
        elif len(parts) > 1 and parts[1] not in CONTEXT[parts[0]]:
            out.append(f"{where}: $Context.{parts[0]}.{parts[1]} is not documented")
    if "$Output" in text and inside != "OutputConstructor":
        out.append(f"{where}: $Output is usable only in an output constructor")
    if "$Item" in text and inside != "ItemConstructor":
        out.append(f"{where}: $Item is usable only in ItemConstructor")
    if "$Index" in text:
        out.append(f"{where}: $Index is not a documented expression")


def largest_plan_bytes():
    """The plan state's data at workflow::MAX_TARGETS selected targets: the drill context of the
    summary sample, and each target as `{"instanceId": "i-" + 20 characters}` (a selected
    target carries its ID only: handler::workflow::select)."""
    src = open(os.path.join(ROOT, "src", "workflow.rs"), encoding="utf-8").read()
    m = re.search(r"pub const MAX_TARGETS: usize = ([\d_]+);", src)
    n = int(m.group(1).replace("_", "")) if m else 0
    sample = json.load(open(os.path.join(ROOT, "events", "workflow", "summary.json"), encoding="utf-8"))
    targets = [{"instanceId": "i-" + "x" * 20} for _ in range(n)]
    plan = {"drill": sample["drill"], "targets": targets, "count": n}
    return n, len(json.dumps(plan, separators=(",", ":")).encode())


results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(("ok    " if ok else "FAIL  ") + name + ("" if ok else f": {detail}"))


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "deploy", "drill-flow.yaml")
    flow = yaml.safe_load(open(path, encoding="utf-8"))
    found = problems_of(flow)
    check(f"{os.path.relpath(path, ROOT)}: follows CloudFlow's documented flow language", not found, "\n      ".join([""] + found))
    if len(sys.argv) > 1:
        return
    states = {s["Name"]: s for s in flow["States"]}
    carried = json.dumps(flow)
    check("the flow carries no per-target results into a state (64 KiB per state)",
          "results.$" not in carried and (states.get("Summary", {}).get("Parameters", {}).get("body", {}).get("results", 0) is None),
          "Summary must be given results: null")
    n, size = largest_plan_bytes()
    check(f"the plan at {n} targets ({size / KIB:.1f} KiB) fits a state's 64 KiB", 0 < size < STATE_LIMIT, size)
    target = states.get("Targets", {}).get("Processor", {}).get("States", [{}])[0]
    check("each target's output is emptied (the map's output stays small)", target.get("OutputConstructor") == {}, target.get("OutputConstructor"))
    check("the summary's output is cut to a few fields", set((states.get("Summary", {}).get("OutputConstructor") or {"x": 0}).keys()) <= {"targets.$", "objectiveMet.$", "succeeded.$", "failed.$"},
          states.get("Summary", {}).get("OutputConstructor"))

    # The flow as it was before issue 25 must be refused for the reasons the issue gave.
    before = yaml.safe_load(open(os.path.join(ROOT, "tests", "data", "drill-flow-invalid.yaml"), encoding="utf-8"))
    old = "\n".join(problems_of(before))
    for why, needle in [
        ("MaxDelaySeconds", "MaxDelaySeconds"),
        ("a retry without Description", "needs Description"),
        ("ItemConstructor in inline mode", "ItemConstructor exists only in distributed mode"),
        ("$Context.States", "$Context has Execution and Current only"),
        ("Errors: [Retryable]", "'Retryable' is not an error name"),
        ("the account ID", "an account ID is written in"),
        ("the region", "a region is written in"),
    ]:
        check(f"the flow before issue 25 is refused: {why}", needle in old, old)

    policy()


def policy():
    """deploy/ram-policy.json: exactly the ECS actions the client calls (src/ecs/client/mod.rs's
    Action::ALL), no wildcard action, state changes on instances and disks only with the opt-in
    tag as a condition; deploy/ram-policy-flow.json: the flow's role invokes only this function."""
    p = json.load(open(os.path.join(ROOT, "deploy", "ram-policy.json"), encoding="utf-8"))
    check("ram-policy.json: Version 1", p.get("Version") == "1", p.get("Version"))
    client = open(os.path.join(ROOT, "src", "ecs", "client", "mod.rs"), encoding="utf-8").read()
    called = set("ecs:" + a for a in re.findall(r'Action::\w+ => "(\w+)"', client))
    granted = set()
    settings = open(os.path.join(ROOT, "src", "settings.rs"), encoding="utf-8").read()
    m = re.search(r'require_tag: Some\(\("([\w-]+)"\.into\(\), "([\w-]+)"\.into\(\)\)\)', settings)
    key, value = (m.group(1), m.group(2)) if m else ("?", "?")
    for st in p["Statement"]:
        acts = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        granted |= set(acts)
        check(f"ram-policy.json: {acts}: Allow, no wildcard action", st.get("Effect") == "Allow" and not any("*" in a for a in acts), st)
        changes = [a for a in acts if not a.startswith("ecs:Describe") and a != "ecs:ListTagResources"]
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        if changes:
            check(f"ram-policy.json: {changes} name resource types, not *", "*" not in resources, resources)
        if changes and any(r.endswith((":instance/*", ":disk/*")) for r in resources):
            cond = (st.get("Condition") or {}).get("StringEquals", {})
            check(f"ram-policy.json: {changes} on {resources} only with the opt-in tag {key}={value}",
                  cond.get(f"acs:ResourceTag/{key}") == value, st.get("Condition"))
    check("ram-policy.json grants exactly the actions the client calls", granted == called and bool(called),
          f"granted {sorted(granted)} vs called {sorted(called)}")
    s_yaml = open(os.path.join(ROOT, "deploy", "s.yaml"), encoding="utf-8").read()
    check("s.yaml requires the tag the policy conditions on", f"ECS_ROLLBACK_REQUIRE_TAG: {key}={value}" in s_yaml, key)
    f = json.load(open(os.path.join(ROOT, "deploy", "ram-policy-flow.json"), encoding="utf-8"))
    acts = {a for st in f["Statement"] for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])}
    res = {r for st in f["Statement"] for r in (st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]])}
    check("ram-policy-flow.json: the flow's role may only invoke the function", acts == {"fc:InvokeFunction"} and res == {"acs:fc:*:*:functions/ecs-rollback"}, (acts, res))


main()
passed = sum(results)
print(f"{passed} passed, {len(results) - passed} failed")
sys.exit(0 if all(results) else 1)
