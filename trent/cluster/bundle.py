"""`trent init`: a cluster's shared secrets (the MRK transport key, the admin token, the replication key, a cluster
CA) and one bundle per node — the secrets, the CA certificate, and a certificate of the node's own for the addresses
it serves — for running regions on separate hosts. Every file 0600, every directory 0700.

A node started with a bundle (``apply_bundle``) checks it — private, complete, its certificate issued by its CA —
and ties its data directory to the bundle's cluster: the first start records the cluster's id and installs its
secrets there; a later start with the bundle of another cluster is refused."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import secrets
import stat
import uuid
from dataclasses import replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from trent.cluster.bundle_roots import bundle_roots, region_roots, write_bundle_roots
from trent.cluster.files import make_private_dir, write_private
from trent.node.config import ClusterConfig, ConfigError

CLUSTER_DIR = "cluster"  # the cluster's own secrets (the CA key): kept by the operator, never on a node
SHARED = ("transport.key", "admin.token", "replication.token")
BUNDLE_FILES = ("bundle.json", "ca.pem", "node.pem", "node.key", *SHARED)
ID_FILE = "cluster.id"  # in a node's data directory: the cluster it belongs to
CERT_DAYS = 825


class InitError(ValueError):
    pass


def _pem_key(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _pem_cert(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _new_ca(cluster_id: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Trent cluster {cluster_id} CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def _node_cert(ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, name: str,
               addresses: list[str]) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for address in addresses:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(address)))
        except ValueError:
            sans.append(x509.DNSName(address))
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def _parse_node(spec: str) -> tuple[str, list[str]]:
    name, sep, addresses = spec.partition("=")
    hosts = [a.strip() for a in addresses.split(",") if a.strip()]
    if not sep or not name or not hosts:
        raise InitError(f"--node takes NAME=ADDRESS[,ADDRESS...], not {spec!r}")
    if not name.replace("-", "").replace("_", "").isalnum():
        raise InitError(f"{name!r} is not a node name (letters, digits, - and _)")
    return name, hosts


def init_cluster(out: Path, nodes: list[str], regions: list[str] | None = None, force: bool = False) -> list[Path]:
    """Make (or, when ``out`` holds a cluster already, extend) the cluster's secrets and one bundle per node; the
    paths of the bundles made."""
    specs = [_parse_node(spec) for spec in nodes]
    make_private_dir(out)
    os.chmod(out, 0o700)
    own = out / CLUSTER_DIR
    if (own / "cluster.json").exists():
        doc = json.loads((own / "cluster.json").read_text())
        cluster_id = str(doc["cluster_id"])
        regions = regions or list(doc.get("regions", []))
        ca_key = serialization.load_pem_private_key((own / "ca.key").read_bytes(), None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise InitError(f"{own / 'ca.key'} is not this cluster's CA key")
        ca = x509.load_pem_x509_certificate((own / "ca.pem").read_bytes())
        shared = {name: (own / name).read_text() for name in SHARED}
    else:
        cluster_id = uuid.uuid4().hex
        ca_key, ca = _new_ca(cluster_id)
        # Tokens in hex: never beginning with "-", which a command line would take for an option.
        shared = {"transport.key": secrets.token_bytes(32).hex(), "admin.token": secrets.token_hex(24),
                  "replication.token": secrets.token_hex(32)}
        make_private_dir(own)
        os.chmod(own, 0o700)
        write_private(own / "ca.key", _pem_key(ca_key))
        write_private(own / "ca.pem", _pem_cert(ca))
        for name, value in shared.items():
            write_private(own / name, value)
        write_private(own / "cluster.json", json.dumps({"cluster_id": cluster_id, "regions": regions or []}))
    roots = region_roots(own, regions or [])
    made: list[Path] = []
    for name, hosts in specs:
        bundle = out / name
        if bundle.exists() and not force:
            raise InitError(f"{bundle} exists already (--force replaces it)")
        make_private_dir(bundle)
        os.chmod(bundle, 0o700)
        key, cert = _node_cert(ca_key, ca, name, hosts)
        write_private(bundle / "node.key", _pem_key(key))
        write_private(bundle / "node.pem", _pem_cert(cert))
        write_private(bundle / "ca.pem", _pem_cert(ca))
        for secret, value in shared.items():
            write_private(bundle / secret, value)
        write_bundle_roots(bundle, name, roots)
        write_private(bundle / "bundle.json", json.dumps({"cluster_id": cluster_id, "node": name,
                                                          "addresses": hosts, "regions": regions or []}))
        made.append(bundle)
    return made


def _read_private(path: Path) -> str:
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"bundle file {path} is missing ({exc.strerror})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"bundle file {path} is readable by others (chmod 600 it)")
    return path.read_text().strip()


def apply_bundle(config: ClusterConfig) -> ClusterConfig:
    """``config`` with the bundle's secrets and TLS files, its data directory tied to the bundle's cluster."""
    assert config.bundle is not None
    bundle = config.bundle
    doc = json.loads(_read_private(bundle / "bundle.json"))
    cluster_id = str(doc.get("cluster_id", ""))
    values = {name: _read_private(bundle / name) for name in SHARED}
    ca = x509.load_pem_x509_certificate(_read_private(bundle / "ca.pem").encode())
    cert = x509.load_pem_x509_certificate(_read_private(bundle / "node.pem").encode())
    _read_private(bundle / "node.key")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, Exception) as exc:
        raise ConfigError(f"{bundle / 'node.pem'} is not issued by the bundle's CA ({type(exc).__name__})") from None
    _bind_data_dir(config.data_dir, cluster_id, values)
    roots = {**bundle_roots(bundle, config.data_dir, _read_private), **config.root_keys}
    return replace(config, admin_token=values["admin.token"], root_keys=roots,
                   tls_ca=config.tls_ca or bundle / "ca.pem", tls_cert=config.tls_cert or bundle / "node.pem",
                   tls_key=config.tls_key or bundle / "node.key")


def _bind_data_dir(data_dir: Path, cluster_id: str, values: dict[str, str]) -> None:
    make_private_dir(data_dir)
    recorded = data_dir / ID_FILE
    if recorded.exists():
        known = recorded.read_text().strip()
        if known != cluster_id:
            raise ConfigError(f"{data_dir} belongs to cluster {known}; this bundle is of cluster {cluster_id} "
                              "(a node never joins another cluster's data)")
    else:
        existing = data_dir / "cluster.key"
        if existing.exists() and existing.read_bytes().hex() != values["transport.key"]:
            raise ConfigError(f"{data_dir} holds another cluster's transport key; refusing this bundle")
    # The files compose() and the replication links read, installed from the bundle.
    key_file = data_dir / "cluster.key"
    if not key_file.exists():
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(bytes.fromhex(values["transport.key"]))
            f.flush()
            os.fsync(f.fileno())
    write_private(data_dir / "replication.token", values["replication.token"])
    write_private(data_dir / "admin.token", values["admin.token"])
    write_private(recorded, cluster_id)
