"""A small client for OpenAI-compatible chat endpoints (vLLM, llama.cpp server, Ollama, ...):
retries with exponential backoff, bounded concurrency, and a response cache on disk.

Cache: every call is keyed by sha256 of (model, messages, parameters) and its parsed reply
is stored under `<cache root>/<key[:2]>/<key>.json` (a local folder or any fsspec URL, written
atomically through data_contracts.storage), so a rerun
of the same work sends nothing. Only replies are stored, never prompts; transient failures
(timeouts, 429/5xx after the last retry) are not cached, so a rerun tries them again.
Logging: counts, status codes and cache keys only — never prompt or report text.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from data_contracts.config import LLMConfig
from data_contracts.storage import Storage

log = logging.getLogger(__name__)
RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
Messages = Sequence[Mapping[str, str]]


@dataclass(frozen=True)
class Reply:
    """The first choice of a chat completion: its text, and the top log-probabilities of its
    first token where the server returned them; `error` names a failure (then text is '')."""

    text: str = ""
    top_logprobs: tuple[tuple[str, float], ...] | None = None
    error: str | None = None
    cached: bool = False


def cache_key(model: str, messages: Messages, params: Mapping[str, Any]) -> str:
    blob = json.dumps({"model": model, "messages": list(messages), "params": dict(params)},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def parse_completion(body: Any) -> Reply:
    """Reply from a decoded /chat/completions body; a wrong shape is 'malformed'."""
    try:
        choice = body["choices"][0]
        text = choice["message"].get("content") or ""
        lp = (choice.get("logprobs") or {}).get("content") or []
        top = None
        if lp and lp[0].get("top_logprobs"):
            top = tuple((str(t["token"]), float(t["logprob"])) for t in lp[0]["top_logprobs"])
    except (KeyError, IndexError, TypeError, AttributeError, ValueError):
        return Reply(error="malformed")
    if not isinstance(text, str):
        return Reply(error="malformed")
    return Reply(text=text, top_logprobs=top)


class ChatClient:
    """Thread-safe; use as a context manager or call close()."""

    def __init__(self, cfg: LLMConfig, cache_root: str | Path | None = None,
                 sleep: Any = time.sleep) -> None:
        headers = {"Content-Type": "application/json"}
        if cfg.api_key_env:
            key = os.environ.get(cfg.api_key_env)
            if not key:
                raise ValueError(f"interpretation.llm.api_key_env: environment variable {cfg.api_key_env} is not set")
            headers["Authorization"] = f"Bearer {key}"
        self.cfg = cfg
        self.cache = None if cache_root is None else Storage(cache_root)
        self._sleep = sleep
        self._http = httpx.Client(base_url=cfg.base_url.rstrip("/") + "/", headers=headers,
                                  timeout=httpx.Timeout(cfg.timeout_s))
        self._lock = threading.Lock()
        self.stats: Counter[str] = Counter()

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()
        log.info("llm client: %s", dict(self.stats))

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.stats[name] += n

    # ------------------------------------------------------------ cache
    @staticmethod
    def _rel(key: str) -> str:
        return f"{key[:2]}/{key}.json"

    def _cached(self, key: str) -> Reply | None:
        if self.cache is None:
            return None
        try:
            d = json.loads(self.cache.read_bytes(self._rel(key)))
            top = None if d["top_logprobs"] is None else tuple((str(t), float(v)) for t, v in d["top_logprobs"])
            return Reply(text=str(d["text"]), top_logprobs=top, cached=True)
        except (OSError, ValueError, KeyError, TypeError):
            return None  # absent, or a damaged entry: fetched again and overwritten

    def _store(self, key: str, reply: Reply) -> None:
        if self.cache is not None:
            self.cache.write_atomic(self._rel(key), json.dumps({"text": reply.text,
                                                                "top_logprobs": reply.top_logprobs}).encode())

    # ------------------------------------------------------------ calls
    def complete(self, messages: Messages, params: Mapping[str, Any]) -> Reply:
        key = cache_key(self.cfg.model, messages, params)
        hit = self._cached(key)
        if hit is not None:
            self._count("cache_hits")
            return hit
        reply = self._send(messages, params)
        if reply.error is None:
            self._store(key, reply)
        else:
            self._count(f"failed_{reply.error}")
            log.warning("llm call %s failed: %s", key[:12], reply.error)
        return reply

    def complete_many(self, requests: Sequence[tuple[Messages, Mapping[str, Any]]]) -> list[Reply]:
        """Replies in request order, at most `concurrency` calls in flight."""
        if len(requests) <= 1 or self.cfg.concurrency == 1:
            return [self.complete(m, p) for m, p in requests]
        with ThreadPoolExecutor(max_workers=min(self.cfg.concurrency, len(requests))) as pool:
            return list(pool.map(lambda r: self.complete(r[0], r[1]), requests))

    def _send(self, messages: Messages, params: Mapping[str, Any]) -> Reply:
        body = {"model": self.cfg.model, "messages": list(messages), **params}
        error = "unknown"
        for attempt in range(self.cfg.max_retries + 1):
            if attempt:
                self._count("retries")
            retry_after = None
            try:
                self._count("calls_sent")
                resp = self._http.post("chat/completions", json=body)
            except httpx.TimeoutException:
                error = "timeout"
            except httpx.TransportError:
                error = "connection"
            else:
                if resp.status_code == 200:
                    try:
                        return parse_completion(resp.json())
                    except ValueError:
                        return Reply(error="non_json")
                error = f"http_{resp.status_code}"
                if resp.status_code not in RETRY_STATUS:
                    return Reply(error=error)
                retry_after = _retry_after(resp.headers.get("retry-after"))
            if attempt < self.cfg.max_retries:
                self._sleep(self._delay(attempt, retry_after))
        return Reply(error=error)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None and retry_after <= self.cfg.max_backoff_s:
            return retry_after
        return min(self.cfg.max_backoff_s, self.cfg.backoff_s * 2.0**attempt)


def _retry_after(value: str | None) -> float | None:
    try:
        v = float(value) if value is not None else math.nan
    except ValueError:
        return None
    return v if math.isfinite(v) and v >= 0 else None
