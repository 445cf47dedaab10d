"""The OpenAI-compatible client against a real HTTP server on loopback that injects faults."""

from __future__ import annotations

import asyncio
import time

import pytest

from pairaug_ray.config import OpenAIBackendConfig
from pairaug_ray.models.openai_chat import OpenAIChatClient, retry_after_seconds
from pairaug_ray.testing.fake_openai import FakeOpenAIServer, FaultPlan


def echo(system: str, user: str, seed: int) -> str:
    return f"rewritten: {user}"


def _cfg(server: FakeOpenAIServer, **kw) -> OpenAIBackendConfig:
    base = {
        "base_url": server.base_url,
        "api_key_env": None,
        "max_retries": 4,
        "backoff_initial_s": 0.05,
        "backoff_max_s": 2.0,
        "timeout_s": 2.0,
    }
    return OpenAIBackendConfig(**{**base, **kw})


def _chat(client: OpenAIChatClient, user: str = "There is a small left pleural effusion."):
    return client.chat("system prompt", user, temperature=0.5, top_p=1.0, max_tokens=300, seed=1)


def _run(coro):
    return asyncio.run(coro)


def test_success_sends_key_and_sampling():
    with FakeOpenAIServer(api_key="sk-test-123", responder=echo) as server:
        client = OpenAIChatClient(_cfg(server, api_key_env="X"), "sk-test-123")
        res = _run(_chat(client))
    assert res.error is None and res.text.startswith("rewritten: There is") and res.attempts == 1
    assert res.tokens_in > 0 and res.tokens_out > 0
    body = server.requests[0].body
    assert body["temperature"] == 0.5 and body["max_tokens"] == 300 and body["seed"] == 1
    assert [m["role"] for m in body["messages"]] == ["system", "user"]


def test_retry_after_is_honoured():
    with FakeOpenAIServer(FaultPlan(first=("429",), retry_after_s=0.6), responder=echo) as server:
        res = _run(_chat(OpenAIChatClient(_cfg(server), None)))
    assert res.error is None and res.attempts == 2
    gap = server.requests[1].at - server.requests[0].at
    assert gap >= 0.6  # waited at least Retry-After (the jittered backoff alone is ~0.05 s)


def test_backoff_grows_and_recovers_from_500_timeout_malformed():
    plan = FaultPlan(first=("500", "500", "slow", "malformed"), slow_s=3.0)
    with FakeOpenAIServer(plan, responder=echo) as server:
        res = _run(_chat(OpenAIChatClient(_cfg(server, timeout_s=0.5, backoff_initial_s=0.1), None)))
    assert res.error is None and res.attempts == 5
    assert [r.outcome for r in server.requests] == ["500", "500", "slow", "malformed", "ok"]
    at = [r.at for r in server.requests]
    # Full jitter in [c/2, c] with c doubling: each wait is at least the previous one's floor.
    assert 0.05 <= at[1] - at[0] <= 0.25 and at[2] - at[1] >= 0.1
    assert at[3] - at[2] >= 0.5  # the timed-out request waited for the client's timeout first


def test_permanent_errors_are_not_retried_and_keys_are_redacted():
    with FakeOpenAIServer(api_key="right-key", responder=echo) as server:
        res = _run(_chat(OpenAIChatClient(_cfg(server, api_key_env="X"), "wrong-key-sk-999")))
    assert res.text is None and res.attempts == 1 and "HTTP 401" in res.error and "not retried" in res.error
    assert "wrong-key-sk-999" not in res.error  # the server echoed it; the client redacts it
    with FakeOpenAIServer(FaultPlan(first=("400",)), responder=echo) as server:
        res = _run(_chat(OpenAIChatClient(_cfg(server), None)))
    assert "HTTP 400" in res.error and len(server.requests) == 1


def test_gives_up_after_max_retries():
    with FakeOpenAIServer(FaultPlan(rate_500=1.0), responder=echo) as server:
        res = _run(_chat(OpenAIChatClient(_cfg(server, max_retries=3, backoff_initial_s=0.01), None)))
    assert res.text is None and res.attempts == 4 and "after 4 attempts" in res.error
    assert len(server.requests) == 4


def test_concurrency_and_qps_limits():
    with FakeOpenAIServer(FaultPlan(latency_s=0.2), responder=echo) as server:
        client = OpenAIChatClient(_cfg(server, concurrency=4), None)

        async def many():
            return await asyncio.gather(*(_chat(client, f"report {i}") for i in range(12)))

        t0 = time.monotonic()
        results = _run(many())
        elapsed = time.monotonic() - t0
    assert all(r.error is None for r in results)
    assert server.max_in_flight == 4 and elapsed >= 0.55  # 3 waves of 4 x 0.2 s
    with FakeOpenAIServer(responder=echo) as server:
        client = OpenAIChatClient(_cfg(server, qps=20), None)

        async def burst():
            return await asyncio.gather(*(_chat(client, f"r{i}") for i in range(10)))

        _run(burst())
        starts = sorted(r.at for r in server.requests)
    assert starts[-1] - starts[0] >= 0.4  # 10 requests at 20/s span at least 9 intervals of 50 ms


def test_the_client_owns_the_egress_policy():
    """The config accepts any URL; the client (and the jobs, through check_endpoint) refuse to send
    reports to a host that is not loopback, cluster-internal or allow-listed."""
    from pairaug_ray.errors import UserError
    from pairaug_ray.models.openai_chat import EndpointRefusedError, check_endpoint

    external = OpenAIBackendConfig(base_url="https://api.example.com/v1")
    with pytest.raises(EndpointRefusedError, match="refusing to send reports to api.example.com") as e:
        OpenAIChatClient(external, None)
    assert isinstance(e.value, UserError) and isinstance(e.value, PermissionError)
    for url in (
        "http://127.0.0.1:8000/v1",
        "http://vllm.llm.svc.cluster.local:8000/v1",
        "http://vllm:8000/v1",
    ):
        check_endpoint(OpenAIBackendConfig(base_url=url))
    check_endpoint(
        OpenAIBackendConfig(base_url="https://api.example.com/v1", allowed_hosts=(".example.com",))
    )
    check_endpoint(OpenAIBackendConfig(base_url="https://api.example.com/v1", allow_external=True))
    with pytest.raises(EndpointRefusedError, match="not an http"):
        check_endpoint(OpenAIBackendConfig(base_url="ftp://127.0.0.1/v1"))


def test_close_from_another_thread_closes_the_connections():
    """Ray Data runs the async rewriter on an event-loop thread and tears the actor down from its main
    thread: close() there must close the connections of the loop's client."""
    import threading

    with FakeOpenAIServer(responder=echo) as server:
        client = OpenAIChatClient(_cfg(server), None)
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        assert asyncio.run_coroutine_threadsafe(_chat(client), loop).result(10).error is None
        client.close()
        assert client._client.is_closed()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
    unused = OpenAIChatClient(_cfg(server), None)
    unused.close()  # never used: nothing in flight, closed all the same
    assert unused._client.is_closed()


def test_retry_after_parsing():
    assert retry_after_seconds({"retry-after": "2"}) == 2.0
    assert retry_after_seconds({"retry-after-ms": "250"}) == 0.25
    assert retry_after_seconds({}) is None
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
