"""HSM clusters as the configuration declares them ([[hsm_clusters]]), and as one region sees them: a SoftHSM2
token per cluster lineage (a cluster and those restored from its backups share keys) under the region's data
directory, created on first start with the cluster's kmsuser password as its user PIN."""

from __future__ import annotations

import datetime
import hashlib
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pkcs11

from trent.node.hsm.pool import Library
from trent.node.hsm.softhsm import SoftHsmDirectory, find_library, set_user_pin, stored_pin

CLUSTER_ID_RE = re.compile(r"cluster-[2-7a-zA-Z]{11,16}")
DEFAULT_CLUSTER_ID = "cluster-trentdefault"
DEFAULT_PASSWORD = "trent-kmsuser"  # what the start-up banner shows a newcomer (7 to 32 characters, as in AWS)
CLUSTER_KEYS = ("id", "kmsuser_password", "trust_anchor_certificate", "module", "hsms", "regions", "backup_of")


class ClusterConfigError(ValueError):
    pass


@dataclass(frozen=True)
class HsmClusterSpec:
    cluster_id: str
    kmsuser_password: str = field(repr=False)
    trust_anchor_certificate: Path | None = None  # None: generated under the data directory
    module: Path | None = None  # None: SoftHSM2
    hsms: int = 2
    regions: tuple[str, ...] | None = None  # None: every region
    backup_of: str | None = None  # made from a backup of that cluster: same lineage, same keys

    def serves(self, region: str) -> bool:
        return self.regions is None or region in self.regions


def parse_clusters(items: Any, regions: Iterable[str]) -> tuple[HsmClusterSpec, ...]:
    """[[hsm_clusters]] tables of the config file, checked (a message never shows a password)."""
    known_regions = set(regions)
    if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
        raise ClusterConfigError("hsm_clusters must be a list of tables ([[hsm_clusters]] in TOML)")
    out: list[HsmClusterSpec] = []
    for number, item in enumerate(items, 1):
        where = f"[[hsm_clusters]] #{number}"
        unknown = [k for k in item if k not in CLUSTER_KEYS]
        if unknown:
            raise ClusterConfigError(f"unknown key {unknown[0]!r} in {where} (keys: {', '.join(CLUSTER_KEYS)})")
        cid = item.get("id")
        if not isinstance(cid, str) or CLUSTER_ID_RE.fullmatch(cid) is None:
            raise ClusterConfigError(f"{where}: id must be 'cluster-' and 11 to 16 letters or digits 2-7")
        password = item.get("kmsuser_password")
        if not isinstance(password, str) or not 7 <= len(password) <= 32:
            raise ClusterConfigError(f"{where} ({cid}): kmsuser_password must be 7 to 32 characters")
        hsms = item.get("hsms", 2)
        if isinstance(hsms, bool) or not isinstance(hsms, int) or not 0 <= hsms <= 32:
            raise ClusterConfigError(f"{where} ({cid}): hsms must be a number from 0 to 32")
        cluster_regions = item.get("regions")
        if cluster_regions is not None:
            if not isinstance(cluster_regions, list) or not all(isinstance(r, str) for r in cluster_regions):
                raise ClusterConfigError(f"{where} ({cid}): regions must be a list of region names")
            missing = [r for r in cluster_regions if r not in known_regions]
            if missing:
                raise ClusterConfigError(f"{where} ({cid}): region {missing[0]!r} is not configured")
        anchor, module, backup_of = (item.get(k) for k in ("trust_anchor_certificate", "module", "backup_of"))
        for name, value in (("trust_anchor_certificate", anchor), ("module", module), ("backup_of", backup_of)):
            if value is not None and (not isinstance(value, str) or not value):
                raise ClusterConfigError(f"{where} ({cid}): {name} must be a non-empty string")
        if any(c.cluster_id == cid for c in out):
            raise ClusterConfigError(f"HSM cluster {cid} is configured twice")
        out.append(HsmClusterSpec(cid, password, Path(anchor) if anchor else None, Path(module) if module else None,
                                  hsms, tuple(cluster_regions) if cluster_regions is not None else None, backup_of))
    ids = {c.cluster_id for c in out}
    for spec in out:
        if spec.backup_of is not None and spec.backup_of not in ids:
            raise ClusterConfigError(f"HSM cluster {spec.cluster_id}: backup_of names no configured cluster")
    for spec in out:
        lineage(spec.cluster_id, {c.cluster_id: c for c in out})  # no cycles
    return tuple(out)


def lineage(cluster_id: str, specs: Mapping[str, HsmClusterSpec]) -> str:
    """The cluster every backup in the chain came from (clusters of one lineage share a certificate and keys)."""
    seen = [cluster_id]
    current = specs[cluster_id]
    while current.backup_of is not None:
        if current.backup_of in seen:
            raise ClusterConfigError(f"HSM cluster {cluster_id}: backup_of goes round in a circle")
        seen.append(current.backup_of)
        current = specs[current.backup_of]
    return current.cluster_id


