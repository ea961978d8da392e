"""Authentication and TLS against a real Mosquitto, and the password never leaking into logs."""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tests.agent_support as support
from agent.comms.mqtt import MqttPublisher
from agent.config.mqtt import MqttConfig, MqttTlsConfig
from agent.config.validation import Secret
from tests import brokers

DEVICE = "seccam"
FRAMES = f"facecast/{DEVICE}/frames"
STATUS = f"facecast/{DEVICE}/status"
SECRET = "Pa55-w0rd-never-in-logs"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")
OPENSSL = shutil.which("openssl")


@pytest.fixture
def auth_broker(tmp_path):
    if MOSQUITTO_PASSWD is None:
        pytest.skip("mosquitto_passwd not installed")
    workdir = tmp_path / "auth-broker"
    workdir.mkdir()
    pwfile = workdir / "passwd"
    subprocess.run([MOSQUITTO_PASSWD, "-b", "-c", str(pwfile), "cam", SECRET], check=True)
    subprocess.run([MOSQUITTO_PASSWD, "-b", str(pwfile), "viewer", "viewer-pw"], check=True)
    broker = brokers.Mosquitto(workdir, anonymous=False, extra=[f"password_file {pwfile}"])
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def _no_secret_anywhere(caplog) -> None:
    assert caplog.records
    for record in caplog.records:
        assert SECRET not in record.getMessage()
        assert SECRET not in str(record.args)
    assert SECRET not in caplog.text


def test_password_file_login_delivers(auth_broker, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)  # paho's own debug log included
    pwfile = tmp_path / "mqtt_password"
    pwfile.write_text(SECRET + "\n")
    sub = brokers.Subscriber(auth_broker.port, [FRAMES, STATUS], auth=("viewer", "viewer-pw"))
    cfg = MqttConfig(port=auth_broker.port, username="cam", password_file=pwfile)
    pub = MqttPublisher(cfg, DEVICE, tmp_path / "state")
    try:
        pub.start()
        for i in range(20):
            pub.publish("frames", {"seq": i})
        assert brokers.wait_for(lambda: len(sub.payloads(FRAMES)) >= 20, 10)
        assert sub.seqs(FRAMES) == list(range(20))
        pub.close(timeout=5)
        assert brokers.retained(auth_broker.port, STATUS, auth=("viewer", "viewer-pw")) == "stopped"
    finally:
        pub.close(timeout=1)
        sub.close()
    assert SECRET not in repr(cfg) and SECRET not in repr(cfg.resolve_password())
    _no_secret_anywhere(caplog)


def test_systemd_credential_login(auth_broker, tmp_path, monkeypatch):
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt_password").write_text(SECRET)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    pub = MqttPublisher(MqttConfig(port=auth_broker.port, username="cam"), DEVICE, tmp_path)
    try:
        pub.start()
        assert brokers.wait_for(pub.is_connected, 10)
    finally:
        pub.close(timeout=2)


def test_wrong_password_does_not_raise_and_keeps_buffering(auth_broker, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    cfg = MqttConfig(
        port=auth_broker.port, username="cam", password=Secret(SECRET + "-wrong"), reconnect_max_delay=1
    )
    pub = MqttPublisher(cfg, DEVICE, tmp_path)
    pub.start()
    for i in range(5):
        pub.publish("frames", {"seq": i})
    assert brokers.wait_for(lambda: any("refused" in r.getMessage() for r in caplog.records), 10)
    time.sleep(2.5)  # several more refused attempts
    pub.close(timeout=0.5)
    refused = _refusal_lines(caplog)  # the closing summary repeats it once more, by design
    assert len(refused) == 1, "say it once, not once per retry (within a minute)"
    assert pub.stats()["connected"] is False
    for record in caplog.records:
        assert SECRET not in record.getMessage()


def _make_certs(d: Path, san: str = "IP:127.0.0.1") -> None:
    """A CA (ca.crt) and a server certificate it signed for ``san`` (server.crt/.key) in ``d``."""

    def run(*args: str) -> None:
        assert OPENSSL is not None
        subprocess.run([OPENSSL, *args], check=True, capture_output=True, cwd=d)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        "-days", "2", "-subj", "/CN=facecast-test-ca")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1")  # fmt: skip
    (d / "san.ext").write_text(f"subjectAltName={san}\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.crt", "-days", "2", "-extfile", "san.ext")  # fmt: skip


