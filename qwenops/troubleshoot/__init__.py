"""`qwenops troubleshoot`: gather evidence (logs, a live server's metrics, the host), name the cause the
evidence supports, and give the concrete change. Logs are read by the shared classifier
(qwenops.vllmlog); rules.py turns live and host evidence into findings of the same shape."""
