"""A tiny in-process MQTT broker (amqtt) so ``facecast demo`` works on a machine without Mosquitto.

Not for production: Mosquitto is smaller, faster and persistent. amqtt's ``Broker`` must be built
inside a running asyncio loop, so the broker gets its own thread and loop; ``bind`` is always given
explicitly because amqtt's default listens on 0.0.0.0:1883 (every interface).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from concurrent.futures import Future
from typing import Any

from agent.errors import FacecastError

logger = logging.getLogger(__name__)


def broker_reachable(host: str = "127.0.0.1", port: int = 1883, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections at ``host:port`` (a cheap "is a broker up?")."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class EmbeddedBroker:
    """Run an anonymous amqtt broker on ``host:port`` for the lifetime of a ``with`` block.

    ``start()`` returns once the listener accepts connections and raises ``RuntimeError`` if the
    broker could not start (e.g. the port is taken). ``stop()`` is idempotent.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 1883, start_timeout: float = 10.0) -> None:
        self.host = host
        self.port = port
        self._start_timeout = start_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Any = None
        self._started: Future[None] = Future()

    def start(self) -> None:
        """Start the broker thread and wait until it listens.

        amqtt is the ``demo`` extra, not a device dependency: without it this raises a one-line
        ``FacecastError`` saying what to install, before any thread starts.
        """
        if self._thread is not None:
            raise RuntimeError("EmbeddedBroker already started")
        try:
            import amqtt.broker  # noqa: F401 - only checks that the demo extra is installed
        except ImportError as exc:
            raise FacecastError(
                f"the embedded MQTT broker needs amqtt ({exc}): pip install 'facecast[demo]', "
                f"or run a broker such as Mosquitto at {self.host}:{self.port}"
            ) from None
        self._thread = threading.Thread(target=self._run, name="embedded-mqtt-broker", daemon=True)
        self._thread.start()
        try:
            self._started.result(timeout=self._start_timeout)
        except Exception as exc:
            self.stop()
            where = f"{self.host}:{self.port}"
            raise RuntimeError(f"embedded MQTT broker failed to start on {where}: {exc}") from exc
        logger.info("embedded MQTT broker (amqtt) listening on %s:%d", self.host, self.port)

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the broker down and join its thread."""
        loop, thread = self._loop, self._thread
        if loop is not None and not loop.is_closed() and thread is not None and thread.is_alive():
            if self._broker is not None:
                fut = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), loop)
                try:
                    fut.result(timeout=timeout)
                except Exception as exc:  # noqa: BLE001 - stopping must go on whatever amqtt raised
                    logger.warning("embedded broker shutdown: %s", exc)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=timeout)
        elif thread is not None:
            thread.join(timeout=timeout)  # a failed start: the thread is already on its way out
        self._broker = None
        self._loop = None

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _config(self) -> dict[str, Any]:
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._boot())
        except Exception as exc:  # noqa: BLE001 - handed to start()'s caller via the future
            self._broker = None
            self._loop = None
            loop.close()
            self._started.set_exception(exc)
            return
        self._started.set_result(None)
        try:
            loop.run_forever()
        finally:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    async def _boot(self) -> None:
        from amqtt.broker import Broker  # the demo extra; start() checked it is installed

        self._broker = Broker(self._config())  # must be constructed inside the running loop
        await self._broker.start()
