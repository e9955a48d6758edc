"""Multi-Region keys with imported material: replicas start in PendingImport and take the same bytes through their
own GetParametersForImport; new material imported into the primary waits in
PENDING_MULTI_REGION_IMPORT_AND_ROTATION until every replica has imported it, then RotateKeyOnDemand makes it
current everywhere — also when a region was down in the middle of it. The bytes never travel between regions."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from tests.e2e.byok import import_error, import_material, wrap
from tests.e2e.harness import RunningCluster, poll
from tests.e2e.test_multi_region import REGIONS, TIMEOUT, A, B, C, clients, describe, error_of


def states(kms: Any, key_id: str) -> list[tuple[str, str, str]]:
    rotations = kms.list_key_rotations(KeyId=key_id, IncludeKeyMaterial="ALL_KEY_MATERIAL")["Rotations"]
    return [(r["KeyMaterialId"], r["KeyMaterialState"], r["ImportState"]) for r in rotations]


def wait_state(kms: Any, key_id: str, wanted: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        meta = describe(kms, key_id)
        return meta if meta is not None and meta["KeyState"] == wanted else None
    found: dict[str, Any] = poll(check, timeout=TIMEOUT, interval=0.02)
    return found


def test_imported_multi_region_key_across_regions_with_one_down(fresh_cluster: Callable[..., RunningCluster]
                                                                 ) -> None:
    c = fresh_cluster(extra_args=("--replica-delay", "0"))
    kms = clients(c)
    first, second = os.urandom(32), os.urandom(32)
    meta = kms[A].create_key(MultiRegion=True, Origin="EXTERNAL")["KeyMetadata"]
    key_id = meta["KeyId"]
    assert (meta["KeyState"], meta["Origin"], meta["MultiRegion"]) == ("PendingImport", "EXTERNAL", True)
    m1 = import_material(kms[A], key_id, first)["KeyMaterialId"]
    for region in (B, C):
        kms[A].replicate_key(KeyId=key_id, ReplicaRegion=region)
        replica = wait_state(kms[region], key_id, "PendingImport")
        assert (replica["Origin"], replica["CurrentKeyMaterialId"]) == ("EXTERNAL", m1)
    blob = kms[A].encrypt(KeyId=key_id, Plaintext=b"made in the primary")["CiphertextBlob"]
    assert error_of(kms[B].decrypt, CiphertextBlob=blob)["Code"] == "KMSInvalidStateException"
    # A token of the replica's own region is needed: the primary's (same key id) does not open there.
    params = kms[A].get_parameters_for_import(KeyId=key_id, WrappingAlgorithm="RSAES_OAEP_SHA_256",
                                              WrappingKeySpec="RSA_2048")
    err = error_of(kms[B].import_key_material, KeyId=key_id, ImportToken=params["ImportToken"],
                   EncryptedKeyMaterial=wrap(params["PublicKey"], "RSAES_OAEP_SHA_256", first),
                   ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    assert err["Code"] == "InvalidImportTokenException"
    # Each replica imports the same bytes itself; other bytes are refused.
    assert import_error(kms[B], key_id, os.urandom(32))["Code"] == "IncorrectKeyMaterialException"
    assert import_material(kms[B], key_id, first)["KeyMaterialId"] == m1
    assert kms[B].decrypt(CiphertextBlob=blob)["Plaintext"] == b"made in the primary"

    c.trent("fault", "down", C)
    try:
        # New material goes into the primary only, and waits for every replica.
        m2 = import_material(kms[A], key_id, second, ImportType="NEW_KEY_MATERIAL")["KeyMaterialId"]
        assert states(kms[A], key_id) == [(m1, "CURRENT", "IMPORTED"),
                                          (m2, "PENDING_MULTI_REGION_IMPORT_AND_ROTATION", "IMPORTED")]
        assert error_of(kms[A].rotate_key_on_demand, KeyId=key_id)["Code"] == "KMSInvalidStateException"
        poll(lambda: (m2, "PENDING_MULTI_REGION_IMPORT_AND_ROTATION", "PENDING_IMPORT") in states(kms[B], key_id),
             timeout=TIMEOUT, interval=0.02)
        err = import_error(kms[B], key_id, second, ImportType="NEW_KEY_MATERIAL")
        assert err["Code"] == "UnsupportedOperationException"
        import_material(kms[B], key_id, second, ImportType="EXISTING_KEY_MATERIAL", KeyMaterialId=m2)
        assert kms[B].describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"
        # The primary still waits for the region that is down.
        assert states(kms[A], key_id)[1][1] == "PENDING_MULTI_REGION_IMPORT_AND_ROTATION"
    finally:
        c.trent("fault", "clear")
    poll(lambda: len(states(kms[C], key_id)) == 2, timeout=TIMEOUT, interval=0.02)
    assert kms[C].describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "PendingImport"
    import_material(kms[C], key_id, first)
    assert kms[C].describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"
    import_material(kms[C], key_id, second)
    poll(lambda: states(kms[A], key_id)[1][1] == "PENDING_ROTATION", timeout=TIMEOUT, interval=0.02)

    kms[A].rotate_key_on_demand(KeyId=key_id)
    for region in REGIONS:
        poll(lambda r=region: describe(kms[r], key_id)["CurrentKeyMaterialId"] == m2,  # type: ignore[index]
             timeout=TIMEOUT, interval=0.02)
    new_blob = kms[C].encrypt(KeyId=key_id, Plaintext=b"after rotation")["CiphertextBlob"]
    for region in REGIONS:
        opened = kms[region].decrypt(CiphertextBlob=new_blob)
        assert (opened["Plaintext"], opened["KeyMaterialId"]) == (b"after rotation", m2)
        assert kms[region].decrypt(CiphertextBlob=blob)["KeyMaterialId"] == m1
        assert [s[1] for s in states(kms[region], key_id)] == ["NON_CURRENT", "CURRENT"]

    # New material the primary deletes while it waits for rotation is deleted in every replica too.
    third = os.urandom(32)
    m3 = import_material(kms[A], key_id, third, ImportType="NEW_KEY_MATERIAL")["KeyMaterialId"]
    for region in (B, C):
        poll(lambda r=region: len(states(kms[r], key_id)) == 3, timeout=TIMEOUT, interval=0.02)
        import_material(kms[region], key_id, third)
    poll(lambda: states(kms[A], key_id)[2][1] == "PENDING_ROTATION", timeout=TIMEOUT, interval=0.02)
    kms[A].delete_imported_key_material(KeyId=key_id, KeyMaterialId=m3)
    for region in REGIONS:
        poll(lambda r=region: [s[0] for s in states(kms[r], key_id)] == [m1, m2], timeout=TIMEOUT, interval=0.02)
        assert kms[region].describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"

    # The primary's region down while the replicas import: they tell it once it is back.
    fourth = os.urandom(32)
    m4 = import_material(kms[A], key_id, fourth, ImportType="NEW_KEY_MATERIAL")["KeyMaterialId"]
    for region in (B, C):
        poll(lambda r=region: m4 in [s[0] for s in states(kms[r], key_id)], timeout=TIMEOUT, interval=0.02)
    c.trent("fault", "down", A)
    try:
        for region in (B, C):
            import_material(kms[region], key_id, fourth)
    finally:
        c.trent("fault", "clear")
    poll(lambda: (m4, "PENDING_ROTATION", "IMPORTED") in states(kms[A], key_id), timeout=TIMEOUT, interval=0.02)
    kms[A].rotate_key_on_demand(KeyId=key_id)
    for region in REGIONS:
        poll(lambda r=region: describe(kms[r], key_id)["CurrentKeyMaterialId"] == m4,  # type: ignore[index]
             timeout=TIMEOUT, interval=0.02)

    def consistent() -> bool:
        return bool(json.loads(c.trent("status", "--json").stdout)["consistency"]["consistent"])
    poll(consistent, timeout=TIMEOUT, interval=0.1)
    # The bytes never left the regions that imported them: no replication record carries them in any form.
    for path in c.data_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(m in data for m in (first, second, third, fourth)), path
