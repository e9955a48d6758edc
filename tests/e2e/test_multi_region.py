"""Multi-Region keys end to end across three regions (KMS-REFERENCE.md §6): creation and replication, crypto
between regions, per-region properties, UpdatePrimaryRegion, and every error case of ReplicateKey and
UpdatePrimaryRegion. The session cluster is never faulted or moved; the one test that needs a hand-off to stall
uses a private cluster.

Helpers here are shared by test_mrk_deletion.py and test_mrk_rotation.py.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e.harness import RunningCluster, poll

A, B, C = "us-east-1", "eu-west-1", "ap-northeast-2"
REGIONS = (A, B, C)
ACCOUNT = "111122223333"
TIMEOUT = 20.0
MRK_ID_RE = re.compile(r"mrk-[0-9a-f]{32}")
FOREIGN_BLOB_MESSAGE = (
    "The ciphertext refers to a customer master key that does not exist, does not exist in this region, "
    "or you are not allowed to access."
)


# ==== helpers ===============================================================================================


def arn(region: str, key_id: str) -> str:
    return f"arn:aws:kms:{region}:{ACCOUNT}:key/{key_id}"


def error_of(call: Callable[..., Any], **kwargs: Any) -> dict[str, str]:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    error: dict[str, str] = info.value.response["Error"]
    return error


def code_of(call: Callable[..., Any], **kwargs: Any) -> str:
    return error_of(call, **kwargs)["Code"]


def clients(cluster: RunningCluster, via: str = "gateway") -> dict[str, Any]:
    return {r: cluster.client(r, via=via) for r in REGIONS}


def describe(kms: Any, key_id: str) -> dict[str, Any] | None:
    """KeyMetadata, or None while the key does not exist in that region."""
    try:
        meta: dict[str, Any] = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "NotFoundException":
            return None
        raise
    return meta


def wait_for(kms: Any, key_id: str, predicate: Callable[[dict[str, Any]], bool],
             timeout: float = TIMEOUT) -> dict[str, Any]:
    """Poll DescribeKey in one region until the metadata satisfies ``predicate``; return it."""
    def check() -> dict[str, Any] | None:
        meta = describe(kms, key_id)
        return meta if meta is not None and predicate(meta) else None
    result: dict[str, Any] = poll(check, timeout=timeout, interval=0.02)
    return result


def wait_state(kms: Any, key_id: str, state: str, timeout: float = TIMEOUT) -> dict[str, Any]:
    return wait_for(kms, key_id, lambda m: m["KeyState"] == state, timeout)


def wait_gone(kms: Any, key_id: str, timeout: float = TIMEOUT) -> None:
    poll(lambda: describe(kms, key_id) is None, timeout=timeout, interval=0.02)


def topology(meta: dict[str, Any]) -> tuple[str, str, list[tuple[str, str]]]:
    """(primary region, primary ARN, sorted replicas) as a region's DescribeKey reports them."""
    conf = meta["MultiRegionConfiguration"]
    replicas = sorted((r["Region"], r["Arn"]) for r in conf["ReplicaKeys"])
    return conf["PrimaryKey"]["Region"], conf["PrimaryKey"]["Arn"], replicas


def expected_topology(key_id: str, primary: str, replicas: tuple[str, ...]) -> tuple[str, str, list[tuple[str, str]]]:
    return primary, arn(primary, key_id), sorted((r, arn(r, key_id)) for r in replicas)


def wait_topology(cluster: RunningCluster, key_id: str, primary: str, replicas: tuple[str, ...],
                  timeout: float = TIMEOUT) -> dict[str, dict[str, Any]]:
    """Poll until every related region reports the same topology (and the right key type); return the metadata."""
    want = expected_topology(key_id, primary, replicas)
    seen: dict[str, dict[str, Any]] = {}
    for region in (primary, *replicas):
        kind = "PRIMARY" if region == primary else "REPLICA"
        seen[region] = wait_for(
            cluster.client(region), key_id,
            lambda m, k=kind: topology(m) == want and m["MultiRegionConfiguration"]["MultiRegionKeyType"] == k,
            timeout)
    return seen


def create_mrk(kms: Any, **kwargs: Any) -> dict[str, Any]:
    meta: dict[str, Any] = kms.create_key(MultiRegion=True, **kwargs)["KeyMetadata"]
    return meta


def replicate(cluster: RunningCluster, key_id: str, primary: str = A, targets: tuple[str, ...] = (B, C),
              **kwargs: Any) -> dict[str, dict[str, Any]]:
    """Replicate ``key_id`` from ``primary`` to ``targets``, wait until every replica is Enabled and every region
    agrees on the topology; return each region's metadata."""
    kms = cluster.client(primary)
    before = describe(kms, key_id)
    assert before is not None
    existing = tuple(r["Region"] for r in before["MultiRegionConfiguration"]["ReplicaKeys"])
    for target in targets:
        kms.replicate_key(KeyId=key_id, ReplicaRegion=target, **kwargs)
    for target in targets:
        wait_state(cluster.client(target), key_id, "Enabled")
    return wait_topology(cluster, key_id, primary, (*existing, *targets))


def encrypt(kms: Any, key_id: str, plaintext: bytes, **kwargs: Any) -> bytes:
    blob: bytes = kms.encrypt(KeyId=key_id, Plaintext=plaintext, **kwargs)["CiphertextBlob"]
    return blob


def default_policy_of(kms: Any) -> str:
    """The default policy text this region attaches to a key created without one."""
    key = kms.create_key(Description="default-policy probe")["KeyMetadata"]["KeyId"]
    policy: str = kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"]
    kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
    return policy


