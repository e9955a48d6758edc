"""Configuration: defaults, TOML file, flag overrides on top, principals, and clear errors for bad values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from trent.node.config import DEFAULT_REGIONS, ClusterConfig, ConfigError, EdgeLimits, load_config

ROOT_HEX = "ab" * 32


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "trent.toml"
    path.write_text(text)
    return path


def test_defaults() -> None:
    config = load_config()
    assert config == ClusterConfig()
    assert (config.host, config.port, config.regions, config.account) == (
        "127.0.0.1", 4599, DEFAULT_REGIONS, "111122223333")
    assert config.verify_signatures
    assert [config.port_of(r) for r in config.regions] == [4600, 4601, 4602]
    (principal,) = config.effective_principals()
    assert (principal.access_key, principal.secret_key, principal.arn, principal.account) == (
        "test", "test", "arn:aws:iam::111122223333:root", "111122223333")
    assert principal.session_token is None


def test_edge_limits(tmp_path: Path) -> None:
    assert load_config().edge == EdgeLimits()
    assert EdgeLimits().header_timeout < EdgeLimits().body_timeout  # a head is small; a body may be a megabyte
    config = load_config(write(tmp_path, "header_timeout = 0.5\nbody_timeout = 2\nidle_timeout = 7.5\n"
                                         "max_connections = 40\n"))
    assert config.edge == EdgeLimits(header_timeout=0.5, body_timeout=2.0, idle_timeout=7.5, max_connections=40)
    assert load_config(write(tmp_path, "idle_timeout = 9")).edge == EdgeLimits(idle_timeout=9.0)


def test_file_values(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, f"""
data_dir = "/var/lib/trent"
host = "0.0.0.0"
port = 5000
regions = ["eu-central-1", "us-west-2"]
account = "444455556666"
auth = "off"
max_skew_seconds = 900
scheduler_interval = 0.25
outbox_trim_interval = 0.5
admin_token = "s3cret-admin"

[region_ports]
us-west-2 = 6000

[root_keys]
eu-central-1 = "{ROOT_HEX}"
"""))
    assert config.data_dir == Path("/var/lib/trent")
    assert (config.host, config.port, config.regions, config.account) == (
        "0.0.0.0", 5000, ("eu-central-1", "us-west-2"), "444455556666")
    assert not config.verify_signatures
    assert (config.max_skew_seconds, config.scheduler_interval, config.admin_token) == (900.0, 0.25, "s3cret-admin")
    assert config.outbox_trim_interval == 0.5
    assert (config.port_of("eu-central-1"), config.port_of("us-west-2")) == (5001, 6000)
    assert config.root_keys == {"eu-central-1": ROOT_HEX}
    assert config.effective_principals()[0].arn == "arn:aws:iam::444455556666:root"


def test_flags_override_the_file_and_none_flags_do_not(tmp_path: Path) -> None:
    path = write(tmp_path, 'port = 5000\nregions = "us-east-1, eu-west-1"\nauth = "off"\nhost = "10.0.0.1"\n')
    config = load_config(path, {"port": 7000, "regions": "ap-south-1,eu-north-1", "auth": "verify", "host": None,
                                "data_dir": None})
    assert (config.port, config.regions, config.verify_signatures, config.host) == (
        7000, ("ap-south-1", "eu-north-1"), True, "10.0.0.1")
    assert config.data_dir == ClusterConfig().data_dir


def test_principals(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, """
account = "444455556666"

[[principals]]
access_key = "AKIAADMIN"
secret_key = "admin-secret"
arn = "arn:aws:iam::777788889999:user/admin"

[[principals]]
access_key = "ASIATEMP"
secret_key = "temp-secret"
arn = "arn:aws:sts::444455556666:assumed-role/dev/session"
session_token = "the-token"

