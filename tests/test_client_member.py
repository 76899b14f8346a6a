"""One member (SPEC sections 5-6) at the wire level, the engine's raw resource interface,
and error classification."""

from __future__ import annotations

import pickle
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aioresponses import aioresponses

import asyncmembers as am
from asyncmembers.resources import member_path, members_path
from tests.test_client_wire import calls, member, sent_headers

BASE = "https://api.losant.com"  # every request is answered by aioresponses, in process
IID = "575ec8687ae143cd83dc4a97"
UID = "675ed18f7ae143cd83dc4bb7"
OTHER = "675ed18f7ae143cd83dc4bb8"
MEMBERS = f"{BASE}/instances/{IID}/members"
ONE = f"{MEMBERS}/{UID}"
ANY_MEMBERS = re.compile(rf"^{re.escape(MEMBERS)}(\?.*)?$")
TOKEN = "tok-SECRET-123"


@pytest.fixture
def mocked() -> aioresponses:
    with aioresponses() as m:
        yield m


@pytest.fixture
async def client() -> AsyncIterator[am.Client]:
    c = am.Client(
        auth_token=TOKEN, retry=am.RetryPolicy(attempts=4, wait_initial=0.01, wait_max=0.05)
    )

    async def fake_sleep(seconds: float) -> None:
        pass

    c._session.sleep = fake_sleep
    async with c:
        yield c


def expected_headers(headers: dict[str, str], **extra: str) -> dict[str, str]:
    return {
        "Accept": "application/json",
        "Accept-Version": "^1.29.3",
        "User-Agent": headers["User-Agent"],
        "Authorization": f"Bearer {TOKEN}",
        **extra,
    }


# --- get / patch / delete as sent --------------------------------------------------------


async def test_get_one_sends_exact_request(mocked: aioresponses, client: am.Client) -> None:
    mocked.get(ONE, payload=member(_links={"self": "x"}))
    got = await client.instance_member.get(instanceId=IID, userId=UID, losantdomain="d.example")
    [(method, url, kw)] = calls(mocked)
    assert (method, url.path, dict(url.query)) == ("GET", f"/instances/{IID}/members/{UID}", {})
    assert sent_headers(client, kw) == expected_headers(
        sent_headers(client, kw), losantdomain="d.example"
    )
    assert kw["data"] is None
    assert got == am.InstanceMember(
        instance_id=IID, user_id=UID, email="ann@example.com", role=am.Role.VIEW
    )


async def test_patch_sends_exact_body_and_returns_member(
    mocked: aioresponses, client: am.Client
) -> None:
    mocked.patch(ONE, payload=member(role="admin"))
    got = await client.instance_member.patch(instanceId=IID, userId=UID, member={"role": " Admin "})
    [(method, url, kw)] = calls(mocked)
    assert (method, url.path) == ("PATCH", f"/instances/{IID}/members/{UID}")
    assert kw["data"] == b'{"role":"admin"}'
    assert sent_headers(client, kw) == expected_headers(
        sent_headers(client, kw), **{"Content-Type": "application/json"}
    )
    assert got.role is am.Role.ADMIN


async def test_patch_accepts_the_model(mocked: aioresponses, client: am.Client) -> None:
    mocked.patch(ONE, payload=member(role="view"))
    got = await client.instance_member.patch(
        instanceId=IID, userId=UID, member=am.InstanceMemberPatch(role="view")
    )
    assert got.role is am.Role.VIEW


async def test_delete_sends_exact_request_and_returns_none(
    mocked: aioresponses, client: am.Client
) -> None:
    mocked.delete(ONE, payload={"success": True})
    assert await client.instance_member.delete(instanceId=IID, userId=UID) is None
    [(method, url, kw)] = calls(mocked)
    assert (method, url.path, kw["data"]) == ("DELETE", f"/instances/{IID}/members/{UID}", None)
    assert sent_headers(client, kw) == expected_headers(sent_headers(client, kw))


