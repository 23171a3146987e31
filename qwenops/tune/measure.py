"""Send the workload at one concurrency through the stream client and time every request.

Closed loop, as `vllm bench serve --max-concurrency` runs: CONCURRENCY streams are open at once; each
starts the next request of the workload as soon as its previous answer ends.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from qwenops.errors import QwenopsError
from qwenops.stream.client import Timeouts, astream_chat
from qwenops.stream.metrics import TimedStream
from qwenops.tune.goodput import RequestSample
from qwenops.tune.workload import WorkloadRequest

if TYPE_CHECKING:
    from qwenops.config.target import ConfiguredServer


@dataclass(frozen=True)
class Target:
    base_url: str
    model: str
    api_key: str | None = None
    temperature: float | None = 0.0

    @classmethod
    def of(cls, server: ConfiguredServer, *, temperature: float | None) -> Target:
        """The load's target: the configured server's URL, its model and the key that goes with it."""
        from qwenops.config.target import url_and_key

        url, key = url_and_key(server)
        return cls(base_url=url, model=server.model, api_key=key, temperature=temperature)


def run_level(target: Target, requests: Sequence[WorkloadRequest], *, concurrency: int, count: int,
              timeouts: Timeouts) -> list[RequestSample]:
    """COUNT requests (the workload's, in turn) with CONCURRENCY in flight; one sample per request."""
    return asyncio.run(_run_level(target, requests, concurrency=concurrency, count=count, timeouts=timeouts))


async def _run_level(target: Target, requests: Sequence[WorkloadRequest], *, concurrency: int, count: int,
                     timeouts: Timeouts) -> list[RequestSample]:
    import httpx

    order = itertools.cycle(requests)
    queue = [next(order) for _ in range(count)]
    samples: list[RequestSample] = []
    limits = httpx.Limits(max_connections=concurrency + 2, max_keepalive_connections=concurrency + 2)
    async with httpx.AsyncClient(limits=limits) as client:

        async def worker() -> None:
            while queue:
                samples.append(await _one(client, target, queue.pop(0), timeouts))

        await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    return samples


async def _one(client: object, target: Target, request: WorkloadRequest, timeouts: Timeouts) -> RequestSample:
    import httpx

    assert isinstance(client, httpx.AsyncClient)
    extra = {"ignore_eos": True} if request.ignore_eos else {}
    stream = TimedStream()
    try:
        async for delta in astream_chat(list(request.messages), base_url=target.base_url, model=target.model,
                                        api_key=target.api_key, temperature=target.temperature,
                                        max_tokens=request.max_tokens, extra_body=extra, timeouts=timeouts,
                                        client=client):
            stream.add(delta)
    except QwenopsError as exc:
        return RequestSample(sent_s=stream.sent_s, ended_s=time.perf_counter(), ttft_s=None, tpot_s=None,
                             output_tokens=0, error=f"{exc.code}: {exc.one_line()}")
    metrics, usage, ended = stream.metrics(), stream.usage, stream.ended_s
    return RequestSample(sent_s=stream.sent_s, ended_s=ended if ended is not None else time.perf_counter(),
                         ttft_s=metrics.ttft_s, tpot_s=metrics.tpot_s, output_tokens=metrics.output_tokens,
                         prompt_tokens=usage.prompt_tokens if usage is not None else None)