[[principals]]
access_key = "AKIADEFAULT"
secret_key = "default-arn"
"""))
    admin, temp, default = config.effective_principals()
    assert (admin.access_key, admin.secret_key, admin.arn, admin.account, admin.session_token) == (
        "AKIAADMIN", "admin-secret", "arn:aws:iam::777788889999:user/admin", "777788889999", None)
    assert (temp.account, temp.session_token) == ("444455556666", "the-token")
    assert (default.arn, default.account) == ("arn:aws:iam::444455556666:root", "444455556666")
    assert "secret" not in repr(config.principals)  # a config printed in a log shows no secrets


@pytest.mark.parametrize("text, message", [
    ('account = "12345"', "account must be 12 digits"),
    ('account = "11112222333x"', "account must be 12 digits"),
    ('auth = "sometimes"', "auth must be 'verify' or 'off'"),
    ("auth = true", "auth must be 'verify' or 'off'"),
    ('port = "many"', "port has the wrong type: 'many'"),
    ("port = 70000", "port must be between 1 and 65535"),
    ("port = true", "port has the wrong type: True"),
    ("port = 1.5", "port has the wrong type: 1.5"),
    ('host = ["a"]', "host has the wrong type: ['a']"),
    ("max_skew_seconds = -1", "max_skew_seconds must be a non-negative number"),
    ("max_skew_seconds = nan", "max_skew_seconds must be a non-negative number"),
    ("scheduler_interval = 0", "scheduler_interval must be a positive number"),
    ("outbox_trim_interval = 0", "outbox_trim_interval must be a positive number"),
    ("outbox_trim_interval = inf", "outbox_trim_interval must be a positive number"),
    ("regions = []", "at least one region is required"),
    ('regions = " , "', "at least one region is required"),
    ('regions = ["us-east-1", "us-east-1"]', "a region is listed twice"),
    ('regions = ["../../etc"]', "'../../etc' is not a region name (like us-east-1)"),
    ('regions = ["US-EAST-1"]', "'US-EAST-1' is not a region name (like us-east-1)"),
    ("regions = [1]", "regions must be a list of names or a comma-separated string"),
    ('region_ports = 5', "region_ports must be a table of region = port"),
    ('[region_ports]\nus-east-1 = "x"', "region_ports.us-east-1 has the wrong type: 'x'"),
    ('[root_keys]\nus-east-1 = "abcd"', "root_keys.us-east-1 must be 64 hexadecimal digits (32 bytes)"),
    ('principals = "test:test"', "principals must be a list of tables ([[principals]] in TOML)"),
    ('[[principals]]\naccess_key = "A"', "principal #1 needs access_key and secret_key (non-empty strings)"),
    ('[[principals]]\naccess_key = "A"\nsecret_key = 5', "principal #1 needs access_key and secret_key"),
    ('[[principals]]\naccess_key = "A"\nsecret_key = "s"\narn = "root"', "principal A: arn 'root' is not an ARN"),
    ('[[principals]]\naccess_key = "A"\nsecret_key = "s"\nsession_token = 7',
     "principal A: session_token must be a non-empty string"),
    ('[[principals]]\naccess_key = "A"\nsecret_key = "s"\n[[principals]]\naccess_key = "A"\nsecret_key = "t"',
     "principal A is configured twice"),
    ("port = [", "cannot read config"),
    ("header_timeout = 0", "header_timeout must be a positive number of seconds"),
    ("body_timeout = -1", "body_timeout must be a positive number of seconds"),
    ("idle_timeout = nan", "idle_timeout must be a positive number of seconds"),
    ('header_timeout = "soon"', "header_timeout has the wrong type: 'soon'"),
    ("max_connections = 0", "max_connections must be at least 1"),
    ("max_connections = 1.5", "max_connections has the wrong type: 1.5"),
])
def test_bad_values_are_config_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text))
    assert str(exc.value).startswith(message)


def test_principal_errors_never_echo_the_secret(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, '[[principals]]\nsecret_key = "very-secret-value"\n'))
    assert "very-secret-value" not in str(exc.value)


def test_bad_override_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="auth must be"):
        load_config(None, {"auth": "maybe"})
    with pytest.raises(ConfigError, match="not a region name"):
        load_config(None, {"regions": "us-east-1,eu west 1"})


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "absent.toml")


def test_root_key_from_environment_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = load_config(write(tmp_path, f'[root_keys]\nus-east-1 = "{ROOT_HEX}"\n'))
    assert config.root_key_hex("us-east-1") == ROOT_HEX
    assert config.root_key_hex("eu-west-1") is None
    monkeypatch.setenv("TRENT_ROOT_KEY_US_EAST_1", "cd" * 32)
    monkeypatch.setenv("TRENT_ROOT_KEY_EU_WEST_1", "ef" * 32)
    assert config.root_key_hex("us-east-1") == "cd" * 32
    assert config.root_key_hex("eu-west-1") == "ef" * 32


def test_repr_shows_no_secrets(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, f"""
admin_token = "admin-token-value"
[root_keys]
us-east-1 = "{ROOT_HEX}"
[[principals]]
access_key = "AKIAX"
secret_key = "principal-secret-value"
session_token = "session-token-value"
"""))
    text = repr(config)
    assert "AKIAX" in text
    for secret in (ROOT_HEX, "admin-token-value", "principal-secret-value", "session-token-value"):
        assert secret not in text


def test_config_is_frozen() -> None:
    config: Any = load_config()
    with pytest.raises(AttributeError):
        config.port = 1


def test_identity_policies_are_kept_under_each_principals_arn(tmp_path: Path) -> None:
    deny_all = '{"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "kms:*", "Resource": "*"}]}'
    config = load_config(write(tmp_path, f"""
