"""vLLM's logs, read once for everyone: lines.py normalises any log (prefixes, ANSI, CRLF, bad bytes)
as it streams; classify.py is the one classifier (start-up phase, failure findings with evidence and
fix) that `qwenops serve` and `qwenops troubleshoot` share."""
