"""The AWS Encryption SDK (4.x, unmodified) against the cluster: one endpoint URL for every region
(AWS_ENDPOINT_URL_KMS pointing at the gateway), multi-Region keys encrypted in one region and decrypted in
another through the legacy MRK-aware master key providers and the MPL keyrings."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import aws_encryption_sdk
import boto3
import pytest
from aws_encryption_sdk import CommitmentPolicy
from aws_encryption_sdk.key_providers.kms import (
    DiscoveryFilter,
    MRKAwareDiscoveryAwsKmsMasterKeyProvider,
    MRKAwareStrictAwsKmsMasterKeyProvider,
)
from botocore.exceptions import ClientError

from tests.e2e.harness import RunningCluster, poll, private_cluster
from tests.e2e.test_multi_region import wait_state

ACCOUNT = "111122223333"
PLAINTEXT = os.urandom(1024 * 1024)
CONTEXT = {"purpose": "esdk-e2e", "tenant": "blue"}


@pytest.fixture(scope="module")
def esdk_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    """A private cluster (the SDK talks to it only through the gateway URL in the environment)."""
    yield from private_cluster(tmp_path_factory, "esdk", "--replica-delay", "0")


@pytest.fixture
def sdk_env(esdk_cluster: RunningCluster, monkeypatch: pytest.MonkeyPatch) -> RunningCluster:
    # Set before any provider or keyring exists: providers make their per-region clients when built (strict) or
    # on first use (discovery), keyrings through their client supplier, and botocore reads the endpoint from the
    # environment each time a client is made.
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", esdk_cluster.gateway_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # The MPL's default client supplier uses boto3's module-level session, which caches credentials: start from
    # none, and leave none behind for other tests.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    return esdk_cluster


@pytest.fixture(scope="module")
def mrk(esdk_cluster: RunningCluster) -> dict[str, str]:
    """A multi-Region key made in us-east-1 and replicated to eu-west-1 (Enabled there)."""
    us, eu = esdk_cluster.client("us-east-1"), esdk_cluster.client("eu-west-1")
    meta = us.create_key(MultiRegion=True, Description="esdk")["KeyMetadata"]
    key_id = meta["KeyId"]
    assert key_id.startswith("mrk-")
    replica = us.replicate_key(KeyId=key_id, ReplicaRegion="eu-west-1")["ReplicaKeyMetadata"]
    wait_state(eu, key_id, "Enabled", timeout=20)  # the replica reaches its region through the log
    assert replica["Arn"] == f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/{key_id}"
    return {"id": key_id, "primary": meta["Arn"], "replica": replica["Arn"]}


def _client() -> aws_encryption_sdk.EncryptionSDKClient:
    return aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)


def _assert_context(header_context: dict[str, str]) -> None:
    # The SDK adds its own entries (the signing key for signed suites); ours must come back unchanged.
    for k, v in CONTEXT.items():
        assert header_context[k] == v


def _encrypt_with_primary(arn: str) -> tuple[bytes, Any]:
    provider = MRKAwareStrictAwsKmsMasterKeyProvider(key_ids=[arn])
    ciphertext, header = _client().encrypt(source=PLAINTEXT, key_provider=provider, encryption_context=CONTEXT)
    return ciphertext, header


# -- legacy master key providers ------------------------------------------------------------------------------


def test_strict_encrypt_in_primary_region_records_the_primary_arn(sdk_env: RunningCluster, mrk: dict[str, str]
                                                                   ) -> None:
    ciphertext, header = _encrypt_with_primary(mrk["primary"])
    assert ciphertext != PLAINTEXT and len(ciphertext) > len(PLAINTEXT)
    _assert_context(header.encryption_context)
    edks = list(header.encrypted_data_keys)
    assert len(edks) == 1
    assert edks[0].key_provider.provider_id == "aws-kms"
    assert edks[0].key_provider.key_info.decode() == mrk["primary"]
    # And it opens where it was made.
    provider = MRKAwareStrictAwsKmsMasterKeyProvider(key_ids=[mrk["primary"]])
    plaintext, dec_header = _client().decrypt(source=ciphertext, key_provider=provider)
    assert plaintext == PLAINTEXT
    _assert_context(dec_header.encryption_context)


def test_discovery_provider_decrypts_in_the_replica_region(sdk_env: RunningCluster, mrk: dict[str, str]) -> None:
    ciphertext, _ = _encrypt_with_primary(mrk["primary"])
    provider = MRKAwareDiscoveryAwsKmsMasterKeyProvider(
        discovery_region="eu-west-1", discovery_filter=DiscoveryFilter(account_ids=[ACCOUNT], partition="aws"))
    plaintext, header = _client().decrypt(source=ciphertext, key_provider=provider)
    assert plaintext == PLAINTEXT
    _assert_context(header.encryption_context)


def test_strict_provider_with_replica_arn_decrypts(sdk_env: RunningCluster, mrk: dict[str, str]) -> None:
    ciphertext, _ = _encrypt_with_primary(mrk["primary"])
    provider = MRKAwareStrictAwsKmsMasterKeyProvider(key_ids=[mrk["replica"]])
    plaintext, header = _client().decrypt(source=ciphertext, key_provider=provider)
    assert plaintext == PLAINTEXT
    _assert_context(header.encryption_context)


def test_encrypt_in_replica_region_decrypts_in_primary_region(sdk_env: RunningCluster, mrk: dict[str, str]) -> None:
    provider = MRKAwareStrictAwsKmsMasterKeyProvider(key_ids=[mrk["replica"]])
    ciphertext, _ = _client().encrypt(source=PLAINTEXT[:4096], key_provider=provider, encryption_context=CONTEXT)
    back = MRKAwareDiscoveryAwsKmsMasterKeyProvider(
        discovery_region="us-east-1", discovery_filter=DiscoveryFilter(account_ids=[ACCOUNT], partition="aws"))
    plaintext, header = _client().decrypt(source=ciphertext, key_provider=back)
    assert plaintext == PLAINTEXT[:4096]
    _assert_context(header.encryption_context)


def test_discovery_filter_with_another_account_refuses(sdk_env: RunningCluster, mrk: dict[str, str]) -> None:
    ciphertext, _ = _encrypt_with_primary(mrk["primary"])
    provider = MRKAwareDiscoveryAwsKmsMasterKeyProvider(
        discovery_region="eu-west-1", discovery_filter=DiscoveryFilter(account_ids=["444455556666"], partition="aws"))
    with pytest.raises(aws_encryption_sdk.exceptions.AWSEncryptionSDKClientError):
        _client().decrypt(source=ciphertext, key_provider=provider)


def test_single_region_key_does_not_decrypt_through_another_region(sdk_env: RunningCluster) -> None:
    us = sdk_env.client("us-east-1")
    key_id = us.create_key(Description="single-Region")["KeyMetadata"]["KeyId"]
    arn = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/{key_id}"
    provider = MRKAwareStrictAwsKmsMasterKeyProvider(key_ids=[arn])
    ciphertext, header = _client().encrypt(source=b"stays in us-east-1", key_provider=provider,
                                           encryption_context=CONTEXT)
    [edk] = list(header.encrypted_data_keys)
    # The same key id in eu-west-1 names nothing: a strict provider configured for it finds no usable EDK.
    elsewhere = MRKAwareStrictAwsKmsMasterKeyProvider(key_ids=[arn.replace("us-east-1", "eu-west-1")])
    with pytest.raises(aws_encryption_sdk.exceptions.AWSEncryptionSDKClientError):
        _client().decrypt(source=ciphertext, key_provider=elsewhere)
    # And the region itself refuses the data key (what the SDK would get if it tried).
    with pytest.raises(ClientError) as exc:
        sdk_env.client("eu-west-1").decrypt(CiphertextBlob=edk.encrypted_data_key, EncryptionContext=CONTEXT)
    assert exc.value.response["Error"]["Code"] in ("AccessDeniedException", "InvalidCiphertextException",
                                                   "NotFoundException")
    # A legacy discovery provider follows a single-Region key to its own Region (the ESDK spec: only mrk- ids
    # get the discovery Region), so it still opens the message, by asking us-east-1.
    discovery = MRKAwareDiscoveryAwsKmsMasterKeyProvider(
        discovery_region="eu-west-1", discovery_filter=DiscoveryFilter(account_ids=[ACCOUNT], partition="aws"))
    assert _client().decrypt(source=ciphertext, key_provider=discovery)[0] == b"stays in us-east-1"


def test_message_survives_rotation_of_the_mrk(sdk_env: RunningCluster, mrk: dict[str, str]) -> None:
    ciphertext, _ = _encrypt_with_primary(mrk["primary"])
    us, eu = sdk_env.client("us-east-1"), sdk_env.client("eu-west-1")
    before = eu.describe_key(KeyId=mrk["id"])["KeyMetadata"]["CurrentKeyMaterialId"]
    us.rotate_key_on_demand(KeyId=mrk["id"])
    poll(lambda: eu.describe_key(KeyId=mrk["id"])["KeyMetadata"]["CurrentKeyMaterialId"] != before, timeout=20)
    provider = MRKAwareStrictAwsKmsMasterKeyProvider(key_ids=[mrk["replica"]])
    assert _client().decrypt(source=ciphertext, key_provider=provider)[0] == PLAINTEXT


# -- Material Providers Library keyrings ----------------------------------------------------------------------


def _mpl() -> Any:
    from aws_cryptographic_material_providers.mpl import AwsCryptographicMaterialProviders
    from aws_cryptographic_material_providers.mpl.config import MaterialProvidersConfig

    return AwsCryptographicMaterialProviders(config=MaterialProvidersConfig())


def test_mpl_mrk_keyrings_cross_region(sdk_env: RunningCluster, mrk: dict[str, str]) -> None:
    from aws_cryptographic_material_providers.mpl.models import (
        CreateAwsKmsMrkDiscoveryMultiKeyringInput,
        CreateAwsKmsMrkMultiKeyringInput,
    )
    from aws_cryptographic_material_providers.mpl.models import (
        DiscoveryFilter as MplDiscoveryFilter,
    )

    mpl = _mpl()
    encrypting = mpl.create_aws_kms_mrk_multi_keyring(CreateAwsKmsMrkMultiKeyringInput(generator=mrk["primary"]))
    ciphertext, header = _client().encrypt(source=PLAINTEXT, keyring=encrypting, encryption_context=CONTEXT)
    _assert_context(header.encryption_context)

    discovery = mpl.create_aws_kms_mrk_discovery_multi_keyring(CreateAwsKmsMrkDiscoveryMultiKeyringInput(
        regions=["eu-west-1"], discovery_filter=MplDiscoveryFilter(account_ids=[ACCOUNT], partition="aws")))
    plaintext, dec_header = _client().decrypt(source=ciphertext, keyring=discovery)
    assert plaintext == PLAINTEXT
    _assert_context(dec_header.encryption_context)

    strict = mpl.create_aws_kms_mrk_multi_keyring(CreateAwsKmsMrkMultiKeyringInput(generator=mrk["replica"]))
    plaintext, _ = _client().decrypt(source=ciphertext, keyring=strict, encryption_context=CONTEXT)
    assert plaintext == PLAINTEXT


def test_mpl_discovery_keyring_cannot_open_a_single_region_key_elsewhere(sdk_env: RunningCluster) -> None:
    from aws_cryptographic_material_providers.mpl.models import (
        CreateAwsKmsMrkDiscoveryMultiKeyringInput,
        CreateAwsKmsMrkMultiKeyringInput,
    )
    from aws_cryptographic_material_providers.mpl.models import (
        DiscoveryFilter as MplDiscoveryFilter,
    )

    arn = sdk_env.client("us-east-1").create_key()["KeyMetadata"]["Arn"]
    mpl = _mpl()
    keyring = mpl.create_aws_kms_mrk_multi_keyring(CreateAwsKmsMrkMultiKeyringInput(generator=arn))
    ciphertext, _ = _client().encrypt(source=b"single", keyring=keyring, encryption_context=CONTEXT)
    discovery = mpl.create_aws_kms_mrk_discovery_multi_keyring(CreateAwsKmsMrkDiscoveryMultiKeyringInput(
        regions=["eu-west-1"], discovery_filter=MplDiscoveryFilter(account_ids=[ACCOUNT], partition="aws")))
    # The discovery keyring for eu-west-1 only uses EDKs of its own Region or multi-Region keys.
    with pytest.raises(aws_encryption_sdk.exceptions.AWSEncryptionSDKClientError, match="No Configured Keyring"):
        _client().decrypt(source=ciphertext, keyring=discovery)


def test_discovery_decrypts_in_the_replica_region_while_the_primary_region_is_down(
        sdk_env: RunningCluster, mrk: dict[str, str]) -> None:
    """The point of multi-Region keys for DR: with us-east-1 gone, eu-west-1 still opens its messages."""
    ciphertext, _ = _encrypt_with_primary(mrk["primary"])
    assert sdk_env.trent("fault", "down", "us-east-1").returncode == 0
    try:
        provider = MRKAwareDiscoveryAwsKmsMasterKeyProvider(
            discovery_region="eu-west-1", discovery_filter=DiscoveryFilter(account_ids=[ACCOUNT], partition="aws"))
        plaintext, header = _client().decrypt(source=ciphertext, key_provider=provider)
        assert plaintext == PLAINTEXT
        _assert_context(header.encryption_context)
        # And new messages are made with the replica, for the primary to open once it is back.
        strict = MRKAwareStrictAwsKmsMasterKeyProvider(key_ids=[mrk["replica"]])
        made_in_eu, _ = _client().encrypt(source=b"while us-east-1 was down", key_provider=strict,
                                          encryption_context=CONTEXT)
    finally:
        sdk_env.trent("fault", "clear")
    home = MRKAwareStrictAwsKmsMasterKeyProvider(key_ids=[mrk["primary"]])
    assert _client().decrypt(source=made_in_eu, key_provider=home)[0] == b"while us-east-1 was down"