def kms_date(kms: Any, key_id: str) -> Any:
    return kms.describe_key(KeyId=key_id)["KeyMetadata"]["CreationDate"]


def tags_of(kms: Any, key_id: str) -> dict[str, str]:
    return {t["TagKey"]: t["TagValue"] for t in kms.list_resource_tags(KeyId=key_id)["Tags"]}


def policy_for(sid: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Id": sid, "Statement": [{
        "Sid": sid, "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
        "Action": "kms:*", "Resource": "*"}]})


@pytest.fixture(scope="module")
def mrk3(cluster: RunningCluster) -> dict[str, Any]:
    """A multi-Region key with its primary in us-east-1 and Enabled replicas in the two other regions."""
    meta = create_mrk(cluster.client(A), Description="mrk3 primary")
    replicate(cluster, meta["KeyId"])
    return meta


# ==== creation and replication ==============================================================================


def test_create_multi_region_key(cluster: RunningCluster) -> None:
    kms = cluster.client(A)
    meta = create_mrk(kms, Description="fresh primary")
    assert MRK_ID_RE.fullmatch(meta["KeyId"]), meta["KeyId"]
    assert meta["Arn"] == arn(A, meta["KeyId"])
    assert meta["MultiRegion"] is True
    assert meta["KeyState"] == "Enabled" and meta["Enabled"] is True
    assert meta["MultiRegionConfiguration"] == {
        "MultiRegionKeyType": "PRIMARY",
        "PrimaryKey": {"Arn": arn(A, meta["KeyId"]), "Region": A},
        "ReplicaKeys": [],
    }
    described = kms.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]
    assert described["MultiRegionConfiguration"] == meta["MultiRegionConfiguration"]
    # A single-Region key says so, and has no configuration block.
    single = kms.create_key()["KeyMetadata"]
    assert single["MultiRegion"] is False and "MultiRegionConfiguration" not in single
    assert not single["KeyId"].startswith("mrk-")
    # The key exists only in its own region until it is replicated.
    for region in (B, C):
        err = error_of(cluster.client(region).describe_key, KeyId=meta["KeyId"])
        assert err["Code"] == "NotFoundException"


