"""Key ids, ARNs and alias names: generation, parsing, and the rules of which form an operation accepts."""

from __future__ import annotations

import functools
import re
import uuid
from dataclasses import dataclass
from enum import Enum

from trent.node.model.errors import KmsError, not_found, validation

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MRK_RE = re.compile(r"mrk-[0-9a-f]{32}")
ARN_RE = re.compile(r"arn:(aws|aws-cn|aws-us-gov):kms:([a-z0-9-]+):(\d{12}):(key|alias)/(.+)")
ALIAS_PREFIX = "alias/"
RESERVED_ALIAS_PREFIX = "alias/aws/"


def new_key_id(multi_region: bool = False) -> str:
    if multi_region:
        return "mrk-" + uuid.uuid4().hex
    return str(uuid.uuid4())


def is_key_id(value: str) -> bool:
    return bool(UUID_RE.fullmatch(value) or MRK_RE.fullmatch(value))


def partition_for(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def key_arn(region: str, account: str, key_id: str) -> str:
    return f"arn:{partition_for(region)}:kms:{region}:{account}:key/{key_id}"


def alias_arn(region: str, account: str, alias_name: str) -> str:
    return f"arn:{partition_for(region)}:kms:{region}:{account}:{alias_name}"


class RefKind(Enum):
    KEY_ID = "key-id"
    KEY_ARN = "key-arn"
    ALIAS_NAME = "alias-name"
    ALIAS_ARN = "alias-arn"


@dataclass(frozen=True)
class KeyRef:
    """A parsed KeyId parameter. For ARNs, region/account are those named in the ARN."""

    kind: RefKind
    raw: str
    key_id: str | None = None
    alias_name: str | None = None
    region: str | None = None
    account: str | None = None


# Pure, and asked up to four times per request (hot path). Bounded by entries, and an entry can be a 2 KB alias or
# ARN that any caller sends: 4,096 of them are a few MiB, enough for the keys a workload names.
@functools.lru_cache(maxsize=4096)
def parse_key_ref(value: str, *, allow_alias: bool) -> KeyRef:
    """Parse a KeyId parameter; a form the operation does not accept is 'Invalid keyId', as AWS answers."""
    if value.startswith("arn:"):
        m = ARN_RE.fullmatch(value)
        if m is None:
            raise KmsError("InvalidArnException", f"Invalid arn {value}")
        _, region, account, kind, rest = m.groups()
        if kind == "key" and is_key_id(rest):
            return KeyRef(RefKind.KEY_ARN, value, key_id=rest, region=region, account=account)
        if kind == "alias" and allow_alias:
            return KeyRef(RefKind.ALIAS_ARN, value, alias_name="alias/" + rest, region=region, account=account)
        raise not_found(f"Invalid keyId {value}")
    if value.startswith("alias/"):
        if allow_alias:
            return KeyRef(RefKind.ALIAS_NAME, value, alias_name=value)
        raise not_found(f"Invalid keyId {value}")
    if is_key_id(value):
        return KeyRef(RefKind.KEY_ID, value, key_id=value)
    raise not_found(f"Invalid keyId {value}")


def check_alias_name(name: str) -> None:
    """What AWS checks of an alias name (CreateAlias, UpdateAlias, DeleteAlias) beyond the model, in its order.

    The model's own constraints (1 to 256 characters of ``[a-zA-Z0-9:/_-]``) come first, from the request decoder
    with AWS's message. The model admits ':', which the service refuses with a message of its own (and a name with
    nothing after the prefix likewise, as no name at all). ``alias/aws/`` names AWS managed keys: NotAuthorized.
    """
    if not name.startswith(ALIAS_PREFIX):
        raise validation('Alias must start with the prefix "alias/". Please see '
                         "https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html")
    if name.startswith(RESERVED_ALIAS_PREFIX) or name == "alias/aws":
        raise KmsError("NotAuthorizedException")
    if ":" in name or name == ALIAS_PREFIX:
        raise validation(f"{name} contains invalid characters for an alias")
