#!/usr/bin/env python3
"""Signature V3 (ACS3-HMAC-SHA256) test vectors, made by the official Alibaba Cloud SDK.

    pip install -r tests/v3/requirements.txt
    python3 tests/v3/generate_vectors.py > tests/data/signature-v3-vectors.json

Each vector is one request as the SDK (alibabacloud-tea-openapi, pinned in requirements.txt)
builds and signs it: `Client.call_api` for an RPC-style ECS operation, with the nonce, the date
and the user agent fixed so the output is reproducible, and the HTTP send replaced by a capture
(nothing leaves the machine). The Rust signer (src/ecs/signer_v3.rs) must reproduce the
canonical request, the string to sign and the Authorization header byte for byte; the built-in
simulator must accept the captured request.

The last vectors sign the header set our client sends (host and the x-acs-* headers, no
user-agent or accept) with the SDK's own `Utils.get_authorization`, so the exact requests our
client makes are covered too. `.ci/run` regenerates this file and fails on any difference.
"""

import json
import sys

from alibabacloud_tea_openapi import utils as sdk_utils
from alibabacloud_tea_openapi.client import Client
from alibabacloud_tea_openapi.utils import Utils
from alibabacloud_tea_openapi.utils_models import Config, OpenApiRequest, Params
from darabonba.core import DaraCore
from darabonba.request import DaraRequest
from darabonba.runtime import RuntimeOptions

ENDPOINT = "ecs.cn-hangzhou.aliyuncs.com"
SIGN = "ACS3-HMAC-SHA256"


CAPTURED = []


class Captured(Exception):
    pass


def capture(request, runtime=None):
    CAPTURED.append(request)
    raise Captured("captured: not sent")


def sdk_call(action, query, ak, secret, token, nonce, date):
    """Runs the SDK's own call path up to the send, and returns the signed request."""
    Utils.get_nonce = staticmethod(lambda: nonce)
    Utils.get_timestamp = staticmethod(lambda: date)
    Utils.get_user_agent = staticmethod(lambda _ua: "AlibabaCloud (vectors) Python/3 TeaDSL/2")
    DaraCore.do_action = staticmethod(capture)
    config = Config(
        access_key_id=ak,
        access_key_secret=secret,
        security_token=token,
        endpoint=ENDPOINT,
        protocol="https",
    )
    client = Client(config)
    params = Params(
        action=action,
        version="2014-05-26",
        protocol="HTTPS",
        pathname="/",
        method="POST",
        auth_type="AK",
        style="RPC",
        req_body_type="formData",
        body_type="json",
    )
    request = OpenApiRequest(query=Utils.query(query))
    CAPTURED.clear()
    try:
        client.call_api(params, request, RuntimeOptions(autoretry=False, max_attempts=0))
    except Exception:  # the SDK wraps the capture's exception in its own
        pass
    if len(CAPTURED) != 1:
        raise SystemExit(f"{action}: the SDK did not reach the send exactly once")
    return CAPTURED[0]


def our_headers_signed(action, query, ak, secret, token, nonce, date):
    """The header set our client sends, signed by the SDK's get_authorization."""
    payload = Utils.hash(b"", SIGN).hex()
    req = DaraRequest()
    req.method = "POST"
    req.pathname = "/"
    req.protocol = "https"
    req.query = Utils.query(query)
    req.headers = {
        "host": ENDPOINT,
        "x-acs-action": action,
        "x-acs-version": "2014-05-26",
        "x-acs-date": date,
        "x-acs-signature-nonce": nonce,
        "x-acs-content-sha256": payload,
    }
    if token:
        req.headers["x-acs-security-token"] = token
    req.headers["Authorization"] = Utils.get_authorization(req, SIGN, payload, ak, secret)
    return req


