"""AWS KMS request quotas (default values, requests per second, per account and per Region).

Source: AWS Key Management Service Developer Guide, "Request quotas",
https://docs.aws.amazon.com/kms/latest/developerguide/requests-per-second.html (read 2026-12-05). The custom key
store quotas (1,800 per CloudHSM or external key store) are not applied: Trent has no custom key stores.

Each quota has the name `quota_overrides` uses (the operation's own name for a per-operation quota).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# The message AWS KMS answers a throttled request with (Developer Guide, "Throttling AWS KMS requests").
THROTTLED_MESSAGE = "You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls."


@dataclass(frozen=True)
class Quota:
    name: str
    aws_name: str
    rate: float  # the default, requests per second
    by_region: Mapping[str, float] = field(default_factory=dict)

    def rate_in(self, region: str) -> float:
        return self.by_region.get(region, self.rate)


_SYMMETRIC_20K = ("us-east-2", "ap-southeast-1", "ap-southeast-2", "ap-northeast-1", "eu-central-1", "eu-west-2")
_SYMMETRIC_100K = ("us-east-1", "us-west-2", "eu-west-1")

# The shared cryptographic quotas, by the type of the KMS key a request uses.
SHARED: tuple[Quota, ...] = (
    # Decrypt, Encrypt, GenerateDataKey, GenerateDataKeyWithoutPlaintext, GenerateMac, GenerateRandom, ReEncrypt,
    # VerifyMac with symmetric encryption keys and HMAC keys.
    Quota("symmetric", "Cryptographic operations (symmetric) request rate", 10_000,
          {**dict.fromkeys(_SYMMETRIC_20K, 20_000.0), **dict.fromkeys(_SYMMETRIC_100K, 100_000.0)}),
    # Decrypt, Encrypt, ReEncrypt, Sign, Verify with RSA keys.
    Quota("rsa", "Cryptographic operations (RSA) request rate", 1_000),
    # Sign, Verify with ML-DSA keys.
    Quota("ml-dsa", "Cryptographic operations (ML-DSA) request rate", 1_000),
    # DeriveSharedSecret, Sign, Verify (and Decrypt, Encrypt, ReEncrypt with SM2) with ECC and SM2 keys.
    Quota("ecc", "Cryptographic operations (ECC and SM2) request rate", 1_000),
)

# GenerateDataKeyPair and GenerateDataKeyPairWithoutPlaintext share one quota per key pair spec.
DATA_KEY_PAIRS: tuple[Quota, ...] = (
    *(Quota(f"GenerateDataKeyPair-{spec}", f"GenerateDataKeyPair ({spec}) request rate", 100)
      for spec in ("ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521", "ECC_SECG_P256K1", "ECC_NIST_EDWARDS25519")),
    Quota("GenerateDataKeyPair-RSA_2048", "GenerateDataKeyPair (RSA_2048) request rate", 20,
          {"cn-north-1": 1, "cn-northwest-1": 1}),
    Quota("GenerateDataKeyPair-RSA_3072", "GenerateDataKeyPair (RSA_3072) request rate", 4,
          {"cn-north-1": 0.5, "cn-northwest-1": 0.5}),
    Quota("GenerateDataKeyPair-RSA_4096", "GenerateDataKeyPair (RSA_4096) request rate", 1,
          {"cn-north-1": 0.1, "cn-northwest-1": 0.1}),
    Quota("GenerateDataKeyPair-SM2", "GenerateDataKeyPair (SM2 — China Regions only) request rate", 25),
)

_PER_OPERATION = {
    "CancelKeyDeletion": 5, "ConnectCustomKeyStore": 5, "CreateAlias": 5, "CreateCustomKeyStore": 5,
    "CreateGrant": 50, "CreateKey": 5, "DeleteAlias": 15, "DeleteCustomKeyStore": 5, "DeleteImportedKeyMaterial": 15,
    "DescribeCustomKeyStores": 5, "DescribeKey": 2000, "DisableKey": 5, "DisableKeyRotation": 5,
    "DisconnectCustomKeyStore": 5, "EnableKey": 5, "EnableKeyRotation": 15, "GetKeyLastUsage": 5,
    "GetKeyPolicy": 1000, "GetKeyRotationStatus": 1000, "GetParametersForImport": 1, "GetPublicKey": 2000,
    "ImportKeyMaterial": 15, "ListAliases": 500, "ListGrants": 100, "ListKeyPolicies": 100, "ListKeys": 500,
    "ListKeyRotations": 100, "ListResourceTags": 2000, "ListRetirableGrants": 100, "PutKeyPolicy": 15,
    # A ReplicateKey also counts as two CreateKey requests in the replica's Region.
    "ReplicateKey": 5,
    "RetireGrant": 50, "RevokeGrant": 50, "RotateKeyOnDemand": 5, "ScheduleKeyDeletion": 15, "TagResource": 10,
    "UntagResource": 5, "UpdateAlias": 5, "UpdateCustomKeyStore": 5, "UpdateKeyDescription": 5,
    # Counts once in each of the two Regions it involves.
    "UpdatePrimaryRegion": 5,
}
PER_OPERATION: tuple[Quota, ...] = tuple(Quota(op, f"{op} request rate", float(rate))
                                         for op, rate in _PER_OPERATION.items())

QUOTAS: dict[str, Quota] = {q.name: q for q in (*SHARED, *DATA_KEY_PAIRS, *PER_OPERATION)}
QUOTA_NAMES = tuple(QUOTAS)

# The operations whose quota depends on the type of the key they use.
CRYPTOGRAPHIC = frozenset({"Decrypt", "Encrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext", "GenerateMac",
                           "GenerateRandom", "ReEncrypt", "VerifyMac", "Sign", "Verify", "DeriveSharedSecret"})
DATA_KEY_PAIR_OPERATIONS = frozenset({"GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext"})
