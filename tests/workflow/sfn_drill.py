#!/usr/bin/env python3
"""The drill state machine of template.yaml, executed by moto's Step Functions (its interpreter
is LocalStack's), with every `lambda:invoke` task served by the built binary in Lambda mode,
against the ECS simulator (`ecs-rollback simulate`).

A drill of 50 targets, 3 of them locked (so they fail, not retryable), maxErrors 2,
concurrency 5. Checked: the plan answers the map's settings from the drill; the map runs at
most 5 targets at once; the failures stop the map as Step Functions would; the summary counts
match the simulator's truth; each succeeded target was reset exactly once and nothing else
was touched. Then the summary as the definition's `MapStopped` branch sends it (no results,
a map error): the same counts, all read from the disks' ledgers, and `stoppedEarly`.

What moto does not do, and how this test stands in for it (openly):
- it reads but does not enforce ToleratedFailureCount/Percentage: the Lambda stand-in here
  does. Once more targets failed than the plan's `toleratedFailureCount`, a target not yet
  started is answered `MapRunStopped` (a task may not raise a `States.` error) without reaching the function,
  as a map Step Functions stopped never starts it (targets already running finish, as a Lambda
  invocation does when its map run is aborted). The test asserts that this count is the one
  the definition reads (`ToleratedFailureCountPath`) and that it comes from `maxErrors`.
- failed items come back as null: the summary reads those targets from their ledgers.
- retries really wait: the test's copy of the definition retries after 1 s.

Usage: sfn_drill.py BINARY   (the built `ecs-rollback`). Exit 0 when every check passed.
"""
import json
import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
from moto import mock_aws
from moto.awslambda_simple.models import LambdaSimpleBackend

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

N = 50
LOCKED = {5, 12, 20}
MAX_ERRORS = 2
CONCURRENCY = 5
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:ecs-rollback"
results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(("ok    " if ok else "FAIL  ") + name + ("" if ok else f": {detail}"), flush=True)


def scenario():
    instances, disks, snapshots = [], [], []
    for i in range(N):
        iid, did, sid = f"i-bp1sfn{i:011d}", f"d-bp1sfn{i:011d}", f"s-bp1sfn{i:011d}"
        instances.append({"id": iid, "name": f"sfn-{i}", "tags": {"ecs-rollback": "enabled"},
                          "locks": ["security"] if i in LOCKED else []})
        disks.append({"id": did, "instanceId": iid})
        snapshots.append({"id": sid, "diskId": did, "name": "golden", "createdAt": "2026-11-28T00:00:00Z"})
    return {"timings": {"stopMs": 300, "startMs": 300, "resetMs": 400, "snapshotMs": 60},
            "fleet": {"instances": instances, "disks": disks, "snapshots": snapshots}}


