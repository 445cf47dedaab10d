"""An async client for OpenAI-compatible chat completions that survives a flaky API.

- bounded concurrency (a semaphore) and an optional request-rate limit (QPS);
- retries on 429, 408/409, 5xx, timeouts, connection errors and malformed responses, with
  exponential backoff and full jitter, waiting at least as long as the server's `Retry-After`;
- a per-request timeout; other 4xx errors are permanent and are not retried;
- the outcome of every call is a `ChatResult` (text or error, attempts, tokens, latency): a failed
  row is recorded, never raised, so one bad row cannot stop a batch.

The API key is read by the caller from the environment and handed over here; it is never logged,
and any error text that might echo it is redacted.

Reports are medical data, so this client also owns the egress policy (`check_endpoint`): it sends
nothing to a host that is not loopback, a cluster-internal name or on the config's allow-list,
unless the config explicitly allows external endpoints. The jobs call `check_endpoint` before any
work starts; the client checks again when it is built.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import openai
from openai.types.chat import ChatCompletion

from pairaug_ray.config import OpenAIBackendConfig
from pairaug_ray.errors import UserError

log = logging.getLogger(__name__)

RETRYABLE_STATUS = {408, 409, 429}


@dataclass(frozen=True)
class ChatResult:
    text: str | None
    error: str | None
    attempts: int
    tokens_in: int = 0
    tokens_out: int = 0
    latency_s: float = 0.0
    finish_reason: str | None = None


class EndpointRefusedError(UserError, PermissionError):
    """The configured endpoint may not receive reports."""


def _host_is_internal(host: str) -> bool:
    """Loopback, or a name that only resolves inside a cluster (a bare service name, *.svc, *.cluster.local)."""
    import ipaddress

    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    return "." not in host or host.endswith((".svc", ".svc.cluster.local", ".cluster.local"))


def endpoint_refusal(url: str, allowed_hosts: tuple[str, ...], allow_external: bool) -> str | None:
    """Why reports must not be sent to `url`, or None when they may.

    Reports are medical data: only loopback, cluster-internal names and hosts on the allow-list
    receive them, unless the config explicitly allows external endpoints.
    """
    from urllib.parse import urlparse

    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return f"{url!r} is not an http(s) URL"
    host = parsed.hostname.lower()
    if allow_external or _host_is_internal(host):
        return None
    for allowed in allowed_hosts:
        allowed = allowed.lower()
        if host == allowed or (allowed.startswith(".") and host.endswith(allowed)):
            return None
    return (
        f"refusing to send reports to {host}: it is not loopback, a cluster-internal name or on "
        "rewrite.openai.allowed_hosts. Reports are medical data; to use an external API add the host to "
        "allowed_hosts (or set allow_external: true) once you are sure the data may leave your network"
    )


def check_endpoint(cfg: OpenAIBackendConfig) -> None:
    """Raise EndpointRefusedError, naming the host and the settings that would allow it, unless
    `cfg.base_url` may receive reports."""
    if reason := endpoint_refusal(cfg.base_url, cfg.allowed_hosts, cfg.allow_external):
        raise EndpointRefusedError(reason)


class RateLimiter:
    """Spaces request starts at least 1/qps apart (a leaky bucket without bursts)."""

    def __init__(self, qps: float | None):
        self.interval = 1.0 / qps if qps else 0.0
        self._next = 0.0
        self._lock: asyncio.Lock | None = None

    async def acquire(self) -> None:
        if not self.interval:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            now = time.monotonic()
            wait = self._next - now
            self._next = max(now, self._next) + self.interval
        if wait > 0:
            await asyncio.sleep(wait)


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """The server's requested wait: `retry-after-ms`, `retry-after` in seconds, or an HTTP date."""
    if not headers:
        return None
    if ms := headers.get("retry-after-ms"):
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