def default_clusters() -> tuple[HsmClusterSpec, ...]:
    """With no [[hsm_clusters]]: one cluster wherever SoftHSM2 is installed, none otherwise."""
    if find_library() is None:
        return ()
    return (HsmClusterSpec(DEFAULT_CLUSTER_ID, DEFAULT_PASSWORD),)


def trust_anchor_path(spec: HsmClusterSpec, specs: Mapping[str, HsmClusterSpec], data_dir: Path) -> Path:
    root = specs[lineage(spec.cluster_id, specs)]
    if root.trust_anchor_certificate is not None:
        return root.trust_anchor_certificate
    return data_dir / "hsm" / root.cluster_id / "customerCA.crt"


def ensure_trust_anchor(path: Path, cluster_id: str) -> None:
    """A self-signed CA certificate standing for the cluster's customerCA.crt, made once."""
    if path.exists():
        return
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{cluster_id} customer CA"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Trent")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256()))
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tmp.replace(path)


def certificate_fingerprint(pem: str) -> str | None:
    """SHA-256 of the certificate's DER form; None if ``pem`` is not a PEM certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        cert = x509.load_pem_x509_certificate(pem.encode("utf-8", errors="replace"))
    except ValueError:
        return None
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


class HsmCluster:
    """One configured cluster as a region sees it: its token is opened when first needed, and once."""

    def __init__(self, spec: HsmClusterSpec, lineage_id: str, anchor: Path,
                 open_library: Callable[[], Library] | None) -> None:
        self.spec = spec
        self.cluster_id = spec.cluster_id
        self.lineage_id = lineage_id  # the token's label
        self.trust_anchor_path = anchor
        self._open_library = open_library
        self._library: Library | None = None
        self._lock = threading.Lock()

    def trust_anchor_pem(self) -> str:
        return self.trust_anchor_path.read_text()

    def library(self) -> Library:
        """The token's library, set up on first use (blocking: called off the event loop, or at start)."""
        with self._lock:
            if self._library is None:
                if self._open_library is None:
                    raise FileNotFoundError("no PKCS#11 library for this cluster")
                self._library = self._open_library()
            return self._library


class ClusterDirectory:
    """The clusters one region can use, by id."""

    def __init__(self, clusters: Mapping[str, HsmCluster]) -> None:
        self.clusters = dict(clusters)

    def get(self, cluster_id: str) -> HsmCluster | None:
        return self.clusters.get(cluster_id)

    def related(self, a: str, b: str) -> bool:
        ca, cb = self.clusters.get(a), self.clusters.get(b)
        return ca is not None and cb is not None and ca.lineage_id == cb.lineage_id


def region_clusters(specs: tuple[HsmClusterSpec, ...], region: str, region_dir: Path,
                    data_dir: Path) -> ClusterDirectory:
    """Set up (first start) or open the tokens of every cluster serving ``region``: one SoftHSM2 directory per
    region, one token per lineage, the kmsuser password the token's user PIN."""
    by_id = {s.cluster_id: s for s in specs}
    clusters: dict[str, HsmCluster] = {}
    softhsm = find_library()
    hsm_root = region_dir / "hsm"
    tokens: SoftHsmDirectory | None = None
    pins: dict[str, str] = {}
    for spec in specs:
        if not spec.serves(region):
            continue
        root_id = lineage(spec.cluster_id, by_id)
        anchor = trust_anchor_path(spec, by_id, data_dir)
        if by_id[root_id].trust_anchor_certificate is None:
            ensure_trust_anchor(anchor, root_id)
        elif not anchor.is_file() or certificate_fingerprint(anchor.read_text(errors="replace")) is None:
            raise ClusterConfigError(f"HSM cluster {root_id}: trust_anchor_certificate {anchor} is not a readable PEM "
                                     "certificate")
        if spec.module is not None:
            # Another PKCS#11 module: its token (labelled with the lineage's cluster id) is the operator's to make.
            clusters[spec.cluster_id] = HsmCluster(spec, root_id, anchor, _module_loader(str(spec.module)))
            continue
        if softhsm is None:
            clusters[spec.cluster_id] = HsmCluster(spec, root_id, anchor, None)
            continue
        if tokens is None:
            tokens = SoftHsmDirectory(hsm_root, softhsm)
            tokens.prepare()
        pins.setdefault(root_id, spec.kmsuser_password)
        clusters[spec.cluster_id] = HsmCluster(spec, root_id, anchor, tokens.library)
    if tokens is not None and pins:
        so_pin = stored_pin(hsm_root / "so.pin")
        for label, pin in pins.items():
            if not tokens.has_token(label):
                tokens.create_token(label, so_pin, pin)
        library = tokens.library()
        for label, pin in pins.items():
            with library.lock:
                set_user_pin(library.lib, label, so_pin, pin)  # the configured password is the kmsuser's
    return ClusterDirectory(clusters)


def _module_loader(module: str) -> Callable[[], Library]:
    def load() -> Library:
        return Library(pkcs11.lib(module))
    return load
