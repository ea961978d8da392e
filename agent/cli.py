"""The ``facecast`` command: ``run``, ``demo``, ``bench``, ``config check``.

Every error a user can cause ends as ONE line on stderr (``facecast: error: ...``) and a non-zero
exit status (2 for configuration/usage, 1 for anything else), never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from agent import __version__
from agent.cli_flags import FLAGS, flag_overrides
from agent.errors import ConfigError, FacecastError
from agent.log_redaction import redact
from agent.logging_setup import setup_logging
from agent.memory import fix_mmap_threshold
from agent.opencv import require_opencv

DEMO_FPS = 15.0  # the demo's pace: slow enough to read the events as they are printed

log = logging.getLogger("agent.cli")

EXIT_ERROR = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"facecast: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def config_default(dotted: str) -> Any:
    """The config model's default for ``dotted`` (``"mqtt.port"``), for the help text: the flags
    themselves default to None (not given, so the file and the environment keep their say)."""
    import dataclasses

    from agent.config import AgentConfig

    cls: Any = AgentConfig
    default: Any = None
    for name in dotted.split("."):
        field = {f.name: f for f in dataclasses.fields(cls)}[name]
        missing = field.default is dataclasses.MISSING
        default = field.default_factory() if missing else field.default  # type: ignore[operator]
        cls = type(default)
    return default


def _default(dotted: str) -> str:
    value = config_default(dotted)
    if isinstance(value, bool):
        return "on" if value else "off"
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="YAML or TOML config file (default: none, built-in defaults)",
    )
    p.add_argument(
        "--source",
        metavar="SOURCE",
        help="camera index, /dev/videoN, rtsp:// or http(s):// URL, video file, image folder, image, "
        "picamera2, demo, gst:<pipeline ending in appsink>, csi:N (Jetson CSI camera) "
        f"(default: {_default('source.uri')}, the first camera)",
    )
    p.add_argument(
        "--device-id",
        metavar="ID",
        help="this agent's name in every topic (default: the host name); letters, digits, - and _",
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="where the event buffer and sequence numbers live (default: $STATE_DIRECTORY under "
        "systemd, else $XDG_STATE_HOME/facecast or ~/.local/state/facecast)",
    )
    p.add_argument(
        "--model",
        type=Path,
        metavar="FILE",
        help="emotion/gender .tflite, its .json card beside it (default: the shipped "
        "models/facecast_int8.tflite)",
    )
    # No argparse choices: the config names a removed detector (haar) in its own one-line error.
    p.add_argument(
        "--detector",
        metavar="blazeface",
        help=f"face detector, blazeface is the only one (default: {_default('detector.name')})",
    )
    p.add_argument(
        "--max-width",
        type=int,
        metavar="PX",
        help="scale frames to this width before detection, 0 = never "
        f"(default: {_default('source.max_width')})",
    )
    p.add_argument(
        "--max-fps",
        type=float,
        metavar="N",
        help="live sources: at most N frames a second, the newest; 0 = no cap "
        f"(default: {_default('source.max_fps')})",
    )
    p.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
        help=f"what goes to stderr (default: {_default('log_level')})",
    )


def _mqtt_connection(p: argparse.ArgumentParser) -> None:
    """The broker and how to reach it: shared by every command that talks to one."""
    p.add_argument("--mqtt-host", metavar="HOST", help=f"MQTT broker host (default: {_default('mqtt.host')})")
    p.add_argument(
        "--mqtt-port", type=int, metavar="PORT", help=f"MQTT broker port (default: {_default('mqtt.port')})"
    )
    p.add_argument("--mqtt-username", metavar="NAME", help="MQTT user name (default: none, anonymous)")
    p.add_argument(
        "--mqtt-password-file",
        type=Path,
        metavar="FILE",
        help="file holding the MQTT password; a password is never a flag, which `ps` would show "
        "(default: none; under systemd, $CREDENTIALS_DIRECTORY/mqtt_password wins)",
    )
    p.add_argument(
        "--mqtt-tls",
        action=argparse.BooleanOptionalAction,
        help=f"TLS to the broker (default: {_default('mqtt.tls.enabled')}; --mqtt-ca turns it on)",
    )
    p.add_argument(
        "--mqtt-ca",
        type=Path,
        metavar="FILE",
        help="CA certificate file that signed the broker's certificate; implies --mqtt-tls "
        "(default: none, the system's CAs)",
    )
    p.add_argument(
        "--topic-prefix",
        metavar="PREFIX",
        help="first level of every topic, <prefix>/<device_id>/... "
        f"(default: {_default('mqtt.topic_prefix')})",
    )


def _mqtt(p: argparse.ArgumentParser) -> None:
    _mqtt_connection(p)
    p.add_argument(
        "--sink",
        choices=["mqtt", "stdout"],
        help=f"where events go; stdout = JSON lines (default: {_default('sink')})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="facecast", description="Faces -> emotion + gender -> MQTT, on the edge.")
    # The distribution takes its version from agent.__version__ (pyproject.toml), so this needs no
    # importlib.metadata: ~3 MB resident in every agent for a flag.
    parser.add_argument("--version", action="version", version=f"facecast {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run the agent")
    run.set_defaults(handler=_cmd_run)
    _common(run)
    _mqtt(run)
    _homeassistant(run)
    run.add_argument(
        "--max-frames",
        type=int,
        metavar="N",
        help="stop after N frames (default: none, until the source ends or a signal)",
    )
    run.add_argument(
        "--publish-empty",
        action="store_true",
        default=None,
        help=f"also publish frames without faces (default: {_default('events.publish_empty')})",
    )

    demo = sub.add_parser("demo", help="run on a built-in clip, no camera or broker needed")
    demo.set_defaults(handler=_cmd_demo)
    _common(demo)
    _mqtt(demo)
    _homeassistant(demo)
    demo.add_argument("--frames", type=int, help="length of the demo clip (default 300)")
    demo.add_argument(
        "--fps", type=float, help=f"pace of the demo clip (default {DEMO_FPS:g}; 0 = as fast as possible)"
    )

    bench = sub.add_parser("bench", help="measure latency, fps, memory and start-up on a source")
    bench.set_defaults(handler=_cmd_bench)
    _common(bench)
    bench.add_argument(
        "--max-frames", type=int, metavar="N", help="stop after N frames (default: none, the whole source)"
    )
    bench.add_argument(
        "--sink",
        choices=["null", "mqtt", "stdout"],
        default="null",
        help="null = serialise events to /dev/null (default)",
    )
    bench.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    bench.add_argument(
        "--no-detect-ahead",
        dest="detect_ahead",
        action="store_false",
        help="detect in the main loop, not one frame ahead in its own thread (the serial baseline)",
    )

    config = sub.add_parser("config", help="configuration tools")
    csub = config.add_subparsers(dest="config_command", required=True, parser_class=_Parser)
    check = csub.add_parser("check", help="validate FILE and print the effective config (secrets masked)")
    check.set_defaults(handler=_cmd_config_check)
    check.add_argument("file", type=Path)
    from agent.cli_extensions import add_extension_commands

    add_extension_commands(sub, common=_common, mqtt=_mqtt, connection=_mqtt_connection, parser_class=_Parser)
    return parser


def _homeassistant(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--homeassistant",
        action=argparse.BooleanOptionalAction,
        help="announce the agent to Home Assistant (MQTT discovery) "
        f"(default: {_default('homeassistant.enabled')})",
    )






def _cmd_config_check(args: argparse.Namespace) -> int:
    from agent.config import dump_yaml, load_config

    config = load_config(args.file)
    sys.stdout.write(dump_yaml(config))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from agent.app import build_publisher, run_agent
    from agent.config import load_config

    config = load_config(args.config, overrides=flag_overrides(args), flag_names=FLAGS)
    setup_logging(config.log_level)
    if args.max_frames is not None and args.max_frames < 1:
        raise ConfigError("--max-frames must be >= 1")
    publisher = build_publisher(config)
    run_agent(config, max_frames=args.max_frames, publisher=publisher)
    # Events waiting on disk for an unreachable broker are the buffer doing its job (exit 0). A
    # bounded run whose broker refused us (password, TLS) delivered nothing and would look like a
    # success: say why, non-zero. A service on a live source is stopped by a signal instead and
    # keeps exit 0 (systemd would mark every stop during the refusal as a failure).
    undelivered = getattr(publisher, "undelivered_reason", None)
    refused = undelivered() if callable(undelivered) else None
    if refused and _bounded(config.source.uri, args.max_frames):
        raise FacecastError(str(refused))
    return 0


def _bounded(uri: str, max_frames: int | None) -> bool:
    """Whether the run ends by itself: ``--max-frames``, or a source that runs out (file, folder,
    demo), as opposed to a camera or stream that runs until it is stopped."""
    from agent.sources import STREAM_SCHEMES
    from agent.sources.live import parse_camera

    spec = uri.strip()
    live = spec == "picamera2" or spec.lower().startswith(STREAM_SCHEMES) or parse_camera(spec) is not None
    return max_frames is not None or not live


def _cmd_demo(args: argparse.Namespace) -> int:
    from agent.config import default_state_dir, load_config
    from agent.demo import run_demo

    overrides = flag_overrides(args)
    overrides.setdefault("source.uri", None)
    overrides["source.uri"] = overrides["source.uri"] or "demo"
    overrides["source.demo_frames"] = args.frames
    overrides["source.demo_fps"] = args.fps
    # The demo's own defaults sit below the file and the environment, which still set them.
    defaults = {"source.demo_fps": DEMO_FPS, "state_dir": default_state_dir() / "demo"}
    config = load_config(args.config, overrides=overrides, defaults=defaults, flag_names=FLAGS)
    setup_logging(config.log_level if args.log_level else "WARNING")
    stats = run_demo(config, frames=config.source.demo_frames)
    sys.stdout.write(f"facecast demo: {stats.frames} frames, {stats.events} events, {stats.faces} faces\n")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from agent.bench_command import format_result, run_bench
    from agent.config import load_config

    overrides = flag_overrides(args)
    if args.sink in ("mqtt", "stdout"):
        overrides["sink"] = args.sink
    config = load_config(args.config, overrides=overrides, flag_names=FLAGS)
    setup_logging(config.log_level if args.log_level else "WARNING")
    result = run_bench(config, max_frames=args.max_frames, sink=args.sink, detect_ahead=args.detect_ahead)
    if args.json:
        sys.stdout.write(json.dumps(result.as_dict()) + "\n")
    else:
        sys.stdout.write(format_result(result) + "\n")
    return 0


FRAME_COMMANDS = frozenset({"run", "demo", "bench"})


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in FRAME_COMMANDS:
        fix_mmap_threshold()
    try:
        if args.command in FRAME_COMMANDS:
            require_opencv()  # a system cv2 under the wrong NumPy: one line, not NumPy's dozen
        handler: Callable[[argparse.Namespace], int] = args.handler  # every command sets one
        return handler(args)
    except ConfigError as exc:
        sys.stderr.write(f"facecast: error: {redact(str(exc))}\n")
        return EXIT_USAGE
    except FacecastError as exc:
        sys.stderr.write(f"facecast: error: {redact(str(exc))}\n")
        return EXIT_ERROR
    except BrokenPipeError:
        # `facecast run --sink stdout | head` ended the reader; not an error. Python's docs' recipe:
        # point stdout at /dev/null so the flush at interpreter exit does not fail again (exit 120).
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as exc:
        sys.stderr.write(f"facecast: error: {redact(str(exc))}\n")
        return EXIT_ERROR
    except Exception as exc:  # the one-line contract holds even for our own bugs
        log.debug("unexpected error", exc_info=True)
        first = redact(str(exc)).strip().splitlines()[0] if str(exc).strip() else ""
        hint = "--log-level DEBUG shows the traceback"
        sys.stderr.write(f"facecast: error: unexpected {type(exc).__name__}: {first} ({hint})\n")
        return EXIT_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
