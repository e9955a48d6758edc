"""`trent reset` and the admin call behind it: every region emptied in one step while the cluster keeps running, and
replication working afterwards as before."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e.harness import REGIONS, RunningCluster, poll, private_cluster


@pytest.fixture(scope="module")
def resettable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    yield from private_cluster(tmp_path_factory, "reset", "--replica-delay", "0")


def _populate(c: RunningCluster) -> dict[str, Any]:
    east, west = c.client("us-east-1"), c.client("eu-west-1")
    key = east.create_key()["KeyMetadata"]["KeyId"]
    east.create_alias(AliasName="alias/before-reset", TargetKeyId=key)
    east.create_grant(KeyId=key, GranteePrincipal="arn:aws:iam::111122223333:role/x", Operations=["Decrypt"])
    mrk = east.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    east.replicate_key(KeyId=mrk, ReplicaRegion="eu-west-1")
    poll(lambda: _exists(west, mrk))
    west.create_key()
    blob = east.encrypt(KeyId=key, Plaintext=b"gone with the key")["CiphertextBlob"]
    return {"key": key, "mrk": mrk, "blob": blob}


def _exists(client: Any, key_id: str) -> bool:
    try:
        client.describe_key(KeyId=key_id)
        return True
    except ClientError:
        return False


def test_reset_empties_every_region_without_a_restart(resettable: RunningCluster) -> None:
    made = _populate(resettable)
    pid = resettable.proc.pid if resettable.proc else None
    out = resettable.trent("reset")
    assert "reset 3 regions" in out.stdout and "4 keys" in out.stdout, out.stdout
    assert resettable.proc is not None and resettable.proc.pid == pid and resettable.proc.poll() is None
    for region in REGIONS:
        client = resettable.client(region)
        assert client.list_keys()["Keys"] == []
        # Only the predefined AWS managed aliases are left, bound to no key until used again.
        assert all(a["AliasName"].startswith("alias/aws/") and "TargetKeyId" not in a
                   for a in client.list_aliases()["Aliases"])
    east = resettable.client("us-east-1")
    with pytest.raises(ClientError) as err:
        east.decrypt(CiphertextBlob=made["blob"])
    assert err.value.response["Error"]["Code"] in ("NotFoundException", "AccessDeniedException")
    status = resettable.admin("/_trent/status")
    assert all(r["keys"] == 0 for r in status["regions"].values())
    # The outboxes are empty, and no replica comes back from a record fetched before the reset.
    assert resettable.admin("/_trent/reset", {})["cleared"]["us-east-1"]["outbox_records"] == 0
    assert not _exists(resettable.client("eu-west-1"), made["mrk"])


def test_replication_works_after_a_reset(resettable: RunningCluster) -> None:
    resettable.admin("/_trent/reset", {})
    east, tokyo = resettable.client("us-east-1"), resettable.client("ap-northeast-2")
    mrk = east.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    east.replicate_key(KeyId=mrk, ReplicaRegion="ap-northeast-2")
    poll(lambda: _exists(tokyo, mrk))
    blob = east.encrypt(KeyId=mrk, Plaintext=b"after")["CiphertextBlob"]
    poll(lambda: tokyo.describe_key(KeyId=mrk)["KeyMetadata"]["Enabled"])
    assert tokyo.decrypt(CiphertextBlob=blob)["Plaintext"] == b"after"
    east.rotate_key_on_demand(KeyId=mrk)  # a new record in the outbox, above every peer's cursor
    poll(lambda: len(tokyo.list_key_rotations(KeyId=mrk)["Rotations"]) == 1)
    poll(lambda: resettable.admin("/_trent/status")["consistency"]["consistent"])


def test_reset_survives_a_restart_and_keeps_numbering(resettable: RunningCluster) -> None:
    east, west = resettable.client("us-east-1"), resettable.client("eu-west-1")
    mrk = east.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    east.replicate_key(KeyId=mrk, ReplicaRegion="eu-west-1")
    poll(lambda: _exists(west, mrk))
    resettable.admin("/_trent/reset", {})
    resettable.restart()
    west = resettable.client("eu-west-1")
    assert west.list_keys()["Keys"] == []
    # After the restart the outbox numbers on from where it was: a new replica reaches its region.
    east = resettable.client("us-east-1")
    mrk = east.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    east.replicate_key(KeyId=mrk, ReplicaRegion="eu-west-1")
    poll(lambda: _exists(west, mrk))


def test_reset_needs_the_admin_token(resettable: RunningCluster) -> None:
    from tests.e2e.harness import admin_post

    east = resettable.client("us-east-1")
    key = east.create_key()["KeyMetadata"]["KeyId"]
    status, doc = admin_post(resettable.gateway_url + "/_trent/reset", b"{}", {"X-Trent-Admin-Token": "wrong"})
    assert status == 403 and doc == {"error": "admin token required"}
    token = (resettable.data_dir / "admin.token").read_text().strip()
    # Not JSON, not an object, nested past the parser's depth (not a 500), or asking for part of a reset.
    for body in (b"[]", b"{not json", b'"reset"', b'{"x": ' * 100_000, b'{"regions": ["eu-west-1"]}'):
        status, doc = admin_post(resettable.gateway_url + "/_trent/reset", body, {"X-Trent-Admin-Token": token})
        assert status == 400 and "error" in doc, (body, doc)
    status, doc = admin_post(resettable.gateway_url + "/_trent/clock", b'{"x": ' * 100_000,
                             {"X-Trent-Admin-Token": token})
    assert status == 400 and "nested" in doc["error"]
    # KMS credentials do not reach it either: the region ports serve the admin API under the same token.
    status, _ = admin_post(resettable.region_url("us-east-1") + "/_trent/reset", b"{}", {})
    assert status == 403
    assert east.describe_key(KeyId=key)["KeyMetadata"]["KeyId"] == key


def test_reset_reaches_every_process_of_a_multi_process_cluster(fresh_cluster: Callable[..., RunningCluster]) -> None:
    c = fresh_cluster(extra_args=("--workers", "2", "--replica-delay", "0"))
    east = c.client("us-east-1")
    keys = [east.create_key()["KeyMetadata"]["KeyId"] for _ in range(6)]  # spread over both processes
    east.create_alias(AliasName="alias/w", TargetKeyId=keys[0])
    answer = c.admin("/_trent/reset", {})
    assert answer["cleared"]["us-east-1"]["keys"] == 6
    # Every process answers from the emptied store: new connections land on either of them.
    for _ in range(8):
        fresh = c.client("us-east-1")
        assert fresh.list_keys()["Keys"] == []
        assert all("TargetKeyId" not in a for a in fresh.list_aliases()["Aliases"])
        with pytest.raises(ClientError):
            fresh.describe_key(KeyId=keys[-1])
    # And writes go on, on every process, with replication.
    mrk = east.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    east.replicate_key(KeyId=mrk, ReplicaRegion="eu-west-1")
    poll(lambda: _exists(c.client("eu-west-1"), mrk))