def test_replicate_key_response_and_replica_properties(cluster: RunningCluster) -> None:
    kms = cluster.client(A)
    primary = create_mrk(kms, Description="the primary", Tags=[{"TagKey": "side", "TagValue": "primary"}],
                         Policy=policy_for("primary-policy"))
    key_id = primary["KeyId"]
    replica_policy = policy_for("replica-policy")
    out = kms.replicate_key(KeyId=key_id, ReplicaRegion=B, Description="the replica in eu",
                            Tags=[{"TagKey": "side", "TagValue": "replica"}, {"TagKey": "extra", "TagValue": "1"}],
                            Policy=replica_policy)
    meta = out["ReplicaKeyMetadata"]
    assert meta["KeyId"] == key_id
    assert meta["Arn"] == arn(B, key_id)
    assert meta["KeyState"] == "Creating" and meta["Enabled"] is False
    assert meta["MultiRegion"] is True
    assert meta["Description"] == "the replica in eu"
    assert meta["MultiRegionConfiguration"]["MultiRegionKeyType"] == "REPLICA"
    assert meta["MultiRegionConfiguration"]["PrimaryKey"] == {"Arn": arn(A, key_id), "Region": A}
    assert {"Arn": arn(B, key_id), "Region": B} in meta["MultiRegionConfiguration"]["ReplicaKeys"]
    assert meta["KeySpec"] == "SYMMETRIC_DEFAULT" and meta["KeyUsage"] == "ENCRYPT_DECRYPT"
    assert meta["CurrentKeyMaterialId"] == primary["CurrentKeyMaterialId"]
    assert json.loads(out["ReplicaPolicy"]) == json.loads(replica_policy)
    assert sorted(out["ReplicaTags"], key=lambda t: t["TagKey"]) == [
        {"TagKey": "extra", "TagValue": "1"}, {"TagKey": "side", "TagValue": "replica"}]

    # No Description/Policy/Tags given: ordinary defaults, not the primary's values.
    out_c = kms.replicate_key(KeyId=arn(A, key_id), ReplicaRegion=C)
    assert out_c["ReplicaKeyMetadata"]["Arn"] == arn(C, key_id)
    assert out_c["ReplicaKeyMetadata"]["Description"] == ""
    assert out_c["ReplicaTags"] == []
    default_policy = default_policy_of(cluster.client(C))
    assert out_c["ReplicaPolicy"] == default_policy

    seen = wait_topology(cluster, key_id, A, (B, C))
    for region in (B, C):
        replica = wait_state(cluster.client(region), key_id, "Enabled")
        assert replica["Arn"] == arn(region, key_id) and replica["Enabled"] is True
        assert replica["CurrentKeyMaterialId"] == primary["CurrentKeyMaterialId"]
        assert replica["MultiRegion"] is True
    # The replica's creation date is the one ReplicateKey reported.
    assert kms_date(cluster.client(B), key_id) == meta["CreationDate"]
    assert kms_date(cluster.client(C), key_id) == out_c["ReplicaKeyMetadata"]["CreationDate"]
    assert seen[A]["MultiRegionConfiguration"]["MultiRegionKeyType"] == "PRIMARY"

    kms_b, kms_c = cluster.client(B), cluster.client(C)
    assert kms_b.describe_key(KeyId=key_id)["KeyMetadata"]["Description"] == "the replica in eu"
    assert tags_of(kms_b, key_id) == {"side": "replica", "extra": "1"}
    assert json.loads(kms_b.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"]) == \
        json.loads(replica_policy)
    assert kms_c.describe_key(KeyId=key_id)["KeyMetadata"]["Description"] == ""
    assert tags_of(kms_c, key_id) == {}
    assert kms_c.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"] == default_policy
    # The primary kept its own properties.
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["Description"] == "the primary"
    assert tags_of(kms, key_id) == {"side": "primary"}
    assert json.loads(kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"])["Id"] == "primary-policy"
    # Each region lists its own key with its own ARN.
    for region in REGIONS:
        listed = {k["KeyId"]: k["KeyArn"] for p in cluster.client(region).get_paginator("list_keys").paginate()
                  for k in p["Keys"]}
        assert listed[key_id] == arn(region, key_id)


def test_new_replica_passes_through_creating(cluster: RunningCluster) -> None:
    kms = cluster.client(A)
    key_id = create_mrk(kms)["KeyId"]
    blob = encrypt(kms, key_id, b"made before the replica")
    kms.replicate_key(KeyId=key_id, ReplicaRegion=B)
    kms_b = cluster.client(B, via="region")
    meta = wait_for(kms_b, key_id, lambda m: True)
    if meta["KeyState"] == "Creating":
        # Caught while it is being created (the cluster runs with a 0.3 s Creating period): crypto refuses.
        err = error_of(kms_b.encrypt, KeyId=key_id, Plaintext=b"x")
        if err["Code"] != "KMSInvalidStateException":  # it may have finished in between; then it must work
            pytest.fail(f"unexpected {err}")
        assert err["Message"] == f"{arn(B, key_id)} is creating."
        assert meta["Enabled"] is False
    enabled = wait_state(kms_b, key_id, "Enabled")
    assert enabled["Enabled"] is True
    # A replica holds every material version, so it opens blobs made before it existed.
    assert kms_b.decrypt(CiphertextBlob=blob)["Plaintext"] == b"made before the replica"


def test_every_region_reports_the_same_topology(cluster: RunningCluster, mrk3: dict[str, Any]) -> None:
    key_id = mrk3["KeyId"]
    views = {r: describe(cluster.client(r), key_id) for r in REGIONS}
    want = expected_topology(key_id, A, (B, C))
    for region, meta in views.items():
        assert meta is not None
        assert topology(meta) == want, region
        assert meta["MultiRegionConfiguration"]["MultiRegionKeyType"] == ("PRIMARY" if region == A else "REPLICA")
        assert meta["Arn"] == arn(region, key_id)
        assert meta["KeyId"] == key_id
        # Shared properties are the same everywhere.
        assert meta["CurrentKeyMaterialId"] == mrk3["CurrentKeyMaterialId"]
        assert meta["KeySpec"] == mrk3["KeySpec"] and meta["Origin"] == "AWS_KMS"


# ==== crypto between regions =================================================================================


@pytest.mark.parametrize("via", ["gateway", "region"])
def test_encrypt_in_one_region_decrypt_in_every_other(cluster: RunningCluster, mrk3: dict[str, Any],
                                                      via: str) -> None:
    key_id = mrk3["KeyId"]
    kms = clients(cluster, via)
    for source in REGIONS:
        plaintext = f"from {source} via {via}".encode()
        context = {"made-in": source}
        made = kms[source].encrypt(KeyId=key_id, Plaintext=plaintext, EncryptionContext=context)
        assert made["KeyId"] == arn(source, key_id)
        for target in REGIONS:
            out = kms[target].decrypt(CiphertextBlob=made["CiphertextBlob"], EncryptionContext=context)
            assert out["Plaintext"] == plaintext
            # Decrypt answers with the ARN of the key in the region called (what the ESDK's MRK keyrings check).
            assert out["KeyId"] == arn(target, key_id), (source, target)
            assert out["KeyMaterialId"] == mrk3["CurrentKeyMaterialId"]
            # The ESDK's MRK discovery sends the blob's ARN rewritten to the local region.
            named = kms[target].decrypt(CiphertextBlob=made["CiphertextBlob"], EncryptionContext=context,
                                        KeyId=arn(target, key_id))
            assert named["KeyId"] == arn(target, key_id) and named["Plaintext"] == plaintext
            # The context still binds across regions.
            err = error_of(kms[target].decrypt, CiphertextBlob=made["CiphertextBlob"],
                           EncryptionContext={"made-in": "elsewhere"})
            assert err["Code"] == "InvalidCiphertextException"


def test_decrypt_naming_another_regions_arn_is_not_found(cluster: RunningCluster, mrk3: dict[str, Any]) -> None:
    key_id = mrk3["KeyId"]
    blob = encrypt(cluster.client(A), key_id, b"abc")
    err = error_of(cluster.client(B).decrypt, CiphertextBlob=blob, KeyId=arn(A, key_id))
    assert err["Code"] == "NotFoundException"


def test_generate_data_key_in_a_replica_decrypt_in_the_primary(cluster: RunningCluster,
                                                               mrk3: dict[str, Any]) -> None:
    key_id = mrk3["KeyId"]
    kms = clients(cluster)
    data_key = kms[B].generate_data_key(KeyId=key_id, NumberOfBytes=32, EncryptionContext={"purpose": "dk"})
    assert data_key["KeyId"] == arn(B, key_id) and len(data_key["Plaintext"]) == 32
    for region in (A, C):
        out = kms[region].decrypt(CiphertextBlob=data_key["CiphertextBlob"], EncryptionContext={"purpose": "dk"})
        assert out["Plaintext"] == data_key["Plaintext"]
        assert out["KeyId"] == arn(region, key_id)
    bare = kms[C].generate_data_key_without_plaintext(KeyId=arn(C, key_id), KeySpec="AES_256")
    assert len(kms[A].decrypt(CiphertextBlob=bare["CiphertextBlob"])["Plaintext"]) == 32
    # ReEncrypt in a replica from a primary blob keeps working too.
    blob = encrypt(kms[A], key_id, b"re-encrypt me")
    re = kms[B].re_encrypt(CiphertextBlob=blob, DestinationKeyId=key_id)
    assert re["SourceKeyId"] == arn(B, key_id) and re["KeyId"] == arn(B, key_id)
    assert kms[C].decrypt(CiphertextBlob=re["CiphertextBlob"])["Plaintext"] == b"re-encrypt me"


def test_single_region_ciphertext_does_not_open_elsewhere(cluster: RunningCluster) -> None:
    kms = clients(cluster)
    single = kms[A].create_key()["KeyMetadata"]["KeyId"]
    blob = encrypt(kms[A], single, b"local only")
    for region in (B, C):
        err = error_of(kms[region].decrypt, CiphertextBlob=blob)
        assert err["Code"] == "AccessDeniedException"
        assert err["Message"] == FOREIGN_BLOB_MESSAGE
    assert kms[A].decrypt(CiphertextBlob=blob)["Plaintext"] == b"local only"


# ==== per-region properties ==================================================================================


def test_aliases_and_tags_are_per_region(cluster: RunningCluster, mrk3: dict[str, Any]) -> None:
    key_id = mrk3["KeyId"]
    kms = clients(cluster)
    suffix = uuid.uuid4().hex[:12]
    only_b = f"alias/only-in-eu-{suffix}"
    kms[B].create_alias(AliasName=only_b, TargetKeyId=key_id)
    assert kms[B].describe_key(KeyId=only_b)["KeyMetadata"]["Arn"] == arn(B, key_id)
    for region in (A, C):
        err = error_of(kms[region].describe_key, KeyId=only_b)
        assert err["Code"] == "NotFoundException"
        names = {a["AliasName"] for a in kms[region].list_aliases(KeyId=key_id)["Aliases"]}
        assert only_b not in names

    # The same alias name in two regions, each pointing at its own related key.
    shared = f"alias/everywhere-{suffix}"
    kms[A].create_alias(AliasName=shared, TargetKeyId=key_id)
    kms[B].create_alias(AliasName=shared, TargetKeyId=arn(B, key_id))
    made = kms[A].encrypt(KeyId=shared, Plaintext=b"by alias")
    assert made["KeyId"] == arn(A, key_id)
    out = kms[B].decrypt(CiphertextBlob=made["CiphertextBlob"], KeyId=shared)
    assert out["Plaintext"] == b"by alias" and out["KeyId"] == arn(B, key_id)
    assert kms[B].encrypt(KeyId=shared, Plaintext=b"x")["KeyId"] == arn(B, key_id)
    entry_b = [a for a in kms[B].list_aliases(KeyId=key_id)["Aliases"] if a["AliasName"] == shared]
    assert entry_b and entry_b[0]["AliasArn"] == f"arn:aws:kms:{B}:{ACCOUNT}:{shared}"
    assert entry_b[0]["TargetKeyId"] == key_id

    # Tags on a replica are its own.
    tag_key = f"team-{suffix}"
    kms[B].tag_resource(KeyId=key_id, Tags=[{"TagKey": tag_key, "TagValue": "eu"}])
    assert tags_of(kms[B], key_id)[tag_key] == "eu"
    assert tag_key not in tags_of(kms[A], key_id) and tag_key not in tags_of(kms[C], key_id)
    kms[A].tag_resource(KeyId=key_id, Tags=[{"TagKey": tag_key, "TagValue": "us"}])
    assert tags_of(kms[B], key_id)[tag_key] == "eu"
    kms[B].untag_resource(KeyId=key_id, TagKeys=[tag_key])
    assert tags_of(kms[A], key_id)[tag_key] == "us"
    kms[A].untag_resource(KeyId=key_id, TagKeys=[tag_key])
    for name, region in ((only_b, B), (shared, A), (shared, B)):
        kms[region].delete_alias(AliasName=name)


def test_enabled_state_and_description_are_per_region(cluster: RunningCluster) -> None:
    kms = clients(cluster)
    key_id = create_mrk(kms[A], Description="primary text")["KeyId"]
    replicate(cluster, key_id, targets=(B, C), Description="replica text")
    blob = encrypt(kms[A], key_id, b"state test")

    kms[B].disable_key(KeyId=key_id)
    assert kms[B].describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Disabled"
    assert kms[A].describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"
    assert kms[C].describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"
    for call, kwargs in ((kms[B].encrypt, {"KeyId": key_id, "Plaintext": b"x"}),
                         (kms[B].decrypt, {"CiphertextBlob": blob}),
                         (kms[B].generate_data_key, {"KeyId": key_id, "NumberOfBytes": 16})):
        err = error_of(call, **kwargs)
        assert err["Code"] == "DisabledException"
        assert err["Message"] == f"{arn(B, key_id)} is disabled."
    assert kms[A].decrypt(CiphertextBlob=blob)["Plaintext"] == b"state test"
    assert kms[C].decrypt(CiphertextBlob=encrypt(kms[A], key_id, b"y"))["Plaintext"] == b"y"

    # Disabling the primary leaves the replicas usable.
    kms[A].disable_key(KeyId=key_id)
    assert code_of(kms[A].encrypt, KeyId=key_id, Plaintext=b"x") == "DisabledException"
    assert kms[C].decrypt(CiphertextBlob=blob)["Plaintext"] == b"state test"
    kms[A].enable_key(KeyId=key_id)
    kms[B].enable_key(KeyId=key_id)
    assert kms[B].decrypt(CiphertextBlob=blob)["KeyId"] == arn(B, key_id)

    kms[C].update_key_description(KeyId=key_id, Description="changed in ap")
    assert kms[C].describe_key(KeyId=key_id)["KeyMetadata"]["Description"] == "changed in ap"
    assert kms[B].describe_key(KeyId=key_id)["KeyMetadata"]["Description"] == "replica text"
    assert kms[A].describe_key(KeyId=key_id)["KeyMetadata"]["Description"] == "primary text"
    # A later change of shared state (rotation setting on the primary) leaves per-region properties alone.
    kms[B].disable_key(KeyId=key_id)
    kms[A].enable_key_rotation(KeyId=key_id, RotationPeriodInDays=200)
    poll(lambda: kms[C].get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"], timeout=TIMEOUT,
         interval=0.02)
    poll(lambda: kms[B].get_key_rotation_status(KeyId=key_id).get("RotationPeriodInDays") == 200,
         timeout=TIMEOUT, interval=0.02)
    assert kms[C].describe_key(KeyId=key_id)["KeyMetadata"]["Description"] == "changed in ap"
    assert kms[B].describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Disabled"


# ==== UpdatePrimaryRegion ====================================================================================


def test_update_primary_region(cluster: RunningCluster) -> None:
    kms = clients(cluster)
    key_id = create_mrk(kms[A])["KeyId"]
    replicate(cluster, key_id)
    old_blob = encrypt(kms[A], key_id, b"before the move")

    assert kms[A].update_primary_region(KeyId=key_id, PrimaryRegion=B)["ResponseMetadata"]["HTTPStatusCode"] == 200
    # Right after the call the old primary is Updating (or already done); crypto keeps working meanwhile.
    state = kms[A].describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"]
    assert state in ("Updating", "Enabled")
    during = encrypt(kms[A], key_id, b"during the move")
    assert kms[B].decrypt(CiphertextBlob=during)["Plaintext"] == b"during the move"

    seen = wait_topology(cluster, key_id, B, (A, C))
    wait_state(kms[A], key_id, "Enabled")
    assert seen[B]["KeyState"] in ("Updating", "Enabled")
    wait_state(kms[B], key_id, "Enabled")
    for source in REGIONS:
        blob = encrypt(kms[source], key_id, source.encode())
        for target in REGIONS:
            assert kms[target].decrypt(CiphertextBlob=blob)["Plaintext"] == source.encode()
            assert kms[target].decrypt(CiphertextBlob=old_blob)["KeyId"] == arn(target, key_id)

    # Shared-state operations now belong to the new primary.
    for call, kwargs in ((kms[A].rotate_key_on_demand, {}), (kms[A].enable_key_rotation, {}),
                         (kms[A].replicate_key, {"ReplicaRegion": C}),
                         (kms[A].update_primary_region, {"PrimaryRegion": C})):
        assert code_of(call, KeyId=key_id, **kwargs) == "UnsupportedOperationException", call
    kms[B].enable_key_rotation(KeyId=key_id)
    poll(lambda: kms[A].get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"], timeout=TIMEOUT,
         interval=0.02)
    kms[B].rotate_key_on_demand(KeyId=key_id)
    rotated = wait_for(kms[B], key_id, lambda m: m["CurrentKeyMaterialId"] != seen[B]["CurrentKeyMaterialId"])
    for region in (A, C):
        wait_for(kms[region], key_id, lambda m: m["CurrentKeyMaterialId"] == rotated["CurrentKeyMaterialId"])

    # And it can move back (the new primary is Updating for the replica delay first).
    kms[B].update_primary_region(KeyId=arn(B, key_id), PrimaryRegion=A)
    wait_topology(cluster, key_id, A, (B, C))
    wait_state(kms[B], key_id, "Enabled")
    wait_state(kms[A], key_id, "Enabled")
    kms[A].rotate_key_on_demand(KeyId=key_id)


def test_creating_and_updating_on_a_held_clock(fresh_cluster: Callable[..., RunningCluster]) -> None:
    """Creating and Updating, observed deterministically: the replica delay runs on the cluster's clock, so with
    a long one a new replica stays Creating, and a new primary Updating, until the clock moves. With the new
    primary's region down the hand-off cannot finish, so the old primary stays Updating until it is back."""
    c = fresh_cluster(extra_args=("--replica-delay", "600"))
    kms = clients(c)
    key_id = create_mrk(kms[A])["KeyId"]
    blob = encrypt(kms[A], key_id, b"stalled hand-off")
    for region in (B, C):
        kms[A].replicate_key(KeyId=key_id, ReplicaRegion=region)
        meta = wait_for(kms[region], key_id, lambda m: True)
        assert meta["KeyState"] == "Creating" and meta["Enabled"] is False
        for call, kwargs in ((kms[region].encrypt, {"KeyId": key_id, "Plaintext": b"x"}),
                             (kms[region].decrypt, {"CiphertextBlob": blob}),
                             (kms[region].disable_key, {"KeyId": key_id})):
            err = error_of(call, **kwargs)
            assert err["Code"] == "KMSInvalidStateException", call
            assert err["Message"] == f"{arn(region, key_id)} is creating."
        kms[region].update_key_description(KeyId=key_id, Description="described while creating")
    # A replica that is still Creating already holds its region.
    assert code_of(kms[A].replicate_key, KeyId=key_id, ReplicaRegion=B) == "AlreadyExistsException"
    c.advance_clock("11m")
    for region in (B, C):
        assert wait_state(kms[region], key_id, "Enabled")["Description"] == "described while creating"
        assert kms[region].decrypt(CiphertextBlob=blob)["Plaintext"] == b"stalled hand-off"

    c.admin("/_trent/faults", {"action": "down", "regions": [B]})
    try:
        kms[A].update_primary_region(KeyId=key_id, PrimaryRegion=B)
        meta = kms[A].describe_key(KeyId=key_id)["KeyMetadata"]
        assert meta["KeyState"] == "Updating" and meta["Enabled"] is False
        # Crypto keeps working while Updating.
        assert kms[A].decrypt(CiphertextBlob=blob)["Plaintext"] == b"stalled hand-off"
        assert kms[A].decrypt(CiphertextBlob=encrypt(kms[A], key_id, b"u"))["Plaintext"] == b"u"
        for call in (kms[A].disable_key, kms[A].enable_key, kms[A].schedule_key_deletion):
            err = error_of(call, KeyId=key_id)
            assert err["Code"] == "KMSInvalidStateException", call
            assert err["Message"] == f"{arn(A, key_id)} is updating."
        # Per-region metadata changes are allowed.
        kms[A].update_key_description(KeyId=key_id, Description="while updating")
        assert c.advance_clock("11m")  # time alone does not end the old primary's Updating
        assert kms[A].describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Updating"
    finally:
        c.admin("/_trent/faults", {"action": "clear"})
    views = wait_topology(c, key_id, B, (A, C))
    meta = wait_state(kms[A], key_id, "Enabled")
    assert meta["Description"] == "while updating"
    # The new primary is Updating too (for the replica delay), usable for crypto, closed to management calls.
    assert views[B]["KeyState"] == "Updating"
    assert kms[B].decrypt(CiphertextBlob=blob)["Plaintext"] == b"stalled hand-off"
    for call, kwargs in ((kms[B].disable_key, {}), (kms[B].rotate_key_on_demand, {}),
                         (kms[B].schedule_key_deletion, {}), (kms[B].replicate_key, {"ReplicaRegion": C})):
        err = error_of(call, KeyId=key_id, **kwargs)
        assert err["Code"] == "KMSInvalidStateException", call
        assert err["Message"] == f"{arn(B, key_id)} is updating."
    c.advance_clock("11m")
    wait_state(kms[B], key_id, "Enabled")
    kms[B].rotate_key_on_demand(KeyId=key_id)


def test_update_primary_region_keeps_a_disabled_primary_state_rules(cluster: RunningCluster) -> None:
    kms = clients(cluster)
    key_id = create_mrk(kms[A])["KeyId"]
    replicate(cluster, key_id, targets=(B,))
    kms[A].disable_key(KeyId=key_id)
    err = error_of(kms[A].update_primary_region, KeyId=key_id, PrimaryRegion=B)
    assert err["Code"] == "DisabledException"
    assert err["Message"] == f"{arn(A, key_id)} is disabled."
    kms[A].enable_key(KeyId=key_id)
    kms[A].schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    assert code_of(kms[A].update_primary_region, KeyId=key_id, PrimaryRegion=B) == "KMSInvalidStateException"
    kms[A].cancel_key_deletion(KeyId=key_id)


# ==== error cases (§6) ======================================================================================


def test_replicate_key_errors(cluster: RunningCluster, mrk3: dict[str, Any]) -> None:
    kms = clients(cluster)
    single = kms[A].create_key()["KeyMetadata"]
    err = error_of(kms[A].replicate_key, KeyId=single["KeyId"], ReplicaRegion=B)
    assert err["Code"] == "UnsupportedOperationException"

    key_id = mrk3["KeyId"]
    # Called on a replica (in its region).
    assert code_of(kms[B].replicate_key, KeyId=key_id, ReplicaRegion=C) == "UnsupportedOperationException"
    assert code_of(kms[B].replicate_key, KeyId=arn(B, key_id), ReplicaRegion=A) == "UnsupportedOperationException"
    # The primary's own region, and regions that already hold a replica.
    for region in (A, B, C):
        assert code_of(kms[A].replicate_key, KeyId=key_id, ReplicaRegion=region) == "AlreadyExistsException"
    # Regions outside the cluster, and strings that are no region at all.
    fresh = create_mrk(kms[A])["KeyId"]
    for region in ("sa-east-1", "not-a-region", "US-EAST-1", "xx-nowhere-9"):
        assert code_of(kms[A].replicate_key, KeyId=fresh, ReplicaRegion=region) == "ValidationException", region
    # None of the refused calls changed the topology.
    assert kms[A].describe_key(KeyId=fresh)["KeyMetadata"]["MultiRegionConfiguration"]["ReplicaKeys"] == []
    # An unknown key, and a key named by an alias (ReplicateKey takes key ids and ARNs only).
    assert code_of(kms[A].replicate_key, KeyId="mrk-" + "0" * 32, ReplicaRegion=B) == "NotFoundException"
    alias = f"alias/replicate-{uuid.uuid4().hex[:10]}"
    kms[A].create_alias(AliasName=alias, TargetKeyId=fresh)
    assert code_of(kms[A].replicate_key, KeyId=alias, ReplicaRegion=B) == "NotFoundException"
    kms[A].delete_alias(AliasName=alias)


def test_replicate_key_state_errors(cluster: RunningCluster) -> None:
    kms = clients(cluster)
    key_id = create_mrk(kms[A])["KeyId"]
    kms[A].disable_key(KeyId=key_id)
    err = error_of(kms[A].replicate_key, KeyId=key_id, ReplicaRegion=B)
    assert err["Code"] == "DisabledException"
    assert err["Message"] == f"{arn(A, key_id)} is disabled."
    kms[A].schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    err = error_of(kms[A].replicate_key, KeyId=key_id, ReplicaRegion=B)
    assert err["Code"] == "KMSInvalidStateException"
    assert err["Message"] == f"{arn(A, key_id)} is pending deletion."
    # Nothing was replicated by the refused calls.
    assert describe(kms[B], key_id) is None


def test_replicate_key_validates_replica_properties(cluster: RunningCluster) -> None:
    kms = clients(cluster)
    key_id = create_mrk(kms[A])["KeyId"]
    assert code_of(kms[A].replicate_key, KeyId=key_id, ReplicaRegion=B,
                   Policy="not json") == "MalformedPolicyDocumentException"
    assert code_of(kms[A].replicate_key, KeyId=key_id, ReplicaRegion=B,
                   Tags=[{"TagKey": "aws:reserved", "TagValue": "x"}]) == "TagException"
    # CreateKey's lockout safety check applies to the replica's policy too.
    lockout = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/someone-else"},
        "Action": "kms:*", "Resource": "*"}]})
    err = error_of(kms[A].replicate_key, KeyId=key_id, ReplicaRegion=B, Policy=lockout)
    assert err["Code"] == "MalformedPolicyDocumentException"
    assert kms[A].describe_key(KeyId=key_id)["KeyMetadata"]["MultiRegionConfiguration"]["ReplicaKeys"] == []
    assert describe(kms[B], key_id) is None
    out = kms[A].replicate_key(KeyId=key_id, ReplicaRegion=B, Policy=lockout, BypassPolicyLockoutSafetyCheck=True)
    assert json.loads(out["ReplicaPolicy"]) == json.loads(lockout)


