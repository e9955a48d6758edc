"""The writing side of the crash harness (tests/crash_harness.py): client threads making mixed KMS writes, and the
ledger of what each was told. A change is recorded as acknowledged only once its answer arrived; a change whose
answer never came (the cluster died under it) is recorded as "maybe": after the restart it must be either wholly
there or wholly absent.

Each thread changes only the objects it created itself, in this round, so the expected state of every object
follows from its own thread's ledger entries, in order."""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

ACCOUNT = "111122223333"
GRANTEE = f"arn:aws:iam::{ACCOUNT}:role/crash-grantee"
RETIREE = f"arn:aws:iam::{ACCOUNT}:role/crash-retiree"  # every harness grant names it: the sweep lists them all
ID_TAG = "crash-id"  # a created key's tag, equal to its description: a key without it was half written
MAX_ROTATIONS = 8  # on-demand rotations per key stay under KMS's limit of 10
# Refusals a thread may meet while the cluster is healthy (nothing was written): a multi-Region rotation still in
# progress, or one not allowed yet.
EXPECTED_REFUSALS = {"RotateKeyOnDemand": {"ConflictException"}}


@dataclass(frozen=True)
class Change:
    """One write: it sets ``slot`` (what it changes, e.g. ("alias", region, name)) to ``value``."""

    kind: str
    slot: tuple[str, ...]
    value: Any
    acked: bool


@dataclass(frozen=True)
class Ciphertext:
    region: str
    key_id: str
    blob: bytes
    plaintext: bytes
    context: dict[str, str]


@dataclass
class Ledger:
    """What the clients were told, shared by the threads of a round (appends under a lock)."""

    changes: list[Change] = field(default_factory=list)
    ciphertexts: list[Ciphertext] = field(default_factory=list)
    # Calls the cluster failed while it was meant to be healthy: (operation, error). A harness failure.
    unexpected: list[str] = field(default_factory=list)
    # Server errors a healthy cluster may give (KMSInternalException after too many lost races between workers).
    retryable: int = 0
    dropped: int = 0  # calls whose connection a killed worker took with it (while the others served on)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, change: Change) -> None:
        with self.lock:
            self.changes.append(change)

    def extend(self, other: Ledger) -> None:
        self.changes.extend(other.changes)
        self.ciphertexts.extend(other.ciphertexts)


def error_of(exc: ClientError | BotoCoreError) -> tuple[str, int]:
    """(error code, HTTP status); for no answer at all (a broken connection), (exception name, 0)."""
    if isinstance(exc, ClientError):
        status = int(exc.response["ResponseMetadata"].get("HTTPStatusCode") or 0)
        return str(exc.response["Error"]["Code"]), status
    return type(exc).__name__, 0