@pytest.mark.skipif(OPENSSL is None, reason="openssl not installed")
def test_tls_connection_delivers(tmp_path):
    certs = tmp_path / "certs"
    certs.mkdir()
    _make_certs(certs)
    tls_port = brokers.free_port()
    broker = brokers.Mosquitto(
        tmp_path / "tls-broker",
        extra=[
            f"listener {tls_port} 127.0.0.1",
            f"cafile {certs / 'ca.crt'}",
            f"certfile {certs / 'server.crt'}",
            f"keyfile {certs / 'server.key'}",
        ],
    )
    broker.start()  # plain listener for the test subscriber, TLS listener for the publisher
    sub = brokers.Subscriber(broker.port, [FRAMES])
    cfg = MqttConfig(port=tls_port, tls=MqttTlsConfig(enabled=True, ca_certs=certs / "ca.crt"))
    pub = MqttPublisher(cfg, DEVICE, tmp_path / "state")
    try:
        pub.start()
        for i in range(30):
            pub.publish("frames", {"seq": i})
        assert brokers.wait_for(lambda: len(sub.payloads(FRAMES)) >= 30, 10)
        assert sub.seqs(FRAMES) == list(range(30))
        pub.close(timeout=5)
        assert brokers.retained(broker.port, STATUS) == "stopped"
    finally:
        pub.close(timeout=1)
        sub.close()
        broker.stop()


@pytest.mark.skipif(OPENSSL is None, reason="openssl not installed")
def test_tls_untrusted_server_is_not_used(tmp_path, caplog):
    """Certificate verification is on by default: a server our CA did not sign gets nothing,
    and the log says why, in the words the broker's side uses (`unknown ca`)."""
    caplog.set_level(logging.INFO, logger="agent.comms")
    certs, other = tmp_path / "certs", tmp_path / "other"
    certs.mkdir()
    other.mkdir()
    _make_certs(certs)
    _make_certs(other)
    tls_port = brokers.free_port()
    broker = brokers.Mosquitto(
        tmp_path / "tls-broker",
        extra=[
            f"listener {tls_port} 127.0.0.1",
            f"certfile {certs / 'server.crt'}",
            f"keyfile {certs / 'server.key'}",
        ],
    )
    broker.start()
    cfg = MqttConfig(port=tls_port, tls=MqttTlsConfig(enabled=True, ca_certs=other / "ca.crt"))
    pub = MqttPublisher(cfg, DEVICE, tmp_path / "state")
    try:
        pub.start()
        pub.publish("frames", {"seq": 0})
        time.sleep(1.5)
        assert not pub.is_connected()
        assert pub.stats()["buffered"] == 1
    finally:
        pub.close(timeout=0.5)
        broker.stop()
    line = _refusal_lines(caplog)[0]
    assert "TLS certificate verify failed" in line and "unknown CA" in line, line
    assert str(other / "ca.crt") in line  # names the CA file it checked against
    reason = pub.undelivered_reason()
    assert reason is not None and "certificate verify failed" in reason and "1 event(s)" in reason


def test_unreadable_password_file_fails_start_loudly(tmp_path):
    cfg = MqttConfig(port=brokers.free_port(), username="cam", password_file=tmp_path / "missing")
    pub = MqttPublisher(cfg, DEVICE, tmp_path / "state")
    with pytest.raises(OSError, match="missing"):
        pub.start()
    assert not (tmp_path / "state" / "buffer.sqlite3").exists()


# -- a refused connection names its cause (issue 27.5) --------------------------------------------


def _refusal_lines(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "agent.comms.mqtt"
        and "refused the connection:" in r.getMessage()
        and not r.getMessage().startswith("MQTT publisher closed")
    ]


def _tls_broker(tmp_path: Path, certs: Path) -> tuple[brokers.Mosquitto, int]:
    """A started broker: a plain listener (``.port``) and a TLS one (the returned port)."""
    tls_port = brokers.free_port()
    broker = brokers.Mosquitto(
        tmp_path / f"tls-broker-{certs.name}",
        extra=[
            f"listener {tls_port} 127.0.0.1",
            f"certfile {certs / 'server.crt'}",
            f"keyfile {certs / 'server.key'}",
        ],
    )
    broker.start()
    return broker, tls_port