class RuntimeApi:
    """The Lambda Runtime API the function's processes poll (one invocation each at a time)."""

    def __init__(self):
        self.pending = queue.Queue()
        self.waiting = {}
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0
        api = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                rid, payload, _, deadline_ms, timing = api.pending.get()
                body = json.dumps(payload).encode()
                if timing is not None:
                    timing["got"] = time.monotonic()
                self.send_response(200)
                self.send_header("Lambda-Runtime-Aws-Request-Id", rid)
                self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + deadline_ms))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn", FUNCTION_ARN)
                self.send_header("Lambda-Runtime-Trace-Id", "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                parts = self.path.split("/")
                rid, kind = parts[-2], parts[-1]
                body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
                with api.lock:
                    slot = api.waiting.pop(rid, None)
                if slot is not None:
                    slot.put((kind, json.loads(body or b"null")))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.address = f"127.0.0.1:{self.server.server_address[1]}"

    def invoke(self, payload, deadline_ms=900_000, timing=None):
        """One invocation: `deadline_ms` from the moment a process takes it (Lambda's timeout, 900 s
        by default); `timing`, if given, gets `got` and `answered` (time.monotonic())."""
        rid = str(uuid.uuid4())
        slot = queue.Queue()
        with self.lock:
            self.waiting[rid] = slot
            self.running += 1
            self.peak = max(self.peak, self.running)
        self.pending.put((rid, payload, slot, deadline_ms, timing))
        try:
            answer = slot.get(timeout=300)
            if timing is not None:
                timing["answered"] = time.monotonic()
            return answer
        finally:
            with self.lock:
                self.running -= 1


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_world(binary, scen, n_functions, extra_env=None):
    """The simulator with `scen`, the Runtime API stand-in, and `n_functions` function processes
    polling it. Returns (tmp, base URL, api, processes)."""
    tmp = tempfile.mkdtemp(prefix="ecs-rollback-sfn-")
    path = os.path.join(tmp, "scenario.json")
    with open(path, "w") as f:
        json.dump(scen, f)
    procs = []
    sim = subprocess.Popen([binary, "simulate", "--port", "0", "--scenario", path],
                           stdout=subprocess.PIPE, stderr=open(os.path.join(tmp, "sim.log"), "w"), text=True)
    procs.append(sim)
    base = sim.stdout.readline().strip()
    api = RuntimeApi()
    env = dict(os.environ,
               AWS_LAMBDA_RUNTIME_API=api.address, AWS_LAMBDA_FUNCTION_NAME="ecs-rollback",
               AWS_LAMBDA_FUNCTION_MEMORY_SIZE="128", AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
               ALIBABA_CLOUD_ACCESS_KEY_ID="sim-access-key-id", ALIBABA_CLOUD_ACCESS_KEY_SECRET="sim-access-key-secret",
               ALIBABA_CLOUD_REGION_ID="cn-hangzhou", ECS_ROLLBACK_ECS_ENDPOINT=base,
               ECS_ROLLBACK_COOLDOWN_SECONDS="0", ECS_ROLLBACK_POLL_INITIAL_MS="50", ECS_ROLLBACK_POLL_MAX_MS="200",
               RUST_LOG="warn", **(extra_env or {}))
    for n in range(n_functions):
        procs.append(subprocess.Popen([binary], env=env, stdout=open(os.path.join(tmp, f"fn{n}.log"), "w"),
                                      stderr=subprocess.STDOUT))
    return tmp, base, api, procs


def test_definition():
    """template.yaml's state machine, as the test runs it: the function's ARN filled in, and
    every Retry after 1 s, not doubling (moto really waits)."""
    import extract_definition
    definition = extract_definition.definition(os.path.join(ROOT, "template.yaml"))
    text = json.dumps(definition).replace("${RollbackFunctionArn}", FUNCTION_ARN)
    copy = json.loads(text)
    for state in [copy["States"]["Plan"], copy["States"]["Summary"], copy["States"]["Targets"]["ItemProcessor"]["States"]["Target"]]:
        for r in state.get("Retry", []):
            r["IntervalSeconds"], r["BackoffRate"] = 1, 1.0
            r.pop("MaxDelaySeconds", None)
            r.pop("JitterStrategy", None)
    return definition, copy


def execute(definition, execution_input):
    """Runs `definition` in moto's Step Functions to its end: (describe_execution, history)."""
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}):
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        arn = sfn.create_state_machine(name="ecs-rollback-drill", definition=json.dumps(definition),
                                       roleArn="arn:aws:iam::123456789012:role/ecs-rollback-drill",
                                       type="STANDARD")["stateMachineArn"]
        ex = sfn.start_execution(stateMachineArn=arn, input=json.dumps(execution_input))["executionArn"]
        while True:
            d = sfn.describe_execution(executionArn=ex)
            if d["status"] != "RUNNING":
                break
            time.sleep(0.5)
        history = sfn.get_execution_history(executionArn=ex, maxResults=1000)["events"]
    return d, history


def main():
    binary = sys.argv[1]
    # As many execution environments as the map may use at once, and one more (plan, summary).
    tmp, base, api, procs = start_world(binary, scenario(), CONCURRENCY + 1)
    try:
        run(api, base)
    finally:
        for p in procs:
            p.kill()
    print(f"{sum(results)} passed, {len(results) - sum(results)} failed (logs in {tmp})")
    sys.exit(0 if all(results) else 1)


