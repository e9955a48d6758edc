"""`trent xks-proxy --config FILE [--data-dir DIR]`: an XKS proxy (node/xks/proxy) in the foreground, its keys in a
PKCS#11 token (SoftHSM2 under the data directory unless [pkcs11] names another), generated at start when missing.
Faults written by `trent fault xks ... --proxy-dir DIR` are watched: down closes the listening socket until up."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import ssl
import sys
from pathlib import Path

from aiohttp import web

from trent.cluster.fair_loop import run_server
from trent.cluster.lifecycle import stop_signal
from trent.node.hsm.pool import HsmError, SessionPool
from trent.node.hsm.softhsm import TokenSetupError
from trent.node.xks import proxy_keys
from trent.node.xks.proxy import XksProxy
from trent.node.xks.proxy_config import ProxyConfig, ProxyConfigError, load_proxy_config
from trent.node.xks.proxy_faults import FaultFile, ListeningFile

log = logging.getLogger("trent.xks-proxy")
DEFAULT_DATA_DIR = ".trent-xks"
FAULT_POLL = 0.2


def tls_context(config: ProxyConfig) -> ssl.SSLContext | None:
    """TLS 1.2 or later from tls_cert/tls_key; with tls_client_ca, a client certificate chained to it is required."""
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(config.tls_cert), str(config.tls_key))
    if config.tls_client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=str(config.tls_client_ca))
    return context


def open_keys(config: ProxyConfig, data_dir: Path) -> tuple[SessionPool, str, list[str]]:
    """The token's session pool and label, with every configured key (and the health-check key) present."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    pool, label = proxy_keys.open_token(data_dir, config.pkcs11, config.pool_size)
    wanted = [k.key_id for k in config.keys] + [proxy_keys.HEALTH_KEY]
    made = pool.call(lambda s: proxy_keys.ensure_keys(s, wanted), timeout=60)
    return pool, label, made


async def serve(config: ProxyConfig, data_dir: Path, ready: asyncio.Event | None = None) -> int:
    stop = stop_signal()
    loop = asyncio.get_running_loop()
    try:
        pool, label, made = await loop.run_in_executor(None, open_keys, config, data_dir)
    except (TokenSetupError, HsmError, OSError) as exc:
        print(f"trent xks-proxy: cannot open the token: {exc}", file=sys.stderr)
        return 1
    for key_id in made:
        log.info("generated key %s in token %s (AES-256, non-extractable)", key_id, label)
    faults = FaultFile(data_dir)
    proxy = XksProxy(config, pool, label, faults=faults)
    runner = web.AppRunner(proxy.app(), access_log=None, handle_signals=False)
    await runner.setup()
    context = tls_context(config)
    site: web.TCPSite | None = web.TCPSite(runner, config.host, config.port, ssl_context=context,
                                            reuse_address=True)
    assert site is not None
    await site.start()
    port = config.port or _bound_port(runner)
    host = config.host if ":" not in config.host else f"[{config.host}]"
    print(f"XKS proxy is up: {config.scheme}://{host}:{port}{config.base_path}\n"
          f"  XksProxyUriEndpoint  {config.scheme}://{host}:{port}\n"
          f"  XksProxyUriPath      {config.base_path}\n"
          f"  keys                 {', '.join(k.key_id for k in config.keys) or '(none)'} in token {label}\n"
          f"  credentials          {', '.join(config.credentials)}\n"
          f"  data                 {data_dir}", flush=True)
    listening = ListeningFile(data_dir)
    listening.record(True)
    if ready is not None:
        ready.set()
    try:
        while not stop.is_set():
            down = faults.refresh().down
            if down and site is not None:
                await site.stop()
                site = None
                listening.record(False)
                log.warning("fault: down (listening socket closed)")
            elif not down and site is None:
                site = web.TCPSite(runner, config.host, port, ssl_context=context, reuse_address=True)
                await site.start()
                listening.record(True)
                log.warning("fault cleared: listening again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), FAULT_POLL)
    finally:
        listening.clear()
        await runner.cleanup()
        await loop.run_in_executor(None, pool.close)
    return 0


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple):
            return int(address[1])
    return 0


def _with_local_tls(config: ProxyConfig, data_dir: Path) -> ProxyConfig:
    """HTTPS from a local CA made once under the data directory (KMS trusts it through xks_trusted_ca)."""
    from trent.node.xks.devcerts import DevCerts, make_dev_certs

    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    tls = data_dir / "tls"
    names = DevCerts(tls / "ca.crt", tls / "server.crt", tls / "server.key", tls / "client.crt", tls / "client.key")
    certs = names if names.server_key.exists() else make_dev_certs(tls)
    print(f"local TLS: certificate for localhost and 127.0.0.1 from the CA {certs.ca.resolve()}\n"
          f"  in the cluster's config:  xks_trusted_ca = \"{certs.ca.resolve()}\"", flush=True)
    return dataclasses.replace(config, tls_cert=certs.server_cert, tls_key=certs.server_key)


def run(args: argparse.Namespace) -> int:
    try:
        config = load_proxy_config(Path(args.config))
    except ProxyConfigError as exc:
        print(f"trent xks-proxy: {exc}", file=sys.stderr)
        return 2
    if args.port is not None:
        config = dataclasses.replace(config, port=args.port)
    if args.local_tls and config.tls_cert is None:
        config = _with_local_tls(config, Path(args.data_dir))
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return run_server(serve(config, Path(args.data_dir)))