def test_update_primary_region_errors(cluster: RunningCluster) -> None:
    kms = clients(cluster)
    key_id = create_mrk(kms[A])["KeyId"]
    replicate(cluster, key_id, targets=(B,))
    # No replica in that region.
    err = error_of(kms[A].update_primary_region, KeyId=key_id, PrimaryRegion=C)
    assert err["Code"] == "NotFoundException"
    # Its own region.
    err = error_of(kms[A].update_primary_region, KeyId=key_id, PrimaryRegion=A)
    assert err["Code"] == "UnsupportedOperationException"
    # A region outside the cluster, a single-Region key, a replica.
    assert code_of(kms[A].update_primary_region, KeyId=key_id, PrimaryRegion="sa-east-1") == "NotFoundException"
    single = kms[A].create_key()["KeyMetadata"]["KeyId"]
    assert code_of(kms[A].update_primary_region, KeyId=single,
                   PrimaryRegion=B) == "UnsupportedOperationException"
    assert code_of(kms[B].update_primary_region, KeyId=key_id, PrimaryRegion=A) == "UnsupportedOperationException"
    # Nothing moved.
    wait_topology(cluster, key_id, A, (B,))
    assert kms[A].describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"


def test_update_primary_region_to_a_disabled_replica_leaves_the_primary(cluster: RunningCluster) -> None:
    """AWS requires the new primary to be Enabled when the hand-off starts. The primary's region cannot see the
    replica's local state, so the cluster accepts the call and the disabled replica declines the hand-off: the
    primary stays where it was (never a Disabled primary)."""
    kms = clients(cluster)
    key_id = create_mrk(kms[A])["KeyId"]
    replicate(cluster, key_id)
    kms[B].disable_key(KeyId=key_id)
    kms[A].update_primary_region(KeyId=key_id, PrimaryRegion=B)
    # The hand-off goes back to us-east-1; every region ends up agreeing on it, at a newer epoch.
    wait_state(kms[A], key_id, "Enabled")
    views = wait_topology(cluster, key_id, A, (B, C))
    assert views[B]["KeyState"] == "Disabled"
    assert views[A]["MultiRegionConfiguration"]["MultiRegionKeyType"] == "PRIMARY"
    # The primary still owns shared state; the replica still refuses it.
    kms[A].rotate_key_on_demand(KeyId=key_id)
    new = wait_for(kms[A], key_id, lambda m: m["CurrentKeyMaterialId"] != views[A]["CurrentKeyMaterialId"])
    for region in (B, C):
        wait_for(kms[region], key_id, lambda m: m["CurrentKeyMaterialId"] == new["CurrentKeyMaterialId"])
    kms[B].enable_key(KeyId=key_id)
    assert code_of(kms[B].rotate_key_on_demand, KeyId=key_id) == "UnsupportedOperationException"
    # Once Enabled, the same replica accepts.
    kms[A].update_primary_region(KeyId=key_id, PrimaryRegion=B)
    wait_topology(cluster, key_id, B, (A, C))
    wait_state(kms[A], key_id, "Enabled")


