"""The dashboard in a real headless browser: Debian's chromium driven by playwright-core.

Real broker, real agents (demo source), the real ``facecast dashboard`` process, the real page. An
agent that ran and stopped before the dashboard started shows greyed, with when it was last seen,
and its retained summary on the timeline. Two live agents show online, one with a face's emotion
and gender, the other (``privacy.gender: false``) with none. A batch of malformed payloads is
counted and skipped, and the page still shows the agent we then stop as offline; dismissed, it
stays gone after a reload. The page loads its favicon, under a Content-Security-Policy that it
never violates. The screenshot stays in the test's temp dir (path printed with ``-s``).

Needs ``tests/browser/ci-prepare.sh`` (chromium + playwright-core from the lockfile); skipped when
that has not run, unless FACECAST_REQUIRE_BROWSER=1 (CI) turns the skip into a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.agent_support import REPO, run_cli
from tests.brokers import Subscriber
from tests.test_dashboard_server import MALFORMED

pytestmark = pytest.mark.browser

BROWSER_DIR = REPO / "tests" / "browser"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LIVE, STOPPING, OLD = "cam-lobby", "cam-door", "cam-attic"


def browser_ready() -> None:
    missing = [
        what
        for what, ok in (
            ("chromium", Path(CHROMIUM).exists()),
            ("node", shutil.which("node") is not None),
            ("playwright-core", (BROWSER_DIR / "node_modules" / "playwright-core").is_dir()),
        )
        if not ok
    ]
    if missing:
        message = f"browser test needs {', '.join(missing)}: run tests/browser/ci-prepare.sh"
        if os.environ.get("FACECAST_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACECAST_")}
    env.update(extra)
    return env


class Lines:
    """Reads a child's stdout lines in a thread, so waiting for one never blocks forever."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._cv = threading.Condition()
        threading.Thread(target=self._pump, args=(proc,), daemon=True).start()

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self._cv:
                self.lines.append(line.rstrip("\n"))
                self._cv.notify_all()

    def wait(self, predicate, timeout: float) -> str | None:
        with self._cv:
            ok = self._cv.wait_for(lambda: any(predicate(x) for x in self.lines), timeout)
            return next((x for x in self.lines if predicate(x)), None) if ok else None


def start_agent(device: str, port: int, model: Path, state: Path, **env: str) -> subprocess.Popen[str]:
    env = clean_env(
        FACECAST_SOURCE__DEMO_FPS="6",
        FACECAST_SOURCE__DEMO_FRAMES="100000",
        FACECAST_EVENTS__STATS_INTERVAL_S="1",
        **env,
    )
    cmd = [sys.executable, "-m", "agent.cli", "run", "--source", "demo", "--device-id", device]
    cmd += ["--model", str(model), "--state-dir", str(state), "--mqtt-port", str(port)]
    return subprocess.Popen(
        cmd, cwd=str(REPO), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def err(proc: subprocess.Popen[str]) -> str:
    """The tail of a child's stderr, for an assertion message."""
    return proc.stderr.read()[-3000:] if proc.stderr is not None else ""


def stop(proc: subprocess.Popen[str], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.mark.slow
def test_dashboard_shows_agents_faces_and_offline_in_a_real_browser(mosquitto, tmp_path, model_path):
    browser_ready()
    port = mosquitto.port
    # an agent that came and went before the dashboard started: only its retained messages are left
    old = run_cli("run", "--source", "demo", "--max-frames", "40", "--device-id", OLD,
                  "--model", str(model_path), "--state-dir", str(tmp_path / OLD),
                  "--mqtt-port", str(port))  # fmt: skip
    assert old.returncode == 0, old.stderr[-2000:]
    dash = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "dashboard", "--mqtt-port", str(port), "--port", "0"],
        cwd=str(REPO), env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    agents: list[subprocess.Popen[str]] = []
    node = None
    try:
        url_line = Lines(dash).wait(lambda x: x.startswith("facecast dashboard: http"), 30)
        assert url_line, err(dash) if dash.poll() is not None else "no URL line"
        url = url_line.split(": ", 1)[1]
        assert url.startswith("http://127.0.0.1:")  # local only by default

        presence = Subscriber(port, [f"facecast/{STOPPING}/presence"])
        agents = [
            start_agent(LIVE, port, model_path, tmp_path / LIVE, FACECAST_PRIVACY__GENDER="false"),
            start_agent(STOPPING, port, model_path, tmp_path / STOPPING),
        ]
        shot = tmp_path / "dashboard.png"
        node = subprocess.Popen(
            ["node", str(BROWSER_DIR / "dashboard.mjs")],
            cwd=str(BROWSER_DIR),
            env=clean_env(
                DASHBOARD_URL=url,
                DEVICE_LIVE=LIVE,
                DEVICE_STOPPING=STOPPING,
                DEVICE_OLD=OLD,
                MALFORMED_COUNT=str(len(MALFORMED)),
                SCREENSHOT=str(shot),
                USER_DATA_DIR=str(tmp_path / "chromium-profile"),
                CHROMIUM=CHROMIUM,
                STEP_TIMEOUT_MS="90000",
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        steps = Lines(node)
        ready_line = steps.wait(lambda x: '"step":"ready"' in x, 150)
        assert ready_line, f"page never showed both agents and a face: {err(node)}"
        ready = json.loads(ready_line)
        # what the page shows is what the agent published
        published = {
            (t["emotion"]["label"], t["gender"]["label"])
            for p in presence.payloads(f"facecast/{STOPPING}/presence")
            for t in json.loads(p)["tracks"]
        }
        presence.close()
        assert ready["emotion"] in {e for e, _ in published}, (ready, published)
        assert ready["gender"].split()[0] in {g for _, g in published}
        assert re.fullmatch(r"#\d+", ready["liveGender"]), ready  # privacy.gender false: no gender shown
        assert ready["oldSeen"].startswith("last seen ") and "ago" in ready["oldSeen"], ready
        assert "grayscale" in ready["oldGrey"]
        assert ready["oldPainted"] > 0, ready  # its retained summary, on the timeline
        assert ready["favicon"] == "200 image/svg+xml"
        assert "default-src 'self'" in ready["csp"]

        junk = Subscriber(port, ["nothing/here"])
        for device, kind, payload in MALFORMED:
            junk.client.publish(f"facecast/{device}/{kind}", payload, qos=1).wait_for_publish(10)
        junk.close()
        stop(agents[1])  # a clean stop: retained 'stopped'; the page must still be following
        assert agents[1].returncode == 0, err(agents[1])
        done_line = steps.wait(lambda x: '"step":"done"' in x, 90)
        assert node.wait(60) == 0, err(node)
        assert done_line
        done = json.loads(done_line)
        assert done["statusText"] == "offline (stopped)"
        assert done["stoppedSeen"].startswith("last seen ")
        assert done["skipped"] == len(MALFORMED)
        assert done["liveStatus"] == "online"  # the other agent on the same broker is untouched
        assert float(done["fps"]) > 0 and done["latency"].endswith("ms")
        assert done["livePainted"] > 0  # the emotion timeline drew bars
        assert STOPPING not in done["afterReload"] and LIVE in done["afterReload"]  # dismissed for good
        assert done["errors"] == [] and done["failed"] == []  # no script error, CSP report or 404
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        print(f"dashboard screenshot: {shot}")
    finally:
        if node is not None and node.poll() is None:
            node.kill()
        for agent in agents:
            stop(agent)
        stop(dash)