@pytest.mark.slow
def test_wrong_password_names_the_cause_and_repeats_it_at_most_once_per_interval(
    auth_broker, tmp_path, caplog
):
    caplog.set_level(logging.DEBUG)
    cfg = MqttConfig(
        port=auth_broker.port,
        username="cam",
        password=Secret(SECRET + "-wrong"),
        reconnect_min_delay=1,
        reconnect_max_delay=1,
    )
    pub = MqttPublisher(cfg, DEVICE, tmp_path, report_every_s=2.0)
    pub.start()
    for i in range(5):
        pub.publish("frames", {"seq": i})
    time.sleep(5.5)  # about six refused attempts, one a second
    stats = pub.stats()
    pub.close(timeout=0.5)

    assert stats["connect_failures"] >= 5, "paho keeps retrying"
    assert "not authorised" in stats["last_connect_failure"]
    lines = [r for r in caplog.records if r.getMessage() in _refusal_lines(caplog)]
    assert "not authorised: bad username or password for user 'cam'" in lines[0].getMessage()
    assert "retrying every 1-1 s" in lines[0].getMessage()
    assert 2 <= len(lines) <= 3 < stats["connect_failures"], [r.getMessage() for r in lines]
    gaps = [b.created - a.created for a, b in itertools.pairwise(lines)]
    assert all(gap >= 1.9 for gap in gaps), gaps
    assert "still failing" in lines[1].getMessage() and "5 event(s) waiting" in lines[1].getMessage()
    reason = pub.undelivered_reason()
    assert reason is not None and reason.startswith(f"MQTT broker 127.0.0.1:{auth_broker.port} refused")
    assert "not authorised" in reason and "5 event(s) kept on disk" in reason
    for record in caplog.records:
        assert SECRET not in record.getMessage()


@pytest.mark.slow
def test_refused_connection_is_retried_with_backoff(auth_broker, tmp_path, caplog):
    """paho's own DEBUG log times each CONNECT: 1 s, then 2 s (the max) between refused attempts."""
    caplog.set_level(logging.DEBUG)  # before start(): paho's logger is attached only when enabled
    cfg = MqttConfig(port=auth_broker.port, username="cam", password=Secret("nope"), reconnect_max_delay=2)
    pub = MqttPublisher(cfg, DEVICE, tmp_path)
    pub.start()
    try:
        time.sleep(5.6)
    finally:
        pub.close(timeout=0.5)
    sent = [r.created for r in caplog.records if r.getMessage().startswith("Sending CONNECT")]
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert len(gaps) >= 3, gaps
    assert 0.8 <= gaps[0] <= 1.7, gaps
    assert all(1.8 <= gap <= 2.9 for gap in gaps[1:]), gaps


def test_no_username_for_a_broker_that_wants_one(auth_broker, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="agent.comms")
    pub = MqttPublisher(MqttConfig(port=auth_broker.port), DEVICE, tmp_path)
    pub.start()
    try:
        assert brokers.wait_for(lambda: _refusal_lines(caplog), 10)
    finally:
        pub.close(timeout=0.5)
    assert "no username was sent and this broker wants one" in _refusal_lines(caplog)[0]


@pytest.mark.skipif(OPENSSL is None, reason="openssl not installed")
def test_tls_certificate_for_another_host_names_the_mismatch(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="agent.comms")
    certs = tmp_path / "elsewhere"
    certs.mkdir()
    _make_certs(certs, san="DNS:elsewhere.example")  # signed by our CA, but not for 127.0.0.1
    broker, tls_port = _tls_broker(tmp_path, certs)
    cfg = MqttConfig(port=tls_port, tls=MqttTlsConfig(enabled=True, ca_certs=certs / "ca.crt"))
    pub = MqttPublisher(cfg, DEVICE, tmp_path / "state")
    try:
        pub.start()
        assert brokers.wait_for(lambda: _refusal_lines(caplog), 10)
    finally:
        pub.close(timeout=0.5)
        broker.stop()
    line = _refusal_lines(caplog)[0]
    assert "TLS certificate verify failed: IP address mismatch" in line, line
    assert "not issued for '127.0.0.1'" in line


@pytest.mark.skipif(OPENSSL is None, reason="openssl not installed")
def test_tls_against_a_plain_port_and_plain_against_a_tls_port(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="agent.comms")
    certs = tmp_path / "certs"
    certs.mkdir()
    _make_certs(certs)
    broker, tls_port = _tls_broker(tmp_path, certs)
    tls_to_plain = MqttConfig(port=broker.port, tls=MqttTlsConfig(enabled=True, ca_certs=certs / "ca.crt"))
    plain_to_tls = MqttConfig(port=tls_port)
    try:
        for cfg, needle in [
            (tls_to_plain, f"during the TLS handshake: is {broker.port} a plain MQTT listener?"),
            (
                plain_to_tls,
                f"without answering CONNECT; is {tls_port} a TLS listener? then set mqtt.tls.enabled",
            ),
        ]:
            caplog.clear()
            pub = MqttPublisher(cfg, DEVICE, tmp_path / f"state-{cfg.port}")
            pub.start()
            pub.publish("frames", {"seq": 0})
            try:
                assert brokers.wait_for(lambda: _refusal_lines(caplog), 10)
            finally:
                pub.close(timeout=0.5)
            assert needle in _refusal_lines(caplog)[0], _refusal_lines(caplog)
            assert not pub.stats()["connected"]
            assert "1 event(s) kept on disk" in (pub.undelivered_reason() or "")
    finally:
        broker.stop()


# -- a bounded run the broker refused ends non-zero, with one line naming why ---------------------