def run(api, base):
    definition, copy = test_definition()
    tmap = definition["States"]["Targets"]
    check("the map's tolerated failures are the plan's, from maxErrors",
          tmap.get("ToleratedFailureCountPath") == "$.plan.toleratedFailureCount", tmap.get("ToleratedFailureCountPath"))

    seen = {"plan": None, "failed": 0, "refused": 0, "targets": 0, "invocations": []}
    lock = threading.Lock()

    def invoke(self, function_name, qualifier, body, headers, response_headers):
        payload = json.loads(body)
        mode = payload.get("workflow")
        if mode == "target":
            with lock:
                tolerated = seen["plan"]["toleratedFailureCount"]
                if seen["failed"] > tolerated:
                    # The stand-in for Step Functions' failure tolerance (see the docstring).
                    seen["refused"] += 1
                    response_headers["x-amz-function-error"] = "Unhandled"
                    return json.dumps({"errorType": "MapRunStopped",
                                       "errorMessage": "not started: the map run failed (stand-in for States.ExceedToleratedFailureThreshold)"}).encode()
                seen["targets"] += 1
        kind, answer = api.invoke(payload)
        with lock:
            seen["invocations"].append((mode, kind))
            if mode == "plan" and kind == "response":
                seen["plan"] = answer
            if mode == "target" and kind == "error":
                seen["failed"] += 1
        if kind == "error":
            response_headers["x-amz-function-error"] = "Unhandled"
        return json.dumps(answer).encode()

    LambdaSimpleBackend.invoke = invoke
    targets = [{"instanceId": f"i-bp1sfn{i:011d}"} for i in range(N)]
    drill = {"name": "sfn", "regionId": "cn-hangzhou", "startAfterReset": True, "targets": targets,
             "concurrency": CONCURRENCY, "maxErrors": MAX_ERRORS, "rtoSeconds": 600}
    start = time.monotonic()
    d, history = execute(copy, {"drill": drill, "scheduledTime": "2026-11-29T03:00:00Z", "report": "none"})
    wall = time.monotonic() - start
    check("the execution succeeded (the summary ran)", d["status"] == "SUCCEEDED", d)
    kinds = {e["type"] for e in history}
    check("the map ran as a distributed map (map-run events)", any("MapRun" in k for k in kinds), sorted(kinds))
    plan = seen["plan"] or {}
    check("the plan's tolerated failures come from maxErrors", plan.get("toleratedFailureCount") == MAX_ERRORS, plan.get("toleratedFailureCount"))
    check("the plan's concurrency is the drill's", plan.get("maxConcurrency") == CONCURRENCY, plan.get("maxConcurrency"))
    check("the plan lists every target once", plan.get("count") == N and len(plan.get("targets", [])) == N, plan.get("count"))
    # One environment serves the plan: the map's targets never ran more than MaxConcurrency at once.
    check(f"at most {CONCURRENCY} targets ran at once", api.peak <= CONCURRENCY, api.peak)
    check("the 3 locked targets failed, each once (RollbackRejected is not retried)", seen["failed"] == 3, seen["failed"])
    check("the map stopped: targets after the third failure never started",
          seen["refused"] > 0 and seen["targets"] + seen["refused"] == N, (seen["targets"], seen["refused"]))
    out = json.loads(d.get("output", "{}"))
    s = out.get("summary", {}).get("data", {})
    state = json.loads(urllib.request.urlopen(base + "_sim/state").read())
    resets = {x["id"]: x["resets"] for x in state["disks"]}
    reset_once = [k for k, v in resets.items() if v == 1]
    stops = [e for e in state["events"] if e.get("action") == "StopInstance"]
    check("each reset disk was reset exactly once", all(v in (0, 1) for v in resets.values()), resets)
    check("summary: succeeded = disks reset (the simulator's truth)", s.get("succeeded") == len(reset_once), (s.get("succeeded"), len(reset_once)))
    check("summary: 3 failed", s.get("failed") == 3, s.get("failed"))
    check("summary: skipped = targets never started", s.get("skipped") == seen["refused"], (s.get("skipped"), seen["refused"]))
    check("summary: every target counted", s.get("targets") == N, s.get("targets"))
    check("no instance was stopped but the succeeded ones", len(stops) == len(reset_once), (len(stops), len(reset_once)))
    check("every instance is running again", all(i["status"] == "Running" for i in state["instances"]),
          [i["id"] for i in state["instances"] if i["status"] != "Running"])
    locked_disks = [f"d-bp1sfn{i:011d}" for i in LOCKED]
    check("the locked targets were not touched", all(resets[d] == 0 for d in locked_disks), locked_disks)
    per = s.get("perTarget", [])
    timed = [p for p in per if p.get("outcome") == "succeeded" and p.get("steps")]
    check("per-target step times for the succeeded targets", len(timed) == len(reset_once), len(timed))

    # The branch Step Functions takes when the map run fails: MapStopped sends no results.
    kind, answer = api.invoke({"workflow": "summary", "drill": plan["drill"], "targets": plan["targets"],
                               "results": [], "mapError": {"Error": "States.ExceedToleratedFailureThreshold"},
                               "report": "html"})
    s2 = (answer or {}).get("summary", {}).get("data", {})
    check("the stopped map's summary, from the ledgers alone, has the same counts",
          kind == "response" and [s2.get(k) for k in ("targets", "succeeded", "failed", "skipped")]
          == [s.get(k) for k in ("targets", "succeeded", "failed", "skipped")], (kind, s2))
    check("and says the drill stopped early", s2.get("stoppedEarly") is True, s2.get("stoppedEarly"))
    check("and carries the HTML report on request", str(answer.get("report", "")).startswith("<!DOCTYPE html"), str(answer)[:200])
    print(f"figures: wall {wall:.1f} s for {N} targets through moto, {seen['targets']} started, {seen['failed']} failed, "
          f"{seen['refused']} not started, peak concurrency {api.peak}, summary input "
          f"{len(json.dumps({'targets': plan['targets'], 'results': [None] * N}))} bytes", flush=True)


if __name__ == "__main__":
    main()
