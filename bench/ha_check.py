"""A real Home Assistant, a real broker and the agent: which entities appear, with which states.

Not part of CI (installing Home Assistant takes minutes and hundreds of MB). It:

1. makes (once) a venv for Home Assistant with the interpreter given (``--python``; Home Assistant
   2025.x needs Python 3.13, which pyenv provides) and installs ``homeassistant==--ha-version``;
2. starts a private Mosquitto and Home Assistant on free ports, with a throw-away config folder;
3. onboards a user and adds the MQTT integration through Home Assistant's REST API;
4. runs ``facecast run --source demo`` with ``homeassistant.discovery`` = ``--discovery``;
5. prints every ``facecast`` entity with its state and attributes (REST ``/api/states``) while the
   agent runs, the event entity's last event, the entities after the agent's clean stop, and what
   Home Assistant logged about MQTT discovery.

Usage::

    PYTHONPATH=. .venv/bin/python bench/ha_check.py --ha-version 2025.4.4 \\
        --python "$(pyenv root)/versions/3.13.0/bin/python3.13" --discovery auto
    PYTHONPATH=. .venv/bin/python bench/ha_check.py --ha-version 2024.3.3 \\
        --python "$(pyenv root)/versions/3.11.7/bin/python3.11" --discovery entities

Home Assistant 2024.3 from pip needs ``josepy<2`` to start; the script adds it for 2024.x.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEVICE = "bench-ha"
PASSWORD = "facecast-bench-pw"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def ha_venv(workdir: Path, version: str, python: str) -> Path:
    """The venv holding ``homeassistant==version``, made on first use."""
    venv = workdir / f"ha-{version}"
    hass = venv / "bin" / "hass"
    if hass.exists():
        return venv
    say(f"installing Home Assistant {version} into {venv} (minutes, once)")
    subprocess.run(["nice", "-n", "19", python, "-m", "venv", str(venv)], check=True)
    extra = ["josepy<2"] if version.startswith("2024.") else []
    subprocess.run(
        ["nice", "-n", "19", str(venv / "bin" / "pip"), "install", "-q", f"homeassistant=={version}", *extra],
        check=True,
    )
    return venv


def start_mosquitto(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = folder / "mosquitto.conf"
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false", "log_dest stderr"]
    if os.geteuid() == 0:
        lines.append("user root")
    conf.write_text("\n".join(lines) + "\n")
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    log = (folder / "mosquitto.log").open("wb")
    proc = subprocess.Popen([mosquitto, "-c", str(conf)], stdout=log, stderr=log)
    wait_port(port, 10)
    return proc, port


def wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"nothing listens on {port} after {timeout:.0f} s")


class HomeAssistant:
    def __init__(self, venv: Path, folder: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.folder = folder
        self.token = ""
        (folder / "configuration.yaml").write_text(
            "homeassistant:\n  name: facecast bench\n  time_zone: UTC\n  unit_system: metric\n"
            f"http:\n  server_host: 127.0.0.1\n  server_port: {self.port}\n"
            "api:\nconfig:\nonboarding:\n"
            "logger:\n  default: warning\n  logs:\n    homeassistant.components.mqtt: info\n"
        )
        self.log = folder / "home-assistant.out"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                ["nice", "-n", "19", str(venv / "bin" / "hass"), "-c", str(folder)],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def request(self, method: str, path: str, body: Any = None, form: bool = False) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        data = None
        if body is not None:
            if form:
                data = urllib.parse.urlencode(body).encode()
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            else:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        with urllib.request.urlopen(req, timeout=30) as resp:
            text = resp.read().decode()
        return json.loads(text) if text else None

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"Home Assistant exited: {self.log.read_text()[-3000:]}")
            try:
                self.request("GET", "/api/onboarding")
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(1)
        raise SystemExit(f"Home Assistant not up after {timeout:.0f} s: {self.log.read_text()[-3000:]}")

    def onboard(self) -> None:
        client_id = self.url + "/"
        person = {"client_id": client_id, "name": "bench", "username": "bench", "password": PASSWORD}
        user = self.request("POST", "/api/onboarding/users", {**person, "language": "en"})
        grant = {"grant_type": "authorization_code", "code": user["auth_code"], "client_id": client_id}
        token = self.request("POST", "/auth/token", grant, form=True)
        self.token = token["access_token"]

    def add_mqtt(self, broker_port: int) -> None:
        flow = self.request("POST", "/api/config/config_entries/flow", {"handler": "mqtt"})
        for _ in range(3):
            if flow.get("type") != "form":
                break
            fields = {f["name"] for f in flow.get("data_schema", [])}
            answer: dict[str, Any] = {}
            if "broker" in fields:
                answer = {"broker": "127.0.0.1", "port": broker_port}
            flow = self.request("POST", f"/api/config/config_entries/flow/{flow['flow_id']}", answer)
        if flow.get("type") != "create_entry":
            raise SystemExit(f"MQTT integration not added: {flow}")

    def states(self) -> list[dict[str, Any]]:
        return [s for s in self.request("GET", "/api/states") if "facecast" in s["entity_id"]]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def show(states: list[dict[str, Any]], title: str) -> None:
    say(f"--- {title}: {len(states)} facecast entities")
    for s in sorted(states, key=lambda s: s["entity_id"]):
        attrs = {k: v for k, v in s["attributes"].items() if k not in ("friendly_name", "icon")}
        text = json.dumps(attrs, sort_keys=True)
        say(f"{s['entity_id']:<52} {s['state']!s:<26} {text[:150]}{'...' if len(text) > 150 else ''}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ha-version", default="2025.4.4")
    ap.add_argument("--python", default=sys.executable, help="interpreter for Home Assistant's venv")
    ap.add_argument("--discovery", choices=["auto", "device", "entities"], default="auto")
    ap.add_argument(
        "--first-discovery",
        choices=["auto", "device", "entities"],
        help="the form of the first run (default: --discovery); another one shows the hand-over",
    )
    ap.add_argument("--workdir", type=Path, default=Path.home() / ".cache" / "facecast-bench")
    ap.add_argument("--seconds", type=float, default=25.0, help="how long the agent runs")
    ap.add_argument("--privacy", default="", help="extra agent env, e.g. FACECAST_PRIVACY__GENDER=false")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    venv = ha_venv(args.workdir, args.ha_version, args.python)
    hass = str(venv / "bin" / "hass")
    version = subprocess.run([hass, "--version"], capture_output=True, text=True, check=False).stdout
    folder = Path(tempfile.mkdtemp(prefix="facecast-ha-"))
    broker, broker_port = start_mosquitto(folder)
    config_dir = folder / "config"
    config_dir.mkdir()
    ha = HomeAssistant(venv, config_dir)
    agent = None
    try:
        say(f"Home Assistant {version.strip()} ({args.python}), Mosquitto on {broker_port}, "
            f"discovery={args.discovery}")  # fmt: skip
        started = time.monotonic()
        ha.wait_ready(900)
        ha.onboard()
        ha.add_mqtt(broker_port)
        say(f"Home Assistant up, onboarded, MQTT integration added in {time.monotonic() - started:.0f} s")
        time.sleep(3)  # the integration subscribes to the discovery topics
        env = {k: v for k, v in os.environ.items() if not k.startswith("FACECAST_")}
        env.update({
            "PYTHONPATH": str(REPO), "FACECAST_HOMEASSISTANT__DISCOVERY": args.discovery,
            "FACECAST_SOURCE__DEMO_FPS": "8", "FACECAST_SOURCE__DEMO_FRAMES": "100000",
            "FACECAST_EVENTS__STATS_INTERVAL_S": "2", "FACECAST_TRACKING__UPDATE_INTERVAL_S": "2",
        })  # fmt: skip
        for item in filter(None, args.privacy.split(",")):
            key, _, value = item.partition("=")
            env[key] = value
        cmd = [sys.executable, "-m", "agent.cli", "run", "--source", "demo", "--device-id", DEVICE,
               "--mqtt-port", str(broker_port), "--state-dir", str(folder / "agent-state")]  # fmt: skip
        log_file = (folder / "agent.log").open("ab")

        # Run 1: the agent announces itself; how long until Home Assistant shows it?
        first = {**env, "FACECAST_HOMEASSISTANT__DISCOVERY": args.first_discovery or args.discovery}
        say(f"run 1: discovery={first['FACECAST_HOMEASSISTANT__DISCOVERY']}")
        agent = subprocess.Popen(cmd, cwd=str(REPO), env=first, stdout=subprocess.DEVNULL, stderr=log_file)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 30 and not ha.states():
            time.sleep(0.25)
        found = ha.states()
        say(f"run 1: {len(found)} facecast entities {time.monotonic() - t0:.1f} s after the agent started")
        ids_run1 = sorted(s["entity_id"] for s in found)
        time.sleep(3)
        agent.send_signal(signal.SIGTERM)
        agent.wait(15)
        time.sleep(2)
        say(f"run 2: discovery={args.discovery}")

        # Run 2: the entities exist from the start, so the event entity sees the person appear.
        agent = subprocess.Popen(cmd, cwd=str(REPO), env=env, stdout=subprocess.DEVNULL, stderr=log_file)
        fired: list[tuple[float, dict[str, Any]]] = []
        last = None
        t0 = time.monotonic()
        mid_shown = False
        while time.monotonic() - t0 < args.seconds:
            for state in ha.states():
                if state["entity_id"].startswith("event.") and state["state"] not in (
                    last,
                    "unknown",
                    "unavailable",
                ):
                    last = state["state"]
                    fired.append((time.monotonic() - t0, state["attributes"]))
            if not mid_shown and time.monotonic() - t0 > args.seconds / 2:
                show(ha.states(), f"run 2, {time.monotonic() - t0:.0f} s in")
                mid_shown = True
            time.sleep(0.25)
        agent.send_signal(signal.SIGTERM)
        agent.wait(15)
        say(f"run 2: agent stopped cleanly (exit {agent.returncode})")
        time.sleep(1)
        show(ha.states(), "1 s after the agent's clean stop")
        ids_run2 = sorted(s["entity_id"] for s in ha.states())
        same = "the same" if ids_run1 == ids_run2 else f"NOT the same (run 1: {ids_run1})"
        say(f"entity ids after run 2: {same} as after run 1")
        say(f"--- the event entity fired {len(fired)} time(s) while polled every 0.25 s:")
        for at, attrs in fired:
            event = {k: v for k, v in attrs.items() if k not in ("event_types", "friendly_name", "icon")}
            say(f"  {at:5.1f} s  {json.dumps(event, sort_keys=True)}")
        log = config_dir / "home-assistant.log"
        text = log.read_text() if log.exists() else ha.log.read_text()
        wanted = ("facecast", "not supported", "Invalid event type")
        lines = [ln for ln in text.splitlines() if "mqtt" in ln.lower() and any(w in ln for w in wanted)]
        say(f"--- Home Assistant's log about facecast / MQTT discovery: {len(set(lines))} lines")
        for line in sorted(set(lines))[:25]:
            say("  " + line[:220])
    finally:
        if agent is not None and agent.poll() is None:
            agent.kill()
        ha.stop()
        broker.terminate()
        broker.wait(10)
    say(f"(files in {folder})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
