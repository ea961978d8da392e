"""One config mechanism: the agent and the training side layer file < environment < flags by the same
rules (agent.config.layering) and report a bad value with where it was set."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import load_config as load_agent_config
from agent.errors import ConfigError
from tests.training_support import REPO

pytest.importorskip("pydantic", reason="the training side's validator (train extra)")

from training.config import load_config as load_train_config


def test_both_sides_layer_file_then_environment_then_flags(tmp_path: Path) -> None:
    agent_file = tmp_path / "agent.yaml"
    agent_file.write_text("mqtt:\n  host: from-file\n  port: 1884\n")
    agent = load_agent_config(
        agent_file,
        environ={"FACECAST_MQTT__HOST": "from-env", "FACECAST_MQTT__PORT": "1885"},
        overrides={"mqtt.host": "from-flag"},
    )
    assert (agent.mqtt.host, agent.mqtt.port) == ("from-flag", 1885)

    train_file = tmp_path / "train.yaml"
    train_file.write_text("epochs: 5\nbatch_size: 32\nlearning_rate: 0.001\n")
    cfg = load_train_config(
        train_file,
        {"epochs": "7"},
        environ={"FACECAST_TRAIN_EPOCHS": "6", "FACECAST_TRAIN_BATCH_SIZE": "16"},
    )
    assert (cfg.epochs, cfg.batch_size, cfg.learning_rate) == (7, 16, 0.001)


def test_text_stays_text_and_the_rest_is_read_as_yaml(tmp_path: Path) -> None:
    cfg = load_train_config(
        None,
        {
            "framing.tight_scale": "[0.8, 1.1]",
            "max_minutes": "null",
            "flip_tta": "auto",
            "output_dir": "0123",
        },
        environ={"FACECAST_TRAIN_DATA__LFW": "false", "FACECAST_TRAIN_DATA__LFW_PER_PERSON": "4"},
    )
    assert cfg.framing.tight_scale == (0.8, 1.1)
    assert cfg.max_minutes is None and cfg.flip_tta == "auto"
    assert cfg.output_dir.name == "0123"  # a name, not the number 123
    assert cfg.data.lfw is False and cfg.data.lfw_per_person == 4
    # The agent's password from the environment is never turned into a number.
    agent = load_agent_config(
        None, environ={"FACECAST_MQTT__PASSWORD": "0123", "FACECAST_MQTT__USERNAME": "u"}
    )
    assert agent.mqtt.password is not None and agent.mqtt.password.get_secret_value() == "0123"


def test_a_bad_value_names_the_variable_or_flag_that_set_it_on_both_sides() -> None:
    with pytest.raises(ConfigError) as agent_err:
        load_agent_config(None, environ={"FACECAST_MQTT__HOTS": "x"})
    assert "mqtt.hots (from FACECAST_MQTT__HOTS): unknown key" in str(agent_err.value)
    with pytest.raises(ConfigError) as train_env:
        load_train_config(None, environ={"FACECAST_TRAIN_EPOCHZ": "3"})
    assert str(train_env.value) == "config error: epochz (from FACECAST_TRAIN_EPOCHZ): unknown key"
    with pytest.raises(ConfigError) as train_flag:
        load_train_config(None, {"batch_size": "many"})
    assert "batch_size (from --set batch_size):" in str(train_flag.value)
    assert "\n" not in str(train_flag.value)


def test_each_side_leaves_the_other_sides_variables_alone(tmp_path: Path) -> None:
    both = {"FACECAST_TRAIN_EPOCHS": "3", "FACECAST_MQTT__HOST": "broker.local"}
    assert load_agent_config(None, environ=both).mqtt.host == "broker.local"
    assert load_train_config(None, environ=both).epochs == 3


def test_toml_works_for_training_too(tmp_path: Path) -> None:
    toml = tmp_path / "train.toml"
    toml.write_text('epochs = 4\n[data]\nroot = "somewhere"\n')
    cfg = load_train_config(toml)
    assert cfg.epochs == 4 and cfg.data.root == (tmp_path / "somewhere").resolve()
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = = 4\n")
    with pytest.raises(ConfigError, match=r"bad.toml is not valid TOML: .*line 1"):
        load_train_config(bad)


def test_training_cli_reports_a_malformed_set_in_one_line() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "training.cli", "export", "--set", "epochs"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert out.returncode == 2
    assert (
        out.stderr.strip()
        == "facecast-train: error: --set 'epochs': expected KEY=VALUE, e.g. --set epochs=10"
    )