def describe(name, note, secret, req):
    headers = {k: v for k, v in req.headers.items() if k != "Authorization"}
    canonical_headers, signed_headers = sdk_utils.get_canonicalized_headers(headers)
    canonical_query = sdk_utils.get_canonical_query_string(req.query)
    payload = headers["x-acs-content-sha256"]
    canonical_request = (
        f"{req.method}\n{req.pathname}\n{canonical_query}\n"
        f"{canonical_headers}\n{signed_headers}\n{payload}"
    )
    string_to_sign = f"{SIGN}\n{Utils.hex_encode(Utils.hash(canonical_request.encode(), SIGN))}"
    authorization = req.headers["Authorization"]
    # The SDK signed what it sent: its Authorization must follow from the pieces above.
    expected = Utils.hex_encode(sdk_utils.signature_method(secret, string_to_sign, SIGN))
    if not authorization.endswith(f"Signature={expected}"):
        raise SystemExit(f"{name}: recomputed signature differs from the SDK's header")
    return {
        "name": name,
        "note": note,
        "secret": secret,
        "method": req.method,
        "pathname": req.pathname,
        "query": sorted([k, v] for k, v in req.query.items()),
        "headers": sorted([k, v] for k, v in headers.items()),
        "canonical_request": canonical_request,
        "string_to_sign": string_to_sign,
        "authorization": authorization,
        "url": DaraCore.compose_url(req),
    }


def main():
    vectors = []
    reset = {"RegionId": "cn-hangzhou", "DiskId": "d-bp1abcdefghijklmno", "SnapshotId": "s-bp1abcdefghijklmno"}
    vectors.append(describe(
        "v3-sdk-reset-disk",
        "ResetDisk through Client.call_api, AccessKey credentials",
        "testsecret",
        sdk_call("ResetDisk", reset, "testid", "testsecret", None,
                 "3d5f0a8e9c7b4e21a0f6d2c4b8e1a7f9", "2024-05-01T08:00:00Z"),
    ))
    describe_q = {
        "RegionId": "cn-hangzhou",
        "InstanceIds": '["i-bp1aaaaaaaaaaaaaaaaa","i-bp1bbbbbbbbbbbbbbbbb"]',
        "MaxResults": 100,
    }
    vectors.append(describe(
        "v3-sdk-describe-instances-sts",
        "DescribeInstances through Client.call_api: JSON-array value, STS token, secret with specials",
        "3SJ9Xr/k+Vb8wq=secretWithSpecials",
        sdk_call("DescribeInstances", describe_q, "STS.NUx2Yz", "3SJ9Xr/k+Vb8wq=secretWithSpecials",
                 "CAIS+token/with=specials&more", "a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5", "2026-11-29T10:20:30Z"),
    ))
    tags = {
        "RegionId": "cn-hangzhou",
        "ResourceType": "disk",
        "ResourceId": ["d-bp1abcdefghijklmno"],
        "Tag": [{"Key": "ecs-rollback:run", "Value": "key with space*star~tilde;回滚"}],
    }
    vectors.append(describe(
        "v3-sdk-tag-resources-encoding",
        "TagResources through Client.call_api: repeat lists, space, *, ~, ; and UTF-8 in a value",
        "testsecret",
        sdk_call("TagResources", tags, "testid", "testsecret", None,
                 "00000000000000000000000000000001", "2026-11-29T10:20:30Z"),
    ))
    vectors.append(describe(
        "v3-ours-stop-instance",
        "StopInstance with the headers our client sends, signed by Utils.get_authorization",
        "testsecret",
        our_headers_signed("StopInstance", {"InstanceId": "i-bp1aaaaaaaaaaaaaaaaa", "ForceStop": "false"},
                           "testid", "testsecret", None,
                           "5c6a2b1e-7d0f-4c39-9a51-2f0b8e6d4c11", "2026-11-29T10:20:30Z"),
    ))
    vectors.append(describe(
        "v3-ours-reset-disk-sts",
        "ResetDisk with the headers our client sends and an STS token, signed by Utils.get_authorization",
        "3SJ9Xr/k+Vb8wq=secretWithSpecials",
        our_headers_signed("ResetDisk", reset, "STS.NUx2Yz", "3SJ9Xr/k+Vb8wq=secretWithSpecials",
                           "CAIS+token/with=specials&more",
                           "7b0c5f1e-2d3a-4e5f-8a9b-0c1d2e3f4a5b", "2026-11-29T10:20:30Z"),
    ))
    json.dump({"sdk": "alibabacloud-tea-openapi", "vectors": vectors}, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
