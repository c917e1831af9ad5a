"""Settings loading: the input forms the README documents, read from the environment and a TOML file.

``load_settings(config_file, environ)`` is what ``ostiary serve``/``migrate`` call first; tests/cli checks the
same rules through the command line. These pin the forms an operator types (durations, lists, nesting).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ostiary.config import ConfigError, Settings, load_settings


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ostiary.toml"
    path.write_text(text)
    return path


def test_environment_forms_durations_lists_and_nesting() -> None:
    s = load_settings(None, {"OSTIARY_ACCESS_TOKEN_TTL": "15m", "OSTIARY_REFRESH_TOKEN__TTL": "1d",
                             "OSTIARY_KEYS__ALGORITHMS": "ES256, RS256 EdDSA", "OSTIARY_Keys__Rotate_Every": "2h",
                             "OSTIARY_SERVER__TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.1",
                             "OSTIARY_RATE_LIMITS__ENABLED": "false", "OSTIARY_SERVER__PORT": "8081"})
    assert s.access_token_ttl == 900 and s.refresh_token.ttl == 86400 and s.keys.rotate_every == 7200
    assert s.keys.algorithms == ["ES256", "RS256", "EdDSA"]
    assert s.server.trusted_proxies == ("10.0.0.0/8", "192.168.1.1")
    assert s.rate_limits.enabled is False and s.server.port == 8081


def test_the_environment_overrides_the_file_key_by_key(tmp_path: Path) -> None:
    toml = _toml(tmp_path, 'issuer = "https://file.example"\naccess_token_ttl = "10m"\n'
                           '[keys]\nalgorithm = "RS256"\nalgorithms = ["RS256"]\n'
                           '[server]\ntrusted_proxies = ["10.0.0.1"]\n')
    s = load_settings(toml, {"OSTIARY_ISSUER": "https://env.example/", "OSTIARY_KEYS__ALGORITHMS": "RS256,ES256"})
    assert s.issuer == "https://env.example" and s.access_token_ttl == 600
    assert s.keys.algorithm == "RS256" and s.keys.algorithms == ["RS256", "ES256"]
    assert s.server.trusted_proxies == ("10.0.0.1",)
    assert load_settings(None, {"OSTIARY_CONFIG": str(toml)}).issuer == "https://file.example"


def test_other_programs_variables_are_not_settings() -> None:
    s = load_settings(None, {"OSTIARY_TOOLKIT_TOKEN_FILE": "/x", "OSTIARY_TOOLKIT_PASSPHRASE": "p",
                             "ostiary_issuer": "https://lower.example", "OTHER_ISSUER": "https://other.example"})
    assert s == Settings()


@pytest.mark.parametrize(("env", "needles"), [
    ({"OSTIARY_UNKNOWN": "1"}, ["unknown (env OSTIARY_UNKNOWN): unknown setting"]),
    ({"OSTIARY_KEYS__ROTATE_EVRY": "30d"}, ["keys.rotate_evry (env OSTIARY_KEYS__ROTATE_EVRY): unknown setting"]),
    ({"OSTIARY_KEYS__ALGORITHMS": '["ES256"]'}, ["keys.algorithms.0 (env OSTIARY_KEYS__ALGORITHMS__0)"]),
    ({"OSTIARY_KEYS__ROTATE_EVERY": "2 weeks"}, ["keys.rotate_every", "a duration is seconds or a number"]),
    ({"OSTIARY_SERVER__TRUSTED_PROXIES": "proxy.local"}, ["'proxy.local' is not an IP address or CIDR"]),
    ({"OSTIARY_KEYS": '{"algorithm": "RS256"}'}, ["keys (env OSTIARY_KEYS): Input should be a valid dictionary"]),
    ({"OSTIARY_ISSUER__PATH": "/x"}, ["issuer (env OSTIARY_ISSUER): Input should be a valid string"]),
    ({"OSTIARY_TOKEN_FILE": "/x"}, ["OSTIARY_TOKEN_FILE is not a server setting", "OSTIARY_TOOLKIT_TOKEN_FILE"]),
    ({"OSTIARY_TOKEN_PASSPHRASE": "p"}, ["OSTIARY_TOOLKIT_PASSPHRASE"]),
    ({"OSTIARY_CONFIG": "/nonexistent/ostiary.toml"},
     ["cannot read config file /nonexistent/ostiary.toml: No such file or directory"]),
])
def test_refusals_name_the_setting_and_its_variable(env: dict[str, str], needles: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, env)
    for needle in needles:
        assert needle in str(info.value), str(info.value)


def test_file_refusals(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"ostiary.toml: not valid TOML"):
        load_settings(_toml(tmp_path, "issuer = 'x"), {})
    with pytest.raises(ConfigError) as info:  # keys are case-sensitive in the file
        load_settings(_toml(tmp_path, 'Issuer = "https://a.example"\n[nope]\nx = 1\n'), {})
    assert "Issuer (env OSTIARY_ISSUER): unknown setting" in str(info.value)
    assert "nope (env OSTIARY_NOPE): unknown setting" in str(info.value)
    with pytest.raises(ConfigError, match="Is a directory"):
        load_settings(tmp_path, {})


def test_settings_built_directly_read_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OSTIARY_ACCESS_TOKEN_TTL", "120")
    assert Settings().access_token_ttl == 900
    assert load_settings(None, None).access_token_ttl == 120