@pytest.mark.parametrize(
    ("call", "field"),
    [
        ({"instanceId": "nope", "userId": UID}, "instanceId"),
        ({"instanceId": IID, "userId": "u" * 24}, "userId"),
        ({"instanceId": IID, "userId": UID, "member": {"role": "owner"}}, "role"),
        (
            {"instanceId": IID, "userId": UID, "member": {"role": "view", "email": "a@b.co"}},
            "email",
        ),
        ({"instanceId": IID, "userId": UID, "member": {}}, "role"),
        ({"instanceId": IID, "userId": UID, "member": ["view"]}, None),
    ],
)
async def test_invalid_arguments_are_refused_before_sending(
    mocked: aioresponses, client: am.Client, call: dict[str, Any], field: str | None
) -> None:
    if "member" not in call:
        call = {**call, "member": {"role": "view"}}
    with pytest.raises(am.ValidationError) as info:
        await client.instance_member.patch(**call)
    assert info.value.field == field
    if "member" in call and call["member"] == {"role": "view"}:
        for fn in (client.instance_member.get, client.instance_member.delete):
            with pytest.raises(am.ValidationError):
                await fn(instanceId=call["instanceId"], userId=call["userId"])
    assert calls(mocked) == []


async def test_losantdomain_with_line_break_is_refused(
    mocked: aioresponses, client: am.Client
) -> None:
    with pytest.raises(am.ValidationError, match="losantdomain"):
        await client.instance_member.delete(instanceId=IID, userId=UID, losantdomain="a\r\nb: c")
    assert calls(mocked) == []


# --- answers checked for what they claim -------------------------------------------------


async def test_get_of_another_member_is_a_protocol_error(
    mocked: aioresponses, client: am.Client
) -> None:
    mocked.get(ONE, payload=member(userId=OTHER))
    with pytest.raises(am.ProtocolError, match=f"not member {UID}"):
        await client.instance_member.get(instanceId=IID, userId=UID)


@pytest.mark.parametrize(
    "answer", [member(role="view"), [1, 2, 3], member(role="admin", userId=OTHER), {}]
)
async def test_patch_answer_must_show_the_new_role(
    mocked: aioresponses, client: am.Client, answer: Any
) -> None:
    mocked.patch(ONE, payload=answer)
    with pytest.raises(am.ProtocolError, match="role admin") as info:
        await client.instance_member.patch(instanceId=IID, userId=UID, member={"role": "admin"})
    assert info.value.may_have_been_applied and not info.value.fatal


@pytest.mark.parametrize("answer", [{"success": False}, {"success": "true"}, [], {}])
async def test_delete_answer_must_be_success_true(
    mocked: aioresponses, client: am.Client, answer: Any
) -> None:
    mocked.delete(ONE, payload=answer)
    with pytest.raises(am.ProtocolError, match="success"):
        await client.instance_member.delete(instanceId=IID, userId=UID)


# --- retries: PATCH and DELETE are idempotent --------------------------------------------


async def test_patch_is_retried_after_a_cut_and_a_503(
    mocked: aioresponses, client: am.Client
) -> None:
    import aiohttp

    mocked.patch(ONE, exception=aiohttp.ServerDisconnectedError())
    mocked.patch(ONE, status=503, payload={"type": "Unavailable", "message": "x"})
    mocked.patch(ONE, payload=member(role="admin"))
    got = await client.instance_member.patch(instanceId=IID, userId=UID, member={"role": "admin"})
    assert got.role is am.Role.ADMIN
    assert [c[0] for c in calls(mocked)] == ["PATCH"] * 3  # no lookups: resending is safe


async def test_delete_404_after_an_ambiguous_attempt_is_success(
    mocked: aioresponses, client: am.Client
) -> None:
    import aiohttp

    mocked.delete(ONE, exception=aiohttp.ServerDisconnectedError())
    mocked.delete(ONE, status=404, payload={"type": "NotFound", "message": "no member"})
    assert await client.instance_member.delete(instanceId=IID, userId=UID) is None
    assert [c[0] for c in calls(mocked)] == ["DELETE", "DELETE"]


