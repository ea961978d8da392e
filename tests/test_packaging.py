"""What each install extra brings: the device's ``agent`` extra holds only what ``facecast run`` needs.

A fresh device venv was 604 MB while scikit-image + scipy (the demo's picture), amqtt (the demo's
broker) and jsonschema (the tests) sat in the ``agent`` extra; without them it is about 350 MB.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # the 3.10 test lane: facecast depends on tomli there
    import tomli as tomllib

from tests.agent_support import REPO, assert_one_line_error
from tests.brokers import free_port

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
#: Demo-only, test-only or workstation-only distributions: never pulled onto a device.
NOT_FOR_A_DEVICE = frozenset(
    {"scipy", "scikit-image", "amqtt", "jsonschema", "tensorflow", "tensorflow-cpu", "pillow", "pydantic"}
)


def _names(requirements: list[str]) -> set[str]:
    """PEP 508 requirements -> normalised distribution names (``scikit_image`` -> ``scikit-image``)."""
    bare = (re.split(r"[\s<>=!~;\[(]", r, maxsplit=1)[0] for r in requirements)
    return {re.sub(r"[-_.]+", "-", name).lower() for name in bare}


def _extra(name: str) -> set[str]:
    return _names(PYPROJECT["project"]["optional-dependencies"][name])


def test_device_extra_leaves_out_demo_test_and_training_packages():
    device = _names(PYPROJECT["project"]["dependencies"]) | _extra("agent")
    assert not device & NOT_FOR_A_DEVICE, device & NOT_FOR_A_DEVICE
    assert {"ai-edge-litert", "opencv-python-headless", "paho-mqtt", "numpy", "pyyaml"} <= device


def test_demo_and_test_packages_live_in_their_own_extras():
    assert "amqtt" in _extra("demo")
    assert "jsonschema" in _extra("dev")
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert not any("scikit-image" in _names(reqs) or "scipy" in _names(reqs) for reqs in extras.values())
    script = (REPO / "scripts" / "dev").read_text(encoding="utf-8")
    assert "setup agent,demo\n" in script  # `scripts/dev demo`: the device extra plus the broker
    assert 'ALL="agent,demo,train,dev"' in script  # `scripts/dev test` and `lint`


def test_ansible_role_installs_the_device_extra_only():
    tasks = (REPO / "deploy" / "roles" / "facecast" / "tasks" / "install.yml").read_text(encoding="utf-8")
    assert re.findall(r"\[\{\{ (\w+) \}\}\]\"\s*$", tasks, flags=re.MULTILINE) == ["facecast_extra"]
    # ... which is one of the two device extras, never demo, train or dev.
    choice = re.search(r"facecast_extra: \"\{\{ '([\w-]+)' if [^']+ else '([\w-]+)' \}\}\"", tasks)
    assert choice is not None and set(choice.groups()) == {"agent", "agent-syscv"}


def test_system_opencv_extra_has_no_opencv_wheel_and_a_numpy_its_cv2_loads():
    syscv = PYPROJECT["project"]["optional-dependencies"]["agent-syscv"]
    assert not any(name.startswith("opencv") for name in _names(syscv))
    assert _names(syscv) - {"numpy"} == _extra("agent") - {"opencv-python-headless"}
    assert "numpy<2; python_version < '3.13'" in syscv


def test_demo_picture_ships_in_the_package_and_needs_no_scikit_image():
    assert "astronaut.jpg" in PYPROJECT["tool"]["setuptools"]["package-data"]["agent.sources"]
    picture = REPO / "agent" / "sources" / "astronaut.jpg"
    assert picture.stat().st_size < 200_000
    # A real run of the demo source with scikit-image and scipy made unimportable.
    code = (
        "import sys; sys.modules['skimage'] = sys.modules['scipy'] = None\n"
        "from agent.sources.demo import DemoSource\n"
        "frame = next(iter(DemoSource(frames=2)))\n"
        "print(frame.image.shape, int(frame.image.std() > 20))"
    )
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[0] == "(360, 640, 3) 1"


def test_demo_without_the_demo_extra_says_what_to_install(tmp_path):
    """No broker answers and amqtt is not installed: one line naming the extra, not a traceback."""
    code = (
        "import sys; sys.modules['amqtt'] = None\n"  # what a venv without the demo extra looks like
        "from agent.cli import main\n"
        "raise SystemExit(main(sys.argv[1:]))"
    )
    port = str(free_port())
    proc = _python(
        code, "demo", "--frames", "2", "--fps", "0", "--mqtt-port", port, "--state-dir", str(tmp_path)
    )
    assert proc.returncode == 1
    assert_one_line_error(proc, "amqtt", "pip install 'facecast[demo]'", f"127.0.0.1:{port}")


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACECAST_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=str(REPO),
        check=False,
    )
