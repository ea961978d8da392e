"""The dashboard's server side on a real broker: whatever arrives, it keeps going.

A batch of malformed payloads (the ``{"tracks":[{}]}`` that used to raise on paho's thread and
freeze the page, non-JSON, wrong types, NaN, a megabyte, nesting deeper than the JSON parser
goes, invalid UTF-8, an absurd device id) is counted and skipped; then a real agent's messages
still arrive. Also: the security headers, the favicon, and dismissing an agent over HTTP.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest

from agent.config.mqtt import MqttConfig
from agent.dashboard import DashboardServer, DashboardState
from agent.dashboard.subscriber import DashboardSubscriber
from tests import brokers
from tests.agent_support import run_cli

MALFORMED = [
    ("junk", "presence", b'{"tracks":[{}]}'),
    ("junk", "presence", b"not json at all"),
    ("junk", "presence", b'{"faces": "many", "tracks": []}'),
    ("junk", "presence", b'{"tracks": "everyone"}'),
    ("junk", "presence", b"[]"),
    ("junk", "presence", b'{"tracks": [{"id": 1, "emotion": {"label": 7}}]}'),
    ("junk", "presence", b'{"tracks": [{"id": -3, "emotion": {"label": "happy"}}]}'),
    ("junk", "stats", b'{"fps_processed": "fast"}'),
    ("junk", "stats", b'{"fps_processed": NaN}'),
    ("junk", "stats", b'{"latency_ms": {"detect": 5}}'),
    ("junk", "events", b'{"type": "new", "track": null}'),
    ("junk", "events", b'{"type": "new", "track": {"id": 1, "emotion": []}}'),
    ("junk", "summary", b'{"start": "yesterday", "end": "today", "emotion": {}}'),
    (
        "junk",
        "summary",
        b'{"start": "2026-01-01T00:01:00.000Z", "end": "2026-01-01T00:00:00.000Z", "emotion": {}}',
    ),
    ("junk", "status", b"x" * 5000),
    ("junk", "presence", b'{"tracks": [' + b'{"id": 1, "emotion": {"label": "happy"}},' * 40000 + b"{}]}"),
    ("junk", "presence", b"[" * 100000 + b"]" * 100000),
    ("junk", "stats", b"\xff\xfe\xfa"),
    ("d" * 300, "status", b"online"),
]


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def post(url: str, body: bytes, ctype: str = "application/json") -> int:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": ctype}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@pytest.fixture
def dashboard(mosquitto):
    state = DashboardState(timeline_s=300)
    server = DashboardServer(state, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    subscriber = DashboardSubscriber(MqttConfig(port=mosquitto.port), state)
    subscriber.start()
    assert brokers.wait_for(lambda: state.broker_connected, 10)
    try:
        yield state, server
    finally:
        subscriber.close()
        server.stop()
        thread.join(5)
        server.close()


def snapshot(server: DashboardServer) -> dict[str, Any]:
    status, _, body = get(server.url + "api/state")
    assert status == 200
    return json.loads(body)  # type: ignore[no-any-return]


def test_malformed_payloads_are_counted_and_skipped_and_the_subscriber_goes_on(
    mosquitto,
    dashboard,
    tmp_path,
    model_path,
):
    state, server = dashboard
    client = brokers.Subscriber(mosquitto.port, ["nothing/here"])
    try:
        for device, kind, payload in MALFORMED:
            client.client.publish(f"facecast/{device}/{kind}", payload, qos=1).wait_for_publish(10)
    finally:
        client.close()
    assert brokers.wait_for(lambda: state.malformed >= len(MALFORMED), 20), state.malformed
    assert state.malformed == len(MALFORMED)
    assert snapshot(server)["devices"] == {}  # nothing of them was kept

    # then a real agent: everything it sends is read
    proc = run_cli("run", "--source", "demo", "--max-frames", "30", "--device-id", "cam-after",
                   "--model", str(model_path), "--state-dir", str(tmp_path / "s"),
                   "--mqtt-port", str(mosquitto.port),
                   env={"FACECAST_TRACKING__SUMMARY_INTERVAL_S": "1"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert brokers.wait_for(lambda: "summary" in snapshot(server)["devices"].get("cam-after", {}), 10)
    after = snapshot(server)
    device = after["devices"]["cam-after"]
    assert device["status"] == {"status": "stopped"}
    assert device["stats"]["final"] is True and device["presence"]["faces"] == 0
    assert device["last_event"]["type"] == "end" and device["last_event"]["gender"] in ("male", "female")
    assert device["timeline"] and device["blocks"] and device["last_seen"] > 0
    assert after["malformed"] == len(MALFORMED)  # the agent's own messages are all readable


def test_headers_favicon_and_dismiss(mosquitto, dashboard):
    state, server = dashboard
    for path in ("", "app.js", "style.css", "api/state", "favicon.ico", "nowhere"):
        _status, headers, _body = get(server.url + path)
        csp = headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
        assert headers["X-Content-Type-Options"] == "nosniff"
    status, headers, body = get(server.url + "favicon.ico")
    assert status == 200 and headers["Content-Type"] == "image/svg+xml" and body.startswith(b"<svg")
    _, _, page = get(server.url)
    assert b'rel="icon" href="favicon.svg"' in page and b"<script src=" in page and b"<script>" not in page

    publisher = brokers.Subscriber(mosquitto.port, ["nothing/here"])
    publisher.client.publish("facecast/gone/status", b"stopped", qos=1, retain=True).wait_for_publish(10)
    publisher.close()
    assert brokers.wait_for(lambda: "gone" in snapshot(server)["devices"], 10)
    pages = state.attach()
    assert post(server.url + "api/dismiss", b"device=gone", "application/x-www-form-urlencoded") == 415
    assert post(server.url + "api/dismiss", b'{"device": 5}') == 400
    assert post(server.url + "api/dismiss", b'{"device": "gone"}') == 200
    assert "gone" not in snapshot(server)["devices"]
    assert pages.get(timeout=5) == {"type": "dismiss", "device": "gone"}  # every open page drops it
    assert post(server.url + "api/dismiss", b'{"device": "gone"}') == 404
