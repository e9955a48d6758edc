"""AWS managed keys come into being when first named: DescribeKey on ``alias/aws/<service>`` (what AWS services call
before they use one) or a cryptographic request naming it creates the key in that region and binds the alias.

The key is an ordinary record of the region (audited, stored, rotated by the scheduler) that carries
KeyManager AWS, its service's description and fixed policy, and yearly rotation that no one can change."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trent.node.auth.principals import Principal
from trent.node.crypto.handles import new_material
from trent.node.model.errors import KmsError
from trent.node.model.ids import new_key_id, parse_key_ref
from trent.node.model.key import AliasRecord, KeyRecord, MaterialVersion, RotationSettings
from trent.node.model.managed import (
    EXTRA_KEY_MANAGER,
    EXTRA_SERVICE,
    KEY_MANAGER_AWS,
    MANAGED_ALIAS_PREFIX,
    ROTATION_PERIOD_DAYS,
    ManagedService,
    managed_service,
)
from trent.node.model.states import KeyState
from trent.node.service import Region

DAY = 86400.0
# The operations that accept an alias for their key and that a service calls with its managed key's alias.
PROVISIONING_OPERATIONS = frozenset({
    "DescribeKey", "Encrypt", "Decrypt", "ReEncrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext",
    "GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext", "GenerateMac", "VerifyMac", "Sign", "Verify",
    "GetPublicKey",
})
_MEMBERS = ("KeyId", "SourceKeyId", "DestinationKeyId")


def wanted(region: Region, principal: Principal, params: Mapping[str, Any]) -> list[ManagedService]:
    """The managed keys a request names that this region does not have yet (none for another account's caller:
    an alias name is looked up in the caller's own account)."""
    out: list[ManagedService] = []
    if principal.account != region.account:
        return out
    for member in _MEMBERS:
        value = params.get(member)
        if type(value) is not str or MANAGED_ALIAS_PREFIX not in value:
            continue
        try:
            ref = parse_key_ref(value, allow_alias=True)
        except KmsError:
            continue  # the operation answers the malformed identifier
        if ref.alias_name is None or ref.region not in (None, region.name) or ref.account not in (None,
                                                                                                  region.account):
            continue
        service = managed_service(ref.alias_name)
        if service is not None and service.alias not in region.aliases and service not in out:
            out.append(service)
    return out


def managed_key(region: Region, service: ManagedService, now: float) -> KeyRecord:
    key_id = new_key_id(multi_region=False)  # never multi-Region
    material = MaterialVersion(new_material(key_id), now)
    return KeyRecord(
        key_id=key_id, region=region.name, account=region.account, created=now, state=KeyState.ENABLED,
        description=service.description, policy=service.policy(region.account, region.name),
        materials=(material,), current_material_id=material.material_id,
        # New AWS managed keys rotate one year after they are created, and every year after that.
        rotation=RotationSettings(enabled=True, period_days=ROTATION_PERIOD_DAYS,
                                  next_rotation=now + ROTATION_PERIOD_DAYS * DAY),
        extra={EXTRA_KEY_MANAGER: KEY_MANAGER_AWS, EXTRA_SERVICE: service.alias_suffix},
    )


def provision(region: Region, services: list[ManagedService]) -> list[KeyRecord]:
    """Create the managed keys of ``services`` still missing (looked at again: another process may have made them
    meanwhile) and bind their aliases, in one commit; each creation is audited as KMS's own event."""
    missing = [s for s in services if s.alias not in region.aliases]
    if not missing:
        return []
    now = region.now()
    keys = [managed_key(region, s, now) for s in missing]
    region.commit(keys=keys, aliases=[AliasRecord(s.alias, k.key_id, now, now) for s, k in zip(missing, keys,
                                                                                                strict=True)])
    if region.audit is not None:
        for key in keys:
            region.audit.service("CreateKey", key.arn, now)
    return keys
