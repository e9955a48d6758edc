"""AWS KMS prices the cost meter (cluster/cost_meter.py) estimates with: the one place they are written down, with
where they come from and when they were read. Change this file when AWS changes its prices.

Source: https://aws.amazon.com/kms/pricing/ (us-east-1), read 2026-12 (unchanged since the May 2024 change to how
rotated key material is billed).
- Key storage: each KMS key $1/month, prorated hourly; the same for symmetric, asymmetric, HMAC, multi-Region
  (each primary and each replica), imported key material and custom key stores. AWS managed keys are free.
  Keys scheduled for deletion are not charged (a cancelled deletion is charged as if never scheduled).
- Rotation: the first and the second rotation of a key's material each add $1/month (prorated hourly); later
  rotations add nothing (since May 2024, so a rotated key costs at most $3/month).
- Requests, per 10,000: $0.03 (symmetric, HMAC, and calls that name no key); $0.03 for RSA 2048 keys; $0.15 for
  other asymmetric keys (ECC, RSA 3072/4096, SM2, ML-DSA); $0.10 for GenerateDataKeyPair of ECC pairs; $12.00 for
  GenerateDataKeyPair of RSA pairs.
- Free tier: 20,000 requests a month, counted across all Regions; requests that involve asymmetric keys and
  GenerateDataKeyPair requests are excluded from it.
- A month is 730 hours (AWS's prorating convention)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

SYMMETRIC, RSA_2048, ASYMMETRIC, ECC_DATA_KEY_PAIR, RSA_DATA_KEY_PAIR = (
    "symmetric", "rsa_2048", "asymmetric", "ecc_data_key_pair", "rsa_data_key_pair")


@dataclass(frozen=True)
class RequestPrice:
    usd_per_10k: float
    free_tier: bool  # counts against (and may be covered by) the monthly free tier


@dataclass(frozen=True)
class PriceTable:
    source: str
    as_of: str
    region: str
    key_month_usd: float
    rotation_month_usd: float
    billed_rotations: int  # rotations that add to a key's monthly price; later ones are free
    hours_per_month: float
    free_tier_requests: int  # per calendar month, account-wide
    requests: Mapping[str, RequestPrice] = field(default_factory=dict)

    def describe(self) -> dict[str, object]:
        return {"source": self.source, "as_of": self.as_of, "region": self.region,
                "key_month_usd": self.key_month_usd, "rotation_month_usd": self.rotation_month_usd,
                "billed_rotations": self.billed_rotations, "hours_per_month": self.hours_per_month,
                "free_tier_requests": self.free_tier_requests,
                "requests_usd_per_10k": {name: p.usd_per_10k for name, p in self.requests.items()}}


AWS_KMS_PRICES = PriceTable(
    source="https://aws.amazon.com/kms/pricing/",
    as_of="2026-12-05",
    region="us-east-1",
    key_month_usd=1.00,
    rotation_month_usd=1.00,
    billed_rotations=2,
    hours_per_month=730.0,
    free_tier_requests=20_000,
    requests=MappingProxyType({
        SYMMETRIC: RequestPrice(0.03, True),
        RSA_2048: RequestPrice(0.03, False),
        ASYMMETRIC: RequestPrice(0.15, False),
        ECC_DATA_KEY_PAIR: RequestPrice(0.10, False),
        RSA_DATA_KEY_PAIR: RequestPrice(12.00, False),
    }),
)
