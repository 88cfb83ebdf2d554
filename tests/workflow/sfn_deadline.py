#!/usr/bin/env python3
"""A drill target cut off by its invocation's deadline, continued by the state machine's Retry.

template.yaml's drill state machine, executed by moto's Step Functions as in sfn_drill.py (the
same Runtime API stand-in, the built binary, the simulator), for a drill of 5 targets. The
first invocation of one target (CUT) is given a 12 s deadline by the Runtime API stand-in
(`Lambda-Runtime-Deadline-Ms`); the others get Lambda's 900 s. With the step estimates below
(stop 1 s, reset 3 s, start 1 s) the rollback fits when it begins (5 s and the 2 s margin: it
may begin up to 5 s into the invocation, room for a slow machine), claims the disk (1 s of tag
settle) and stops the instance (the simulator takes 6 s), and then no longer has the 3 + 1 s
(and the margin) the reset and the start need, which needed the stop over within 6 s of the
invocation: it ends `Retryable` (DeadlineExceeded) at that step boundary, the instance
Stopped. (On a very slow machine the stop's wait may run into the deadline instead: also
DeadlineExceeded, the instance stopped, and every check below still holds.) The map's Retry on
`Retryable` (1 s in the test's copy; 5 s with full jitter in template.yaml) invokes it again
with a 900 s deadline, and that run resumes from the disk's ledger.

Checked: the execution and every target succeeded; the cut target was invoked twice, first
cut off (Retryable, DeadlineExceeded, before any ResetDisk) then succeeded; its instance was
stopped once, by the first invocation, and started once, by the retry; its disk was reset
exactly once, by the retry, with the instance Stopped (or, the documented exception, re-issued
to the same snapshot with the instance Stopped throughout); every instance ends Running.
Measured and printed, not asserted (no wall-clock bounds): how long the cut target's instance
stayed Stopped (StopInstance to the StartInstance that brought it back, from the simulator's
event log) against the targets that were not cut, and how long after the cut-off the retry
came.

Usage: sfn_deadline.py BINARY   (the built `ecs-rollback`). Exit 0 when every check passed.
"""
import json
import os
import statistics
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import sfn_drill  # noqa: E402  (the stand-ins, the world, the definition)
from sfn_drill import check  # noqa: E402
from moto.awslambda_simple.models import LambdaSimpleBackend  # noqa: E402

N = 5
CUT = 2
CONCURRENCY = 5
# The simulator's step times (ms), and the function's step estimates (s): see the docstring.
TIMINGS = {"stopMs": 6000, "startMs": 300, "resetMs": 400, "snapshotMs": 60}
ESTIMATES = {"ECS_ROLLBACK_ESTIMATE_STOP_SECONDS": "1", "ECS_ROLLBACK_ESTIMATE_RESET_SECONDS": "3",
             "ECS_ROLLBACK_ESTIMATE_START_SECONDS": "1"}
SHORT_DEADLINE_MS = 12_000


def ids(i):
    return f"i-bp1cut{i:011d}", f"d-bp1cut{i:011d}", f"s-bp1cut{i:011d}"


def scenario():
    instances, disks, snapshots = [], [], []
    for i in range(N):
        iid, did, sid = ids(i)
        instances.append({"id": iid, "name": f"cut-{i}", "tags": {"ecs-rollback": "enabled"}})
        disks.append({"id": did, "instanceId": iid})
        snapshots.append({"id": sid, "diskId": did, "name": "golden", "createdAt": "2026-11-28T00:00:00Z"})
    return {"timings": TIMINGS, "fleet": {"instances": instances, "disks": disks, "snapshots": snapshots}}


def main():
    binary = sys.argv[1]
    tmp, base, api, procs = sfn_drill.start_world(binary, scenario(), CONCURRENCY + 1, ESTIMATES)
    try:
        run(api, base)
    finally:
        for p in procs:
            p.kill()
    results = sfn_drill.results
    print(f"{sum(results)} passed, {len(results) - sum(results)} failed (logs in {tmp})")
    sys.exit(0 if all(results) else 1)


def claim_deadline(detail):
    """The deadline (unix s) a claim tag written in this TagResources records, if any."""
    for kv in detail.split(" "):
        k, _, v = kv.partition("=")
        if k.startswith("ecs-rollback:claim:"):
            parts = v.split(";")
            if len(parts) >= 3 and parts[2].isdigit():
                return int(parts[2])
    return None


