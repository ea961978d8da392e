"""Configuration: strict keys, types, precedence (file < env < flags), and masked output."""

from __future__ import annotations

import pytest

from agent.config import AgentConfig, dump_yaml, load_config
from agent.errors import ConfigError
from tests.agent_support import assert_one_line_error, run_cli


def write(tmp_path, text, name="facecast.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_are_valid():
    config = load_config(None, environ={})
    assert isinstance(config, AgentConfig)
    assert config.sink == "mqtt" and config.detector.name == "blazeface"
    assert config.source.max_width == 640
    assert config.device_id


def test_unknown_key_is_named(tmp_path):
    path = write(tmp_path, "mqtt:\n  hots: broker.local\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert str(err.value) == "config error: mqtt.hots: unknown key (did you mean 'host'?)"


def test_unknown_top_level_section(tmp_path):
    with pytest.raises(ConfigError, match="detecter: unknown key"):
        load_config(write(tmp_path, "detecter:\n  name: haar\n"), environ={})


def test_wrong_type_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"mqtt\.port"):
        load_config(write(tmp_path, "mqtt:\n  port: not-a-number\n"), environ={})
    with pytest.raises(ConfigError, match=r"detector\.name"):
        load_config(write(tmp_path, "detector:\n  name: yolo\n"), environ={})


HAAR_REMOVED = "the 'haar' detector was removed (OpenCV 5 has no Haar cascades); use 'blazeface'"


def test_removed_haar_detector_is_one_clear_line_from_file_env_and_flag(tmp_path):
    """Not the generic "must be one of": a config from before the removal learns what to do."""
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "detector:\n  name: haar\n"), environ={})
    assert str(err.value) == f"config error: detector.name: {HAAR_REMOVED}"
    with pytest.raises(ConfigError, match="'haar' detector was removed"):
        load_config(None, environ={"FACECAST_DETECTOR__NAME": "haar"})
    proc = run_cli("run", "--detector", "haar", "--source", "demo", "--sink", "stdout")
    assert proc.returncode == 2
    line = assert_one_line_error(proc)
    assert line == f"facecast: error: config error: detector.name (from --detector): {HAAR_REMOVED}"


def test_cli_config_check_unknown_key_exits_2_with_one_line(tmp_path):
    proc = run_cli("config", "check", str(write(tmp_path, "mqtt:\n  hots: x\n")))
    assert proc.returncode == 2
    line = assert_one_line_error(proc, "mqtt.hots", "unknown key")
    assert line == "facecast: error: config error: mqtt.hots: unknown key (did you mean 'host'?)"


def test_cli_run_with_bad_type_exits_2(tmp_path):
    proc = run_cli("run", "--config", str(write(tmp_path, "source:\n  max_width: wide\n")))
    assert proc.returncode == 2
    assert_one_line_error(proc, "source.max_width")


def test_precedence_file_then_env_then_flags(tmp_path):
    path = write(tmp_path, "device_id: from-file\nmqtt:\n  host: file-host\n  port: 1111\n")
    only_file = load_config(path, environ={})
    assert (only_file.mqtt.host, only_file.mqtt.port, only_file.device_id) == ("file-host", 1111, "from-file")
    env = {"FACECAST_MQTT__HOST": "env-host", "FACECAST_DEVICE_ID": "from-env"}
    with_env = load_config(path, environ=env)
    assert (with_env.mqtt.host, with_env.mqtt.port, with_env.device_id) == ("env-host", 1111, "from-env")
    with_flags = load_config(path, environ=env, overrides={"mqtt.host": "flag-host", "device_id": None})
    assert (with_flags.mqtt.host, with_flags.device_id) == ("flag-host", "from-env")


def test_env_can_set_nested_and_typed_values():
    config = load_config(
        None,
        environ={
            "FACECAST_MQTT__PORT": "1884",
            "FACECAST_MQTT__TLS__ENABLED": "true",
            "FACECAST_SOURCE__URI": "demo",
        },
    )
    assert config.mqtt.port == 1884 and config.mqtt.tls.enabled is True and config.source.uri == "demo"


def test_env_typo_inside_a_section_is_rejected():
    with pytest.raises(ConfigError) as err:
        load_config(None, environ={"FACECAST_MQTT__HOTS": "x"})
    assert str(err.value) == (
        "config error: mqtt.hots (from FACECAST_MQTT__HOTS): unknown key (did you mean FACECAST_MQTT__HOST?)"
    )


def test_unrelated_facecast_variables_are_ignored():
    config = load_config(None, environ={"FACECAST_DATASETS": "/data", "FACECAST_TEST_MODEL": "/m"})
    assert config.mqtt.host == "127.0.0.1"


def test_source_shorthand_and_toml(tmp_path):
    assert load_config(write(tmp_path, "source: /dev/video2\n"), environ={}).source.uri == "/dev/video2"
    toml = write(tmp_path, '[source]\nuri = "demo"\nmax_width = 320\n[mqtt]\nport = 1999\n', "c.toml")
    config = load_config(toml, environ={})
    assert (config.source.uri, config.source.max_width, config.mqtt.port) == ("demo", 320, 1999)


def test_cli_flags_override_env(tmp_path):
    proc = run_cli(
        "config",
        "check",
        str(write(tmp_path, "mqtt:\n  host: file-host\n")),
        env={"FACECAST_MQTT__HOST": "env-host"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "host: env-host" in proc.stdout


def test_config_check_masks_secrets(tmp_path):
    path = write(
        tmp_path,
        "mqtt:\n  username: agent\n  password: hunter2-secret\nsource: rtsp://cam:camsecret@10.0.0.9/live\n",
    )
    proc = run_cli("config", "check", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "hunter2-secret" not in proc.stdout and "camsecret" not in proc.stdout
    assert "password: '***'" in proc.stdout or 'password: "***"' in proc.stdout
    assert "rtsp://cam:***@10.0.0.9/live" in proc.stdout
    assert "username: agent" in proc.stdout
    # and the printed YAML is itself a valid config (round trip)
    again = write(tmp_path, proc.stdout.replace("'***'", "masked"), "again.yaml")
    assert load_config(again, environ={}).mqtt.username == "agent"


def test_dump_yaml_masks_in_process():
    config = load_config(None, environ={"FACECAST_MQTT__PASSWORD": "pw-123"})
    assert config.mqtt.password is not None
    assert "pw-123" not in dump_yaml(config)


def test_config_file_that_is_not_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path, "- a\n- b\n"), environ={})


def test_missing_config_file(tmp_path):
    proc = run_cli("config", "check", str(tmp_path / "nope.yaml"))
    assert proc.returncode == 2
    assert_one_line_error(proc, "nope.yaml")