def test_on_demand_rotation_limit_is_shared_across_a_hand_off(cluster: RunningCluster) -> None:
    kms = clients(cluster)
    key_id = create_mrk(kms[A])["KeyId"]
    for _ in range(24):  # no replicas yet: each rotation completes at once
        kms[A].rotate_key_on_demand(KeyId=key_id)
    replicate(cluster, key_id, targets=(B,))
    kms[A].update_primary_region(KeyId=key_id, PrimaryRegion=B)
    wait_topology(cluster, key_id, B, (A,))
    wait_state(kms[A], key_id, "Enabled")
    wait_state(kms[B], key_id, "Enabled")
    kms[B].rotate_key_on_demand(KeyId=key_id)  # the 25th of this key
    poll(lambda: "OnDemandRotationStartDate" not in kms[B].get_key_rotation_status(KeyId=key_id),
         timeout=TIMEOUT, interval=0.02)
    err = error_of(kms[B].rotate_key_on_demand, KeyId=key_id)
    assert err["Code"] == "LimitExceededException"
    assert len(kms[A].list_key_rotations(KeyId=key_id)["Rotations"]) == 25


def test_replica_created_late_catches_up_with_a_new_primary(fresh_cluster: Callable[..., RunningCluster]) -> None:
    """A replica whose creation is delayed (its region cut off from the primary) while the primary moves and
    rotates must still end up with the new primary's state, and the rotation must complete."""
    c = fresh_cluster(extra_args=("--replica-delay", "0"))
    kms = clients(c)
    key_id = create_mrk(kms[A])["KeyId"]
    replicate(c, key_id, targets=(B,))
    first = kms[A].describe_key(KeyId=key_id)["KeyMetadata"]["CurrentKeyMaterialId"]
    c.admin("/_trent/faults", {"action": "partition", "regions": [A, C]})
    try:
        kms[A].replicate_key(KeyId=key_id, ReplicaRegion=C, Description="late")
        kms[A].update_primary_region(KeyId=key_id, PrimaryRegion=B)
        wait_for(kms[B], key_id, lambda m: m["MultiRegionConfiguration"]["MultiRegionKeyType"] == "PRIMARY")
        wait_state(kms[A], key_id, "Enabled")
        kms[B].enable_key_rotation(KeyId=key_id, RotationPeriodInDays=123)
        kms[B].rotate_key_on_demand(KeyId=key_id)
        assert describe(kms[C], key_id) is None
    finally:
        c.admin("/_trent/faults", {"action": "clear"})
    meta = wait_state(kms[C], key_id, "Enabled")
    assert meta["Description"] == "late"
    wait_topology(c, key_id, B, (A, C))
    new = wait_for(kms[B], key_id, lambda m: m["CurrentKeyMaterialId"] != first)["CurrentKeyMaterialId"]
    for region in REGIONS:
        wait_for(kms[region], key_id, lambda m: m["CurrentKeyMaterialId"] == new)
    poll(lambda: kms[C].get_key_rotation_status(KeyId=key_id).get("RotationPeriodInDays") == 123,
         timeout=TIMEOUT, interval=0.02)