class OpenAIChatClient:
    """One client per actor; `chat` may be awaited by many coroutines at once."""

    def __init__(self, cfg: OpenAIBackendConfig, api_key: str | None, *, seed: int = 0):
        check_endpoint(cfg)
        self.cfg = cfg
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop the connections belong to
        self._secret = api_key or ""
        self._rng = random.Random(seed)
        self._limiter = RateLimiter(cfg.qps)
        self._semaphore: asyncio.Semaphore | None = None
        key = api_key or "not-needed"  # the client insists on a key; local servers ignore it
        # The client's own retries are off: this class retries, so that it can count attempts and
        # honour Retry-After with jittered backoff. Its connection pool (1,000) exceeds any concurrency.
        if cfg.azure_api_version:
            self._client: openai.AsyncOpenAI = openai.AsyncAzureOpenAI(
                azure_endpoint=cfg.base_url,
                api_version=cfg.azure_api_version,
                api_key=key,
                max_retries=0,
                timeout=cfg.timeout_s,
            )
        else:
            self._client = openai.AsyncOpenAI(
                base_url=cfg.base_url, api_key=key, max_retries=0, timeout=cfg.timeout_s
            )

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def _backoff(self, retry: int, retry_after: float | None) -> float:
        """Full-jitter exponential backoff, never shorter than the server's Retry-After."""
        ceiling = min(self.cfg.backoff_max_s, self.cfg.backoff_initial_s * 2 ** (retry - 1))
        delay = self._rng.uniform(0.5 * ceiling, ceiling)
        return max(delay, min(retry_after, self.cfg.backoff_max_s)) if retry_after is not None else delay

    async def chat(
        self,
        system: str,
        user: str,
        *,
        temperature: float,
        top_p: float,
        max_tokens: int,
        seed: int | None = None,
    ) -> ChatResult:
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.cfg.concurrency)
            self._loop = asyncio.get_running_loop()
        request: dict[str, Any] = {
            "model": self.cfg.model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "temperature": temperature,
            "top_p": top_p,
            "max_tokens": max_tokens,
            "n": 1,
        }
        if seed is not None and self.cfg.send_seed:
            request["seed"] = seed
        started = time.monotonic()
        error = "no attempt made"
        for attempt in range(1, self.cfg.max_retries + 2):
            await self._limiter.acquire()
            retry_after = None
            async with self._semaphore:
                try:
                    # `post` sends the request body as given; `chat.completions.create` would first run
                    # the SDK's typed-dict transform, about a third of the client's CPU per request.
                    resp = await self._client.post("/chat/completions", body=request, cast_to=ChatCompletion)
                    choice = resp.choices[0] if resp.choices else None
                    text = choice.message.content if choice and choice.message else None
                    if not isinstance(text, str):
                        raise ValueError("response has no message content")
                    usage = resp.usage
                    return ChatResult(
                        text=text,
                        error=None,
                        attempts=attempt,
                        tokens_in=int(getattr(usage, "prompt_tokens", 0) or 0),
                        tokens_out=int(getattr(usage, "completion_tokens", 0) or 0),
                        latency_s=time.monotonic() - started,
                        finish_reason=choice.finish_reason,
                    )
                except openai.APIStatusError as e:
                    error = f"HTTP {e.status_code}: {_short(e.message)}"
                    if e.status_code not in RETRYABLE_STATUS and e.status_code < 500:
                        return self._failed(error, attempt, started, permanent=True)
                    retry_after = retry_after_seconds(e.response.headers)
                except openai.APITimeoutError:
                    error = f"timeout after {self.cfg.timeout_s:g} s"
                except openai.APIConnectionError as e:
                    error = f"connection error: {_short(str(e.__cause__ or e))}"
                except (
                    openai.APIResponseValidationError,
                    ValueError,
                    TypeError,
                    KeyError,
                    AttributeError,
                ) as e:
                    # Includes JSON that does not parse: a broken proxy or an overloaded server.
                    error = f"malformed response: {_short(str(e))}"
            if attempt <= self.cfg.max_retries:
                await asyncio.sleep(self._backoff(attempt, retry_after))
        return self._failed(error, self.cfg.max_retries + 1, started)

    def _failed(self, error: str, attempts: int, started: float, permanent: bool = False) -> ChatResult:
        why = "not retried" if permanent else f"after {attempts} attempts"
        return ChatResult(
            text=None,
            error=self._redact(f"{error} ({why})"),
            attempts=attempts,
            latency_s=time.monotonic() - started,
        )

    async def aclose(self) -> None:
        await self._client.close()

    def close(self, timeout_s: float = 10.0) -> None:
        """Close the HTTP connections from any thread: the rewriter actor's teardown calls this from
        the actor's main thread while the connections belong to Ray Data's event-loop thread."""
        if self._client.is_closed():
            return
        loop = self._loop
        if loop is None or loop.is_closed():
            asyncio.run(self._client.close())  # never used, or its loop is gone: nothing is in flight
        elif not loop.is_running():
            loop.run_until_complete(self._client.close())
        elif _in_loop(loop):
            loop.create_task(self._client.close())
        else:
            asyncio.run_coroutine_threadsafe(self._client.close(), loop).result(timeout_s)


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