account = "444455556666"

[[principals]]
access_key = "AKIAAPP"
secret_key = "app-secret"
arn = "arn:aws:iam::444455556666:role/app"
policy = '{deny_all}'

[[principals]]
access_key = "AKIAROOT"
secret_key = "root-secret"
policy = '{deny_all}'
"""))
    # An entry without an arn is its account's root, for its policy too.
    assert set(config.identity_policies) == {"arn:aws:iam::444455556666:role/app", "arn:aws:iam::444455556666:root"}


@pytest.mark.parametrize("text, message", [
    ("prot = 8599", "unknown key 'prot' in {path} (did you mean 'port'?)"),
    ('data-dir = "/var/lib/trent"', "unknown key 'data-dir' in {path} (did you mean 'data_dir'?)"),
    ("Workers = 2", "unknown key 'Workers' in {path} (did you mean 'workers'?)"),
    ("verify_signatures = false", "unknown key 'verify_signatures' in {path} (did you mean 'auth'?)"),
    ("colour = 'blue'", "unknown key 'colour' in {path}"),
    ('[[principals]]\naccess_key = "A"\nsecret = "s"',
     "unknown key 'secret' in [[principals]] #1 of {path} (did you mean 'secret_key'?)"),
    ('[[principals]]\naccess_key = "A"\nsecret_key = "s"\n[[principals]]\naccess_key = "B"\nsecret_key = "t"\n'
     'session-token = "x"',
     "unknown key 'session-token' in [[principals]] #2 of {path} (did you mean 'session_token'?)"),
    ("[region_ports]\nus-est-1 = 6000", "unknown region 'us-est-1' in region_ports (did you mean 'us-east-1'?)"),
    (f'[root_keys]\neu-west-2 = "{ROOT_HEX}"', "unknown region 'eu-west-2' in root_keys (did you mean 'eu-west-1'?)"),
])
def test_unknown_keys_are_named_with_a_suggestion(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert str(exc.value) == message.format(path=path)


def test_every_documented_key_is_accepted(tmp_path: Path) -> None:
    # Each key a file may hold (the flags' keys among them) loads without an unknown-key error.
    config = load_config(write(tmp_path, f"""
data_dir = "d"
host = "127.0.0.1"
port = 5000
regions = ["us-east-1"]
account = "444455556666"
auth = "verify"
access_control = "off"
max_skew_seconds = 60
scheduler_interval = 2
replica_creating_seconds = 1
admin_token = "t"
workers = 2
audit_rotate_mib = 8
audit_retention_days = 7
audit_retention_mib = 100
header_timeout = 5
body_timeout = 6
idle_timeout = 7
max_connections = 50
[region_ports]
us-east-1 = 6000
[root_keys]
us-east-1 = "{ROOT_HEX}"
[[principals]]
access_key = "A"
secret_key = "s"
arn = "arn:aws:iam::444455556666:user/a"
session_token = "tok"
account = "444455556666"
policy = {{Version = "2012-10-17", Statement = [{{Effect = "Allow", Action = "kms:*", Resource = "*"}}]}}
"""))
    assert (config.port_of("us-east-1"), config.workers, config.enforce_access) == (6000, 2, False)
    assert (config.audit_rotate_mib, config.edge.header_timeout, config.edge.max_connections) == (8, 5.0, 50)


def test_region_tables_follow_the_regions_given_by_flag(tmp_path: Path) -> None:
    path = write(tmp_path, "[region_ports]\neu-north-1 = 6000\n")
    assert load_config(path, {"regions": "eu-north-1"}).port_of("eu-north-1") == 6000
    with pytest.raises(ConfigError, match="unknown region 'eu-north-1' in region_ports"):
        load_config(path)


def test_audit_keeping(tmp_path: Path) -> None:
    default = load_config()
    assert (default.audit_rotate_mib, default.audit_retention_days, default.audit_retention_mib) == (64, 30.0, 1024)
    config = load_config(write(tmp_path, "audit_rotate_mib = 8\naudit_retention_days = 0\naudit_retention_mib = 0\n"))
    assert (config.audit_rotate_mib, config.audit_retention_days, config.audit_retention_mib) == (8, 0.0, 0)
    for text, message in (("audit_rotate_mib = 0", "audit_rotate_mib must be at least 1"),
                          ("audit_retention_mib = -1", "audit_retention_mib must be at least 0"),
                          ("audit_retention_days = -1", "audit_retention_days must be a non-negative number"),
                          ('audit_retention_days = "forever"', "audit_retention_days has the wrong type")):
        with pytest.raises(ConfigError, match=message):
            load_config(write(tmp_path, text))
