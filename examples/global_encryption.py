"""Client-side global encryption with the AWS Encryption SDK and a multi-Region key.

A file is encrypted in us-east-1 with the MRK-aware strict provider, decrypted in ap-northeast-2 with the
MRK-aware discovery provider (it uses the local replica: no call leaves the region), and then us-east-1 is taken
down on purpose: decryption in ap-northeast-2 still works. The SDK is unmodified; it reaches the cluster through
AWS_ENDPOINT_URL_KMS, the gateway that routes each request by the region it is signed for.

    .venv/bin/python examples/global_encryption.py        (or: make demo-global)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import aws_encryption_sdk
from aws_encryption_sdk import CommitmentPolicy
from aws_encryption_sdk.key_providers.kms import (
    DiscoveryFilter,
    MRKAwareDiscoveryAwsKmsMasterKeyProvider,
    MRKAwareStrictAwsKmsMasterKeyProvider,
)

from examples._cluster import demo_cluster
from trent.cluster.running import poll

ACCOUNT = "111122223333"


def main() -> int:
    with demo_cluster() as cluster:
        os.environ.update({"AWS_ENDPOINT_URL_KMS": cluster.gateway_url, "AWS_ACCESS_KEY_ID": "test",
                           "AWS_SECRET_ACCESS_KEY": "test", "AWS_CONFIG_FILE": os.devnull,
                           "AWS_SHARED_CREDENTIALS_FILE": os.devnull})
        home, away = cluster.client("us-east-1"), cluster.client("ap-northeast-2")
        key = home.create_key(MultiRegion=True, Description="global demo")["KeyMetadata"]
        home.replicate_key(KeyId=key["KeyId"], ReplicaRegion="ap-northeast-2")
        poll(lambda: _enabled(away, key["KeyId"]))
        print(f"multi-Region key {key['KeyId']}: primary us-east-1, replica ap-northeast-2")

        sdk = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
        document = os.urandom(256 * 1024)
        strict = MRKAwareStrictAwsKmsMasterKeyProvider(key_ids=[key["Arn"]])
        message, _ = sdk.encrypt(source=document, key_provider=strict, encryption_context={"doc": "q3-report"})
        print(f"encrypted {len(document)} bytes in us-east-1 -> {len(message)}-byte message")

        discovery = MRKAwareDiscoveryAwsKmsMasterKeyProvider(
            discovery_region="ap-northeast-2", discovery_filter=DiscoveryFilter(account_ids=[ACCOUNT], partition="aws"))
        plain, header = sdk.decrypt(source=message, key_provider=discovery)
        assert plain == document and header.encryption_context["doc"] == "q3-report"
        print("decrypted in ap-northeast-2 with the local replica")

        cluster.trent("fault", "down", "us-east-1")
        print("us-east-1 is down")
        plain, _ = sdk.decrypt(source=message, key_provider=discovery)
        assert plain == document
        print("decrypted in ap-northeast-2 again, with us-east-1 still down")
        cluster.trent("fault", "clear")
        print("global encryption demo OK")
    return 0


def _enabled(client: object, key_id: str) -> bool:
    try:
        state: str = client.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"]  # type: ignore[attr-defined]
    except Exception:  # not replicated yet
        return False
    return state == "Enabled"


if __name__ == "__main__":
    sys.exit(main())
