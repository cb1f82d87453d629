"""An MQTT broker inside this process, for users who have none running.

amqtt (a pure-Python, asyncio broker) runs on its own event loop in a daemon
thread, so the caller stays synchronous::

    with EmbeddedBroker() as broker:           # 127.0.0.1, a free port
        print(broker.address.url)              # mqtt://127.0.0.1:40123

Limits, from amqtt 0.12 itself: it speaks **MQTT 3.1.1 only** (clients must
connect with ``--mqtt-version 3.1.1``), so it has no shared subscriptions
(``--share`` needs mosquitto), and it keeps nothing across a restart. It also
sends a connecting client the retained messages matching *any* client's
subscriptions, not only its own; the clients ignore topics they did not
subscribe to. It is meant for a one-command demo and for tests, not for a deployment.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from concurrent.futures import Future
from typing import Any

from kws.errors import KwsError
from kws.mqtt.protocol import BrokerAddress
from kws.util.net import free_tcp_port

log = logging.getLogger(__name__)

#: The protocol version amqtt speaks; clients of the embedded broker must use it.
MQTT_VERSION = "3.1.1"
START_TIMEOUT_S = 10.0
#: amqtt logs every connection and its state machine every transition at INFO.
CHATTY_LOGGERS = ("amqtt", "transitions")


def broker_config(host: str, port: int) -> dict[str, Any]:
    """amqtt's configuration: one TCP listener, anonymous clients, no $SYS or packet logging."""
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


class BrokerStartError(KwsError, ConnectionError):
    """The embedded broker could not start (its port is taken, most often); the message says what to do."""


class EmbeddedBroker:
    """amqtt serving on ``host:port`` (port 0: a free one) until :meth:`stop`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.address = BrokerAddress(host, port or free_tcp_port(host))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="embedded-broker", daemon=True)
        self._broker: Any = None

    def start(self) -> EmbeddedBroker:
        """Listen, or raise :class:`BrokerStartError` naming the address and the fix."""
        from amqtt.broker import Broker  # imported here: only this path needs amqtt

        self._check_address()
        async def start_broker() -> Any:
            broker = Broker(broker_config(self.address.host, self.address.port))  # binds to the running loop
            await broker.start()
            return broker

        for name in CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger(name).level))
        self._thread.start()
        try:
            self._broker = self._run(start_broker())
        except Exception as error:  # amqtt wraps whatever stopped it in its own BrokerError
            self.stop()
            raise BrokerStartError(f"the embedded broker could not start on {self.address.host}:"
                                   f"{self.address.port} ({error})") from error
        log.info("embedded amqtt broker listening on %s (MQTT %s)", self.address.url, MQTT_VERSION)
        return self

    def _check_address(self) -> None:
        """Bind the address once ourselves first: a taken port is then one clear error, not amqtt's traceback."""
        with socket.socket(socket.AF_INET6 if ":" in self.address.host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's server will
            try:
                probe.bind((self.address.host, self.address.port))
            except OSError as error:
                raise BrokerStartError(
                    f"the embedded broker cannot listen on {self.address.host}:{self.address.port} "
                    f"({error.strerror or error}): give --broker mqtt://{self.address.host}:PORT with a free port, "
                    "or no --broker for any free one"
                ) from error

    def stop(self) -> None:
        if self._broker is not None:
            try:
                self._run(self._broker.shutdown())
            except Exception as error:  # noqa: BLE001 - shutting down: report, never mask the caller's error
                log.warning("embedded broker did not shut down cleanly: %s", error)
            self._broker = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(START_TIMEOUT_S)
        self._loop.close()

    def _run(self, coroutine: Any) -> Any:
        future: Future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(START_TIMEOUT_S)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *_exc_info: object) -> None:
        self.stop()