async def test_delete_404_after_a_502_is_success(mocked: aioresponses, client: am.Client) -> None:
    mocked.delete(ONE, status=502, payload={"type": "BadGateway", "message": "x"})
    mocked.delete(ONE, status=404, payload={"type": "NotFound", "message": "no member"})
    assert await client.instance_member.delete(instanceId=IID, userId=UID) is None


async def test_plain_delete_404_is_not_found_and_not_fatal(
    mocked: aioresponses, client: am.Client
) -> None:
    mocked.delete(ONE, status=404, payload={"type": "NotFound", "message": "no member"})
    with pytest.raises(am.NotFoundError) as info:
        await client.instance_member.delete(instanceId=IID, userId=UID)
    assert not info.value.fatal  # one member's 404 does not stop a batch


async def test_delete_raw_gone_ok_takes_any_404(mocked: aioresponses, client: am.Client) -> None:
    mocked.delete(ONE, status=404, payload={"type": "NotFound", "message": "no member"})
    mocked.delete(ONE, status=404, payload={"type": "NotFound", "message": "no member"})
    res = client.instance_member
    assert await res.delete_raw(member_path(IID, UID), gone_ok=True) is None
    with pytest.raises(am.NotFoundError):
        await res.delete_raw(member_path(IID, UID))


async def test_patch_raw_sends_role_and_returns_wire_dict(
    mocked: aioresponses, client: am.Client
) -> None:
    mocked.patch(ONE, payload=member(role="admin"))
    data = await client.instance_member.patch_raw(member_path(IID, UID), "admin")
    assert data == member(role="admin")
    assert calls(mocked)[0][2]["data"] == b'{"role":"admin"}'


# --- paths ------------------------------------------------------------------------------


def test_paths_validate_object_ids() -> None:
    assert members_path(IID) == f"/instances/{IID}/members"
    assert member_path(IID, UID) == f"/instances/{IID}/members/{UID}"
    with pytest.raises(am.ValidationError, match="userId"):
        member_path(IID, "../x")
    with pytest.raises(am.ValidationError, match="instanceId"):
        members_path(None)


# --- the engine's raw interface: scan_raw, find_raw, add_raw ----------------------------


def big_body(n: int) -> bytes:
    items = ",".join(
        f'{{"userId":"{i:024x}","email":"u{i}@example.com","role":"view"}}' for i in range(n)
    )
    return f'{{"items":[{items},7,"x"],"count":{n}}}'.encode()


async def test_scan_raw_streams_members_and_skips_non_objects(
    mocked: aioresponses, client: am.Client
) -> None:
    mocked.get(MEMBERS, body=big_body(600), content_type="application/json")
    seen: list[str] = []

    async def consume(items: AsyncIterator[dict[str, Any]]) -> int:
        seen.clear()
        async for item in items:
            seen.append(item["email"])
        return len(seen)

    assert await client.instance_members.scan_raw(members_path(IID), consume) == 600
    assert seen[0] == "u0@example.com" and seen[-1] == "u599@example.com"


async def test_scan_raw_calls_consume_again_after_a_retryable_failure(
    mocked: aioresponses, client: am.Client
) -> None:
    mocked.get(MEMBERS, status=502, payload={"type": "BadGateway", "message": "x"})
    mocked.get(MEMBERS, body=big_body(5), content_type="application/json")
    starts = 0

    async def consume(items: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
        nonlocal starts
        starts += 1
        return [item async for item in items]

    got = await client.instance_members.scan_raw(members_path(IID), consume)
    assert len(got) == 5 and starts == 1  # the 502 never reached consume


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"[1,2,3]", "InstanceMembers"),
        (b'{"count": 3}', "InstanceMembers"),
        (b'{"items": [{"a": 1}', "not JSON"),
        (b"<html>", "InstanceMembers"),
        (b'{"items": ' + b"[" * 100_000, "not JSON"),
    ],
)
async def test_scan_raw_refuses_what_is_not_instance_members(
    mocked: aioresponses, client: am.Client, body: bytes, match: str
) -> None:
    mocked.get(MEMBERS, body=body, content_type="application/json")

    async def consume(items: AsyncIterator[dict[str, Any]]) -> int:
        return len([i async for i in items])

    with pytest.raises(am.ProtocolError, match=match):
        await client.instance_members.scan_raw(members_path(IID), consume)


