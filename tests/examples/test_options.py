"""The apps' shared configuration (examples/options.py): flags over TDM_* variables over defaults, one-line errors."""

from __future__ import annotations

import argparse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from examples.options import AppSettings
from examples.packager.app import PackagerConfig, parse_config
from examples.packager.app import main as packager_main
from examples.server.__main__ import build_parser, settings_from
from examples.server.__main__ import main as server_main
from examples.server.settings import Settings
from tdm_messaging import ConfigurationError

PACKAGER_ENV = {
    "TDM_BROKER_URL": "sqlite:///x.db",
    "TDM_API_BASE": "http://127.0.0.1:8080",
    "TDM_PACKAGER_API_KEY": "k",
}
SHARED = ("broker_url", "log_level", "log_format", "queue_prefix")


def _server(argv: list[str], environ: dict[str, str]) -> Settings:
    return settings_from(build_parser().parse_args(["serve", *argv]), environ)


def test_the_shared_options_have_one_definition_in_both_apps() -> None:
    for name in SHARED:
        server, packager = Settings.model_fields[name], PackagerConfig.model_fields[name]
        assert server.validation_alias == packager.validation_alias
        assert server.json_schema_extra == packager.json_schema_extra
        assert server.metadata == packager.metadata  # the same validators
    for name in ("log_level", "log_format", "queue_prefix"):
        assert Settings.model_fields[name] is AppSettings.model_fields[name] or (
            Settings.model_fields[name].default == AppSettings.model_fields[name].default
        )


@pytest.mark.parametrize("variable", ["TDM_LOG_LEVEL", "TDM_LOG_FORMAT", "TDM_BROKER_URL"])
def test_a_bad_shared_variable_is_the_same_error_in_both_apps(variable: str) -> None:
    environ = {**PACKAGER_ENV, variable: "nonsense"}
    with pytest.raises(ConfigurationError) as packager_error:
        parse_config([], environ)
    with pytest.raises(ConfigurationError) as server_error:
        _server([], environ)
    assert str(packager_error.value) == str(server_error.value)
    assert str(server_error.value).startswith(f"{variable} must be ") and "'nonsense'" in str(server_error.value)


def test_server_flags_win_over_the_environment_which_wins_over_defaults() -> None:
    environ = {"TDM_SERVER_PORT": "9000", "TDM_SERVER_THREADS": "7", "TDM_SEARCH_TIMEOUT": "0.5"}
    settings = _server(["--port", "9001"], environ)
    assert (settings.port, settings.threads, settings.search_timeout_seconds) == (9001, 7, 0.5)
    assert (settings.host, settings.max_dumps_in_flight) == ("127.0.0.1", 8)


def test_an_empty_variable_counts_as_unset() -> None:
    assert _server([], {"TDM_SERVER_PORT": "", "TDM_BROKER_URL": ""}).port == 8080
    assert parse_config([], {**PACKAGER_ENV, "TDM_URL_TTL": "", "TDM_STORAGE": ""}).storage == "local:archives"


@pytest.mark.parametrize(
    ("argv", "environ", "expected"),
    [
        ([], {"TDM_SERVER_PORT": "http"}, "TDM_SERVER_PORT must be a whole number from 0 to 65535, got 'http'"),
        (["--port", "70000"], {}, "--port must be a whole number from 0 to 65535, got '70000'"),
        (["--threads", "0"], {}, "--threads must be a whole number from 1 to 1024, got '0'"),
        ([], {"TDM_SEARCH_TIMEOUT": "nan"}, "TDM_SEARCH_TIMEOUT must be a number of seconds above 0, at most 86400"),
        (["--broker", "localhost"], {}, "--broker must be a transport URL such as stomp://"),
        (
            [],
            {"TDM_SERVER_API_KEYS": "alice"},
            "TDM_SERVER_API_KEYS must be owner=key[,owner=key...] (API key entry for",
        ),
    ],
)
def test_a_bad_server_value_names_where_it_came_from(argv: list[str], environ: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        _server(argv, environ)
    assert str(info.value).startswith(expected)


def test_a_bad_key_entry_never_shows_the_key(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TDM_SERVER_API_KEYS", "alice=, bob=secret-bob-key")
    assert server_main(["serve"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: TDM_SERVER_API_KEYS ") and err.count("\n") == 1
    assert "secret-bob-key" not in err and "Traceback" not in err


def test_only_the_wrong_setting_is_named_and_a_flag_by_its_flag() -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_config(["--api-key", "x"], {**PACKAGER_ENV, "TDM_METRICS_PORT": "-1"})
    assert str(info.value) == "TDM_METRICS_PORT must be a whole number from 0 to 65535, got '-1'"
    with pytest.raises(ConfigurationError) as flagged:
        _server(["--api-key", "carol"], {})
    assert str(flagged.value).startswith("--api-key must be owner=key")


def test_every_wrong_setting_is_named_on_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    environ = {"TDM_API_BASE": "http://x", "TDM_URL_TTL": "0", "TDM_MAX_PAGES": "many"}
    assert packager_main(["--log-level", "LOUD"], environ) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: missing setting(s): --broker / TDM_BROKER_URL, ")
    for needle in ("TDM_URL_TTL must be", "TDM_MAX_PAGES must be", "--log-level must be one of"):
        assert needle in err


def test_a_long_bad_value_is_cut_short() -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_config(["--max-pages", "9" * 5000], PACKAGER_ENV)
    assert len(str(info.value)) < 200


def test_help_names_every_variable() -> None:
    parser = argparse.ArgumentParser()
    PackagerConfig.add_arguments(parser)
    text = parser.format_help()
    for spec in PackagerConfig.model_fields.values():
        if isinstance(spec.json_schema_extra, dict):
            assert f"[{spec.validation_alias}]" in text
    assert "(default 3600)" in text


def test_building_in_code_reads_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TDM_SERVER_PORT", "1234")
    monkeypatch.setenv("TDM_MAX_ATTEMPTS", "9")
    assert Settings().port == 8080
    assert PackagerConfig(broker_url="memory://", api_base="http://x", api_key="k").max_attempts == 3


@given(st.text(max_size=12))
def test_only_ascii_digits_in_range_make_a_whole_number(text: str) -> None:
    try:
        config = parse_config([], {**PACKAGER_ENV, "TDM_MAX_ATTEMPTS": text})
    except ConfigurationError as exc:
        stripped = text.strip()
        ok = stripped.isascii() and stripped.isdigit() and 1 <= int(stripped) <= 100
        assert not ok, exc
        assert str(exc).startswith("TDM_MAX_ATTEMPTS must be a whole number from 1 to 100") or not text
        return
    if text.strip() == "" or text == "":
        assert config.max_attempts == 3
    else:
        assert config.max_attempts == int(text.strip()) and text.strip().isascii()


@given(st.sampled_from(["debug", "Info", " WARNING ", "error"]), st.sampled_from(["TEXT", "json", " Json"]))
def test_log_options_are_read_in_any_case(level: str, fmt: str) -> None:
    settings = _server([], {"TDM_LOG_LEVEL": level, "TDM_LOG_FORMAT": fmt})
    assert settings.log_level == level.strip().upper() and settings.log_format == fmt.strip().lower()
