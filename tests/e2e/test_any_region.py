"""`--any-region`: a client signing for a region nobody configured is served through the gateway, as LocalStack
users expect; names that are not region names make nothing."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError

from tests.e2e.harness import RunningCluster, private_cluster


@pytest.fixture(scope="module")
def anywhere(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    yield from private_cluster(tmp_path_factory, "any-region", "--any-region", "--replica-delay", "0")


def test_an_unconfigured_region_just_works(anywhere: RunningCluster) -> None:
    oregon = anywhere.client("us-west-2")
    meta = oregon.create_key(Description="oregon")["KeyMetadata"]
    assert meta["Arn"].startswith("arn:aws:kms:us-west-2:111122223333:key/")
    blob = oregon.encrypt(KeyId=meta["KeyId"], Plaintext=b"west")["CiphertextBlob"]
    assert oregon.decrypt(CiphertextBlob=blob)["Plaintext"] == b"west"
    assert [k["KeyId"] for k in oregon.list_keys()["Keys"]] == [meta["KeyId"]]
    # Its own region: the configured ones do not hold the key.
    with pytest.raises(ClientError):
        anywhere.client("us-east-1").describe_key(KeyId=meta["KeyId"])
    status = anywhere.admin("/_trent/status")
    assert status["regions"]["us-west-2"]["keys"] == 1
    assert (anywhere.data_dir / "us-west-2" / "root.key").exists()
    # Scraped like the configured regions.
    token = (anywhere.data_dir / "admin.token").read_text().strip()
    scrape = urllib.request.Request(anywhere.gateway_url + "/metrics", headers={"X-Trent-Admin-Token": token})
    with urllib.request.urlopen(scrape, timeout=30) as answer:
        metrics = answer.read().decode()
    assert 'trent_requests_total{error_code="OK",operation="CreateKey",region="us-west-2"} 1.0' in metrics
    assert 'trent_keys{region="us-west-2",state="Enabled"} 1.0' in metrics
    console = urllib.request.Request(anywhere.gateway_url + "/_trent/console/state",
                                     headers={"X-Trent-Admin-Token": token})
    with urllib.request.urlopen(console, timeout=30) as answer:
        shown = json.loads(answer.read())
    assert [k["id"] for k in shown["keys"]["us-west-2"]["keys"]] == [meta["KeyId"]]


def test_a_new_region_keeps_its_keys_across_a_restart_and_moves_with_the_clock(anywhere: RunningCluster) -> None:
    frankfurt = anywhere.client("eu-central-1")
    kept = frankfurt.create_key()["KeyMetadata"]["KeyId"]
    doomed = frankfurt.create_key()["KeyMetadata"]["KeyId"]
    frankfurt.schedule_key_deletion(KeyId=doomed, PendingWindowInDays=7)
    anywhere.restart()
    # Opened again at the start (before any request names it): status, clock and reset see it.
    assert anywhere.admin("/_trent/status")["regions"]["eu-central-1"]["keys"] == 2
    frankfurt = anywhere.client("eu-central-1")
    assert frankfurt.describe_key(KeyId=kept)["KeyMetadata"]["Enabled"]
    anywhere.admin("/_trent/clock", {"advance": "8d"})
    with pytest.raises(ClientError) as err:
        frankfurt.describe_key(KeyId=doomed)
    assert err.value.response["Error"]["Code"] == "NotFoundException"


def test_reset_clears_the_new_regions_too(anywhere: RunningCluster) -> None:
    sydney = anywhere.client("ap-southeast-2")
    sydney.create_key()
    cleared = anywhere.admin("/_trent/reset", {})["cleared"]
    assert cleared["ap-southeast-2"]["keys"] == 1
    assert sydney.list_keys()["Keys"] == []


def test_multi_region_keys_stay_among_the_configured_regions(anywhere: RunningCluster) -> None:
    east = anywhere.client("us-east-1")
    mrk = east.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    with pytest.raises(ClientError) as err:
        east.replicate_key(KeyId=mrk, ReplicaRegion="us-west-2")
    assert err.value.response["Error"]["Code"] == "ValidationException"
    oregon = anywhere.client("us-west-2")
    west_mrk = oregon.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    with pytest.raises(ClientError) as err:
        oregon.replicate_key(KeyId=west_mrk, ReplicaRegion="us-east-1")
    assert err.value.response["Error"]["Code"] == "ValidationException"


def _signed_for(c: RunningCluster, region: str) -> tuple[int, dict[str, str]]:
    """ListKeys signed for ``region`` whatever it is (boto3 refuses names that are not host labels)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest("POST", c.gateway_url + "/", data=b"{}", headers={
        "X-Amz-Target": "TrentService.ListKeys", "Content-Type": "application/x-amz-json-1.1"})
    SigV4Auth(Credentials("test", "test"), "kms", region).add_auth(request)
    prepared = request.prepare()
    answer = urllib.request.Request(prepared.url, data=prepared.body, headers=dict(prepared.headers), method="POST")
    try:
        with urllib.request.urlopen(answer, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.parametrize("name", ["not-a-region", "us-west", "../../etc-x-1", "..", "US-WEST-2", "us-west-2x",
                                  "us-west-2/../../x"])
def test_names_that_are_not_regions_make_nothing(anywhere: RunningCluster, name: str) -> None:
    before = sorted(p.name for p in anywhere.data_dir.iterdir())
    status, doc = _signed_for(anywhere, name)
    assert (status, doc["__type"]) in ((403, "InvalidSignatureException"), (400, "IncompleteSignatureException"))
    assert sorted(p.name for p in anywhere.data_dir.iterdir()) == before
    assert name not in anywhere.admin("/_trent/status")["regions"]


def test_an_unknown_access_key_makes_no_region(anywhere: RunningCluster) -> None:
    stranger = anywhere.client("sa-east-1", access_key="AKIASTRANGER", secret_key="x")
    with pytest.raises(ClientError) as err:
        stranger.list_keys()
    assert err.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert not (anywhere.data_dir / "sa-east-1").exists()


def test_without_the_flag_an_unknown_region_is_refused(cluster: RunningCluster) -> None:
    with pytest.raises(ClientError) as err:
        cluster.client("us-west-2").list_keys()
    assert err.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert not (cluster.data_dir / "us-west-2").exists()
