"""No credential is ever printed, and stdout carries nothing but ``--sink stdout`` events (issue 27.6).

`facecast` runs as a real subprocess at ``--log-level DEBUG``; the sources are real HTTP streams
(one on a closed port, one served and then unplugged) whose URLs carry a user and a password.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

import tests.agent_support as support
from agent.log_redaction import RedactingFormatter, hide_in_logs, redact
from tests import brokers

PW = "s3cret-Camera-pw"


def _assert_clean(stdout: str, stderr: str) -> list[dict]:
    """Every stdout line is a JSON event; the password is in neither stream. Returns the events."""
    events = []
    for line in stdout.splitlines():
        record = json.loads(line)  # a stray library line (OpenCV's INFO) fails here
        assert set(record) == {"topic", "payload"}, line
        events.append(record)
    assert PW not in stdout
    assert PW not in stderr
    return events


def test_failing_stream_url_with_credentials_debug_level(model_path, tmp_path):
    url = f"http://viewer:{PW}@127.0.0.1:{support.free_port()}/x.mjpg"  # nothing listens there
    proc = support.run_cli(
        "run", "--sink", "stdout", "--log-level", "DEBUG", "--source", url, "--model", str(model_path),
        "--state-dir", str(tmp_path), "--max-frames", "3",
    )  # fmt: skip
    line = support.assert_one_line_error(proc, "cannot open video source")
    assert "viewer:***@127.0.0.1" in line  # still says which source, without its password
    assert _assert_clean(proc.stdout, proc.stderr) == []
    assert proc.stdout == ""
    assert "DEBUG" in proc.stderr  # the level really was DEBUG


def test_stream_that_goes_away_debug_level_stdout_stays_json(model_path, tmp_path):
    """Events flow on stdout, then the camera is unplugged and the agent reopens it with backoff
    (OpenCV used to print each attempt's URL, password included, to stdout at DEBUG)."""
    clip = next((c for c in sorted(support.VIDEOS.glob("*.mp4"))), None)
    if clip is None:
        pytest.skip(f"no clips under {support.VIDEOS}")
    camera = support.HttpCamera(tmp_path, clip, frames=30)
    url = camera.url.replace("http://", f"http://viewer:{PW}@")
    camera.plug_in()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACECAST_")}
    env["FACECAST_SOURCE__MAX_FPS"] = "15"
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "--sink", "stdout", "--log-level", "DEBUG",
         "--source", url, "--model", str(model_path), "--state-dir", str(tmp_path / "state"),
         "--device-id", "sec1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(support.REPO),
    )  # fmt: skip
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.extend(proc.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    err_lines: list[str] = []
    err_reader = threading.Thread(target=lambda: err_lines.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
    err_reader.start()
    try:
        assert brokers.wait_for(lambda: len(out) >= 5, 60), "".join(err_lines)[-3000:]
        camera.unplug()
        # reopen attempts fail and back off (0.5 s, 1 s, 2 s ...) while the agent keeps running
        assert brokers.wait_for(lambda: any("reopen" in line for line in err_lines), 30)
        time.sleep(3.0)
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    finally:
        camera.unplug()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    reader.join(5)
    err_reader.join(5)
    stdout, stderr = "".join(out), "".join(err_lines)
    events = _assert_clean(stdout, stderr)
    assert len(events) >= 5
    assert "viewer:***@127.0.0.1" in stderr  # the source is named, redacted
    assert "stopped delivering frames" in stderr


def test_mqtt_password_never_printed_at_debug(model_path, tmp_path):
    """paho's own DEBUG log included; the password travels by environment variable."""
    if shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto_passwd not installed")
    workdir = tmp_path / "broker"
    workdir.mkdir()
    pwfile = workdir / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pwfile), "cam", PW], check=True)
    broker = brokers.Mosquitto(workdir, anonymous=False, extra=[f"password_file {pwfile}"])
    broker.start()
    try:
        proc = support.run_cli(
            "run", "--source", "demo", "--model", str(model_path), "--state-dir", str(tmp_path / "s"),
            "--mqtt-port", str(broker.port), "--log-level", "DEBUG", "--max-frames", "3",
            env={"FACECAST_MQTT__USERNAME": "cam", "FACECAST_MQTT__PASSWORD": PW,
                 "FACECAST_SOURCE__DEMO_FRAMES": "3"},
        )  # fmt: skip
    finally:
        broker.stop()
    assert proc.returncode == 0, proc.stderr
    assert "Sending CONNECT" in proc.stderr  # paho's DEBUG lines were on
    assert "all events delivered" in proc.stderr
    assert PW not in proc.stdout and PW not in proc.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("open rtsp://admin:hunter22@10.0.0.5:554/s1 failed", "open rtsp://admin:***@10.0.0.5:554/s1 failed"),
        ("http://u:p@ss:w@host/x and https://a:b@c/", "http://u:***@host/x and https://a:***@c/"),
        ("http://host/x?user=a:b@c", "http://host/x?user=a:b@c"),  # not userinfo: left alone
        ("plain text, user@host, a:b", "plain text, user@host, a:b"),
    ],
)
def test_redact_masks_url_passwords(text, expected):
    assert redact(text) == expected


def test_formatter_masks_registered_secrets_in_tracebacks_too():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter("%(levelname)s %(message)s"))
    log = logging.getLogger("test_log_secrets.formatter")
    log.addHandler(handler)
    log.propagate = False
    try:
        hide_in_logs("mqtt-Pa55word", log)
        try:
            int("http://x:y-secret@h/")  # a real exception whose message carries a URL
        except ValueError:
            log.exception("login with %s failed", "mqtt-Pa55word")
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    assert "Pa55word" not in text and "y-secret" not in text
    assert "ERROR login with *** failed" in text
    assert "invalid literal for int() with base 10: 'http://x:***@h/'" in text  # the traceback, masked


def test_reader_that_goes_away_is_still_a_clean_exit(model_path, tmp_path):
    """`facecast run --sink stdout | head -1`: stdout now lives on a duplicate descriptor, and the
    end of the reader must still be exit 0 without Python's 'Exception ignored' at shutdown."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACECAST_")}
    env["FACECAST_SOURCE__DEMO_FRAMES"] = "60"
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "--sink", "stdout", "--source", "demo",
         "--model", str(model_path), "--state-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=str(support.REPO),
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    assert json.loads(first)["topic"].endswith(("/frames", "/stats"))  # the stats at start may come first
    proc.stdout.close()  # the reader is gone; the agent's next write meets a broken pipe
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 0, err[-3000:]
    assert "Exception ignored" not in err and "Traceback" not in err