@dataclass
class Writer:
    """One client thread's objects and its random choices. ``home``: the region it writes in (multi-Region keys
    have their primary there and replicas in the ``others``)."""

    name: str
    home: str
    others: tuple[str, ...]
    kms: Any
    rng: random.Random
    ledger: Ledger
    killed: threading.Event
    worker_killed: threading.Event  # one worker process was killed, the others serve on
    keys: list[str] = field(default_factory=list)
    mrks: list[str] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)
    rotations: dict[str, int] = field(default_factory=dict)
    replicas: dict[str, set[str]] = field(default_factory=dict)  # regions asked for (acknowledged or not)
    serial: int = 0

    def run(self, deadline: Callable[[], bool]) -> None:
        """Write until the cluster dies (the first error after the kill ends the thread) or ``deadline()``."""
        while not deadline():
            if not self.step():
                return

    def _unique(self, what: str) -> str:
        self.serial += 1
        return f"crash-{self.name}-{what}{self.serial}"

    def step(self) -> bool:
        """One random write; False once the thread should stop."""
        actions: list[tuple[int, Callable[[], Any]]] = [(3, self.create_key), (1, self.create_mrk)]
        if self.keys or self.mrks:
            actions += [(3, self.create_alias), (2, self.create_grant), (3, self.tag), (2, self.enable_rotation),
                        (2, self.rotate), (6, self.encrypt)]
        if self.aliases:
            actions.append((2, self.update_alias))
        if any(len(self.replicas.get(k, ())) < len(self.others) for k in self.mrks):
            actions.append((2, self.replicate))
        pick = self.rng.choices([a for _, a in actions], weights=[w for w, _ in actions])[0]
        return bool(pick())

    # -- one call, recorded ------------------------------------------------------------------------------------

    def _call(self, operation: str, kind: str, slot: tuple[str, ...], value: Any,
              call: Callable[[], Any]) -> Any | None:
        """Make ``call``; record its change as acknowledged (its answer) or maybe (no answer). False when it was
        refused; None when there was no answer (the caller stops if the cluster was killed)."""
        try:
            answer = call()
        except (ClientError, BotoCoreError) as exc:
            code, status = error_of(exc)
            if 400 <= status < 500 and code in EXPECTED_REFUSALS.get(operation, ()):
                return False  # refused: nothing written, nothing to record
            self.ledger.add(Change(kind, slot, value, acked=False))
            if not self.killed.is_set():
                self._while_up(operation, code, status)
            return None
        self.ledger.add(Change(kind, slot, value, acked=True))
        return answer

    def _while_up(self, operation: str, code: str, status: int) -> None:
        """Count an error before the kill: a server error the client may retry (KMSInternalException after too
        many lost races between workers), a connection a killed worker dropped, or else a harness failure."""
        with self.ledger.lock:
            if status >= 500 and code == "KMSInternalException":
                self.ledger.retryable += 1
            elif status == 0 and self.worker_killed.is_set():
                self.ledger.dropped += 1
            else:
                self.ledger.unexpected.append(f"{operation}: {code} ({status}) while the cluster was up")

    def _go_on(self, answer: Any | None) -> bool:
        return answer is not None or not self.killed.is_set()

    def _key(self) -> str:
        return self.rng.choice(self.keys + self.mrks)

    # -- the writes ---------------------------------------------------------------------------------------------

    def create_key(self, multi_region: bool = False) -> bool:
        desc = self._unique("mrk" if multi_region else "key")
        answer = self._call("CreateKey", "mrk" if multi_region else "key", ("key", self.home, desc), True,
                            lambda: self.kms.create_key(Description=desc, MultiRegion=multi_region,
                                                        Tags=[{"TagKey": ID_TAG, "TagValue": desc}]))
        if answer:
            (self.mrks if multi_region else self.keys).append(answer["KeyMetadata"]["KeyId"])
        return self._go_on(answer)

    def create_mrk(self) -> bool:
        return self.create_key(multi_region=True)

    def create_alias(self) -> bool:
        name, key_id = "alias/" + self._unique("a"), self._key()
        answer = self._call("CreateAlias", "alias", ("alias", self.home, name), key_id,
                            lambda: self.kms.create_alias(AliasName=name, TargetKeyId=key_id))
        if answer:
            self.aliases[name] = key_id
        return self._go_on(answer)

    def update_alias(self) -> bool:
        name, key_id = self.rng.choice(sorted(self.aliases)), self._key()
        answer = self._call("UpdateAlias", "alias-update", ("alias", self.home, name), key_id,
                            lambda: self.kms.update_alias(AliasName=name, TargetKeyId=key_id))
        if answer:
            self.aliases[name] = key_id
        return self._go_on(answer)

    def create_grant(self) -> bool:
        name, key_id = self._unique("g"), self._key()
        answer = self._call("CreateGrant", "grant", ("grant", self.home, key_id, name), True,
                            lambda: self.kms.create_grant(KeyId=key_id, GranteePrincipal=GRANTEE, Name=name,
                                                          RetiringPrincipal=RETIREE,
                                                          Operations=["Encrypt", "Decrypt"]))
        return self._go_on(answer)

    def tag(self) -> bool:
        tag_key, key_id = self._unique("t"), self._key()
        value = os.urandom(4).hex()
        answer = self._call("TagResource", "tag", ("tag", self.home, key_id, tag_key), value,
                            lambda: self.kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": tag_key,
                                                                              "TagValue": value}]))
        return self._go_on(answer)

    def enable_rotation(self) -> bool:
        key_id, days = self._key(), self.rng.randint(90, 2560)
        answer = self._call("EnableKeyRotation", "rotation", ("rotation", self.home, key_id), days,
                            lambda: self.kms.enable_key_rotation(KeyId=key_id, RotationPeriodInDays=days))
        return self._go_on(answer)

    def rotate(self) -> bool:
        key_id = self._key()
        done = self.rotations.get(key_id, 0)
        if done >= MAX_ROTATIONS:
            return True
        # The slot counts rotations: each acknowledged one adds one; one without an answer may or may not have.
        answer = self._call("RotateKeyOnDemand", "rotate", ("rotations", self.home, key_id), 1,
                            lambda: self.kms.rotate_key_on_demand(KeyId=key_id))
        # One that may have happened counts against the limit too.
        self.rotations[key_id] = done + (0 if answer is False else 1)
        return self._go_on(answer)

    def encrypt(self) -> bool:
        key_id = self._key()
        plaintext, context = os.urandom(self.rng.randint(1, 64)), {"n": str(self.serial)}
        try:
            blob = self.kms.encrypt(KeyId=key_id, Plaintext=plaintext, EncryptionContext=context)["CiphertextBlob"]
        except (ClientError, BotoCoreError) as exc:
            if self.killed.is_set():
                return False
            self._while_up("Encrypt", *error_of(exc))
            return True
        with self.ledger.lock:
            self.ledger.ciphertexts.append(Ciphertext(self.home, key_id, blob, plaintext, context))
        return True

    def replicate(self) -> bool:
        key_id = self.rng.choice([k for k in self.mrks if len(self.replicas.get(k, ())) < len(self.others)])
        asked = self.replicas.setdefault(key_id, set())
        target = self.rng.choice([r for r in self.others if r not in asked])
        asked.add(target)  # never asked twice: a second ask would be refused as already there
        answer = self._call("ReplicateKey", "replica", ("replica", self.home, key_id, target), True,
                            lambda: self.kms.replicate_key(KeyId=key_id, ReplicaRegion=target))
        return self._go_on(answer)
