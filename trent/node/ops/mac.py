"""GenerateMac and VerifyMac with HMAC keys: plain RFC 2104 HMAC under the key's secret, compared in constant time.
A MAC that does not verify is KMSInvalidMacException, never MacValid false."""

from __future__ import annotations

from trent.node.crypto.asymmetric import hmac_tag, hmac_verify
from trent.node.model.errors import KmsError
from trent.node.model.key import KeyRecord
from trent.node.model.key_specs import GENERATE_VERIFY_MAC, MAC_ALGORITHM
from trent.node.model.operations import KeyAction, Operation, keys_for
from trent.node.ops.asymmetric import private_key, usable_key
from trent.node.ops.common import finish_dry_run, require_algorithm
from trent.node.ops.registry import Params, Registry, RequestContext, Response
from trent.node.service import Region


def _mac_key(region: Region, params: Params, operation: str) -> tuple[KeyRecord, str]:
    key = usable_key(region, params, GENERATE_VERIFY_MAC, operation)
    # Each HMAC spec has exactly one algorithm (HMAC_256 -> HMAC_SHA_256).
    return key, require_algorithm(key, params["MacAlgorithm"], (MAC_ALGORITHM[key.key_spec],))


def generate_mac(region: Region, params: Params, ctx: RequestContext) -> Response:
    key, algorithm = _mac_key(region, params, "GenerateMac")
    finish_dry_run(params)
    return {"Mac": hmac_tag(private_key(key), algorithm, params["Message"]), "MacAlgorithm": algorithm,
            "KeyId": key.arn}


def verify_mac(region: Region, params: Params, ctx: RequestContext) -> Response:
    key, algorithm = _mac_key(region, params, "VerifyMac")
    # Checked before DryRun: a request with a wrong MAC would not have succeeded.
    if not hmac_verify(private_key(key), algorithm, params["Message"], params["Mac"]):
        raise KmsError("KMSInvalidMacException")
    finish_dry_run(params)
    return {"KeyId": key.arn, "MacValid": True, "MacAlgorithm": algorithm}


def register(registry: Registry) -> None:
    for name, handler in (("GenerateMac", generate_mac), ("VerifyMac", verify_mac)):
        registry.add(Operation(name=name, handler=handler, read_only=True, cross_account=True, usage_tracked=True,
                               keys=(KeyAction("KeyId", name, grant=keys_for(GENERATE_VERIFY_MAC)),)))
