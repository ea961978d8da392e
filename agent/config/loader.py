"""File + environment + flags -> one validated :class:`AgentConfig`, or a one-line ``ConfigError``.

Precedence (lowest to highest): defaults (the model's, then a command's own, such as the demo's
pace), the YAML/TOML file, ``FACECAST_<SECTION>__<KEY>`` environment variables, command-line flags.
The layering itself is :mod:`agent.config.layering`, which the training side's config shares.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from agent.config.layering import EnvScheme, layered
from agent.config.settings import AgentConfig
from agent.config.validation import ValidationError
from agent.errors import ConfigError

ENV_PREFIX = "FACECAST_"
TRAIN_ENV_PREFIX = "FACECAST_TRAIN_"  # the training side's variables (training.config)
SHORTHANDS = {"source": "uri"}  # ``source: video.mp4`` is ``source: {uri: video.mp4}``
SECRET_KEYS = frozenset({"password", "secret", "token", "key_password"})
MASK = "***"
FLIP_TTA_DEPRECATED = (
    "model.flip_tta is deprecated and will be removed in the next release: "
    "write model.single_pass: true instead of flip_tta: false (or drop flip_tta: true, the default)"
)

log = logging.getLogger(__name__)


def env_scheme() -> EnvScheme:
    """The agent's variables: ``FACECAST_<SECTION>__<KEY>``, not the training side's."""
    return EnvScheme(ENV_PREFIX, AgentConfig.field_names(), foreign_prefixes=(TRAIN_ENV_PREFIX,))


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
    layers = layered(
        path,
        env_scheme(),
        os.environ if environ is None else environ,
        overrides=overrides,
        defaults=defaults,
        flag_names=flag_names,
        shorthands=SHORTHANDS,
    )
    try:
        config = AgentConfig.from_mapping(layers.data)
    except ValidationError as exc:  # one line naming each bad key, e.g. ``mqtt.hots: unknown key``
        problems = "; ".join(layers.located(loc, msg) for loc, msg in exc.errors)
        raise ConfigError(f"config error: {problems}") from exc
    if config.model.flip_tta is not None:
        log.warning(FLIP_TTA_DEPRECATED)
    return config


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
