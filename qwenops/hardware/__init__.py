"""Host facts behind one interface: `Probe.collect()` -> `HostFacts` (live, or replayed from a file)."""
