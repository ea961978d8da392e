"""One way to build a settings tree, for the agent and the training side alike: defaults, then a file,
then environment variables, then flags, each layer overriding the one before; and one way to say
which layer a bad value came from.

Why one mechanism: a user who learnt ``FACECAST_MQTT__HOST`` and ``--set`` on one side should find
the same rules on the other, and a fix to a rule (a TOML file, a YAML error that names its line, an
unknown variable that is not silently ignored) reaches both. What each side validates differs (the
agent's light validator keeps the device's memory small; the training side uses pydantic), so this
module stops at the raw tree and each side validates it. Values from the environment and from
flags stay strings here: a password ``0123`` must not become the number 123; each validator
converts a string to the type its field needs.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agent.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (JetPack 6): the same parser from PyPI (a dependency there)
    import tomli as tomllib

Location = tuple[str, ...]


@dataclass(frozen=True)
class EnvScheme:
    """How a program's settings are spelt as environment variables: ``<prefix><SECTION>__<KEY>``.

    ``sections`` are the top-level keys: a variable whose first part names one, or that has a
    ``__`` (only a setting has a section), is a setting, so a typo is reported, not ignored. Other
    variables with the prefix (``FACECAST_DATASETS`` for tests) are not settings, nor those with a
    longer prefix of another program (``FACECAST_TRAIN_`` is the training side's, not the agent's)."""

    prefix: str
    sections: Collection[str]
    foreign_prefixes: Collection[str] = ()
    every_variable: bool = False  # a prefix no other variable uses: every one of them is a setting

    def settings(self, environ: Mapping[str, str]) -> dict[Location, tuple[str, str]]:
        """Location -> (variable name, value) for every settings variable in ``environ``."""
        out: dict[Location, tuple[str, str]] = {}
        for name, value in environ.items():
            if not name.startswith(self.prefix) or any(name.startswith(p) for p in self.foreign_prefixes):
                continue
            parts = tuple(p.lower() for p in name[len(self.prefix) :].split("__"))
            known = parts[0] in self.sections or len(parts) > 1 or self.every_variable
            if not all(parts) or not known:
                continue
            out[parts] = (name, value)
        return out

    def name(self, location: Location) -> str:
        """The variable that sets ``location``: ``("mqtt", "host")`` -> ``FACECAST_MQTT__HOST``."""
        return self.prefix + "__".join(location).upper()


@dataclass
class Layered:
    """The merged raw tree, and where each value that did not come from the file came from."""

    data: dict[str, Any]
    origins: dict[Location, str] = field(default_factory=dict)
    scheme: EnvScheme | None = None

    def located(self, loc: Location, msg: str) -> str:
        """``mqtt.hots: unknown key``, naming the variable or flag when one of them set the value (a
        typo in ``FACECAST_MQTT__HOTS`` is searched for in the environment, not in the file)."""
        where = ".".join(loc) or "(root)"
        # the value itself, a section holding it, or (an unknown section) a value inside it
        path = next((loc[:n] for n in range(len(loc), 0, -1) if loc[:n] in self.origins), None)
        if path is None:
            path = next((p for p in self.origins if p[: len(loc)] == loc), None)
        if path is None:
            return f"{where}: {msg}"
        origin = self.origins[path]
        if self.scheme is not None and origin.startswith(self.scheme.prefix):
            # the suggestion in the form the user writes it: a variable name, not a key
            tail = path[len(loc) :]
            scheme = self.scheme
            msg = re.sub(
                r"did you mean '([^']+)'",
                lambda m: f"did you mean {scheme.name((*loc[:-1], m[1], *tail))}",
                msg,
            )
        return f"{where} (from {origin}): {msg}"


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


def set_dotted(
    tree: dict[str, Any], parts: list[str], value: Any, shorthands: Mapping[str, str] | None = None
) -> None:
    """Set ``a.b.c`` in a nested tree. ``shorthands``: sections a file may write as one scalar
    (the agent's ``source: video.mp4`` means ``source: {uri: video.mp4}``)."""
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            key = (shorthands or {}).get(part)
            if child is None:
                child = {}
            elif key is not None and isinstance(child, str):
                child = {key: child}
            else:
                raise ConfigError(f"{part} is given both as a value and as a section")
            node[part] = child
        node = child
    node[parts[-1]] = value


def deep_merge(
    base: dict[str, Any], over: Mapping[str, Any], shorthands: Mapping[str, str] | None = None
) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        short = (shorthands or {}).get(key)
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(dict(merged[key]), value)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), str) and short is not None:
            merged[key] = deep_merge({short: merged[key]}, value)
        else:
            merged[key] = value
    return merged


def dotted_tree(
    values: Mapping[str, Any] | None, shorthands: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """``{"mqtt.host": "x"}`` -> ``{"mqtt": {"host": "x"}}``; None values (flags not given) are left out."""
    tree: dict[str, Any] = {}
    for dotted, value in (values or {}).items():
        if value is not None:
            set_dotted(tree, dotted.split("."), value, shorthands)
    return tree


def parse_assignments(
    pairs: list[str], flag: str = "--set", example: str = "section.key=value"
) -> dict[str, str]:
    """``["data.root=/x", "epochs=3"]`` (repeated ``--set KEY=VALUE`` flags) -> dotted key -> value."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} {pair!r}: expected KEY=VALUE, e.g. {flag} {example}")
        out[key.strip()] = value
    return out


def layered(
    path: Path | None,
    scheme: EnvScheme,
    environ: Mapping[str, str],
    *,
    overrides: Mapping[str, Any] | None = None,
    defaults: Mapping[str, Any] | None = None,
    flag_names: Mapping[str, str] | None = None,
    shorthands: Mapping[str, str] | None = None,
) -> Layered:
    """Defaults < file < environment < flags. ``overrides`` maps dotted keys (``"mqtt.host"``) to the
    values of the flags that were given (None: not given); ``defaults`` uses the same form for a
    command's own defaults. ``flag_names`` (dotted key -> ``--flag``) lets an error name the flag."""
    data = dotted_tree(defaults, shorthands)
    if path is not None:
        data = deep_merge(data, read_config_file(path), shorthands)
    env = scheme.settings(environ)
    from_env: dict[str, Any] = {}
    for parts, (_name, value) in env.items():
        set_dotted(from_env, list(parts), value, shorthands)
    data = deep_merge(data, from_env, shorthands)
    data = deep_merge(data, dotted_tree(overrides, shorthands), shorthands)
    origins: dict[Location, str] = {parts: name for parts, (name, _v) in env.items()}
    for dotted, value in (overrides or {}).items():
        if value is not None:
            origins[tuple(dotted.split("."))] = (flag_names or {}).get(dotted, "the command line")
    return Layered(data, origins, scheme)
