"""`trent cost` against a hand calculation: a scripted workload through boto3 over two regions, the cluster's clock
moved 73 days, and every figure of the estimate worked out here from the keys' own dates and AWS's prices."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.harness import RunningCluster, error, free_port_block, ts

REGIONS = ("us-east-1", "eu-west-1")
MONTH = 730 * 3600.0  # AWS prorates a $1/month key by the hour, over 730 hours


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    c = RunningCluster(tmp_path_factory.mktemp("cost") / "data", free_port_block(len(REGIONS) + 1),
                       regions=REGIONS).start()
    yield c
    if c.proc is not None:
        c.stop()


def _cost(cluster: RunningCluster, *args: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(cluster.trent("cost", "--json", *args).stdout)
    return result


def test_cost_of_a_scripted_workload_matches_the_hand_calculation(cluster: RunningCluster) -> None:
    since = cluster.admin("/_trent/clock")["now"] - 1
    us, eu = cluster.client("us-east-1"), cluster.client("eu-west-1")
    a = us.create_key()["KeyMetadata"]
    for n in range(10):
        us.encrypt(KeyId=a["KeyId"], Plaintext=b"%d" % n)
    for _ in range(3):  # three rotations: only the first two add to the key's price
        us.rotate_key_on_demand(KeyId=a["KeyId"])
    b = us.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
    signatures = [us.sign(KeyId=b["KeyId"], Message=b"m%d" % n, SigningAlgorithm="ECDSA_SHA_256")["Signature"]
                  for n in range(4)]
    for n, signature in enumerate(signatures[:2]):
        us.verify(KeyId=b["KeyId"], Message=b"m%d" % n, Signature=signature, SigningAlgorithm="ECDSA_SHA_256")
    for _ in range(3):
        us.generate_data_key_pair_without_plaintext(KeyId=a["KeyId"], KeyPairSpec="RSA_2048")
    for _ in range(2):
        us.generate_data_key_pair_without_plaintext(KeyId=a["KeyId"], KeyPairSpec="ECC_NIST_P256")
    managed = us.describe_key(KeyId="alias/aws/s3")["KeyMetadata"]  # an AWS managed key: stored free
    c = eu.create_key()["KeyMetadata"]
    scheduled = ts(eu.schedule_key_deletion(KeyId=c["KeyId"], PendingWindowInDays=7)["DeletionDate"]) - 7 * 86400
    assert error(us.encrypt, KeyId="alias/none", Plaintext=b"x")["Code"] == "NotFoundException"  # not billed
    rotations = sorted(ts(r["RotationDate"]) for r in us.list_key_rotations(KeyId=a["KeyId"])["Rotations"])
    assert len(rotations) == 3

    cluster.advance_clock("73d")
    until = cluster.admin("/_trent/clock")["now"]
    report = _cost(cluster, "--since", repr(since), "--until", repr(until))

    # Key storage, by hand: $1 a key-month from creation, $1 more from each of the first two rotations; the key
    # scheduled for deletion only until it was scheduled; the AWS managed key nothing.
    months_a = (until - ts(a["CreationDate"])) / MONTH
    months_b = (until - ts(b["CreationDate"])) / MONTH
    months_c = (scheduled - ts(c["CreationDate"])) / MONTH
    rotation_months = sum((until - r) / MONTH for r in rotations[:2])
    assert 2.39 < months_a < 2.41  # 73 days = 1,752 hours = 2.4 months of 730 hours
    by_key = report["by_key"]
    assert by_key[a["Arn"]]["storage_usd"] == pytest.approx(months_a + rotation_months, abs=1e-6)
    assert by_key[b["Arn"]]["storage_usd"] == pytest.approx(months_b, abs=1e-6)
    assert by_key[c["Arn"]]["storage_usd"] == pytest.approx(months_c, abs=1e-6)
    assert by_key[managed["Arn"]]["storage_usd"] == 0.0 and by_key[managed["Arn"]]["manager"] == "AWS"
    storage = months_a + rotation_months + months_b + months_c
    assert report["key_storage_usd"] == pytest.approx(storage, abs=1e-6)
    assert report["key_months"] == pytest.approx(months_a + months_b + months_c, abs=1e-6)

    # Requests, by hand: symmetric calls fall in the free tier; 4 Sign + 2 Verify with an ECC key at $0.15,
    # 3 RSA data key pairs at $12.00 and 2 ECC pairs at $0.10 per 10,000 are billed in full.
    classes = report["by_class"]
    assert (classes["asymmetric"]["requests"], classes["asymmetric"]["billed"]) == (6, 6)
    assert classes["rsa_data_key_pair"]["billed"] == 3 and classes["ecc_data_key_pair"]["billed"] == 2
    assert classes["symmetric"]["billed"] == 0 and classes["symmetric"]["usd"] == 0.0
    requests_usd = 6 * 0.15 / 10_000 + 3 * 12.00 / 10_000 + 2 * 0.10 / 10_000
    assert report["requests_usd"] == pytest.approx(requests_usd, abs=1e-9)
    assert report["total_usd"] == pytest.approx(storage + requests_usd, abs=1e-6)
    # Every successful call is counted once (the NotFound is not): 3 CreateKey, 10 Encrypt, 3 RotateKeyOnDemand,
    # 4 Sign, 2 Verify, 5 data key pairs, DescribeKey, ScheduleKeyDeletion, ListKeyRotations.
    assert report["requests"] == 3 + 10 + 3 + 4 + 2 + 5 + 1 + 1 + 1 == report["free_tier_used"] + 11
    assert report["by_operation"]["Encrypt"] == {"requests": 10, "usd": 0.0}
    assert report["by_operation"]["GenerateDataKeyPairWithoutPlaintext"]["usd"] == pytest.approx(
        3 * 12.00 / 10_000 + 2 * 0.10 / 10_000)
    assert by_key[b["Arn"]]["requests"] == 1 + 4 + 2  # CreateKey, Sign, Verify
    assert report["prices"]["source"] == "https://aws.amazon.com/kms/pricing/"

    # One region only; the table form.
    eu_only = _cost(cluster, "--since", repr(since), "--until", repr(until), "--region", "eu-west-1")
    assert set(eu_only["by_key"]) == {c["Arn"]} and eu_only["requests"] == 2 and eu_only["regions"] == ["eu-west-1"]
    us_only = _cost(cluster, "--since", repr(since), "--until", repr(until), "--region", "us-east-1")
    assert us_only["requests"] + eu_only["requests"] == report["requests"]  # the regions' shares make the whole
    assert us_only["total_usd"] + eu_only["total_usd"] == pytest.approx(report["total_usd"], abs=1e-9)
    table = cluster.trent("cost", "--since", repr(since), "--until", repr(until)).stdout
    assert f"${storage + requests_usd:.4f}" in table and "rsa_data_key_pair" in table and a["Arn"] in table


def test_bad_windows_are_usage_errors(cluster: RunningCluster) -> None:
    for args in (("--since", "yesterday-ish"), ("--since", "2d", "--until", "5d"), ("--region", "mars-1")):
        done = cluster.trent("cost", *args, check=False)
        assert done.returncode == 2 and done.stderr.startswith("trent: "), args
