"""TLS contexts from the configured files: a server's (client-facing TLS on the gateway and region ports), and a
client's that trusts the cluster CA (a node pulling from an https peer, the gateway calling its nodes)."""

from __future__ import annotations

import ssl

from trent.node.config import ClusterConfig


def server_context(config: ClusterConfig) -> ssl.SSLContext | None:
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(config.tls_cert, config.tls_key)
    return context


def client_context(config: ClusterConfig) -> ssl.SSLContext | None:
    """None: the system's trust store (and plain http needs none)."""
    if config.tls_ca is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(config.tls_ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
