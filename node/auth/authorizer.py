"""Who may do what to a key: the key policy, the caller's identity (IAM) policy and the key's grants, evaluated
as AWS does — after the key is resolved and before its state is checked.

Which request members name keys, and which action each needs, is one explicit table (KEY_ACTIONS)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from node.auth.policy import Caller, Decision, Policy, Request, parse_policy
from node.auth.principals import Principal
from node.crypto.blob import parse_header
from node.model.errors import KmsError
from node.model.grants import grant_id_of_token
from node.model.ids import RefKind, parse_key_ref
from node.model.key import KeyRecord
from node.service import Region

# operation → (request member naming the key, action, encryption-context member)
KEY_ACTIONS: dict[str, tuple[tuple[str, str, str | None], ...]] = {
    "Encrypt": (("KeyId", "Encrypt", "EncryptionContext"),),
    "Decrypt": (("KeyId", "Decrypt", "EncryptionContext"),),
    "ReEncrypt": (("SourceKeyId", "ReEncryptFrom", "SourceEncryptionContext"),
                  ("DestinationKeyId", "ReEncryptTo", "DestinationEncryptionContext")),
    "CreateAlias": (("TargetKeyId", "CreateAlias", None),),
    "UpdateAlias": (("TargetKeyId", "UpdateAlias", None),),
}
for _name in ("GenerateDataKey", "GenerateDataKeyWithoutPlaintext", "GenerateDataKeyPair",
              "GenerateDataKeyPairWithoutPlaintext"):
    KEY_ACTIONS[_name] = (("KeyId", _name, "EncryptionContext"),)
for _name in ("DescribeKey", "GetPublicKey", "Sign", "Verify", "GenerateMac", "VerifyMac", "DeriveSharedSecret",
              "Encapsulate", "Decapsulate", "CreateGrant", "ListGrants", "RevokeGrant", "EnableKey", "DisableKey",
              "ScheduleKeyDeletion", "CancelKeyDeletion", "UpdateKeyDescription", "TagResource", "UntagResource",
              "ListResourceTags", "GetKeyPolicy", "PutKeyPolicy", "ListKeyPolicies", "EnableKeyRotation",
              "DisableKeyRotation", "GetKeyRotationStatus", "RotateKeyOnDemand", "ListKeyRotations", "ReplicateKey",
              "UpdatePrimaryRegion", "GetKeyLastUsage", "GetParametersForImport", "ImportKeyMaterial",
              "DeleteImportedKeyMaterial", "ListAliases"):
    KEY_ACTIONS[_name] = (("KeyId", _name, None),)

FOREIGN_BLOB = ("The ciphertext refers to a customer master key that does not exist, does not exist in this region, "
                "or you are not allowed to access.")


@dataclass(frozen=True)
class AccessSettings:
    enforce: bool = True
    # principal ARN → identity policy document (JSON). A principal with none has no IAM permissions.
    identity_policies: Mapping[str, str] | None = None


class Authorizer:
    def __init__(self, settings: AccessSettings) -> None:
        self.settings = settings
        self._cache: OrderedDict[str, Policy] = OrderedDict()
        self._identity = {arn: parse_policy(doc, key_policy=False)
                          for arn, doc in (settings.identity_policies or {}).items()}

    def policy(self, text: str) -> Policy:
        cached = self._cache.get(text)
        if cached is None:
            cached = parse_policy(text)
            self._cache[text] = cached
            if len(self._cache) > 4096:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(text)
        return cached

    # -- the check run before every operation that names a key ---------------------------------------------

    def check_request(self, region: Region, principal: Principal, operation: str, params: Mapping[str, Any]) -> None:
        tokens = params.get("GrantTokens") or ()
        for token in tokens:
            grant_id_of_token(token)  # garbled tokens are refused whatever the policy says
        if not self.settings.enforce:
            return
        for member, action, ec_member in KEY_ACTIONS.get(operation, ()):
            key = self._key_named(region, principal, operation, params, member)
            if key is None:
                continue  # the operation itself answers NotFound / InvalidCiphertext as AWS does
            ec = params.get(ec_member) if ec_member else None
            self.require(region, principal, key, action, encryption_context=ec, request_alias=params.get(member))

    def _key_named(self, region: Region, principal: Principal, operation: str, params: Mapping[str, Any],
                   member: str) -> KeyRecord | None:
        value = params.get(member)
        if value is None and member in ("KeyId", "SourceKeyId") and operation in ("Decrypt", "ReEncrypt"):
            blob = params.get("CiphertextBlob")
            try:
                key_id = parse_header(blob).key_id if isinstance(blob, bytes) else None
            except KmsError:
                return None
            key = region.keys.get(key_id) if key_id else None
            if key is not None and principal.account != region.account:
                # Another account may use a key only by naming it by ARN.
                raise KmsError("AccessDeniedException", FOREIGN_BLOB)
            return key
        if not isinstance(value, str):
            return None
        try:
            ref = parse_key_ref(value, allow_alias=True)
            key = region.resolve(value, allow_alias=True)
        except KmsError:
            return None
        if principal.account != region.account and ref.kind is not RefKind.KEY_ARN:
            # As in AWS: aliases and bare ids are looked up in the caller's own account, where the key is not.
            raise KmsError("NotFoundException", f"Invalid keyId {value}" if ref.kind is RefKind.KEY_ID
                           else f"Alias {value} is not found.")
        return key

    def require(self, region: Region, principal: Principal, key: KeyRecord, action: str, *,
                encryption_context: Mapping[str, str] | None = None, request_alias: str | None = None,
                extra: Mapping[str, Sequence[str]] | None = None) -> None:
        if not self.settings.enforce:
            return
        caller = Caller(principal.arn, principal.account)
        context = self._context(region, principal, key, encryption_context, request_alias, extra)
        request = Request(caller, f"kms:{action}", key.arn, context)
        decision = self.policy(key.policy).evaluate(request) if key.policy else Decision.IMPLICIT_DENY
        identity = self._identity.get(principal.arn)
        identity_decision = identity.evaluate(request) if identity is not None else Decision.IMPLICIT_DENY
        if Decision.EXPLICIT_DENY in (decision, identity_decision):
            where = "a resource-based" if decision is Decision.EXPLICIT_DENY else "an identity-based"
            raise _denied(principal, action, key, f"with an explicit deny in {where} policy")
        if decision is Decision.ALLOW:
            return
        if decision is Decision.DELEGATED and identity_decision is Decision.ALLOW:
            return
        if any(g.permits(principal.arn, action, encryption_context) for g in region.grants_of(key.key_id)):
            return
        raise _denied(principal, action, key, f"because no resource-based policy allows the kms:{action} action")

    def allows(self, policy_text: str, principal: Principal, key: KeyRecord, action: str, region: Region) -> bool:
        """Would ``policy_text`` (not yet stored) let ``principal`` do ``action``? For the lockout check."""
        caller = Caller(principal.arn, principal.account)
        request = Request(caller, f"kms:{action}", key.arn, self._context(region, principal, key, None, None, None))
        decision = self.policy(policy_text).evaluate(request)
        if decision is Decision.ALLOW:
            return True
        identity = self._identity.get(principal.arn)
        return decision is Decision.DELEGATED and identity is not None and identity.evaluate(request) is Decision.ALLOW

    @staticmethod
    def _context(region: Region, principal: Principal, key: KeyRecord, ec: Mapping[str, str] | None,
                 request_alias: str | None, extra: Mapping[str, Sequence[str]] | None) -> dict[str, Sequence[str]]:
        ctx: dict[str, Sequence[str]] = {
            "kms:calleraccount": [principal.account],
            "aws:principalarn": [principal.arn],
            "aws:principalaccount": [principal.account],
            "kms:keyspec": [key.key_spec],
            "kms:keyusage": [key.key_usage],
            "kms:keyorigin": [key.origin],
            "kms:multiregion": ["true" if key.mrk is not None else "false"],
            "kms:resourcealiases": [a.name for a in region.aliases_of(key.key_id)],
            "aws:requestedregion": [region.name],
        }
        if key.mrk is not None:
            ctx["kms:multiregionkeytype"] = ["PRIMARY" if key.mrk.is_primary(region.name) else "REPLICA"]
        if request_alias is not None and "alias/" in request_alias:
            ctx["kms:requestalias"] = ["alias/" + request_alias.split("alias/", 1)[1]]
        for k, v in key.tags:
            ctx[f"aws:resourcetag/{k.lower()}"] = [v]
        if ec:
            ctx["kms:encryptioncontextkeys"] = list(ec)
            for k, v in ec.items():
                ctx[f"kms:encryptioncontext:{k.lower()}"] = [v]
        for name, values in (extra or {}).items():
            ctx[name.lower()] = list(values)
        return ctx


def _denied(principal: Principal, action: str, key: KeyRecord, why: str) -> KmsError:
    return KmsError("AccessDeniedException",
                    f"User: {principal.arn} is not authorized to perform: kms:{action} on resource: {key.arn} {why}")