def run(api, base):
    _, copy = sfn_drill.test_definition()
    retry = copy["States"]["Targets"]["ItemProcessor"]["States"]["Target"]["Retry"][0]
    check("the test's copy retries Retryable targets", retry["ErrorEquals"] == ["Retryable"], retry)

    calls = {}  # index -> [(kind, answer, timing)]
    lock = threading.Lock()

    def invoke(self, function_name, qualifier, body, headers, response_headers):
        payload = json.loads(body)
        deadline_ms = 900_000
        index = payload.get("index") if payload.get("workflow") == "target" else None
        if index == CUT:
            with lock:
                first = CUT not in calls
                calls.setdefault(CUT, [])
            if first:
                deadline_ms = SHORT_DEADLINE_MS
        timing = {"deadlineMs": deadline_ms}
        kind, answer = api.invoke(payload, deadline_ms, timing)
        if index is not None:
            with lock:
                calls.setdefault(index, []).append((kind, answer, timing))
        if kind == "error":
            response_headers["x-amz-function-error"] = "Unhandled"
        return json.dumps(answer).encode()

    LambdaSimpleBackend.invoke = invoke
    drill = {"name": "cut", "regionId": "cn-hangzhou", "startAfterReset": True,
             "targets": [{"instanceId": ids(i)[0]} for i in range(N)],
             "concurrency": CONCURRENCY, "maxErrors": 0, "rtoSeconds": 600}
    start = time.monotonic()
    d, _ = sfn_drill.execute(copy, {"drill": drill, "scheduledTime": "2026-11-29T03:00:00Z", "report": "none"})
    wall = time.monotonic() - start
    check("the execution succeeded", d["status"] == "SUCCEEDED", d)
    s = json.loads(d.get("output", "{}")).get("summary", {}).get("data", {})
    check("summary: every target succeeded", [s.get("targets"), s.get("succeeded"), s.get("failed")] == [N, N, 0],
          {k: s.get(k) for k in ("targets", "succeeded", "failed", "skipped")})

    cut = calls.get(CUT, [])
    check("the cut target was invoked twice", len(cut) == 2, [(k, a) for k, a, _ in cut])
    if len(cut) < 2:
        return
    (k1, a1, t1), (k2, a2, t2) = cut[0], cut[1]
    check("its first invocation ended Retryable, cut off by the deadline",
          k1 == "error" and a1.get("errorType") == "Retryable" and "DeadlineExceeded" in json.dumps(a1), a1)
    check("its retry succeeded", k2 == "response" and a2.get("o") == "succeeded", a2)
    others = {i: c for i, c in calls.items() if i != CUT}
    check("every other target ran once and succeeded",
          len(others) == N - 1 and all(len(c) == 1 and c[0][0] == "response" and c[0][1].get("o") == "succeeded"
                                       for c in others.values()), others)

    state = json.loads(urllib.request.urlopen(base + "_sim/state").read())
    iid, did, sid = ids(CUT)
    events = state["events"]
    on_inst = [e for e in events if e["resource"] == iid and e["action"] in ("StopInstance", "StartInstance")]
    resets = [e for e in events if e["resource"] == did and e["action"] == "ResetDisk"]
    claims = [(e["atMs"], claim_deadline(e["detail"])) for e in events
              if e["resource"] == did and e["action"] == "TagResources" and claim_deadline(e["detail"])]
    # The two invocations' claims told apart by the deadline each records: the first one's is
    # about 12 s after it began, the retry's about 900 s.
    retry_claimed = [at for at, dl in claims if dl - min(x for _, x in claims) > 300]
    check("two claims on the cut disk, the retry's with a far deadline", len(retry_claimed) >= 1, claims)
    retry_at = min(retry_claimed) if retry_claimed else 0
    check("its instance was stopped once and started once",
          [e["action"] for e in on_inst] == ["StopInstance", "StartInstance"], on_inst)
    if len(on_inst) != 2:
        return
    stop, start_ev = on_inst
    check("stopped by the first invocation (before the retry's claim), started by the retry",
          stop["atMs"] < retry_at < start_ev["atMs"], (stop["atMs"], retry_at, start_ev["atMs"]))
    same_snapshot = all(e["detail"] == f"SnapshotId={sid}" for e in resets)
    stopped_throughout = all(stop["atMs"] < e["atMs"] < start_ev["atMs"] and e["instanceStatus"] == "Stopped"
                             for e in resets)
    check("its disk was reset exactly once (or re-issued to the same snapshot), the instance Stopped throughout",
          len(resets) >= 1 and same_snapshot and stopped_throughout, resets)
    check("reset by the retry, not by the cut-off invocation", all(e["atMs"] > retry_at for e in resets),
          (retry_at, resets))
    check("the disk's reset count says the same", next(x["resets"] for x in state["disks"] if x["id"] == did) == len(resets),
          state["disks"])
    check("every instance is Running", all(i["status"] == "Running" for i in state["instances"]),
          [(i["id"], i["status"]) for i in state["instances"]])
    for i in range(N):
        if i == CUT:
            continue
        n = sum(1 for e in events if e["resource"] == ids(i)[1] and e["action"] == "ResetDisk")
        if n != 1:
            check(f"target {i} reset exactly once", False, n)

    # Figures (printed, not asserted).
    cut_stopped = start_ev["atMs"] - stop["atMs"]
    normal = []
    for i in range(N):
        if i == CUT:
            continue
        ev = [e for e in events if e["resource"] == ids(i)[0] and e["action"] in ("StopInstance", "StartInstance")]
        if [e["action"] for e in ev] == ["StopInstance", "StartInstance"]:
            normal.append(ev[1]["atMs"] - ev[0]["atMs"])
    base_ms = statistics.median(normal) if normal else 0
    cutoff_to_retry = t2["got"] - t1["answered"]
    deadline_to_retry = t2["got"] - (t1["got"] + SHORT_DEADLINE_MS / 1000)
    print(f"cut-off invocation's answer: {a1.get('errorMessage', '')[:200]}", flush=True)
    print(f"figures: the cut target's instance stayed Stopped {cut_stopped / 1000:.2f} s (StopInstance to "
          f"StartInstance, simulator's log; stop {TIMINGS['stopMs'] / 1000:.1f} s, reset {TIMINGS['resetMs'] / 1000:.1f} s "
          f"simulated); targets not cut: {base_ms / 1000:.2f} s median (min {min(normal, default=0) / 1000:.2f}, "
          f"max {max(normal, default=0) / 1000:.2f}); the cut-off added {(cut_stopped - base_ms) / 1000:.2f} s", flush=True)
    print(f"figures: the cut-off invocation answered {t1['answered'] - t1['got']:.2f} s into its "
          f"{SHORT_DEADLINE_MS / 1000:.0f} s deadline; the retry began {cutoff_to_retry:.2f} s after that answer "
          f"({deadline_to_retry:+.2f} s from the deadline; the test's Retry interval is {retry['IntervalSeconds']} s); "
          f"wall {wall:.1f} s for {N} targets through moto", flush=True)


if __name__ == "__main__":
    main()
