"""Readiness and liveness of a vLLM OpenAI server over HTTP.

Ready = /health answers 200 *and* /v1/models lists the served name. /health alone turns 200 as soon
as the engine client exists; only the model list proves the route clients call is there under the
name they send (a wrong served_model_name would otherwise look healthy and answer every request 404).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx


@dataclass(frozen=True)
class Progress:
    """What vLLM's /metrics says about work in flight: the progress watchdog's evidence."""

    running: float
    waiting: float
    tokens: float  # vllm:generation_tokens_total

    @property
    def busy(self) -> bool:
        return self.running + self.waiting > 0


@dataclass(frozen=True)
class Probe:
    healthy: bool  # /health answered 200
    ready: bool  # healthy and the served model is listed
    detail: str  # why not, in one line ("connection refused", "/health 503", "model 'x' not listed")


class HealthChecker:
    """Probes one server. Each probe opens a new connection (a loopback handshake costs microseconds), so
    that its socket is known and the whole exchange can be ended at its deadline (`SocketDeadline`)."""

    def __init__(
        self, base_url: str, model: str, *, api_key: str | None = None, timeout_s: float = 2.0,
        ours: Callable[[], bool] | None = None,
    ) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        self.model = model
        # identity: bodies are read as sent and bounded (`_ask`); a compressed one is not read.
        headers = {"Accept-Encoding": "identity"}
        # The key goes only where vLLM checks it (/v1/...), never with /health, which answers without one: whatever
        # holds the port while vLLM is down (another local user's listener) gets no key from the readiness probe
        # (audit 8).
        self._auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # Whether the port's listener is the server serve started (supervisor.process.tree_listens); None: not known
        # (a probe of a server qwenops did not start). The key goes to no other listener.
        self._ours = ours
        self._timeout_s = timeout_s
        # trust_env=False: an HTTP(S)_PROXY in the service's environment must not capture loopback probes.
        self._client: httpx.Client = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout_s, trust_env=False,
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    def _ask(self, method: str, path: str, *, cap: int = 0, timeout_s: float | None = None,
             json: object = None) -> tuple[int, bytes | None]:
        """(status, body) of one exchange: each read within TIMEOUT_S (the client's timeout), and the whole,
        head included, within three of them (a server that drips bytes ends there; a loaded one whose body
        follows its head late is not cut at the first); the body as sent, at most CAP bytes (0: not read),
        None when larger or compressed. Whatever answers on the port is read bounded: the port may have been
        taken by another process. Raises httpx.HTTPError (httpx.ReadTimeout past the whole deadline)."""
        import httpx

        from qwenops.httpread import SocketDeadline
        from qwenops.stream.transport import read_small

        limit = self._timeout_s if timeout_s is None else timeout_s
        try:
            with SocketDeadline(3 * limit) as guard, self._client.stream(
                method, path, json=json, timeout=limit, extensions={"trace": guard.trace},
                headers=self._auth if path.startswith("/v1/") else None,
            ) as answer:
                return answer.status_code, read_small(answer, cap) if cap else b""
        except httpx.HTTPError:
            if guard.expired.is_set():
                raise httpx.ReadTimeout(f"{path}: no whole answer within {3 * limit:g} s") from None
            raise

    def probe(self, *, check_models: bool = True) -> Probe:
        import httpx

        try:
            health, _ = self._ask("GET", "/health")
        except httpx.HTTPError as exc:
            return Probe(False, False, _reason(exc))
        if health != 200:
            return Probe(False, False, f"/health {health}")
        if not check_models:
            return Probe(True, True, "ok")
        problem = self._model_missing()
        return Probe(True, problem is None, problem or "ok")

    def _model_missing(self) -> str | None:
        """Why /v1/models does not prove our model is served, or None when it does."""
        import json

        import httpx

        from qwenops.untrusted import MAX_HTTP_BODY_BYTES, MAX_MODELS_SHOWN, printable

        foreign = self._foreign()
        if foreign:
            return foreign
        try:
            status, body = self._ask("GET", "/v1/models", cap=MAX_HTTP_BODY_BYTES)
        except httpx.HTTPError as exc:
            return f"/v1/models: {_reason(exc)}"
        if status != 200:
            return f"/v1/models {status}"
        try:
            names = [entry.get("id") for entry in json.loads(body or b"").get("data", [])]
        except (ValueError, AttributeError, TypeError, RecursionError):
            return "/v1/models answered something that is not a model list"
        if self.model not in names:
            shown = ", ".join(printable(repr(name)[:80]) for name in names[:MAX_MODELS_SHOWN])
            more = f" and {len(names) - MAX_MODELS_SHOWN} more" if len(names) > MAX_MODELS_SHOWN else ""
            return f"model {self.model!r} not listed (server has [{shown}]{more})"
        return None

    def progress(self) -> Progress | None:
        """From /metrics; None when the server exposes no vLLM metrics (e.g. --disable-log-stats)."""
        import httpx

        from qwenops.untrusted import MAX_METRICS_BYTES
        from qwenops.vllmmetrics import MetricsFormatError, parse

        try:
            status, body = self._ask("GET", "/metrics", cap=MAX_METRICS_BYTES)
            snapshot = parse(body.decode("utf-8", "replace")) if status == 200 and body is not None else None
        except (httpx.HTTPError, MetricsFormatError):
            return None
        if snapshot is None or "generation_tokens" not in snapshot.counters:
            return None
        return Progress(snapshot.gauges.get("requests_running", 0.0), snapshot.gauges.get("requests_waiting", 0.0),
                        snapshot.counters["generation_tokens"])

    def generates(self, timeout_s: float) -> bool:
        """Whether a one-token chat request is answered within timeout_s (it waits behind the work in flight)."""
        import httpx

        request = {"model": self.model, "max_tokens": 1, "messages": [{"role": "user", "content": "ping"}]}
        if self._foreign():
            return False
        try:
            status, _ = self._ask("POST", "/v1/chat/completions", json=request, timeout_s=timeout_s)
        except httpx.HTTPError:
            return False
        return status == 200

    def _foreign(self) -> str | None:
        """Why no keyed request goes to the port now (its listener is not the server serve started), or None."""
        if not self._auth or self._ours is None or self._ours():
            return None
        return (f"port {self.base_url.rsplit(':', 1)[-1]} answers, but not from the server serve started (another "
                "process holds it): no request with the API key is sent there")

    def close(self) -> None:
        self._client.close()


def _reason(exc: Exception) -> str:
    import httpx

    if isinstance(exc, httpx.ConnectError):
        return "connection refused"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"
