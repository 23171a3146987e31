"""Send the workload at one concurrency through the stream client and time every request.

Closed loop, as `vllm bench serve --max-concurrency` runs: CONCURRENCY streams are open at once; each
starts the next request of the workload as soon as its previous answer ends.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from qwenops.errors import QwenopsError
from qwenops.net import proxy_allowed
from qwenops.stream.client import Timeouts, astream_chat
from qwenops.stream.metrics import TimedStream
from qwenops.tune.goodput import RequestSample
from qwenops.tune.workload import WorkloadRequest

if TYPE_CHECKING:
    from qwenops.config.target import ConfiguredServer


def run_level(server: ConfiguredServer, requests: Sequence[WorkloadRequest], *, concurrency: int, count: int,
              timeouts: Timeouts) -> list[RequestSample]:
    """COUNT requests (the workload's, in turn) with CONCURRENCY in flight; one sample per request. They go
    to the server's URL with the key that goes with it (config/target.py), ask for its profile's served
    model and sample at its profile's client.temperature."""
    return asyncio.run(_run_level(server, requests, concurrency=concurrency, count=count, timeouts=timeouts))


async def _run_level(server: ConfiguredServer, requests: Sequence[WorkloadRequest], *, concurrency: int, count: int,
                     timeouts: Timeouts) -> list[RequestSample]:
    import httpx

    order = itertools.cycle(requests)
    queue = [next(order) for _ in range(count)]
    samples: list[RequestSample] = []
    limits = httpx.Limits(max_connections=concurrency + 2, max_keepalive_connections=concurrency + 2)
    async with httpx.AsyncClient(limits=limits, trust_env=proxy_allowed(server.url)) as client:

        async def worker() -> None:
            # A request that timed out ends the level: the server has stopped answering, and waiting out the
            # rest one by one would hold tune for the level's requests times the timeout.
            while queue and not any(s.error and s.error.startswith("client_timeout") for s in samples):
                samples.append(await _one(client, server, queue.pop(0), timeouts))

        await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    return samples


async def _one(client: object, server: ConfiguredServer, request: WorkloadRequest,
               timeouts: Timeouts) -> RequestSample:
    import httpx

    from qwenops.config.target import url_and_key

    assert isinstance(client, httpx.AsyncClient)
    base_url, key = url_and_key(server)
    extra = {"ignore_eos": True} if request.ignore_eos else {}
    stream = TimedStream()
    try:
        async for delta in astream_chat(list(request.messages), base_url=base_url, model=server.model,
                                        api_key=key, temperature=server.profile.client.temperature,
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
