"""Principals: who a signed request comes from (access key → secret, ARN, account)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    access_key: str
    secret_key: str
    arn: str
    account: str
    # Temporary credentials: the request must carry (and sign) this X-Amz-Security-Token.
    session_token: str | None = None
    # Acting on behalf of an AWS service (``s3``, ``ec2``, ...): its requests carry kms:ViaService
    # ``<service>.<region>.amazonaws.com``, as calls an integrated service makes for a user do.
    via_service: str | None = None

    def __repr__(self) -> str:  # never show the secret
        return f"Principal(access_key={self.access_key!r}, arn={self.arn!r})"


class PrincipalDirectory:
    """Looks principals up by access key id."""

    def __init__(self, principals: Iterable[Principal]) -> None:
        self._by_key = {p.access_key: p for p in principals}

    def lookup(self, access_key: str) -> Principal | None:
        return self._by_key.get(access_key)

    def __len__(self) -> int:
        return len(self._by_key)
