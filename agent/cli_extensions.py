"""Sub-commands of the layers above the frame loop: ``facecast ha unregister``, ``facecast dashboard``.

Kept out of :mod:`agent.cli` so that file only learns one call (``add_extension_commands``); each
command stores its handler in ``args.handler``, as the built-in commands do. The flags and the
logging set-up come from :mod:`agent.cli_flags` and :mod:`agent.logging_setup`, never from the CLI.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ArgsAdder = Callable[[argparse.ArgumentParser], None]


def add_extension_commands(
    sub: Any,
    *,
    common: ArgsAdder,
    mqtt: ArgsAdder,
    connection: ArgsAdder,
    parser_class: type[argparse.ArgumentParser],
) -> None:
    """``connection``: the broker flags alone (host, port, credentials, TLS, topic prefix)."""
    ha = sub.add_parser("ha", help="Home Assistant MQTT discovery tools")
    hsub = ha.add_subparsers(dest="ha_command", required=True, parser_class=parser_class)
    unregister = hsub.add_parser(
        "unregister", help="remove this agent's device from Home Assistant (empty retained config)"
    )
    common(unregister)
    mqtt(unregister)
    unregister.set_defaults(handler=cmd_ha_unregister)

    dash = sub.add_parser("dashboard", help="serve a local live dashboard of the agents on a broker")
    dash.add_argument("--config", type=Path, help="YAML or TOML config (mqtt, dashboard)")
    connection(dash)
    dash.add_argument("--port", type=int, help="HTTP port (default 8088; 0 = any free port)")
    dash.add_argument("--bind", help="address to listen on (default 127.0.0.1: this machine only)")
    dash.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], type=str.upper)
    dash.set_defaults(handler=cmd_dashboard)


def cmd_ha_unregister(args: argparse.Namespace) -> int:
    """Connects as the agent (so ``status`` shows ``online`` then ``stopped``), removes, flushes."""
    from agent.app import build_publisher, ensure_state_dir
    from agent.cli_flags import FLAGS, flag_overrides
    from agent.config import load_config
    from agent.errors import ConfigError
    from agent.homeassistant.discovery import HomeAssistantDiscovery, TopicClient
    from agent.logging_setup import setup_logging
    from agent.state_dir import StateDirLock

    overrides = flag_overrides(args)
    overrides["sink"] = "mqtt"
    config = load_config(args.config, overrides=overrides, flag_names=FLAGS)
    setup_logging(config.log_level)
    ensure_state_dir(config.state_dir)
    pub = build_publisher(config)
    if not isinstance(pub, TopicClient):
        raise ConfigError("Home Assistant discovery needs the mqtt sink")
    with StateDirLock(config.state_dir):  # the agent's buffer and client id: not while it runs
        pub.start()
        try:
            HomeAssistantDiscovery(pub, config).unregister()
        finally:
            pub.close(timeout=5.0)
    stats = pub.stats()
    if stats.get("buffered"):
        sys.stderr.write("facecast: broker not reached; the removal is kept and sent on the next run\n")
        return 1
    sys.stdout.write("facecast: Home Assistant device removed\n")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from agent.app import stop_on_signals
    from agent.cli_flags import FLAGS, flag_overrides
    from agent.config import load_config
    from agent.dashboard import DashboardServer, DashboardState
    from agent.dashboard.subscriber import DashboardSubscriber
    from agent.logging_setup import setup_logging

    overrides = {k: v for k, v in flag_overrides(args).items() if k.startswith("mqtt.") or k == "log_level"}
    overrides["dashboard.port"] = args.port
    overrides["dashboard.host"] = args.bind
    flags = {**FLAGS, "dashboard.port": "--port", "dashboard.host": "--bind"}
    config = load_config(args.config, overrides=overrides, flag_names=flags)
    setup_logging(config.log_level)
    state = DashboardState(timeline_s=config.dashboard.timeline_minutes * 60.0)
    server = DashboardServer(state, config.dashboard.host, config.dashboard.port)
    subscriber = DashboardSubscriber(config.mqtt, state)
    subscriber.start()
    sys.stdout.write(f"facecast dashboard: {server.url}\n")
    sys.stdout.flush()
    try:
        with stop_on_signals(server.stop):
            server.serve_forever()
    finally:
        subscriber.close()
        server.close()
    return 0
