"""A fault-injecting OpenAI-compatible chat-completions server on 127.0.0.1.

It answers `POST /v1/chat/completions` like OpenAI does, with a rewrite produced by the project's
rule-based rewriter (the mode is read off the system prompt), after a configurable latency, and
injects faults with configured probabilities: 429 with `Retry-After`, 500, responses slower than
the client's timeout, malformed JSON, refusals and over-long answers. Faults are drawn from a
seeded RNG keyed by (prompt, how many times this prompt was seen), so a run is reproducible and a
retried request gets a fresh draw. Every request is logged for assertions.

    with FakeOpenAIServer(FaultPlan(rate_429=0.2, latency_s=0.05)) as server:
        client = OpenAI(base_url=server.base_url, api_key="x")
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

REFUSAL = "As an AI language model, I cannot provide medical advice or generate clinical reports."
LONG_ANSWER = " ".join(["The lungs are clear and there is no acute cardiopulmonary process."] * 40)


@dataclass
class FaultPlan:
    latency_s: float = 0.0  # added to every response
    rate_429: float = 0.0
    retry_after_s: float = 1.0  # sent with every 429
    rate_500: float = 0.0
    rate_slow: float = 0.0
    slow_s: float = 5.0  # how long a slow response takes (set it above the client's timeout)
    rate_malformed: float = 0.0
    rate_refusal: float = 0.0
    rate_long: float = 0.0
    first: tuple[
        str, ...
    ] = ()  # scripted outcomes of the first requests of every prompt, e.g. ("429", "500")
    seed: int = 0

    def draw(self, key: str, nth: int) -> str:
        if nth < len(self.first):
            return self.first[nth]
        r = random.Random(f"{self.seed}/{key}/{nth}").random()
        for fault in ("429", "500", "slow", "malformed", "refusal", "long"):
            rate = getattr(self, f"rate_{fault}")
            if r < rate:
                return fault
            r -= rate
        return "ok"


@dataclass(frozen=True)
class RequestRecord:
    at: float  # time.monotonic() when the request arrived
    key: str  # hash of the messages: identifies retries of one prompt
    outcome: str
    authorized: bool
    body: dict = field(hash=False, compare=False)


def _mode_of(system: str) -> str:
    s = system.lower()
    if "opposite" in s:
        return "inter"
    if "change" in s:
        return "intra"
    return "paraphrase"


def rules_responder(system: str, user: str, seed: int) -> str:
    from pairaug_ray.text.rewrite import rewrite_report

    return rewrite_report(user, _mode_of(system), seed).text


class FakeOpenAIServer:
    def __init__(
        self,
        plan: FaultPlan | None = None,
        *,
        api_key: str | None = None,
        responder: Callable[[str, str, int], str] = rules_responder,
    ):
        self.plan = plan or FaultPlan()
        self.api_key = api_key
        self.responder = responder
        self.requests: list[RequestRecord] = []
        self._seen: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        authorized = self.api_key is None or request.headers.get("Authorization") == f"Bearer {self.api_key}"
        try:
            body = await request.json()
            messages = body["messages"]
            system = next((m["content"] for m in messages if m["role"] == "system"), "")
            user = next(m["content"] for m in messages if m["role"] == "user")
        except (ValueError, KeyError, StopIteration, TypeError):
            return web.json_response(
                {"error": {"message": "bad request", "type": "invalid_request_error"}}, status=400
            )
        key = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:16]
        with self._lock:
            nth = self._seen[key]
            self._seen[key] += 1
        outcome = self.plan.draw(key, nth) if authorized else "401"
        self.requests.append(RequestRecord(arrived, key, outcome, authorized, body))
        if outcome == "401":
            # Echo what was received, as some proxies do: clients must not log it.
            got = request.headers.get("Authorization", "")
            return web.json_response(
                {"error": {"message": f"invalid api key: {got}", "type": "auth"}}, status=401
            )
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._respond(outcome, key, nth, system, user, body)
        finally:
            self.in_flight -= 1

    async def _respond(
        self, outcome: str, key: str, nth: int, system: str, user: str, body: dict
    ) -> web.Response:
        if self.plan.latency_s:
            await asyncio.sleep(self.plan.latency_s)
        if outcome == "429":
            return web.json_response(
                {"error": {"message": "rate limited", "type": "rate_limit"}},
                status=429,
                headers={"Retry-After": f"{self.plan.retry_after_s:g}"},
            )
        if outcome == "500":
            return web.json_response({"error": {"message": "internal error", "type": "server"}}, status=500)
        if outcome == "slow":
            await asyncio.sleep(self.plan.slow_s)
        if outcome == "400":
            return web.json_response(
                {"error": {"message": "context length exceeded", "type": "invalid"}}, status=400
            )
        if outcome == "malformed":
            return web.Response(text='{"id": "chatcmpl-x", "choices": [', content_type="application/json")
        if outcome == "refusal":
            text = REFUSAL
        elif outcome == "long":
            text = LONG_ANSWER
        else:
            text = self.responder(system, user, int(body.get("seed") or 0))
        return web.json_response(
            {
                "id": f"chatcmpl-{key}-{nth}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "fake"),
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                ],
                "usage": {
                    "prompt_tokens": len(system.split()) + len(user.split()),
                    "completion_tokens": len(text.split()),
                    "total_tokens": len(system.split()) + len(user.split()) + len(text.split()),
                },
            }
        )

    def start(self) -> FakeOpenAIServer:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            app = web.Application()
            app.router.add_post("/v1/chat/completions", self._handle)
            self._runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=1024)
            loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-openai", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake OpenAI server did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def outcomes(self) -> Counter[str]:
        return Counter(r.outcome for r in self.requests)
