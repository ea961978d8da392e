"""A CLI that explains itself: help and defaults for every flag, errors that say where and what.

The broker flags are proven on a real Mosquitto that wants a password over TLS: only a run whose
flags carry the user, the password file and the CA gets its events through, under the prefix
``--topic-prefix`` names, and ``--no-homeassistant`` leaves no discovery config on the broker.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess

import pytest

from agent.cli import FLAGS, build_parser, config_default
from agent.config import load_config
from agent.errors import ConfigError
from tests import brokers
from tests.agent_support import assert_one_line_error, run_cli
from tests.test_comms_security import _make_certs

NEW_FLAGS = (
    "--mqtt-username",
    "--mqtt-password-file",
    "--mqtt-tls",
    "--no-mqtt-tls",
    "--mqtt-ca",
    "--topic-prefix",
    "--homeassistant",
    "--no-homeassistant",
)


def subcommand(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser: argparse.ArgumentParser = sub.choices[name]
    return parser


def test_every_run_flag_has_help_and_names_its_default():
    options = [a for a in subcommand("run")._actions if a.option_strings and a.dest != "help"]
    assert len(options) >= 20
    for action in options:
        assert action.help, f"{action.option_strings} has no help"
        assert "(default: " in action.help, f"{action.option_strings}: {action.help}"
        # given or not, the flag itself stays None so the file and the environment keep their say
        assert action.default is None, action.option_strings
    flags = {s for a in options for s in a.option_strings}
    assert set(NEW_FLAGS) <= flags
    # the defaults shown are the config model's own, not copies that can drift
    assert config_default("mqtt.port") == 1883 and config_default("mqtt.topic_prefix") == "facecast"
    assert config_default("homeassistant.enabled") is True
    proc = run_cli("run", "--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    for needle in ("(default: 1883)", "(default: 127.0.0.1)", "(default: 640)", "(default: facecast)",
                   "(default: INFO)", "(default: on)", "the host name"):  # fmt: skip
        assert needle in text, needle


def test_every_flag_that_sets_a_config_key_is_named_in_its_errors():
    """FLAGS maps each overridable key to its flag: a bad value names the flag, not only the key."""
    parser_flags = {s for a in subcommand("run")._actions for s in a.option_strings}
    assert set(FLAGS.values()) <= parser_flags
    proc = run_cli("run", "--max-width", "-3", "--source", "demo")
    assert_one_line_error(proc, "source.max_width (from --max-width): must be >= 0, got -3")
    proc = run_cli("run", "--topic-prefix", "site/#", "--source", "demo")
    assert_one_line_error(proc, "mqtt.topic_prefix (from --topic-prefix)", "wildcard '#'")
    assert proc.returncode == 2


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("mqtt:\n  port: 1883: x\n", "line 2, column 13: mapping values are not allowed here"),
        ("source:\n  uri: demo\n\tmax_width: 3\n", "line 3, column 1: found character '\\t'"),
        (
            "mqtt: {host: a\ndevice_id: b\n",
            "(while parsing a flow mapping at line 1, column 7)",
        ),
    ],
)
def test_yaml_syntax_errors_keep_line_and_column(tmp_path, text, where):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    message = str(err.value)
    assert message.startswith(f"config file {path} is not valid YAML: line ")
    assert where in message and "\n" not in message, message
    proc = run_cli("config", "check", str(path))
    assert proc.returncode == 2
    assert_one_line_error(proc, where)


def test_toml_errors_keep_line_and_column(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[mqtt]\nhost = "a"\nport = \n')
    with pytest.raises(ConfigError, match=r"is not valid TOML: .*\(at line 3, column 8\)"):
        load_config(path, environ={})


def test_environment_errors_name_the_variable_and_suggest_one():
    cases = {
        "FACECAST_MQTT__PORT": ("abc", "mqtt.port (from FACECAST_MQTT__PORT): must be a whole number"),
        "FACECAST_MQTT__HOTS": ("x", "did you mean FACECAST_MQTT__HOST?"),
        # a misspelt section is a setting too (it has '__'), not silently nothing
        "FACECAST_TRACKIN__MIN_HITS": (
            "3",
            "trackin (from FACECAST_TRACKIN__MIN_HITS): unknown key "
            "(did you mean FACECAST_TRACKING__MIN_HITS?)",
        ),
        "FACECAST_MQTT__TLS__ENABLD": ("1", "did you mean FACECAST_MQTT__TLS__ENABLED?"),
    }
    for name, (value, needle) in cases.items():
        with pytest.raises(ConfigError) as err:
            load_config(None, environ={name: value})
        assert needle in str(err.value), str(err.value)
    # a flag beats the variable, so the variable is no longer what is wrong
    config = load_config(None, environ={"FACECAST_MQTT__PORT": "abc"}, overrides={"mqtt.port": 1884})
    assert config.mqtt.port == 1884
    proc = run_cli("config", "check", "/dev/null", env={"FACECAST_MQTT__HOTS": "x"})
    assert_one_line_error(proc, "FACECAST_MQTT__HOTS", "did you mean FACECAST_MQTT__HOST?")


def test_unknown_keys_in_a_file_get_the_closest_known_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("tracking:\n  min_hit: 2\nhomeasistant:\n  enabled: false\nmqtt:\n  zzz: 1\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    message = str(err.value)
    assert "tracking.min_hit: unknown key (did you mean 'min_hits'?)" in message
    assert "homeasistant: unknown key (did you mean 'homeassistant'?)" in message
    assert "mqtt.zzz: unknown key;" in message or message.endswith("mqtt.zzz: unknown key")  # nothing close


@pytest.mark.skipif(shutil.which("openssl") is None or shutil.which("mosquitto_passwd") is None,
                    reason="openssl and mosquitto_passwd needed")  # fmt: skip
def test_broker_flags_reach_a_password_and_tls_broker(tmp_path, model_path):
    certs = tmp_path / "certs"
    certs.mkdir()
    _make_certs(certs)
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "cam", "s3cret-pw"], check=True)
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), "viewer", "viewer-pw"], check=True)
    tls_port = brokers.free_port()
    broker = brokers.Mosquitto(
        tmp_path / "broker",
        anonymous=False,
        extra=[
            f"password_file {passwd}",
            f"listener {tls_port} 127.0.0.1",
            f"cafile {certs / 'ca.crt'}",
            f"certfile {certs / 'server.crt'}",
            f"keyfile {certs / 'server.key'}",
        ],
    )
    broker.start()
    secret = tmp_path / "mqtt_password"
    secret.write_text("s3cret-pw\n")
    sub = brokers.Subscriber(broker.port, ["#"], auth=("viewer", "viewer-pw"))
    try:
        common = ["run", "--source", "demo", "--max-frames", "12", "--model", str(model_path),
                  "--device-id", "flagcam", "--state-dir", str(tmp_path / "s"),
                  "--mqtt-port", str(tls_port), "--topic-prefix", "site1"]  # fmt: skip
        # without the credentials the broker refuses the run, which says so and exits 1
        refused = run_cli(*common, "--mqtt-ca", str(certs / "ca.crt"), "--state-dir", str(tmp_path / "r"))
        assert refused.returncode == 1, refused.stderr
        proc = run_cli(*common, "--mqtt-username", "cam", "--mqtt-password-file", str(secret),
                       "--mqtt-ca", str(certs / "ca.crt"), "--no-homeassistant")  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert "s3cret-pw" not in proc.stderr
        assert brokers.wait_for(lambda: sub.payloads("site1/flagcam/frames"), 10)
        viewer = ("viewer", "viewer-pw")
        assert brokers.retained(broker.port, "site1/flagcam/status", auth=viewer) == "stopped"
        with sub.lock:
            topics = {t for t, _, _ in sub.messages}
        assert not any(t.startswith("homeassistant/") for t in topics), topics
        assert not any(t.startswith("facecast/") for t in topics), topics
        # --mqtt-ca implies TLS; --no-mqtt-tls says otherwise, and a plain client meets a TLS port
        plain = run_cli(*common, "--mqtt-username", "cam", "--mqtt-password-file", str(secret),
                        "--mqtt-ca", str(certs / "ca.crt"), "--no-mqtt-tls",
                        "--state-dir", str(tmp_path / "p"))  # fmt: skip
        assert plain.returncode == 1 and "TLS listener" in plain.stderr, plain.stderr
    finally:
        sub.close()
        broker.stop()
