"""AWS managed keys: the predefined ``alias/aws/<service>`` aliases, and what the key behind each one looks like
(KeyManager AWS, AWS's description, yearly rotation, the fixed key policy that allows cryptographic use only
through the service).

The services and their key policies are those AWS creates in an account (us-east-1, as listed by AWS's
documentation of services that integrate with KMS and by the policies such keys carry): the principal ``*`` may use
the key only with ``kms:ViaService`` = ``<service>.<region>.amazonaws.com`` and ``kms:CallerAccount`` = the account;
the account may read its metadata directly."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

MANAGED_ALIAS_PREFIX = "alias/aws/"
KEY_MANAGER_AWS = "AWS"
KEY_MANAGER_CUSTOMER = "CUSTOMER"
# The KeyRecord.extra entries a managed key carries.
EXTRA_KEY_MANAGER = "key_manager"
EXTRA_SERVICE = "managed_service"
ROTATION_PERIOD_DAYS = 365  # "KMS always rotates the key material of AWS managed keys every year"

_CRYPTO = ("kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*")
_STANDARD = (*_CRYPTO, "kms:CreateGrant", "kms:DescribeKey")
_WITH_LIST_GRANTS = (*_CRYPTO, "kms:CreateGrant", "kms:ListGrants", "kms:DescribeKey")
_NO_GRANTS = (*_CRYPTO, "kms:DescribeKey")


@dataclass(frozen=True)
class ManagedService:
    alias_suffix: str  # alias/aws/<alias_suffix>
    via: str  # kms:ViaService is <via>.<region>.amazonaws.com
    name: str  # how the policy's statement names the service
    protects: str  # "Default key that protects my <protects> when no other key is defined"
    policy_id: str
    actions: tuple[str, ...] = _STANDARD  # allowed through the service (StringEquals on this region's endpoint)
    any_region_actions: tuple[str, ...] = ()  # allowed through the service's endpoint in any region (StringLike)
    revoke_grant: bool = True  # the account may also RevokeGrant directly
    describes_itself: str | None = None  # the Sid of a statement letting the service principal read the key

    @property
    def alias(self) -> str:
        return MANAGED_ALIAS_PREFIX + self.alias_suffix

    @property
    def description(self) -> str:
        return f"Default key that protects my {self.protects} when no other key is defined"

    def via_service(self, region: str) -> str:
        return f"{self.via}.{region}.amazonaws.com"

    def policy(self, account: str, region: str) -> str:
        statements: list[dict[str, Any]] = []
        through = f"Allow access through {self.name} for all principals in the account that are authorized to " \
                  f"use {self.name}"
        if self.actions:
            statements.append({"Sid": through, "Effect": "Allow", "Principal": {"AWS": "*"},
                               "Action": list(self.actions), "Resource": "*",
                               "Condition": {"StringEquals": {"kms:CallerAccount": account,
                                                              "kms:ViaService": self.via_service(region)}}})
        if self.any_region_actions:
            statements.append({"Sid": through, "Effect": "Allow", "Principal": {"AWS": "*"},
                               "Action": list(self.any_region_actions), "Resource": "*",
                               "Condition": {"StringEquals": {"kms:CallerAccount": account},
                                             "StringLike": {"kms:ViaService": f"{self.via}.*.amazonaws.com"}}})
        metadata = ["kms:Describe*", "kms:Get*", "kms:List*"] + (["kms:RevokeGrant"] if self.revoke_grant else [])
        statements.append({"Sid": "Allow direct access to key metadata to the account", "Effect": "Allow",
                           "Principal": {"AWS": f"arn:aws:iam::{account}:root"}, "Action": metadata,
                           "Resource": "*"})
        if self.describes_itself is not None:
            statements.append({"Sid": self.describes_itself, "Effect": "Allow",
                               "Principal": {"Service": f"{self.via}.amazonaws.com"},
                               "Action": ["kms:Describe*", "kms:Get*", "kms:List*"], "Resource": "*"})
        return pretty_json({"Version": "2012-10-17", "Id": self.policy_id, "Statement": statements})


def _service(alias_suffix: str, name: str, protects: str, policy_id: str, *, via: str | None = None,
             **options: Any) -> ManagedService:
    return ManagedService(alias_suffix, via or alias_suffix, name, protects, policy_id, **options)


# alias/aws/<service> → the service: those whose key description and policy AWS's keys show (other services that
# once had AWS managed keys are left out rather than guessed).
SERVICES: Mapping[str, ManagedService] = MappingProxyType({s.alias: s for s in (
    _service("backup", "Backup", "Backup data", "auto-backup-1",
             actions=("kms:CreateGrant", "kms:Decrypt", "kms:GenerateDataKey*")),
    _service("codecommit", "CodeCommit", "CodeCommit repositories", "auto-codecommit-2", actions=_NO_GRANTS,
             revoke_grant=False),
    _service("dynamodb", "Amazon DynamoDB", "DynamoDB data", "auto-dynamodb-3", actions=(),
             any_region_actions=_STANDARD, describes_itself="Allow DynamoDB to directly describe the key"),
    _service("ebs", "EBS", "EBS volumes", "auto-ebs-2", via="ec2"),
    _service("elasticfilesystem", "EFS", "EFS filesystems", "auto-elasticfilesystem-1"),
    _service("es", "OpenSearch Service", "Elasticsearch data", "auto-es-2",
             describes_itself="Allow OpenSearch service principals to describe the key directly"),
    _service("glue", "Glue", "Glue data", "auto-glue-1"),
    _service("kinesisvideo", "Kinesis Video Streams", "kinesis video data", "auto-kinesisvideo-1"),
    _service("lambda", "AWS Lambda", "Lambda functions", "auto-awslambda"),
    _service("rds", "RDS", "RDS database volumes", "auto-rds-2", actions=_WITH_LIST_GRANTS),
    _service("s3", "S3", "S3 objects", "auto-s3-2", actions=_NO_GRANTS, revoke_grant=False),
    _service("secretsmanager", "AWS Secrets Manager", "Secrets Manager data", "auto-secretsmanager-2",
             actions=(*_CRYPTO[:3], "kms:CreateGrant", "kms:DescribeKey"),
             any_region_actions=("kms:GenerateDataKey*",)),
    _service("sns", "SNS", "SNS data", "auto-sns-2",
             actions=("kms:Decrypt", "kms:GenerateDataKey*", "kms:CreateGrant", "kms:ListGrants",
                      "kms:DescribeKey")),
    _service("sqs", "Simple Queue Service (SQS)", "SQS messages", "auto-sqs-1"),
    _service("ssm", "SSM", "SSM parameters", "auto-ssm-1", actions=_NO_GRANTS, revoke_grant=False),
    _service("xray", "X-Ray", "X-Ray data", "auto-xray-1"),
)})


def managed_service(alias_name: str) -> ManagedService | None:
    """The service of a predefined ``alias/aws/...`` name, if it is one."""
    return SERVICES.get(alias_name) if alias_name.startswith(MANAGED_ALIAS_PREFIX) else None


def pretty_json(value: Any, depth: int = 0) -> str:
    """JSON as AWS prints key policies (Jackson's pretty printer): ``"key" : value``, two spaces a level, arrays on
    one line, objects in arrays opened on the array's line."""
    if isinstance(value, dict):
        inner = "  " * (depth + 1)
        members = ",\n".join(f"{inner}{_quote(k)} : {pretty_json(v, depth + 1)}" for k, v in value.items())
        return "{\n" + members + "\n" + "  " * depth + "}"
    if isinstance(value, list):
        return "[ " + ", ".join(pretty_json(v, depth) for v in value) + " ]"
    return _quote(value) if isinstance(value, str) else str(value).lower()


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