# ==== other key types ========================================================================================


def test_asymmetric_and_hmac_multi_region_keys(cluster: RunningCluster) -> None:
    kms = clients(cluster)
    # Signing: the replicas hold the same private key.
    signer = create_mrk(kms[A], KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")
    assert MRK_ID_RE.fullmatch(signer["KeyId"]) and "CurrentKeyMaterialId" not in signer
    key_id = signer["KeyId"]
    out = kms[A].replicate_key(KeyId=key_id, ReplicaRegion=B)
    assert out["ReplicaKeyMetadata"]["KeySpec"] == "ECC_NIST_P256"
    assert out["ReplicaKeyMetadata"]["SigningAlgorithms"] == signer["SigningAlgorithms"]
    replicate(cluster, key_id, targets=(C,))
    wait_state(kms[B], key_id, "Enabled")
    public = {r: kms[r].get_public_key(KeyId=key_id)["PublicKey"] for r in REGIONS}
    assert len(set(public.values())) == 1
    signed = kms[B].sign(KeyId=key_id, Message=b"signed in eu", SigningAlgorithm="ECDSA_SHA_256")
    assert signed["KeyId"] == arn(B, key_id)
    for region in (A, C):
        verified = kms[region].verify(KeyId=key_id, Message=b"signed in eu", Signature=signed["Signature"],
                                      SigningAlgorithm="ECDSA_SHA_256")
        assert verified["SignatureValid"] is True and verified["KeyId"] == arn(region, key_id)
    assert code_of(kms[A].rotate_key_on_demand, KeyId=key_id) == "UnsupportedOperationException"

    # RSA encryption: a ciphertext made with the primary opens in a replica (KeyId names the local key).
    rsa = create_mrk(kms[A], KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT")["KeyId"]
    replicate(cluster, rsa, targets=(C,))
    blob = kms[A].encrypt(KeyId=rsa, Plaintext=b"rsa across regions",
                          EncryptionAlgorithm="RSAES_OAEP_SHA_256")["CiphertextBlob"]
    opened = kms[C].decrypt(KeyId=rsa, CiphertextBlob=blob, EncryptionAlgorithm="RSAES_OAEP_SHA_256")
    assert opened["Plaintext"] == b"rsa across regions" and opened["KeyId"] == arn(C, rsa)

    # HMAC: a MAC made in one region verifies in the others.
    mac_key = create_mrk(kms[A], KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyId"]
    replicate(cluster, mac_key)
    mac = kms[C].generate_mac(KeyId=mac_key, Message=b"m", MacAlgorithm="HMAC_SHA_256")["Mac"]
    for region in (A, B):
        assert kms[region].verify_mac(KeyId=mac_key, Message=b"m", Mac=mac,
                                      MacAlgorithm="HMAC_SHA_256")["MacValid"] is True
