"""The ``facecast`` command: ``run``, ``demo``, ``bench``, ``config check``.

Every error a user can cause ends as ONE line on stderr (``facecast: error: ...``) and a non-zero
exit status (2 for configuration/usage, 1 for anything else), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from agent import __version__
from agent.errors import ConfigError, FacecastError
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


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="YAML or TOML config file")
    p.add_argument(
        "--source",
        help="camera index, /dev/videoN, rtsp:// or http(s):// URL, video file, "
        "image folder, picamera2, demo, gst:<pipeline ending in appsink>, csi:N (Jetson CSI camera)",
    )
    p.add_argument("--device-id")
    p.add_argument("--state-dir", type=Path)
    p.add_argument("--model", type=Path, help="emotion/gender .tflite (its .json card beside it)")
    # No argparse choices: the config names a removed detector (haar) in its own one-line error.
    p.add_argument("--detector", metavar="blazeface", help="face detector (blazeface is the only one)")
    p.add_argument("--max-width", type=int, help="scale frames to this width before detection (0 = never)")
    p.add_argument(
        "--max-fps", type=float, help="live sources: at most N frames a second, the newest (0 = no cap)"
    )
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], type=str.upper)


def _mqtt(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mqtt-host")
    p.add_argument("--mqtt-port", type=int)
    p.add_argument("--sink", choices=["mqtt", "stdout"])


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="facecast", description="Faces -> emotion + gender -> MQTT, on the edge.")
    # The distribution takes its version from agent.__version__ (pyproject.toml), so this needs no
    # importlib.metadata: ~3 MB resident in every agent for a flag.
    parser.add_argument("--version", action="version", version=f"facecast {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run the agent")
    _common(run)
    _mqtt(run)
    run.add_argument("--max-frames", type=int, help="stop after N frames")
    run.add_argument(
        "--publish-empty", action="store_true", default=None, help="also publish frames without faces"
    )

    demo = sub.add_parser("demo", help="run on a built-in clip, no camera or broker needed")
    _common(demo)
    _mqtt(demo)
    demo.add_argument("--frames", type=int, help="length of the demo clip (default 300)")
    demo.add_argument(
        "--fps", type=float, help=f"pace of the demo clip (default {DEMO_FPS:g}; 0 = as fast as possible)"
    )

    bench = sub.add_parser("bench", help="measure latency, fps, memory and start-up on a source")
    _common(bench)
    bench.add_argument("--max-frames", type=int)
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
    check.add_argument("file", type=Path)
    from agent.cli_extensions import add_extension_commands

    add_extension_commands(sub, common=_common, mqtt=_mqtt, parser_class=_Parser)
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Flags that were given, as dotted config keys (flags beat the file and the environment)."""
    ns = vars(args)
    sink = ns.get("sink")
    return {
        "source.uri": ns.get("source"),
        "device_id": ns.get("device_id"),
        "state_dir": ns.get("state_dir"),
        "model.path": ns.get("model"),
        "detector.name": ns.get("detector"),
        "source.max_width": ns.get("max_width"),
        "source.max_fps": ns.get("max_fps"),
        "log_level": ns.get("log_level"),
        "mqtt.host": ns.get("mqtt_host"),
        "mqtt.port": ns.get("mqtt_port"),
        "sink": sink if sink in ("mqtt", "stdout") else None,
        "events.publish_empty": ns.get("publish_empty"),
    }


def setup_logging(level: str) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    quiet_opencv(debug=level == "DEBUG")


def quiet_opencv(*, debug: bool) -> None:
    """OpenCV's own WARN lines (e.g. a missing V4L2 device) would double our one-line errors."""
    import cv2

    cv_logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if cv_logging is not None:
        cv_logging.setLogLevel(cv_logging.LOG_LEVEL_INFO if debug else cv_logging.LOG_LEVEL_ERROR)


def _cmd_config_check(args: argparse.Namespace) -> int:
    from agent.config import dump_yaml, load_config

    config = load_config(args.file)
    sys.stdout.write(dump_yaml(config))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from agent.app import run_agent
    from agent.config import load_config

    config = load_config(args.config, overrides=_overrides(args))
    setup_logging(config.log_level)
    if args.max_frames is not None and args.max_frames < 1:
        raise ConfigError("--max-frames must be >= 1")
    run_agent(config, max_frames=args.max_frames)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from agent.config import default_state_dir, load_config
    from agent.demo import run_demo

    overrides = _overrides(args)
    overrides.setdefault("source.uri", None)
    overrides["source.uri"] = overrides["source.uri"] or "demo"
    overrides["source.demo_frames"] = args.frames
    overrides["source.demo_fps"] = args.fps
    # The demo's own defaults sit below the file and the environment, which still set them.
    defaults = {"source.demo_fps": DEMO_FPS, "state_dir": default_state_dir() / "demo"}
    config = load_config(args.config, overrides=overrides, defaults=defaults)
    setup_logging(config.log_level if args.log_level else "WARNING")
    stats = run_demo(config, frames=config.source.demo_frames)
    sys.stdout.write(f"facecast demo: {stats.frames} frames, {stats.events} events, {stats.faces} faces\n")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from agent.bench import format_result, run_bench
    from agent.config import load_config

    overrides = _overrides(args)
    if args.sink in ("mqtt", "stdout"):
        overrides["sink"] = args.sink
    config = load_config(args.config, overrides=overrides)
    setup_logging(config.log_level if args.log_level else "WARNING")
    result = run_bench(config, max_frames=args.max_frames, sink=args.sink, detect_ahead=args.detect_ahead)
    if args.json:
        sys.stdout.write(json.dumps(result.as_dict()) + "\n")
    else:
        sys.stdout.write(format_result(result) + "\n")
    return 0


FRAME_COMMANDS = frozenset({"run", "demo", "bench"})
COMMANDS = {"run": _cmd_run, "demo": _cmd_demo, "bench": _cmd_bench, "config": _cmd_config_check}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in FRAME_COMMANDS:
        fix_mmap_threshold()
    try:
        if args.command in FRAME_COMMANDS:
            require_opencv()  # a system cv2 under the wrong NumPy: one line, not NumPy's dozen
        return COMMANDS.get(args.command, getattr(args, "handler", None))(args)  # type: ignore[misc]
    except ConfigError as exc:
        sys.stderr.write(f"facecast: error: {exc}\n")
        return EXIT_USAGE
    except FacecastError as exc:
        sys.stderr.write(f"facecast: error: {exc}\n")
        return EXIT_ERROR
    except BrokenPipeError:
        return 0  # `facecast run --sink stdout | head` ended the reader; not an error
    except OSError as exc:
        sys.stderr.write(f"facecast: error: {exc}\n")
        return EXIT_ERROR
    except Exception as exc:  # the one-line contract holds even for our own bugs
        log.debug("unexpected error", exc_info=True)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        hint = "--log-level DEBUG shows the traceback"
        sys.stderr.write(f"facecast: error: unexpected {type(exc).__name__}: {first} ({hint})\n")
        return EXIT_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