async def test_scan_raw_byte_cap(mocked: aioresponses) -> None:
    mocked.get(MEMBERS, body=big_body(400), content_type="application/json")
    async with am.Client(TOKEN, max_response_bytes=10_000) as c:

        async def consume(items: AsyncIterator[dict[str, Any]]) -> int:
            return len([i async for i in items])

        with pytest.raises(am.ProtocolError, match="max_response_bytes=10000"):
            await c.instance_members.scan_raw(members_path(IID), consume)


async def test_find_raw_by_email_filters_and_compares_exactly(
    mocked: aioresponses, client: am.Client
) -> None:
    mocked.get(
        ANY_MEMBERS,
        payload={"items": [member(email="ANNA@example.com"), member(email="Ann@Example.com")]},
    )
    found = await client.instance_members.find_raw(members_path(IID), email="ann@example.COM")
    assert found is not None and found["email"] == "Ann@Example.com"
    [(_, url, _kw)] = calls(mocked)
    assert dict(url.query) == {"filterField": "email", "filter": "ann@example.COM"}


async def test_find_raw_by_user_id_scans_and_none_when_absent(
    mocked: aioresponses, client: am.Client
) -> None:
    mocked.get(MEMBERS, body=big_body(50), content_type="application/json")
    mocked.get(MEMBERS, body=big_body(50), content_type="application/json")
    res = client.instance_members
    found = await res.find_raw(members_path(IID), user_id=f"{49:024X}")
    assert found is not None and found["email"] == "u49@example.com"
    assert await res.find_raw(members_path(IID), user_id=OTHER) is None


async def test_add_raw_returns_verified_member(mocked: aioresponses, client: am.Client) -> None:
    mocked.post(MEMBERS, payload=member(email="Ann@Example.com"))
    post = am.InstanceMemberPost(role="view", email="ann@example.com")
    data = await client.instance_members.add_raw(members_path(IID), post)
    assert data["email"] == "Ann@Example.com"
    assert [c[0] for c in calls(mocked)] == ["POST"]


async def test_add_raw_wrong_shape_is_confirmed_by_lookup(
    mocked: aioresponses, client: am.Client
) -> None:
    """A 200 [1,2,3] is not the member: counted only if a lookup finds it (issue 10)."""
    post = am.InstanceMemberPost(role="view", email="ann@example.com")
    mocked.post(MEMBERS, payload=[1, 2, 3])
    mocked.get(ANY_MEMBERS, payload={"items": []})
    with pytest.raises(am.ProtocolError, match="lookup does not find") as info:
        await client.instance_members.add_raw(members_path(IID), post)
    assert info.value.status == 200 and info.value.may_have_been_applied
    mocked.post(MEMBERS, payload=[1, 2, 3])
    mocked.get(ANY_MEMBERS, payload={"items": [member()]})
    assert (await client.instance_members.add_raw(members_path(IID), post)) == member()


async def test_post_of_another_member_is_refused(mocked: aioresponses, client: am.Client) -> None:
    mocked.post(MEMBERS, payload=member(email="mallory@example.com", userId=OTHER))
    mocked.get(ANY_MEMBERS, payload={"items": []})
    with pytest.raises(am.ProtocolError):
        await client.instance_members.post(
            instanceId=IID, member={"email": "ann@example.com", "role": "view"}
        )


async def test_library_filter_without_field_filters_by_email(
    mocked: aioresponses, client: am.Client
) -> None:
    mocked.get(ANY_MEMBERS, payload={"items": []})
    await client.instance_members.get(instanceId=IID, filter="web1*")
    [(_, url, _kw)] = calls(mocked)
    assert dict(url.query) == {"filterField": "email", "filter": "web1*"}


