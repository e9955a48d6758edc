"""The checking side of the crash harness (tests/crash_harness.py): after a restart, every acknowledged change of a
round's ledger must be there, every change without an answer wholly there or wholly absent, every acknowledged
ciphertext must decrypt, and nothing anywhere may be half written (an alias or a grant on a missing key, a key
without its tags or its material) or answer with a server error."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tests.crash_workload import ID_TAG, RETIREE, Change, Ledger
from trent.cluster.running import RunningCluster, poll

CATCH_UP = 20.0  # seconds replication may take to catch up after a restart


@dataclass
class Tally:
    """Counts over a whole run, and what went wrong (each failure names the round that found it)."""

    rounds: int = 0
    kills: int = 0
    acked: Counter[str] = field(default_factory=Counter)  # acknowledged changes checked, per kind
    maybe_present: Counter[str] = field(default_factory=Counter)
    maybe_absent: Counter[str] = field(default_factory=Counter)
    ciphertexts: int = 0
    keys_swept: int = 0
    retryable: int = 0
    dropped: int = 0
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        kinds = sorted(set(self.acked) | set(self.maybe_present) | set(self.maybe_absent))
        lines = [f"rounds {self.rounds}, kills {self.kills}, failures {len(self.failures)}",
                 f"acknowledged ciphertexts decrypted: {self.ciphertexts}; keys swept whole: {self.keys_swept}; "
                 f"retryable server errors while up: {self.retryable}; calls lost with a killed worker: "
                 f"{self.dropped}",
                 f"{'kind':<14}{'acked':>8}{'maybe there':>13}{'maybe absent':>14}"]
        lines += [f"{k:<14}{self.acked[k]:>8}{self.maybe_present[k]:>13}{self.maybe_absent[k]:>14}" for k in kinds]
        return "\n".join([*lines, *self.failures])


@dataclass
class RegionView:
    """What one region shows after the restart, read once."""

    keys: dict[str, dict[str, Any]] = field(default_factory=dict)  # key id -> metadata
    by_description: dict[str, list[str]] = field(default_factory=dict)
    aliases: dict[str, str | None] = field(default_factory=dict)


def pages(call: Callable[..., dict[str, Any]], member: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    for page in range(10_000):
        answer = call(**kwargs)
        yield from answer[member]
        if not answer.get("Truncated"):
            return
        kwargs["Marker"] = answer["NextMarker"]
        assert page < 9_999, "paging did not end"


class Checker:
    """Checks one round's ledger against a restarted cluster, adding to ``tally`` (failures prefixed ``label``)."""

    def __init__(self, cluster: RunningCluster, regions: tuple[str, ...], tally: Tally, label: str,
                 whole: set[tuple[str, str]]) -> None:
        self.cluster = cluster
        self.kms = {r: cluster.client(r) for r in regions}
        self.tally = tally
        self.label = label
        self.whole = whole  # (region, key id) already seen whole: swept once, not again every round
        self.views: dict[str, RegionView] = {}

    def fail(self, what: str) -> None:
        self.tally.failures.append(f"{self.label}: {what}")

    def guarded(self, what: str, check: Callable[[], None]) -> None:
        """Run ``check``; any error a call gives (a server error above all) is a failure, not the end."""
        try:
            check()
        except ClientError as exc:
            error = exc.response["Error"]
            status = exc.response["ResponseMetadata"].get("HTTPStatusCode")
            self.fail(f"{what}: {error.get('Code')} ({status}): {error.get('Message')}")
        except (BotoCoreError, TimeoutError, AssertionError) as exc:
            self.fail(f"{what}: {type(exc).__name__}: {exc}")

    # -- every region, everything in it -------------------------------------------------------------------------

    def sweep(self) -> None:
        for region, kms in self.kms.items():
            view = self.views[region] = RegionView()
            self.guarded(f"{region}: listing keys", partial(self._sweep_keys, region, kms, view))
            self.guarded(f"{region}: listing aliases", partial(self._sweep_aliases, kms, view))
            self.guarded(f"{region}: listing grants", partial(self._sweep_grants, region, kms, view))

    def _sweep_keys(self, region: str, kms: Any, view: RegionView) -> None:
        for entry in pages(kms.list_keys, "Keys", Limit=1000):
            key_id = entry["KeyId"]
            if (region, key_id) in self.whole:  # described and used after an earlier restart: listed is enough
                view.keys[key_id] = entry
                continue
            meta = kms.describe_key(KeyId=key_id)["KeyMetadata"]
            if meta["KeyState"] == "Creating":  # a replica just created: its Creating period ends by itself
                meta = poll(lambda k=key_id: self._enabled(kms, k), timeout=CATCH_UP, interval=0.05)
            view.keys[key_id] = meta
            desc = meta.get("Description", "")
            view.by_description.setdefault(desc, []).append(key_id)
            if meta["KeyState"] != "Enabled":
                self.fail(f"{region}: key {key_id} is {meta['KeyState']} (the harness never disables one)")
            self.guarded(f"{region}: key {key_id} whole", partial(self._whole, kms, key_id, desc, meta))
            self.whole.add((region, key_id))
            self.tally.keys_swept += 1
        for desc, ids in view.by_description.items():
            if desc.startswith("crash-") and len(ids) > 1:
                self.fail(f"{region}: one CreateKey made {len(ids)} keys: {ids}")

    @staticmethod
    def _enabled(kms: Any, key_id: str) -> dict[str, Any] | None:
        meta: dict[str, Any] = kms.describe_key(KeyId=key_id)["KeyMetadata"]
        return meta if meta["KeyState"] != "Creating" else None

    def _whole(self, kms: Any, key_id: str, desc: str, meta: dict[str, Any]) -> None:
        """A key is whole: its material works, and a key the harness created has the tags it was created with."""
        if meta.get("MultiRegionConfiguration", {}).get("MultiRegionKeyType") != "REPLICA" and desc.startswith(
                "crash-"):
            tags = {t["TagKey"]: t["TagValue"] for t in kms.list_resource_tags(KeyId=key_id)["Tags"]}
            assert tags.get(ID_TAG) == desc, f"created with tag {ID_TAG}={desc}, has {tags.get(ID_TAG)}"
        blob = kms.encrypt(KeyId=key_id, Plaintext=b"whole")["CiphertextBlob"]
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"whole", "its own ciphertext does not decrypt"

    def _sweep_aliases(self, kms: Any, view: RegionView) -> None:
        for alias in pages(kms.list_aliases, "Aliases", Limit=100):
            target = alias.get("TargetKeyId")
            view.aliases[alias["AliasName"]] = target
            if target is not None and target not in view.keys:
                self.fail(f"alias {alias['AliasName']} points at missing key {target}")

    def _sweep_grants(self, region: str, kms: Any, view: RegionView) -> None:
        for grant in pages(kms.list_retirable_grants, "Grants", RetiringPrincipal=RETIREE, Limit=100):
            key_id = grant["KeyId"].rsplit("/", 1)[-1]
            if key_id not in view.keys:
                self.fail(f"{region}: grant {grant['GrantId']} on missing key {key_id}")

    # -- the ledger -----------------------------------------------------------------------------------------

    def check(self, ledger: Ledger) -> None:
        """Fold each slot's changes into the values it may hold now, observe it, compare."""
        slots: dict[tuple[str, ...], list[Change]] = {}
        for change in ledger.changes:
            slots.setdefault(change.slot, []).append(change)
        for slot, changes in slots.items():
            allowed: set[Any] = {None}
            for change in changes:
                allowed = {change.value} if change.acked else allowed | {change.value}
            if slot[0] == "rotations":  # each change adds one: every acknowledged one, and any of the others
                acked = sum(1 for c in changes if c.acked)
                allowed = set(range(acked, len(changes) + 1))
            self.guarded(f"{slot}", partial(self._check_slot, slot, allowed, changes))
        for ct in ledger.ciphertexts:
            self.guarded(f"ciphertext under {ct.key_id} from {ct.region}", partial(self._decrypts, ct))

    def _check_slot(self, slot: tuple[str, ...], allowed: set[Any], changes: list[Change]) -> None:
        seen = self.observe(slot, allowed)
        if seen not in allowed:
            acked = [c.value for c in changes if c.acked]
            self.fail(f"{slot} is {seen!r}, expected one of {sorted(allowed, key=repr)} (acknowledged: {acked})")
            return
        maybes = [c for c in changes if not c.acked]
        if slot[0] == "rotations":
            self.tally.acked["rotate"] += len(changes) - len(maybes)
            self.tally.maybe_present["rotate"] += seen - min(allowed)
            self.tally.maybe_absent["rotate"] += max(allowed) - seen
            return
        if changes[-1].acked:
            self.tally.acked[changes[-1].kind] += 1
        for change in maybes:
            (self.tally.maybe_present if seen == change.value else self.tally.maybe_absent)[change.kind] += 1

    def observe(self, slot: tuple[str, ...], allowed: set[Any]) -> Any:
        kind, region = slot[0], slot[1]
        kms, view = self.kms[region], self.views[region]
        if kind == "key":
            return True if view.by_description.get(slot[2]) else None
        if kind == "alias":
            return view.aliases.get(slot[2])
        if kind == "grant":
            names = {g.get("Name") for g in pages(kms.list_grants, "Grants", KeyId=slot[2], Limit=100)}
            return True if slot[3] in names else None
        if kind == "tag":
            tags = {t["TagKey"]: t["TagValue"] for t in kms.list_resource_tags(KeyId=slot[2])["Tags"]}
            return tags.get(slot[3])
        if kind == "rotation":
            status = kms.get_key_rotation_status(KeyId=slot[2])
            return status["RotationPeriodInDays"] if status["KeyRotationEnabled"] else None
        if kind == "rotations":
            return self._rotations(kms, slot[2], allowed)
        if kind == "replica":
            return self._replica(kms, slot[2], slot[3])
        raise AssertionError(f"unknown slot {slot}")

    @staticmethod
    def _rotations(kms: Any, key_id: str, allowed: set[Any]) -> int:
        def count() -> int:
            entries = kms.list_key_rotations(KeyId=key_id, Limit=100)["Rotations"]
            return sum(1 for e in entries if e.get("RotationType") == "ON_DEMAND")
        if key_id.startswith("mrk-"):
            # A multi-Region rotation is listed once every replica holds the new material: give it time (bounded).
            with contextlib.suppress(TimeoutError):
                poll(lambda: count() in allowed, timeout=CATCH_UP, interval=0.05)
        return count()

    def _replica(self, primary: Any, key_id: str, target: str) -> bool | str | None:
        """True: the primary lists the replica, and (once replication caught up) it exists, Enabled, with the
        primary's current key material; None: neither lists nor has it."""
        config = primary.describe_key(KeyId=key_id)["KeyMetadata"]["MultiRegionConfiguration"]
        listed = target in {r["Region"] for r in config.get("ReplicaKeys", ())}
        kms = self.kms[target]

        def replica() -> dict[str, Any] | None:
            try:
                meta: dict[str, Any] = kms.describe_key(KeyId=key_id)["KeyMetadata"]
                return meta
            except ClientError as exc:
                if exc.response["Error"]["Code"] == "NotFoundException":
                    return None
                raise

        def caught_up() -> bool:
            meta = replica()
            current = primary.describe_key(KeyId=key_id)["KeyMetadata"]["CurrentKeyMaterialId"]
            return meta is not None and meta["KeyState"] == "Enabled" and meta["CurrentKeyMaterialId"] == current
        if not listed:
            return "present but not listed by its primary" if replica() is not None else None
        try:
            poll(caught_up, timeout=CATCH_UP, interval=0.05)
        except TimeoutError:
            return f"listed by its primary, not there with its material after {CATCH_UP}s"
        return True

    def _decrypts(self, ct: Any) -> None:
        regions = [ct.region]
        if ct.key_id.startswith("mrk-"):
            regions += [r for r, view in self.views.items() if r != ct.region and ct.key_id in view.keys]
        for region in regions:
            kms = self.kms[region]

            def plaintext(k: Any = kms, replica: bool = region != ct.region) -> bytes | None:
                try:
                    out: bytes = k.decrypt(CiphertextBlob=ct.blob, EncryptionContext=ct.context)["Plaintext"]
                    return out
                except ClientError as exc:
                    if replica and exc.response["Error"]["Code"] == "KMSInvalidStateException":
                        return None  # a replica still Creating: wait for it
                    raise
            got = plaintext() if region == ct.region else poll(plaintext, timeout=CATCH_UP, interval=0.05)
            assert got == ct.plaintext, f"decrypts in {region} to something else"
        self.tally.ciphertexts += 1
