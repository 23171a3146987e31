"""The gateway's Prometheus metrics, served at `/metrics` on the gateway's own port.

A registry of the app's own (not prometheus_client's global one: two apps in one process, as the tests
run them, must not share counters). Names follow Prometheus' conventions (units in names, `_total`
counters) and are the ones docs/monitoring.md lists and qwenops/render/monitoring.py's rules and
dashboard query. Every labelled counter starts at 0 for each of its (bounded) label values, so
`increase()` sees a first error of a kind as 0 -> 1 rather than a series that appears at 1.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from qwenops.gateway.protocol import CODES

OUTCOMES = ("done", "error")
# A server chunk in to its frame handed to the client's socket: microseconds when healthy, seconds when
# the event loop or a client falls behind.
LATENCY_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                     2.5, 5.0, 10.0)


class GatewayMetrics:
    """One gateway's counters; the app calls the methods below, `/metrics` serves `text()`."""

    def __init__(self, queued_bytes: Callable[[], float]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.connections = Gauge("qwenops_gateway_connections", "Open WebSocket connections", registry=r)
        self._chats = Counter("qwenops_gateway_chats", "Chats ended, by outcome: done (a done frame) or error "
                              "(an error frame, or the client left)", ["outcome"], registry=r)
        self._errors = Counter("qwenops_gateway_chat_errors", "Chats that ended in an error, by the error "
                               "frame's code (docs/gateway.md)", ["code"], registry=r)
        self._cancels = Counter("qwenops_gateway_cancels", "Chats the client cancelled (a cancel frame, or it "
                                "left while they ran)", registry=r)
        queue = Gauge("qwenops_gateway_queue_bytes", "Bytes of frames queued for clients, not yet sent",
                      registry=r)
        queue.set_function(queued_bytes)
        self._latency = Histogram("qwenops_gateway_relay_latency_seconds", "From a server chunk's arrival to "
                                  "its frame handed to the client's socket", buckets=LATENCY_BUCKETS_S, registry=r)
        self._resumptions = Counter("qwenops_gateway_resumptions", "Chats whose answer was cut and resumed "
                                    "(one or more resumed frames), by how the chat ended: done or error",
                                    ["outcome"], registry=r)
        for outcome in OUTCOMES:
            self._chats.labels(outcome=outcome)
            self._resumptions.labels(outcome=outcome)
        for code in CODES:
            self._errors.labels(code=code)

    def chat_ended(self, code: str | None, *, resumed: bool) -> None:
        """A chat's end: CODE is its error frame's code (None: it ended with done)."""
        outcome = "done" if code is None else "error"
        self._chats.labels(outcome=outcome).inc()
        if code is not None:
            self._errors.labels(code=code if code in CODES else "internal").inc()
            if code == "cancelled":
                self._cancels.inc()
        if resumed:
            self._resumptions.labels(outcome=outcome).inc()

    def relayed(self, seconds: float) -> None:
        self._latency.observe(seconds)

    def text(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)