# --- classification (errors.py) ---------------------------------------------------------


def test_classification_table() -> None:
    coll, one = members_path(IID), member_path(IID, UID)
    cases: list[tuple[am.LosantError, bool, bool, int]] = [
        (am.ValidationError("x"), False, False, 2),
        (am.UnauthorizedError("x", status=401, method="POST", path=coll), True, False, 3),
        (am.ForbiddenError("x", status=403, method="GET", path=coll), True, False, 3),
        (am.NotFoundError("x", status=404, method="GET", path=coll), True, False, 3),
        (am.NotFoundError("x", status=404, method="DELETE", path=one), False, False, 1),
        (am.ClientClosedError("x"), True, False, 3),
        (am.ClientClosedError("x", in_flight=True, method="POST", path=coll), True, True, 3),
        (am.RateLimitError("x", status=429, method="POST", path=coll), False, False, 1),
        (
            am.RateLimitError("x", status=429, quota_exhausted=True, method="POST", path=coll),
            True,
            False,
            3,
        ),
        (am.ServerError("x", status=503, method="POST", path=coll), False, True, 1),
        (am.ServerError("x", status=503, method="GET", path=coll), False, False, 1),
        (am.LosantError("x", status=408, method="POST", path=coll), False, True, 1),
        (am.BadRequestError("x", status=400, method="POST", path=coll), False, False, 1),
        (am.TransportError("x", sent=False, method="POST", path=coll), False, False, 4),
        (am.TransportError("x", method="POST", path=coll), False, True, 4),
        (am.RedirectError("x", status=303, method="POST", path=coll), True, True, 3),
        (am.ProtocolError("x", status=200, method="POST", path=coll), False, True, 1),
    ]
    for err, fatal, applied, status in cases:
        assert (err.fatal, err.may_have_been_applied, err.exit_status) == (
            fatal,
            applied,
            status,
        ), repr(err)


def test_with_result_builds_a_new_error() -> None:
    err = am.ForbiddenError("403: no", status=403, method="GET", path=members_path(IID))
    marker = object()
    out = err.with_result(marker)
    assert type(out) is am.ForbiddenError and out is not err
    assert out.result is marker and err.result is None
    assert out.__cause__ is err
    assert (out.status, out.message, out.path, out.fatal) == (403, "403: no", err.path, True)
    quota = am.RateLimitError("429", status=429, retry_after=600.0, quota_exhausted=True)
    copy = quota.with_result(1)
    assert copy.quota_exhausted and copy.retry_after == 600.0 and copy.fatal
    assert pickle.loads(pickle.dumps(copy)).fatal


def test_depth_guard_agrees_with_real_nesting_whatever_the_chunking() -> None:
    import json
    import random

    from asyncmembers._streaming import DepthGuard

    def depth(o: Any) -> int:
        if isinstance(o, dict):
            return 1 + max([depth(v) for v in o.values()] or [0])
        if isinstance(o, list):
            return 1 + max([depth(v) for v in o] or [0])
        return 0

    docs: list[Any] = [
        {"items": [{"a": "[[[[", "b": '\\"{{{'}]},
        {"x": [[[[["]"]]]]]},
        ["\\\\", '"[', {"k\\": "}}}}"}],
        ["\\" * 7, "[[[", [[["\\"]]]],
    ]
    rng = random.Random(7)
    for doc in docs:
        data = json.dumps(doc).encode()
        for limit in range(7):
            for _ in range(100):
                cuts = sorted(rng.sample(range(1, len(data)), rng.randint(0, 12)))
                guard = DepthGuard(limit)
                try:
                    for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True):
                        guard.feed(data[a:b])
                except ValueError:
                    assert depth(doc) > limit, (doc, cuts, limit)
                else:
                    assert depth(doc) <= limit and guard.depth == 0 and not guard.in_string
