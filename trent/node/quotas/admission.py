"""Which quota a request counts against, and the throttle when its bucket is empty (the endpoint's admission)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from trent.node.auth.principals import Principal
from trent.node.model.errors import KmsError
from trent.node.model.key import KeyRecord
from trent.node.quotas.aws_table import (
    CRYPTOGRAPHIC,
    DATA_KEY_PAIR_OPERATIONS,
    QUOTAS,
    THROTTLED_MESSAGE,
)
from trent.node.quotas.buckets import SharedBuckets
from trent.node.service import Region

# (quota name, region charged, tokens)
Charge = tuple[str, str, int]


def key_type_quota(key_spec: str) -> str:
    """The shared cryptographic quota of a key spec."""
    if key_spec.startswith("RSA_"):
        return "rsa"
    if key_spec.startswith("ECC_") or key_spec == "SM2":
        return "ecc"
    if key_spec.startswith("ML_DSA_"):
        return "ml-dsa"
    return "symmetric"  # SYMMETRIC_DEFAULT and the HMAC keys


def _key_of(region: Region, operation: str, params: Mapping[str, Any]) -> KeyRecord | None:
    name = params.get("DestinationKeyId") if operation == "ReEncrypt" else params.get("KeyId")
    if isinstance(name, str):
        try:
            return region.resolve(name, allow_alias=True)
        except KmsError:
            return None  # the operation answers NotFound; the call still counts, as a symmetric one
    return region.key_of_ciphertext(params.get("CiphertextBlob"))


def charges(region: Region, operation: str, params: Mapping[str, Any]) -> list[Charge]:
    here = region.name
    if operation in CRYPTOGRAPHIC:
        key = None if operation == "GenerateRandom" else _key_of(region, operation, params)
        return [(key_type_quota(key.key_spec) if key is not None else "symmetric", here, 1)]
    if operation in DATA_KEY_PAIR_OPERATIONS:
        quota = f"GenerateDataKeyPair-{params.get('KeyPairSpec')}"
        return [(quota, here, 1)] if quota in QUOTAS else []
    if operation == "ReplicateKey":
        # One ReplicateKey here, two CreateKey in the replica's Region (one of them AWS's dry run).
        return [("ReplicateKey", here, 1), ("CreateKey", str(params.get("ReplicaRegion")), 2)]
    if operation == "UpdatePrimaryRegion":
        return [(operation, here, 1), (operation, str(params.get("PrimaryRegion")), 1)]
    return [(operation, here, 1)] if operation in QUOTAS else []


class RequestQuotas:
    """KMS's request quotas per (account, region, quota), in buckets every process of the cluster shares."""

    def __init__(self, buckets: SharedBuckets, accounts: Iterable[str], regions: Iterable[str],
                 overrides: Mapping[str, float], spare_regions: int = 0) -> None:
        self.buckets = buckets
        self.regions = tuple(regions)
        self.accounts = tuple(dict.fromkeys(accounts))
        self._overrides = dict(overrides)
        self._rates = {(name, region): overrides.get(name, quota.rate_in(region))
                       for name, quota in QUOTAS.items() for region in self.regions}
        # The same slot numbers in every process: they derive from the configuration alone.
        combos = [(a, r, q) for a in self.accounts for r in self.regions for q in QUOTAS]
        self._slots = {combo: n for n, combo in enumerate(combos)}
        # Slots for regions made on first use (--any-region, one process only), given out as they appear.
        self._spare = spare_regions
        self._added: list[str] = []

    @staticmethod
    def slots_needed(accounts: Iterable[str], regions: Iterable[str], spare_regions: int = 0) -> int:
        return len(dict.fromkeys(accounts)) * (len(tuple(regions)) + spare_regions) * len(QUOTAS)

    def rate(self, quota: str, region: str) -> float:
        return self._rates[(quota, region)]

    def _add_region(self, name: str) -> bool:
        """Give a region made on first use its buckets, if spare slots are left."""
        if len(self._added) >= self._spare:
            return False
        self._added.append(name)
        for account in self.accounts:
            for quota_name, quota in QUOTAS.items():
                self._slots[(account, name, quota_name)] = len(self._slots)
                self._rates[(quota_name, name)] = self._overrides.get(quota_name, quota.rate_in(name))
        return True

    def __call__(self, region: Region, principal: Principal, operation: str, params: Mapping[str, Any]) -> None:
        for quota, where, count in charges(region, operation, params):
            slot = self._slots.get((principal.account, where, quota))
            if slot is None and where == region.name and where not in self.regions and where not in self._added \
                    and self._add_region(where):
                slot = self._slots.get((principal.account, where, quota))
            if slot is None:
                continue  # a region (or account) this cluster does not serve: the operation refuses it
            if not self.buckets.take(slot, self._rates[(quota, where)], count):
                raise KmsError("ThrottlingException", THROTTLED_MESSAGE)
