"""The web console in a real headless Chromium (Debian's, driven by playwright): it loads, shows the regions, keys
and audit trail, and its buttons really take a region down, bring it back and move the clock.

With TRENT_CONSOLE_SCREENSHOTS=<dir> the test also saves the screenshots the README shows (`make console-shots`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import RunningCluster, private_cluster

CHROMIUM = "/usr/bin/chromium"
# Headless, and nothing reaching out to the network: no updates, no sync, no QUIC probing.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 20_000

if shutil.which(CHROMIUM) is None:
    pytest.skip(f"the console tests need Debian's chromium at {CHROMIUM} (apt-get install chromium; "
                "deploy/debian-packages.txt lists it)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the console tests drive Chromium with playwright")


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    yield from private_cluster(tmp_path_factory, "console", "--replica-delay", "0.3")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Never a downloaded browser: the system's Chromium, at its fixed path.
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


def token_of(cluster: RunningCluster) -> str:
    return (cluster.data_dir / "admin.token").read_text().strip()


def shot(page: Any, name: str) -> None:
    folder = os.environ.get("TRENT_CONSOLE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name), full_page=True)


def health(page: Any, region: str) -> Any:
    return page.locator(f'.region[data-region="{region}"] [data-health]')


def test_the_console_shows_the_cluster_and_its_buttons_drive_faults_and_the_clock(console: RunningCluster,
                                                                                   browser: Any) -> None:
    kms = console.client("us-east-1")
    mrk = kms.create_key(MultiRegion=True, Description="orders")["KeyMetadata"]["KeyId"]
    kms.replicate_key(KeyId=mrk, ReplicaRegion="eu-west-1")
    kms.create_alias(AliasName="alias/orders", TargetKeyId=mrk)
    plain = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.disable_key(KeyId=plain)
    kms.encrypt(KeyId=mrk, Plaintext=b"hello")

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    url = console.trent("console").stdout.strip()  # `trent console`: the address, the token in its fragment
    assert url == f"{console.gateway_url}/_trent/console#token={token_of(console)}"
    page.goto(url)
    sync_api.expect(health(page, "eu-west-1")).to_have_text("up")
    assert "token=" not in page.url  # the token left the address bar

    # Keys with their state in each region, and the multi-Region topology.
    row = page.locator(f'tr[data-key="{mrk}"]')
    sync_api.expect(row.locator(".topology .primary")).to_have_text("★ us-east-1")
    sync_api.expect(row.locator(".topology span:not(.primary)")).to_have_text(["eu-west-1"])
    sync_api.expect(row).to_contain_text("alias/orders")
    sync_api.expect(page.locator(f'tr[data-key="{plain}"] .state')).to_have_text("Disabled")
    # Recent audit events.
    sync_api.expect(page.locator("#events tr", has_text="ReplicateKey").first).to_be_visible()
    sync_api.expect(page.locator("#events tr", has_text="Encrypt").first).to_be_visible()
    shot(page, "console.png")

    # A fault button: the region goes down for real, and the page shows it.
    page.locator('button[data-fault="down"][data-region="eu-west-1"]').click()
    sync_api.expect(health(page, "eu-west-1")).to_have_text("down")
    assert console.admin("/_trent/status")["faults"]["down"] == ["eu-west-1"]
    with pytest.raises(Exception):  # noqa: B017 - a down region's port refuses connections
        console.client("eu-west-1", via="region").list_keys()
    sync_api.expect(page.locator('.region[data-region="us-east-1"] .unlinked')).to_have_count(1)
    # A change eu-west-1 misses while down: its lag behind us-east-1 shows, and grows.
    kms.enable_key_rotation(KeyId=mrk)
    lag = page.locator('.region[data-region="eu-west-1"] tr[data-peer="us-east-1"]')
    sync_api.expect(lag).to_contain_text("1 behind")
    sync_api.expect(lag).to_contain_text("unreachable")
    if os.environ.get("TRENT_CONSOLE_SCREENSHOTS"):
        page.wait_for_timeout(6000)  # for the picture: a lag line that has climbed for a while
    shot(page, "console-region-down.png")

    page.locator('button[data-fault="up"][data-region="eu-west-1"]').click()
    sync_api.expect(health(page, "eu-west-1")).to_have_text("up")
    assert console.admin("/_trent/status")["faults"]["down"] == []
    assert console.client("eu-west-1", via="region").describe_key(KeyId=mrk)["KeyMetadata"]["KeyState"] == "Enabled"
    sync_api.expect(lag).to_contain_text("0 behind")  # caught up
    assert console.client("eu-west-1", via="region").get_key_rotation_status(KeyId=mrk)["KeyRotationEnabled"]

    # The clock: a day later, on the cluster and on the page.
    before = console.admin("/_trent/clock")["offset"]
    page.locator('button[data-advance="1d"]').click()
    sync_api.expect(page.locator("#clock-note")).to_contain_text("days ahead")
    assert console.admin("/_trent/clock")["offset"] - before >= 86400
    assert errors == []
    page.close()


def test_a_wrong_token_gets_the_login_form_and_no_data(console: RunningCluster, browser: Any) -> None:
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{console.gateway_url}/_trent/console#token=not-the-token")
    sync_api.expect(page.locator("#login-error")).to_have_text("The cluster refused that admin token.")
    sync_api.expect(page.locator("#app")).to_be_hidden()
    page.fill("#token", token_of(console))
    page.click("#login button[type=submit]")
    sync_api.expect(health(page, "us-east-1")).to_have_text("up")
    page.close()