def _bounded_run(model: Path, state: Path, port: int, **env: str):
    return support.run_cli(
        "run", "--source", "demo", "--model", str(model), "--state-dir", str(state),
        "--mqtt-port", str(port), "--max-frames", "4", "--device-id", DEVICE,
        env={"FACECAST_SOURCE__DEMO_FRAMES": "4", **env},
    )  # fmt: skip


def _kept_on_disk(state: Path) -> int:
    with sqlite3.connect(state / "buffer.sqlite3") as db:
        return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])


def test_cli_bounded_run_with_wrong_password_exits_non_zero(auth_broker, tmp_path, model_path):
    state = tmp_path / "state"
    proc = _bounded_run(
        model_path, state, auth_broker.port, FACECAST_MQTT__USERNAME="cam", FACECAST_MQTT__PASSWORD="wrong-pw"
    )
    line = support.assert_one_line_error(
        proc, f"MQTT broker 127.0.0.1:{auth_broker.port} refused the connection"
    )
    assert proc.returncode == 1
    assert "not authorised: bad username or password for user 'cam'" in line
    kept = _kept_on_disk(state)
    assert kept > 0 and f"{kept} event(s) kept on disk" in line

    # Fixed: the next run delivers what the refused one kept (nothing was lost).
    sub = brokers.Subscriber(auth_broker.port, [f"facecast/{DEVICE}/frames"], auth=("viewer", "viewer-pw"))
    try:
        proc = _bounded_run(
            model_path, state, auth_broker.port, FACECAST_MQTT__USERNAME="cam", FACECAST_MQTT__PASSWORD=SECRET
        )
        assert proc.returncode == 0, proc.stderr
        assert brokers.wait_for(lambda: len(sub.payloads(f"facecast/{DEVICE}/frames")) >= 8, 10)
    finally:
        sub.close()
    assert _kept_on_disk(state) == 0


@pytest.mark.skipif(OPENSSL is None, reason="openssl not installed")
def test_cli_bounded_run_refused_by_tls_exits_non_zero(tmp_path, model_path):
    certs, other = tmp_path / "certs", tmp_path / "other"
    certs.mkdir()
    other.mkdir()
    _make_certs(certs)
    _make_certs(other)
    broker, tls_port = _tls_broker(tmp_path, certs)
    try:
        cases = [
            (
                tls_port,
                other / "ca.crt",
                "TLS certificate verify failed: unable to get local issuer certificate (unknown CA",
            ),
            (
                broker.port,
                certs / "ca.crt",
                f"during the TLS handshake: is {broker.port} a plain MQTT listener?",
            ),
        ]
        for port, ca, needle in cases:
            env = {"FACECAST_MQTT__TLS__ENABLED": "true", "FACECAST_MQTT__TLS__CA_CERTS": str(ca)}
            proc = _bounded_run(model_path, tmp_path / f"state-{port}", port, **env)
            line = support.assert_one_line_error(proc, f"MQTT broker 127.0.0.1:{port} refused the connection")
            assert needle in line and "event(s) kept on disk" in line, line
    finally:
        broker.stop()


def test_cli_bounded_run_with_no_broker_is_still_exit_0(tmp_path, model_path):
    """Unreachable is not refused: the events wait on disk and the run is not a failure."""
    proc = _bounded_run(model_path, tmp_path, brokers.free_port())
    assert proc.returncode == 0, proc.stderr
    assert "unreachable (connection refused" in proc.stderr and "kept on disk" in proc.stderr


@pytest.mark.slow
def test_cli_service_on_a_live_source_stopped_while_refused_exits_0(auth_broker, tmp_path, model_path):
    """A camera run ends only by a signal: it names the refusal in the log but keeps exit 0, so
    systemd does not record every stop during a password mix-up as a failed service."""
    clip = next(iter(sorted(support.VIDEOS.glob("*.mp4"))), None)
    if clip is None:
        pytest.skip(f"no clips under {support.VIDEOS}")
    camera = support.HttpCamera(tmp_path, clip, frames=30)
    camera.plug_in()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACECAST_")}
    env.update(
        FACECAST_MQTT__USERNAME="cam", FACECAST_MQTT__PASSWORD="wrong-pw", FACECAST_SOURCE__MAX_FPS="10"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "--source", camera.url, "--model", str(model_path),
         "--state-dir", str(tmp_path / "state"), "--mqtt-port", str(auth_broker.port), "--device-id", DEVICE],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(support.REPO),
    )  # fmt: skip
    try:
        time.sleep(6)  # model load, the refused CONNACK, a few events into the buffer
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=20)
    finally:
        camera.unplug()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    assert "refused the connection: not authorised" in err
    assert "kept on disk for the next run" in err
    assert not support.error_lines(err)
