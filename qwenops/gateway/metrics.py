"""The gateway's Prometheus metrics, served at `/metrics` on the gateway's own port.

A registry of the app's own (not prometheus_client's global one: two apps in one process, as the tests
run them, must not share counters). Names follow Prometheus' conventions (units in names, `_total`
counters) and are the ones docs/monitoring.md lists and qwenops/render/monitoring.py's rules and
dashboard query. Every labelled counter starts at 0 for each of its (bounded) label values, so
`increase()` sees a first error of a kind as 0 -> 1 rather than a series that appears at 1.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import INF, floatToGoString

from qwenops.gateway.protocol import CODES

OUTCOMES = ("done", "error")
# A server chunk in to its frame handed to the client's socket: microseconds when healthy, seconds when
# the event loop or a client falls behind.
LATENCY_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                     2.5, 5.0, 10.0)


class GatewayMetrics:
    """One gateway's counters; the app calls the methods below and `latency.observe` per frame sent,
    `/metrics` serves `text()`."""

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
        self.latency = RelayLatency("qwenops_gateway_relay_latency_seconds", "From a server chunk's arrival to "
                                    "its frame handed to the client's socket", LATENCY_BUCKETS_S)
        r.register(self.latency)
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

    def text(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class RelayLatency(Collector):
    """A histogram observed once per relayed frame, kept as flat counts (one list item and a float per
    observation, no lock: the event loop is its one writer and `/metrics` reads it on the same loop) and
    exposed as prometheus_client's `Histogram` exposes one (`_bucket`, `_count`, `_sum`, `_created`). Its
    `observe` was a tenth of the gateway's own CPU per token (a lock and a Python loop over 16 buckets)."""

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...]) -> None:
        self.name, self.documentation = name, documentation
        self.bounds = [*buckets, INF]
        self.counts = [0] * len(self.bounds)  # per bucket, not cumulative
        self.sum = 0.0
        self.created = time.time()

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1  # the first bound >= seconds: le is inclusive
        self.sum += seconds

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation)
        total, buckets = 0, []
        for bound, count in zip(self.bounds, self.counts, strict=True):
            total += count
            buckets.append((floatToGoString(bound), float(total)))  # type: ignore[no-untyped-call]
        family.add_metric([], buckets, self.sum)
        family.add_sample(self.name + "_created", {}, self.created)
        yield family
