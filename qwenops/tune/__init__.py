"""`qwenops tune`: the profile with the most goodput under a latency SLO, measured on the real server.

Layers: `options` (validated input), `workload` (synthetic or JSONL requests), `candidates` (the grid,
pruned by the memory planner and ordered), `goodput` (pure arithmetic on measured requests), `measure`
(concurrent streams through qwenops.stream), `launch` (each candidate under the supervisor), `sweep`
(the loop with its budget) and `saving` (the tuned profile). Nothing here prints.
"""
