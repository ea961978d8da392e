"""File + environment + flags -> one validated :class:`AgentConfig`, or a one-line ``ConfigError``.

Precedence (lowest to highest): defaults (the model's, then a command's own, such as the demo's
pace), the YAML/TOML file, ``FACECAST_<SECTION>__<KEY>`` environment variables, command-line flags.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from agent.config.settings import AgentConfig
from agent.config.validation import Location, ValidationError
from agent.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (JetPack 6): the same parser from PyPI (a dependency there)
    import tomli as tomllib

ENV_PREFIX = "FACECAST_"
SECRET_KEYS = frozenset({"password", "secret", "token", "key_password"})
MASK = "***"
FLIP_TTA_DEPRECATED = (
    "model.flip_tta is deprecated and will be removed in the next release: "
    "write model.single_pass: true instead of flip_tta: false (or drop flip_tta: true, the default)"
)

log = logging.getLogger(__name__)


def read_config_file(path: Path) -> dict[str, Any]:
    """YAML (``.yaml``/``.yml``/anything else) or TOML (``.toml``); must be a mapping."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    try:
        data = tomllib.loads(text) if Path(path).suffix.lower() == ".toml" else yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {yaml_problem(exc)}") from exc
    except tomllib.TOMLDecodeError as exc:  # its message already ends "(at line L, column C)"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"config file {path} is not valid TOML: {first}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping of sections, not {type(data).__name__}")
    return data


def yaml_problem(exc: yaml.YAMLError) -> str:
    """One line with the place: PyYAML's own text spreads it over several lines, with a caret, and
    the first of them (all a one-line error used to keep) says what but not where."""
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        first = str(exc).strip().splitlines()
        return first[0] if first else type(exc).__name__
    mark = exc.problem_mark
    line = f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
    ctx = exc.context_mark
    if exc.context and ctx is not None and (ctx.line, ctx.column) != (mark.line, mark.column):
        line += f" ({exc.context} at line {ctx.line + 1}, column {ctx.column + 1})"
    return line


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """``FACECAST_MQTT__HOST=x`` -> ``{"mqtt": {"host": "x"}}``."""
    out: dict[str, Any] = {}
    for parts, (_name, value) in env_settings(environ).items():
        set_dotted(out, list(parts), value)
    return out


def env_settings(environ: Mapping[str, str]) -> dict[Location, tuple[str, str]]:
    """The settings variables: config location -> (variable name, value).

    Read: variables whose first part names a config field, and any with ``__`` (only a setting
    has a section), so ``FACECAST_TRACKIN__MIN_HITS`` is an unknown key, not silently nothing.
    Other ``FACECAST_*`` variables (e.g. ``FACECAST_DATASETS`` for tests) are not settings.
    """
    top = AgentConfig.field_names()
    out: dict[Location, tuple[str, str]] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        parts = tuple(p.lower() for p in name[len(ENV_PREFIX) :].split("__"))
        if (parts[0] not in top and len(parts) == 1) or not all(parts):
            continue
        out[parts] = (name, value)
    return out


def env_name(location: Location) -> str:
    """The variable that sets ``location``: ``("mqtt", "host")`` -> ``FACECAST_MQTT__HOST``."""
    return ENV_PREFIX + "__".join(location).upper()


def set_dotted(tree: dict[str, Any], parts: list[str], value: Any) -> None:
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {} if not isinstance(child, str) else {"uri": child}
            node[part] = child
        node = child
    node[parts[-1]] = value


def deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(dict(merged[key]), value)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), str) and key == "source":
            merged[key] = deep_merge({"uri": merged[key]}, value)
        else:
            merged[key] = value
    return merged


def _dotted_tree(values: Mapping[str, Any] | None) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for dotted, value in (values or {}).items():
        if value is not None:
            set_dotted(tree, dotted.split("."), value)
    return tree


def load_config(
    path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    defaults: Mapping[str, Any] | None = None,
    flag_names: Mapping[str, str] | None = None,
) -> AgentConfig:
    """Build the effective configuration. ``overrides`` maps dotted keys (``"mqtt.host"``) to the
    values of command-line flags that were given (None values are ignored); ``defaults`` uses the
    same form for a command's own defaults, which the file and the environment still override.
    ``flag_names`` (dotted key -> ``--flag``) lets an error name the flag that set a bad value."""
    data = _dotted_tree(defaults)
    if path is not None:
        data = deep_merge(data, read_config_file(path))
    env = env_settings(os.environ if environ is None else environ)
    data = deep_merge(data, env_overrides(os.environ if environ is None else environ))
    data = deep_merge(data, _dotted_tree(overrides))
    # Where each value a user may have to fix came from, when not the file: the variable or flag.
    origins: dict[Location, str] = {parts: name for parts, (name, _v) in env.items()}
    for dotted, value in (overrides or {}).items():
        if value is not None:
            origins[tuple(dotted.split("."))] = (flag_names or {}).get(dotted, "the command line")
    try:
        config = AgentConfig.from_mapping(data)
    except ValidationError as exc:  # one line naming each bad key, e.g. ``mqtt.hots: unknown key``
        problems = "; ".join(_located(loc, msg, origins) for loc, msg in exc.errors)
        raise ConfigError(f"config error: {problems}") from exc
    if config.model.flip_tta is not None:
        log.warning(FLIP_TTA_DEPRECATED)
    return config


def _located(loc: Location, msg: str, origins: Mapping[Location, str]) -> str:
    """``mqtt.hots: unknown key``, naming the variable or flag when one of them set the value (a
    typo in ``FACECAST_MQTT__HOTS`` is searched for in the environment, not in the file)."""
    where = ".".join(loc) or "(root)"
    # the value itself, a section holding it, or (an unknown section) a value inside it
    path = next((loc[:n] for n in range(len(loc), 0, -1) if loc[:n] in origins), None)
    if path is None:
        path = next((p for p in origins if p[: len(loc)] == loc), None)
    if path is None:
        return f"{where}: {msg}"
    origin = origins[path]
    if origin.startswith(ENV_PREFIX):
        # the suggestion in the form the user writes it: a variable name, not a key
        tail = path[len(loc) :]
        msg = re.sub(
            r"did you mean '([^']+)'", lambda m: f"did you mean {env_name((*loc[:-1], m[1], *tail))}", msg
        )
    return f"{where} (from {origin}): {msg}"


def masked_dump(config: AgentConfig) -> dict[str, Any]:
    """The config as plain data with every secret replaced by ``***`` (for ``config check``, logs)."""
    from agent.sources import redact_url

    data = config.to_dict(json=True)
    _mask(data)
    data["source"]["uri"] = redact_url(str(data["source"]["uri"]))
    return data


def _mask(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in SECRET_KEYS and value is not None:
                node[key] = MASK
            else:
                _mask(value)
    elif isinstance(node, list):
        for item in node:
            _mask(item)


def dump_yaml(config: AgentConfig) -> str:
    return yaml.safe_dump(masked_dump(config), sort_keys=False, default_flow_style=False)
