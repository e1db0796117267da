"""Plan limits on the byte path, through the real proxy entry point (no pool socket needed:
an admitted request gets 503 "not connected", a refused one its limit's status)."""

from __future__ import annotations

import time
from typing import Any

from django.test import TestCase, override_settings
from harness.accounts import bearer, fresh_registry, make_token, make_user
from harness.quota_clock import fresh_minute

from relay.pool.registry import Registry
from relay.proxy.http import proxy_http
from tunnels.models import Account, Plan


def scope_for(name: str, body_length: int | None = None) -> dict[str, Any]:
    headers = [(b"host", f"{name}.localhost".encode())]
    if body_length is not None:
        headers.append((b"content-length", str(body_length).encode()))
    return {
        "type": "http",
        "method": "POST" if body_length else "GET",
        "path": "/",
        "query_string": b"",
        "headers": headers,
        "client": ("203.0.113.5", 5000),
    }


async def visit(name: str, body_length: int | None = None) -> tuple[int, dict[bytes, bytes]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"x" * (body_length or 0), "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await proxy_http(scope_for(name, body_length), receive, send, name)
    start = sent[0]
    return start["status"], dict(start["headers"])


@override_settings(RELAY_ALLOW_ANONYMOUS=False)
class PlanLimitTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.owner = make_user("owner")
        _, cls.token = make_token(cls.owner)
        cls.plan = Plan.objects.create(name="metered")
        Account.objects.create(user=cls.owner, plan=cls.plan)

    async def open_tunnel(self, registry: Registry) -> str:
        r = await self.async_client.get("/?new", headers=bearer(self.token))
        self.assertEqual(r.status_code, 200, r.content)
        return r.json()["id"]

    async def test_a_tunnel_without_limits_carries_no_quota(self) -> None:
        async with fresh_registry() as registry:
            name = await self.open_tunnel(registry)
            self.assertIsNone(registry.get(name).quota)

    async def test_requests_over_the_per_minute_rate_get_429_with_retry_after(self) -> None:
        fresh_minute(need_s=5)  # the visits in one UTC minute (the account's window)
        await Plan.objects.filter(pk=self.plan.pk).aupdate(max_requests_per_minute=2)
        async with fresh_registry() as registry:
            name = await self.open_tunnel(registry)
            self.assertEqual((await visit(name))[0], 503)
            self.assertEqual((await visit(name))[0], 503)
            status, headers = await visit(name)
            self.assertEqual(status, 429)
            self.assertTrue(1 <= int(headers[b"retry-after"]) <= 61)

    async def test_the_rate_window_starts_again_after_a_minute(self) -> None:
        fresh_minute(need_s=5)  # the visits in one UTC minute (the account's window)
        await Plan.objects.filter(pk=self.plan.pk).aupdate(max_requests_per_minute=1)
        async with fresh_registry() as registry:
            name = await self.open_tunnel(registry)
            await visit(name)
            self.assertEqual((await visit(name))[0], 429)
            registry.get(name).quota.usage.minute -= 60  # the account's window
            self.assertEqual((await visit(name))[0], 503)

    async def test_a_tunnel_past_its_daily_bytes_gets_429(self) -> None:
        await Plan.objects.filter(pk=self.plan.pk).aupdate(max_bytes_per_day=1000)
        async with fresh_registry() as registry:
            name = await self.open_tunnel(registry)
            self.assertEqual((await visit(name))[0], 503)
            registry.get(name).quota.add_bytes(1000)  # the account's bytes today
            status, headers = await visit(name)
            self.assertEqual(status, 429)
            self.assertIn(b"retry-after", headers)

    async def test_a_body_over_the_plans_maximum_gets_413(self) -> None:
        await Plan.objects.filter(pk=self.plan.pk).aupdate(max_request_body_bytes=100)
        async with fresh_registry() as registry:
            name = await self.open_tunnel(registry)
            self.assertEqual((await visit(name, body_length=100))[0], 503)
            self.assertEqual((await visit(name, body_length=101))[0], 413)

    async def test_an_idle_tunnel_is_closed_after_the_plans_timeout(self) -> None:
        await Plan.objects.filter(pk=self.plan.pk).aupdate(idle_timeout_s=30)
        async with fresh_registry() as registry:
            name = await self.open_tunnel(registry)
            tunnel = registry.get(name)
            self.assertIsNotNone(tunnel.quota.idle_timer, "the check is scheduled")
            quota = tunnel.quota
            self.assertFalse(quota.check_idle(tunnel, now=tunnel.last_activity + 29))
            self.assertIsNotNone(registry.get(name), "not yet idle long enough")
            self.assertTrue(quota.check_idle(tunnel, now=tunnel.last_activity + 30))
            self.assertIsNone(registry.get(name))
            self.assertEqual(tunnel.close_reason, "idle for 30 s")

    async def test_a_closed_tunnel_leaves_no_idle_timer_scheduled(self) -> None:
        await Plan.objects.filter(pk=self.plan.pk).aupdate(idle_timeout_s=30)
        async with fresh_registry() as registry:
            name = await self.open_tunnel(registry)
            tunnel = registry.get(name)
            timer = tunnel.quota.idle_timer
            self.assertIsNotNone(timer, "the check is scheduled")
            registry.close(tunnel, "closed by client")
            self.assertIsNone(tunnel.quota.idle_timer)
            self.assertTrue(timer.cancelled(), "the closed tunnel's idle check is cancelled")

    async def test_activity_postpones_the_idle_timeout(self) -> None:
        await Plan.objects.filter(pk=self.plan.pk).aupdate(idle_timeout_s=30)
        async with fresh_registry() as registry:
            name = await self.open_tunnel(registry)
            tunnel = registry.get(name)
            tunnel.last_activity = time.monotonic() + 20  # a request came in later
            self.assertFalse(tunnel.quota.check_idle(tunnel, now=time.monotonic() + 30))
            self.assertIsNotNone(registry.get(name))
