"""The apps' shared configuration: pydantic-settings models read from flags, then TDM_* variables, then defaults."""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from typing import Annotated, Any, Self

from pydantic import BeforeValidator, Field, ValidationError
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.sources.utils import parse_env_vars

from tdm_messaging import ConfigurationError

__all__ = [
    "AppSettings",
    "BrokerUrl",
    "LogFormat",
    "LogLevel",
    "Seconds",
    "broker_option",
    "option",
    "whole_number",
]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")
_SHOWN = 40  # characters of a bad value repeated in an error (a pasted file must not flood the terminal)


def option(default: Any = ..., *, env: str, flag: str, help: str, secret: bool = False) -> Any:
    """A setting read from ``flag`` (first), the variable ``env`` (next) or ``default``.

    ``secret`` keeps the value out of ``repr`` (so out of logs). No ``default``: the setting is required.
    """
    return Field(default, validation_alias=env, description=help, repr=not secret, json_schema_extra={"flag": flag})


def _whole(low: int, high: int, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        # str.isdigit() accepts "²" and int() accepts "1_000" and Arabic-Indic digits: only ASCII 0-9
        if not (text.isascii() and text.isdigit() and len(text) <= 20):
            raise PydanticCustomError("whole_number", f"must be a whole number from {low} to {high}")
        value = int(text)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise PydanticCustomError("whole_number", f"must be a whole number from {low} to {high}")
    return value


def whole_number(low: int, high: int) -> Any:
    """The type of a whole-number setting from ``low`` to ``high`` (digits only: no sign, exponent or ``_``)."""
    return Annotated[int, BeforeValidator(lambda value: _whole(low, high, value))]


def _seconds(value: Any) -> Any:
    try:
        seconds = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not (math.isfinite(seconds) and 0 < seconds <= 86_400):
        raise PydanticCustomError("seconds", "must be a number of seconds above 0, at most 86400")
    return seconds


def _choice(choices: tuple[str, ...], value: Any) -> str:
    chosen = str(value).strip()
    for choice in choices:
        if chosen.lower() == choice.lower():
            return choice
    raise PydanticCustomError("choice", f"must be one of {', '.join(choices)}")


def _broker_url(value: Any) -> str:
    url = str(value).strip()
    if "://" not in url or not url.split("://", 1)[0]:
        raise PydanticCustomError(
            "broker_url", "must be a transport URL such as stomp://host:61613, amqp://host//, sqlite:///file.db"
        )
    return url


Seconds = Annotated[float, BeforeValidator(_seconds)]
LogLevel = Annotated[str, BeforeValidator(lambda value: _choice(LOG_LEVELS, value))]
LogFormat = Annotated[str, BeforeValidator(lambda value: _choice(LOG_FORMATS, value))]
BrokerUrl = Annotated[str, BeforeValidator(_broker_url)]


def broker_option(default: Any = ...) -> Any:
    """``--broker`` / ``TDM_BROKER_URL``, the same in both apps (the default is each app's own)."""
    return option(default, env="TDM_BROKER_URL", flag="--broker", help="transport URL, e.g. stomp://host:61613")


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)


class AppSettings(BaseSettings):
    """The options both apps share, and the reading of flags and environment into a frozen value.

    Building one in code (``Settings(db_url=...)``) reads nothing from the environment;
    :meth:`load` does, from the mapping it is given.
    """

    model_config = SettingsConfigDict(
        frozen=True,
        validate_by_name=True,
        validate_by_alias=True,
        case_sensitive=True,
        env_ignore_empty=True,  # TDM_X= (empty) means unset, as a shell user expects
        extra="forbid",
    )

    log_level: LogLevel = option("INFO", env="TDM_LOG_LEVEL", flag="--log-level", help="DEBUG, INFO, WARNING or ERROR")
    log_format: LogFormat = option(
        "text", env="TDM_LOG_FORMAT", flag="--log-format", help="text or json, one object a line"
    )
    queue_prefix: str = option(
        "", env="TDM_QUEUE_PREFIX", flag="--queue-prefix", help="the prefix of docset ids on the broker (default none)"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, *, exclude: tuple[str, ...] = ()) -> None:
        """Add one flag per option to ``parser``; a flag not given is absent from the parsed namespace."""
        for name, spec in cls.model_fields.items():
            extra = spec.json_schema_extra
            if name in exclude or not isinstance(extra, dict) or "flag" not in extra:
                continue
            default = (
                "" if spec.is_required() else f" (default {spec.default})" if spec.default not in (None, "") else ""
            )
            help_text = f"{spec.description}{default} [{spec.validation_alias}]".replace("%", "%%")
            flag = str(extra["flag"])
            metavar = flag.lstrip("-").upper().replace("-", "_")
            parser.add_argument(flag, dest=name, default=argparse.SUPPRESS, metavar=metavar, help=help_text)

    @classmethod
    def load(cls, flags: Mapping[str, Any], environ: Mapping[str, str]) -> Self:
        """The settings from ``flags`` (by field name), else ``environ``'s ``TDM_*`` variables, else defaults.

        Raises:
            ConfigurationError: one line naming each flag or variable that is missing or wrong, and what it accepts.
        """
        given = {cls._env_name(name): value for name, value in flags.items()}
        values = {**_MappingEnvSource(cls, environ)(), **given}
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ConfigurationError(cls._describe(exc, given, values)) from None

    @classmethod
    def _env_name(cls, name: str) -> str:
        alias = cls.model_fields[name].validation_alias
        return alias if isinstance(alias, str) else name

    @classmethod
    def _flag(cls, env_name: str) -> str:
        for spec in cls.model_fields.values():
            if spec.validation_alias == env_name and isinstance(spec.json_schema_extra, dict):
                return str(spec.json_schema_extra.get("flag", env_name))
        return env_name

    @classmethod
    def _describe(cls, exc: ValidationError, given: Mapping[str, Any], values: Mapping[str, Any]) -> str:
        missing: list[str] = []
        wrong: list[str] = []
        for error in exc.errors():
            key = str(error["loc"][0]) if error["loc"] else ""
            if error["type"] == "missing":
                missing.append(f"{cls._flag(key)} / {key}")
                continue
            where = cls._flag(key) if key in given else key
            raw = str(values.get(key, ""))
            shown = raw if len(raw) <= _SHOWN else raw[:_SHOWN] + "..."
            message = (
                error["msg"] if error["type"] in _OURS else "must be " + error["msg"].removeprefix("Input should be ")
            )
            wrong.append(f"{where} {message}, got {shown!r}" if not _is_secret(cls, key) else f"{where} {message}")
        parts = (["missing setting(s): " + ", ".join(missing)] if missing else []) + wrong
        return "; ".join(parts)


_OURS = frozenset({"whole_number", "seconds", "choice", "broker_url", "api_keys", "value_error"})


def _is_secret(cls: type[AppSettings], env_name: str) -> bool:
    return any(spec.validation_alias == env_name and not spec.repr for spec in cls.model_fields.values())
