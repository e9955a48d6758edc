"""Who may do what to a key: the key policy, the caller's identity (IAM) policy and the key's grants, evaluated
as AWS does — after the key is resolved and before its state is checked.

Which request members name keys, which action each needs and whether another account may call it is each
operation's declaration (node/model/operations.py). Operations that name no key (ListAliases even with KeyId,
ListKeys, CreateKey, GenerateRandom, ListRetirableGrants, the custom key store operations) AWS authorizes by IAM
policy alone."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from trent.node.auth.conditions import scalar
from trent.node.auth.policy import Caller, Decision, Policy, Request, parse_policy
from trent.node.auth.principals import Principal
from trent.node.model.errors import KmsError
from trent.node.model.grants import grant_id_of_token
from trent.node.model.ids import RefKind, alias_arn, key_arn, parse_key_ref
from trent.node.model.key import KeyRecord
from trent.node.model.managed import KEY_MANAGER_AWS, MANAGED_ALIAS_PREFIX
from trent.node.model.operations import Operation
from trent.node.service import Region

# Request members that policies can test, and the condition key each one feeds.
REQUEST_KEYS = {
    "EncryptionAlgorithm": "kms:EncryptionAlgorithm", "SigningAlgorithm": "kms:SigningAlgorithm",
    "MacAlgorithm": "kms:MacAlgorithm", "MessageType": "kms:MessageType",
    "KeyAgreementAlgorithm": "kms:KeyAgreementAlgorithm", "KeyPairSpec": "kms:DataKeyPairSpec",
    "PendingWindowInDays": "kms:ScheduleKeyDeletionPendingWindowInDays",
    "RotationPeriodInDays": "kms:RotationPeriodInDays", "ReplicaRegion": "kms:ReplicaRegion",
    "PrimaryRegion": "kms:PrimaryRegion", "BypassPolicyLockoutSafetyCheck": "kms:BypassPolicyLockoutSafetyCheck",
    "WrappingAlgorithm": "kms:WrappingAlgorithm", "WrappingKeySpec": "kms:WrappingKeySpec",
    "ExpirationModel": "kms:ExpirationModel", "ValidTo": "kms:ValidTo",
}


def request_condition_keys(operation: str, params: Mapping[str, Any]) -> dict[str, list[str]]:
    """The condition keys a request itself supplies (beyond the caller, the key and the encryption context)."""
    out: dict[str, list[str]] = {}
    for member, key in REQUEST_KEYS.items():
        value = scalar(params.get(member))
        if value is not None:
            out[key] = [value]
    if operation in ("GetKeyPolicy", "PutKeyPolicy"):
        out["kms:PolicyName"] = [str(params.get("PolicyName") or "default")]
    if operation == "CreateGrant":
        out["kms:GrantOperations"] = [str(o) for o in params.get("Operations") or ()]
        out["kms:GrantIsForAWSResource"] = ["false"]
        for member, key in (("GranteePrincipal", "kms:GranteePrincipal"),
                            ("RetiringPrincipal", "kms:RetiringPrincipal")):
            if isinstance(params.get(member), str):
                out[key] = [params[member]]
        constraints = params.get("Constraints") or {}
        types = [t for t in ("EncryptionContextEquals", "EncryptionContextSubset") if t in constraints]
        if types:
            out["kms:GrantConstraintType"] = types
    if operation in ("ListGrants", "RevokeGrant"):
        out["kms:GrantIsForAWSResource"] = ["false"]
    if operation == "TagResource":
        tags = [t for t in params.get("Tags") or () if isinstance(t, Mapping)]
        out["aws:TagKeys"] = [str(t.get("TagKey")) for t in tags]
        for t in tags:
            out[f"aws:RequestTag/{t.get('TagKey')}"] = [str(t.get("TagValue"))]
    if operation == "UntagResource":
        out["aws:TagKeys"] = [str(k) for k in params.get("TagKeys") or ()]
    return out


class Verdict(Enum):
    ALLOWED = "allowed"
    NOT_ALLOWED = "not-allowed"            # grants may still allow
    DENIED_BY_KEY_POLICY = "key-deny"
    DENIED_BY_IDENTITY_POLICY = "identity-deny"


@dataclass(frozen=True)
class AccessSettings:
    enforce: bool = True
    # principal ARN → identity policy document (JSON). A principal with none has no IAM permissions.
    identity_policies: Mapping[str, str] | None = None


class Authorizer:
    def __init__(self, settings: AccessSettings) -> None:
        self.settings = settings
        self._cache: OrderedDict[str, Policy] = OrderedDict()
        # Verdicts of condition-free policies, by (key policy, caller, account, key, action, region account): the hot
        # path of every call under the default key policy.
        self._verdicts: OrderedDict[tuple[str, str, str, str, str, str], Verdict] = OrderedDict()
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

    def check_request(self, region: Region, principal: Principal, operation: Operation,
                      params: Mapping[str, Any]) -> None:
        tokens = params.get("GrantTokens") or ()
        for token in tokens:
            grant_id_of_token(token)  # garbled tokens are refused whatever the policy says
        if not self.settings.enforce:
            self._check_managed(region, principal, operation, params)
            return
        name = operation.name
        for named in operation.keys:
            member, action, ec_member = named.member, named.action, named.context
            key = self._key_named(region, principal, name, params, member)
            if key is None:
                continue  # the operation itself answers NotFound / InvalidCiphertext as AWS does
            if principal.account != region.account and not operation.cross_account:
                # Whatever the key policy says: permissions given to another account for this have no effect.
                raise not_allowed(principal, action, key)
            if self._verdicts.get(self._verdict_key(region, principal, key, action)) is Verdict.ALLOWED:
                continue  # allowed before by condition-free policies: nothing in this request can change that
            ec = params.get(ec_member) if ec_member else None
            conditional = self._conditional(key, principal)
            extra = request_condition_keys(name, params) if conditional else None
            self._require(region, principal, key, action, encryption_context=ec, request_alias=params.get(member),
                          extra=extra, conditional=conditional, constrained=ec_member is not None)
        if operation.alias_target:
            self._check_alias_target(region, principal, name, params.get("AliasName"))

    def _check_managed(self, region: Region, principal: Principal, operation: Operation,
                       params: Mapping[str, Any]) -> None:
        """With access control off, an AWS managed key still answers to its fixed policy: it is AWS's key, and what
        a customer may not do to it (disable, delete, change its policy, rotation or tags) stays refused."""
        for named in operation.keys:
            try:
                key = self._key_named(region, principal, operation.name, params, named.member)
            except KmsError:
                continue  # the operation answers as it would
            if key is not None and key.key_manager == KEY_MANAGER_AWS:
                ec = params.get(named.context) if named.context else None
                self._require(region, principal, key, named.action, encryption_context=ec,
                              request_alias=params.get(named.member),
                              extra=request_condition_keys(operation.name, params), conditional=True,
                              constrained=named.context is not None)

    def _check_alias_target(self, region: Region, principal: Principal, operation: str, name: Any) -> None:
        """DeleteAlias and UpdateAlias also need the permission on the key the alias points at now (key policy)."""
        if not isinstance(name, str) or not name.startswith("alias/") or name.startswith(MANAGED_ALIAS_PREFIX):
            return  # the operation answers the malformed name, or a reserved one (NotAuthorizedException)
        if principal.account != region.account:  # an alias name is looked up in the caller's own account
            raise KmsError("NotFoundException",
                           f"Alias {alias_arn(region.name, principal.account, name)} is not found.")
        key = region.key_of_alias(name)
        if key is None:
            return  # the operation answers NotFound
        self.require(region, principal, key, operation, request_alias=name, constrained=False)

    def _key_named(self, region: Region, principal: Principal, operation: str, params: Mapping[str, Any],
                   member: str) -> KeyRecord | None:
        value = params.get(member)
        if type(value) is str and principal.account == region.account:
            found = region.keys.get(value)
            if found is not None:
                return found  # a bare key id of this region, the caller's own: what resolving it below would find
        if value is None and member in ("KeyId", "SourceKeyId") and operation in ("Decrypt", "ReEncrypt"):
            # Symmetric ciphertext names its key (by ARN, in effect): usable without KeyId, also across accounts.
            return region.key_of_ciphertext(params.get("CiphertextBlob"))
        if not isinstance(value, str):
            return None
        if principal.account != region.account:
            try:
                ref = parse_key_ref(value, allow_alias=True)
            except KmsError:
                return None  # malformed: the operation answers with its own error
            if ref.kind is RefKind.KEY_ID:
                # As in AWS: aliases and bare ids are looked up in the caller's own account, where the key is not.
                raise KmsError("NotFoundException",
                               f"Key '{key_arn(region.name, principal.account, value)}' does not exist")
            if ref.kind is RefKind.ALIAS_NAME:
                raise KmsError("NotFoundException",
                               f"Alias {alias_arn(region.name, principal.account, value)} is not found.")
        try:
            return region.resolve(value, allow_alias=True)
        except KmsError:
            return None  # malformed or not found: the operation answers with its own error

    def require(self, region: Region, principal: Principal, key: KeyRecord, action: str, *,
                encryption_context: Mapping[str, str] | None = None, request_alias: str | None = None,
                extra: Mapping[str, Sequence[str]] | None = None, conditional: bool | None = None,
                constrained: bool) -> None:
        """``conditional``: whether the policies in play have conditions, when the caller already knows.
        ``constrained``: the action takes an encryption context, so grants' constraints on it apply."""
        if not self.settings.enforce:
            return
        self._require(region, principal, key, action, encryption_context=encryption_context,
                      request_alias=request_alias, extra=extra, conditional=conditional, constrained=constrained)

    def _require(self, region: Region, principal: Principal, key: KeyRecord, action: str, *,
                 encryption_context: Mapping[str, str] | None, request_alias: str | None,
                 extra: Mapping[str, Sequence[str]] | None, conditional: bool | None, constrained: bool) -> None:
        if conditional if conditional is not None else self._conditional(key, principal):
            context = self._context(region, principal, key, encryption_context, request_alias, extra)
            verdict = self._verdict(key.policy, region, principal, key, action, context)
        else:
            verdict = self._unconditional_verdict(region, principal, key, action)
        if verdict is Verdict.DENIED_BY_KEY_POLICY:
            raise denied(principal, action, key, "with an explicit deny in a resource-based policy")
        if verdict is Verdict.DENIED_BY_IDENTITY_POLICY:
            raise denied(principal, action, key, "with an explicit deny in an identity-based policy")
        if verdict is Verdict.ALLOWED:
            return
        if any(g.permits(principal.arn, action, encryption_context, constrained=constrained)
               for g in region.grants_of(key.key_id)):
            return
        raise not_allowed(principal, action, key)

    def _conditional(self, key: KeyRecord, principal: Principal) -> bool:
        identity = self._identity.get(principal.arn)
        return (bool(key.policy) and self.policy(key.policy).conditional) or (
            identity is not None and identity.conditional)

    def _unconditional_verdict(self, region: Region, principal: Principal, key: KeyRecord, action: str) -> Verdict:
        cache_key = self._verdict_key(region, principal, key, action)
        verdict = self._verdicts.get(cache_key)
        if verdict is None:
            verdict = self._verdict(key.policy, region, principal, key, action, {})
            self._verdicts[cache_key] = verdict
            if len(self._verdicts) > 65536:
                self._verdicts.popitem(last=False)
        return verdict

    @staticmethod
    def _verdict_key(region: Region, principal: Principal, key: KeyRecord,
                     action: str) -> tuple[str, str, str, str, str, str]:
        return (key.policy, principal.arn, principal.account, key.arn, action, region.account)

    def _verdict(self, policy_text: str | None, region: Region, principal: Principal, key: KeyRecord, action: str,
                 context: Mapping[str, Sequence[str]]) -> Verdict:
        """The key policy together with the caller's identity policy (grants are looked at by the caller)."""
        caller = Caller(principal.arn, principal.account)
        request = Request(caller, f"kms:{action}", key.arn, context)
        decision = self.policy(policy_text).evaluate(request) if policy_text else Decision.IMPLICIT_DENY
        identity = self._identity.get(principal.arn)
        identity_decision = identity.evaluate(request) if identity is not None else Decision.IMPLICIT_DENY
        if decision is Decision.EXPLICIT_DENY:
            return Verdict.DENIED_BY_KEY_POLICY
        if identity_decision is Decision.EXPLICIT_DENY:
            return Verdict.DENIED_BY_IDENTITY_POLICY
        # An account's root user needs no IAM policy in its own account; everyone else does, both when the key
        # policy delegates to the account and when the caller is of another account (cross-account access needs
        # the key policy *and* an IAM policy in the caller's account).
        iam_allows = caller.is_root or identity_decision is Decision.ALLOW
        foreign = principal.account != region.account
        if (decision is Decision.ALLOW and (iam_allows or not foreign)) or (
                decision is Decision.DELEGATED and iam_allows):
            return Verdict.ALLOWED
        return Verdict.NOT_ALLOWED

    def policy_verdict(self, region: Region, principal: Principal, key: KeyRecord, action: str,
                       params: Mapping[str, Any] | None = None) -> Verdict:
        """What the key policy and identity policy alone say (no grants), with the request's condition keys."""
        if not self.settings.enforce:
            return Verdict.ALLOWED
        extra = request_condition_keys(action, params or {})
        context = self._context(region, principal, key, None, None, extra)
        return self._verdict(key.policy, region, principal, key, action, context)

    def identity_decision(self, region: Region, principal: Principal, key: KeyRecord, action: str) -> Decision:
        """The caller's identity (IAM) policy alone, for what AWS lets only IAM decide (RetireGrant)."""
        identity = self._identity.get(principal.arn)
        if identity is None:
            return Decision.IMPLICIT_DENY
        context = self._context(region, principal, key, None, None, None)
        return identity.evaluate(Request(Caller(principal.arn, principal.account), f"kms:{action}", key.arn, context))

    def require_identity(self, region: Region, principal: Principal, action: str) -> None:
        """What AWS lets only IAM decide, on no key (the custom key store operations): the account's root may; anyone
        else needs an identity policy that allows ``kms:<action>`` (and denies nothing of it); another account's
        principal never may (no cross-account use)."""
        if not self.settings.enforce:
            return
        resource = f"arn:aws:kms:{region.name}:{region.account}:*"
        caller = Caller(principal.arn, principal.account)
        identity = self._identity.get(principal.arn)
        context: dict[str, Sequence[str]] = {"kms:calleraccount": [principal.account],
                                             "aws:principalarn": [principal.arn],
                                             "aws:principalaccount": [principal.account],
                                             "aws:requestedregion": [region.name]}
        decision = (identity.evaluate(Request(caller, f"kms:{action}", resource, context)) if identity is not None
                    else Decision.IMPLICIT_DENY)
        if principal.account == region.account and decision is not Decision.EXPLICIT_DENY and (
                caller.is_root or decision is Decision.ALLOW):
            return
        why = ("with an explicit deny in an identity-based policy" if decision is Decision.EXPLICIT_DENY
               else f"because no identity-based policy allows the kms:{action} action")
        raise KmsError("AccessDeniedException",
                       f"User: {principal.arn} is not authorized to perform: kms:{action} on resource: {resource} "
                       f"{why}")

    def allows(self, policy_text: str, principal: Principal, key: KeyRecord, action: str, region: Region) -> bool:
        """Would ``policy_text`` (not yet stored) let ``principal`` do ``action``? For the lockout check."""
        context = self._context(region, principal, key, None, None, None)
        return self._verdict(policy_text, region, principal, key, action, context) is Verdict.ALLOWED

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
        if principal.via_service is not None:
            # A request an integrated service makes for the caller (node/auth/principals.py).
            ctx["kms:viaservice"] = [f"{principal.via_service}.{region.name}.amazonaws.com"]
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
        if principal.via_service is not None and "kms:grantisforawsresource" in ctx:
            ctx["kms:grantisforawsresource"] = ["true"]  # a grant a service makes is for its AWS resource
        return ctx


def denied(principal: Principal, action: str, key: KeyRecord, why: str) -> KmsError:
    return KmsError("AccessDeniedException",
                    f"User: {principal.arn} is not authorized to perform: kms:{action} on resource: {key.arn} {why}")


def not_allowed(principal: Principal, action: str, key: KeyRecord) -> KmsError:
    return denied(principal, action, key, f"because no resource-based policy allows the kms:{action} action")
