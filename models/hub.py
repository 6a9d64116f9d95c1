"""Is the Hugging Face hub reachable? Asked once per process, answered within seconds.

``huggingface_hub`` retries an unreachable hub for ~25 s per file (48 s for an ``hf:`` id
without a file name). A single TCP connection attempt to the endpoint (or the HTTPS proxy),
bounded by a timeout that also covers the DNS lookup, decides instead: offline, only the
local cache is asked (``local_files_only``).
"""

from __future__ import annotations

import os
import socket
import threading
from typing import Dict, Optional
from urllib.parse import urlsplit

PROBE_TIMEOUT_S = 3.0
_TRUE = {"1", "on", "yes", "true"}
_answer: Dict[str, Optional[str]] = {}


def offline_reason(timeout: float = PROBE_TIMEOUT_S) -> Optional[str]:
    """Why the hub cannot be reached (``HF_HUB_OFFLINE`` set, no route, no DNS), or ``None``; probed once."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE:
        return "HF_HUB_OFFLINE is set"
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    url = urlsplit(proxy if proxy and "://" in proxy else endpoint)
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    if host not in _answer:
        _answer[host] = _probe(host, port, timeout)
    return _answer[host]


def _probe(host: str, port: int, timeout: float) -> Optional[str]:
    """Connect once; a thread bounds the DNS lookup too (``getaddrinfo`` has no timeout of its own)."""
    result: Dict[str, Optional[str]] = {"reason": f"no answer from {host} within {timeout:g} s"}

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result["reason"] = None
        except OSError as e:
            result["reason"] = f"cannot reach {host}: {e.strerror or e}"

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(timeout)
    return result["reason"]
