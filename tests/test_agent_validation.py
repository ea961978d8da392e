"""The settings engine behind the agent's config and model card: coercion, bounds, unknown keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pytest

from agent.config import load_config
from agent.config.validation import Secret, Section, SettingError, ValidationError, setting
from agent.errors import ConfigError


class Inner(Section):
    level: Literal["low", "high"] = "low"
    ratio: float = setting(default=0.5, gt=0.0, le=1.0)


class Outer(Section):
    name: str = "x"
    count: int = setting(default=1, ge=0)
    on: bool = False
    path: Path | None = None
    pair: tuple[float, float] = (0.0, 1.0)
    names: tuple[str, ...] = ()
    extra: dict[str, Any] = setting(default_factory=dict)
    secret: Secret | None = None
    inner: Inner = setting(default_factory=Inner)

    def check(self) -> None:
        if self.on and self.path is None:
            raise SettingError("on needs a path", field="on")


class Card(Section, frozen=True):
    extra_keys = "ignore"
    size: int = setting(gt=0)


def test_strings_from_the_environment_become_typed_values():
    got = Outer.from_mapping(
        {
            "count": "7",
            "on": "yes",
            "path": "/tmp/a",
            "pair": ["0.25", 2],
            "names": ["a", "b"],
            "secret": "pw",
            "inner": {"ratio": "1"},
        }
    )
    assert (got.count, got.on, got.path) == (7, True, Path("/tmp/a"))
    assert (got.pair, got.names) == ((0.25, 2.0), ("a", "b"))
    assert got.inner == Inner(level="low", ratio=1.0) and isinstance(got.inner.ratio, float)
    assert got.secret == Secret("pw") and "pw" not in repr(got) and "pw" not in str(got.to_dict())
    assert got.to_dict(json=True)["secret"] == "**********"
    assert got.to_dict(json=True)["path"] == "/tmp/a" and got.to_dict(json=True)["pair"] == [0.25, 2.0]


def test_every_problem_is_reported_with_its_dotted_location():
    with pytest.raises(ValidationError) as err:
        Outer.from_mapping(
            {"cuont": 1, "count": -1, "on": "maybe", "inner": {"level": "mid", "ratio": 0, "x": 1}}
        )
    assert err.value.errors == [
        (("cuont",), "unknown key (did you mean 'count'?)"),
        (("count",), "must be >= 0, got -1"),
        (("on",), "must be true or false, got 'maybe'"),
        (("inner", "x"), "unknown key"),
        (("inner", "level"), "must be one of 'low', 'high', got 'mid'"),
        (("inner", "ratio"), "must be > 0, got 0"),
    ]
    assert str(err.value).startswith("cuont: unknown key (did you mean 'count'?); count: must be >= 0")


def test_wrong_types_are_named_not_guessed():
    for data, where in (
        ({"count": "1.5"}, "count"),
        ({"count": True}, "count"),
        ({"inner": "high"}, "inner"),
        ({"pair": [1, 2, 3]}, "pair"),
        ({"name": ["a"]}, "name"),
        ({"path": ""}, "path"),
    ):
        with pytest.raises(ValidationError) as err:
            Outer.from_mapping(data)
        assert [loc for loc, _ in err.value.errors] == [(where,)], data


def test_keyword_construction_validates_too_and_checks_run_after_coercion():
    assert Outer(count="3").count == 3  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="on: on needs a path"):
        Outer(on=True)
    assert Outer(on=True, path=Path("/p")).on is True


def test_frozen_sections_ignore_unknown_keys_when_asked_and_name_missing_ones():
    card = Card.from_mapping({"size": 3, "notes": "free text"})
    assert card.size == 3
    with pytest.raises(AttributeError):
        card.size = 4  # type: ignore[misc]
    with pytest.raises(ValidationError, match="size: required"):
        Card.from_mapping({"notes": "x"})
    with pytest.raises(ValidationError, match="must be a mapping"):
        Card.from_mapping(["size", 3])


def test_agent_config_errors_stay_one_line_and_name_the_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("mqtt:\n  port: 70000\n  tls:\n    keyfile: /k\nlog_level: loud\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={"FACECAST_MODEL__SINGLE_PASS": "nope"})
    message = str(err.value)
    assert "\n" not in message
    assert message == (
        "config error: model.single_pass (from FACECAST_MODEL__SINGLE_PASS): "
        "must be true or false, got 'nope'; "
        "mqtt.port: must be <= 65535, got 70000; mqtt.tls.keyfile: keyfile is set but certfile is not; "
        "log_level: must be one of 'DEBUG', 'INFO', 'WARNING', 'ERROR', got 'LOUD'"
    )
