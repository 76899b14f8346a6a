"""Exact wire-level behaviour of the client, with aioresponses (no network at all)."""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from yarl import URL

import asyncmembers as am

BASE = "https://api.losant.com"  # every request is answered by aioresponses, in process
IID = "575ec8687ae143cd83dc4a97"
UID = "675ed18f7ae143cd83dc4bb7"
MEMBERS = f"{BASE}/instances/{IID}/members"
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
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    c._session.sleep = fake_sleep
    c.sleeps = sleeps  # type: ignore[attr-defined]
    async with c:
        yield c


def calls(m: aioresponses, method: str | None = None) -> list[tuple[str, URL, dict[str, Any]]]:
    out = []
    for (meth, url), reqs in m.requests.items():
        for r in reqs:
            if method is None or meth == method:
                out.append((meth, url, r.kwargs))
    return out


def sent_headers(client: am.Client, kw: dict[str, Any]) -> dict[str, str]:
    """The headers a request carried: its session's defaults overlaid with its own, merged
    the way aiohttp merges them (aioresponses sees the request before that merge)."""
    session = client._session.transport._session
    assert session is not None
    merged = dict(session.headers)
    merged.update(kw.get("headers") or {})
    return merged


def answer_429(m: aioresponses, retry_after: str, *, repeat: bool = False) -> None:
    """The list endpoint answers 429 TooManyRequests with this Retry-After header."""
    m.get(
        MEMBERS,
        status=429,
        payload={"type": "TooManyRequests", "message": "slow"},
        headers={"Retry-After": retry_after},
        repeat=repeat,
    )


def member(**over: Any) -> dict[str, Any]:
    return {"instanceId": IID, "userId": UID, "email": "ann@example.com", "role": "view", **over}


# --- requests as sent -----------------------------------------------------------------


async def test_get_sends_exact_url_query_and_headers(
    mocked: aioresponses, client: am.Client
) -> None:
    mocked.get(ANY_MEMBERS, payload={"items": [member()], "count": 1})
    result = await client.instance_members.get(
        instanceId=IID,
        sortField="role",
        sortDirection="desc",
        filterField="email",
        filter="a* b?",
        losantdomain="example.org",
    )
    [(method, url, kw)] = calls(mocked)
    assert method == "GET"
    assert url.path == f"/instances/{IID}/members"
    assert dict(url.query) == {
        "sortField": "role",
        "sortDirection": "desc",
        "filterField": "email",
        "filter": "a* b?",
    }
    headers = sent_headers(client, kw)
    assert headers == {
        "Accept": "application/json",
        "Accept-Version": "^1.29.3",
        "User-Agent": headers["User-Agent"],
        "Authorization": f"Bearer {TOKEN}",
        "losantdomain": "example.org",
    }
    assert kw["data"] is None
    assert result.count == 1 and result.items[0].email == "ann@example.com"


async def test_get_without_options_sends_no_query(mocked: aioresponses, client: am.Client) -> None:
    mocked.get(MEMBERS, payload={"items": [], "count": 0})
    await client.instance_members.get(instanceId=IID)
    [(_, url, kw)] = calls(mocked)
    assert url.query_string == ""
    assert "losantdomain" not in sent_headers(client, kw)


@pytest.mark.parametrize(
    ("given", "wire"),
    [
        ({"userId": UID, "role": "view"}, {"userId": UID, "role": "view"}),
        (
            {"email": "Bob@Example.com", "role": "admin"},
            {"email": "Bob@Example.com", "role": "admin"},
        ),
        (am.InstanceMemberPost(role=am.Role.VIEW, user_id=UID), {"userId": UID, "role": "view"}),
        (
            {"email": "  c@example.com ", "role": " Admin"},
            {"email": "c@example.com", "role": "admin"},
        ),
    ],
)
async def test_post_sends_exact_json_body(
    mocked: aioresponses, client: am.Client, given: Any, wire: dict[str, str]
) -> None:
    mocked.post(MEMBERS, payload=member(**wire))
    created = await client.instance_members.post(instanceId=IID, member=given)
    [(method, url, kw)] = calls(mocked)
    assert method == "POST" and url == URL(MEMBERS)
    assert json.loads(kw["data"]) == wire
    headers = sent_headers(client, kw)
    assert headers["Content-Type"] == "application/json"
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert isinstance(created, am.InstanceMember)
    assert created.role == am.Role(wire["role"])


async def test_accept_version_is_overridable(mocked: aioresponses) -> None:
    mocked.get(MEMBERS, payload={"items": []})
    async with am.Client(TOKEN, accept_version="^1.31.0") as c:
        await c.instance_members.get(instanceId=IID)
        [(_, _, kw)] = calls(mocked)
        assert sent_headers(c, kw)["Accept-Version"] == "^1.31.0"


async def test_no_token_sends_no_authorization(mocked: aioresponses) -> None:
    mocked.get(MEMBERS, payload={"items": []})
    async with am.Client() as c:
        await c.instance_members.get(instanceId=IID)
        [(_, _, kw)] = calls(mocked)
        assert "Authorization" not in sent_headers(c, kw)


async def test_a_callers_session_gets_every_header_on_each_request(mocked: aioresponses) -> None:
    """The caller's session has none of our defaults: each request carries them all."""
    mocked.get(MEMBERS, payload={"items": []})
    mocked.post(MEMBERS, payload=member())
    async with aiohttp.ClientSession() as session:
        async with am.Client(TOKEN, session=session, timeout=7) as c:
            await c.instance_members.get(instanceId=IID)
            await c.instance_members.post(instanceId=IID, member={"userId": UID, "role": "view"})
        assert "Authorization" not in session.headers
    get_kw, post_kw = calls(mocked, "GET")[0][2], calls(mocked, "POST")[0][2]
    assert get_kw["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert get_kw["headers"]["Accept-Version"] == "^1.29.3"
    assert "Content-Type" not in get_kw["headers"]
    assert post_kw["headers"]["Content-Type"] == "application/json"
    assert post_kw["headers"]["Authorization"] == f"Bearer {TOKEN}"
    # The attempt's total is the transport's timer's (tests/test_attempt_timer.py); a
    # caller's session, with a default of its own, is told the rest of the timeout.
    assert get_kw["timeout"] == aiohttp.ClientTimeout(total=None)


async def test_aiohttp_never_holds_the_attempt_total(mocked: aioresponses) -> None:
    """The transport's timer keeps each attempt's total (tests/test_attempt_timer.py);
    aiohttp gets the rest of the timeout, on the owned session and with each request."""
    mocked.get(MEMBERS, payload={"items": []})
    timeout = aiohttp.ClientTimeout(total=7, sock_read=3)
    async with am.Client(TOKEN, timeout=timeout) as c:
        await c.instance_members.get(instanceId=IID)
        session = c._session.transport._session
        assert session is not None
        assert session.timeout == aiohttp.ClientTimeout(total=None, sock_read=3)
    [(_, _, kw)] = calls(mocked)
    assert kw["timeout"] == aiohttp.ClientTimeout(total=None, sock_read=3)


async def test_base_url_with_path_prefix(mocked: aioresponses) -> None:
    mocked.get(f"https://proxy.example/losant/instances/{IID}/members", payload={"items": []})
    async with am.Client(TOKEN, url="https://proxy.example/losant/") as c:
        await c.instance_members.get(instanceId=IID)
    assert len(calls(mocked)) == 1


# --- responses parsed -----------------------------------------------------------------


async def test_unknown_fields_and_enum_values_are_tolerated(
    mocked: aioresponses, client: am.Client
) -> None:
    body = {
        "items": [member(role="owner", _links={"self": {"href": "/x"}}, newProp=[1, 2])],
        "count": 1,
        "sortDirection": "DESC",
        "_embedded": {},
        "somethingNew": True,
    }
    mocked.get(MEMBERS, payload=body)
    result = await client.instance_members.get(instanceId=IID)
    assert result.items[0].role == "owner"
    assert result.sort_direction == "DESC"


async def test_non_json_success_is_a_clear_error(mocked: aioresponses, client: am.Client) -> None:
    mocked.get(MEMBERS, body="<html>proxy</html>", content_type="text/html")
    with pytest.raises(am.LosantError, match="not JSON") as info:
        await client.instance_members.get(instanceId=IID)
    assert info.value.status == 200


async def test_wrong_shape_is_a_clear_error(mocked: aioresponses, client: am.Client) -> None:
    mocked.get(MEMBERS, payload={"items": "nope"})
    with pytest.raises(am.LosantError, match="InstanceMembers"):
        await client.instance_members.get(instanceId=IID)


# --- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "cls", "etype"),
    [
        (400, am.BadRequestError, "Validation"),
        (401, am.UnauthorizedError, "Unauthorized"),
        (403, am.ForbiddenError, "Forbidden"),
        (404, am.NotFoundError, "NotFound"),
        (409, am.LosantError, "Conflict"),
        (429, am.RateLimitError, "TooManyRequests"),
        (500, am.ServerError, "InternalError"),
        (502, am.ServerError, "BadGateway"),
        (503, am.ServerError, "Unavailable"),
        (504, am.ServerError, "Timeout"),
    ],
)
async def test_every_error_status_is_mapped(
    mocked: aioresponses, status: int, cls: type[am.LosantError], etype: str
) -> None:
    body = {"type": etype, "message": f"server says {status}"}
    mocked.get(MEMBERS, status=status, payload=body, repeat=True)
    async with am.Client(TOKEN, retry=am.RetryPolicy(attempts=1)) as c:
        with pytest.raises(cls) as info:
            await c.instance_members.get(instanceId=IID)
    err = info.value
    assert type(err) is cls
    assert (err.status, err.type, err.data) == (status, etype, body)
    assert f"server says {status}" in err.message
    assert str(err).startswith(f"GET /instances/{IID}/members: {status} {etype}")
    assert TOKEN not in str(err) and TOKEN not in repr(err)
    assert len(calls(mocked)) == 1


async def test_error_without_json_body(mocked: aioresponses, client: am.Client) -> None:
    mocked.get(MEMBERS, status=404, body="not found", content_type="text/plain")
    with pytest.raises(am.NotFoundError) as info:
        await client.instance_members.get(instanceId=IID)
    assert info.value.data is None and info.value.type is None


async def test_connection_refused_is_transport_error(mocked: aioresponses) -> None:
    key = SimpleNamespace(host="api.losant.com", port=443, ssl=True)
    exc = aiohttp.ClientConnectorError(
        connection_key=key,  # type: ignore[arg-type]
        os_error=ConnectionRefusedError(111, "refused"),
    )
    mocked.get(MEMBERS, exception=exc, repeat=True)
    async with am.Client(TOKEN, retry=am.RetryPolicy(attempts=2, wait_initial=0)) as c:
        with pytest.raises(am.TransportError) as info:
            await c.instance_members.get(instanceId=IID)
    assert info.value.status is None and info.value.sent is False
    assert isinstance(info.value.__cause__, aiohttp.ClientConnectorError)
    assert "gave up after 2 attempts" in info.value.message


async def test_used_after_close(client: am.Client) -> None:
    await client.close()
    with pytest.raises(am.ClientClosedError, match="closed"):
        await client.instance_members.get(instanceId=IID)


# --- retries --------------------------------------------------------------------------


async def test_get_retries_503_then_502_then_succeeds(
    mocked: aioresponses, client: am.Client
) -> None:
    mocked.get(MEMBERS, status=503, payload={"type": "Unavailable", "message": "x"})
    mocked.get(MEMBERS, status=502, payload={"type": "BadGateway", "message": "x"})
    mocked.get(MEMBERS, payload={"items": [member()], "count": 1})
    result = await client.instance_members.get(instanceId=IID)
    assert result.count == 1
    assert len(calls(mocked)) == 3
    assert len(client.sleeps) == 2  # type: ignore[attr-defined]
    assert all(0 <= s <= 0.05 for s in client.sleeps)  # type: ignore[attr-defined]


async def test_get_retries_500(mocked: aioresponses, client: am.Client) -> None:
    mocked.get(MEMBERS, status=500, payload={"type": "Error", "message": "x"})
    mocked.get(MEMBERS, payload={"items": []})
    await client.instance_members.get(instanceId=IID)
    assert len(calls(mocked)) == 2


async def test_429_waits_retry_after_seconds(mocked: aioresponses, client: am.Client) -> None:
    answer_429(mocked, "1")
    mocked.get(MEMBERS, payload={"items": []})
    await client.instance_members.get(instanceId=IID)
    assert client.sleeps == [1.0]  # type: ignore[attr-defined]


async def test_429_with_retry_after_0_backs_off_like_any_failure(mocked: aioresponses) -> None:
    """ "Retry now", taken at its word, spent all five attempts within ~2 ms (a bucket
    empty for a few milliseconds failed the row): the waits are the backoff's."""
    answer_429(mocked, "0", repeat=True)
    policy = am.RetryPolicy(attempts=4, wait_initial=0.01, wait_max=0.05, jitter=False)
    async with am.Client(TOKEN, retry=policy) as c:
        sleeps: list[float] = []

        async def fake_sleep(seconds: float) -> None:
            sleeps.append(seconds)

        c._session.sleep = fake_sleep
        with pytest.raises(am.RateLimitError):
            await c.instance_members.get(instanceId=IID)
    assert sleeps == pytest.approx([0.01, 0.02, 0.04])


async def test_429_waits_until_http_date(mocked: aioresponses, client: am.Client) -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    answer_429(mocked, when)
    mocked.get(MEMBERS, payload={"items": []})
    await client.instance_members.get(instanceId=IID)
    [slept] = client.sleeps  # type: ignore[attr-defined]
    assert 28 <= slept <= 30


async def test_429_real_sleep_is_about_retry_after(mocked: aioresponses) -> None:
    """The one test that really sleeps: the default sleep honours Retry-After: 1."""
    answer_429(mocked, "1")
    mocked.get(MEMBERS, payload={"items": []})
    async with am.Client(TOKEN) as c:
        start = time.monotonic()
        await c.instance_members.get(instanceId=IID)
        assert time.monotonic() - start >= 0.95


async def test_retry_after_beyond_max_is_not_waited_out(mocked: aioresponses) -> None:
    answer_429(mocked, "3600")
    async with am.Client(TOKEN, retry=am.RetryPolicy(max_retry_after=10)) as c:
        with pytest.raises(am.RateLimitError) as info:
            await c.instance_members.get(instanceId=IID)
    assert info.value.retry_after == 3600
    assert len(calls(mocked)) == 1


async def test_exhausted_429_raises_rate_limit_error(
    mocked: aioresponses, client: am.Client
) -> None:
    answer_429(mocked, "2", repeat=True)
    with pytest.raises(am.RateLimitError) as info:
        await client.instance_members.get(instanceId=IID)
    assert info.value.retry_after == 2
    assert len(calls(mocked)) == 4
    assert "gave up after 4 attempts" in str(info.value)


async def test_exhausted_5xx_raises_server_error(mocked: aioresponses, client: am.Client) -> None:
    mocked.get(MEMBERS, status=503, payload={"type": "Unavailable", "message": "x"}, repeat=True)
    with pytest.raises(am.ServerError) as info:
        await client.instance_members.get(instanceId=IID)
    assert info.value.status == 503
    assert len(calls(mocked)) == 4


@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_4xx_is_never_retried(mocked: aioresponses, client: am.Client, status: int) -> None:
    mocked.post(MEMBERS, status=status, payload={"type": "X", "message": "no"}, repeat=True)
    with pytest.raises(am.LosantError):
        await client.instance_members.post(
            instanceId=IID, member={"email": "a@example.com", "role": "view"}
        )
    assert len(calls(mocked)) == 1


async def test_attempts_one_disables_retries(mocked: aioresponses) -> None:
    mocked.get(MEMBERS, status=503, payload={"type": "Unavailable", "message": "x"}, repeat=True)
    async with am.Client(TOKEN, retry=am.RetryPolicy(attempts=1)) as c:
        with pytest.raises(am.ServerError):
            await c.instance_members.get(instanceId=IID)
    assert len(calls(mocked)) == 1


async def test_total_timeout_bounds_retries(mocked: aioresponses) -> None:
    """A wait that would end past RetryPolicy.timeout is not started."""
    answer_429(mocked, "5", repeat=True)
    async with am.Client(TOKEN, retry=am.RetryPolicy(attempts=10, timeout=2)) as c:
        with pytest.raises(am.RateLimitError):
            await c.instance_members.get(instanceId=IID)
    assert len(calls(mocked)) == 1


async def test_retry_is_logged_without_token(
    mocked: aioresponses, client: am.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", logger="asyncmembers")
    mocked.get(MEMBERS, status=503, payload={"type": "Unavailable", "message": "busy"})
    mocked.get(MEMBERS, payload={"items": []})
    await client.instance_members.get(instanceId=IID)
    [record] = [r for r in caplog.records if r.name == "asyncmembers" and r.levelname == "INFO"]
    text = record.getMessage()
    assert "attempt 1 of 4" in text and "503" in text and "retrying in" in text
    # At DEBUG, one line per attempt as well: method, path, status, time.
    attempts = [r.getMessage() for r in caplog.records if r.levelname == "DEBUG"]
    assert len(attempts) == 2 and attempts[0].startswith(f"GET /instances/{IID}/members 503 ")
    assert attempts[1].startswith(f"GET /instances/{IID}/members 200 ")
    assert TOKEN not in caplog.text


# --- POST retry safety ----------------------------------------------------------------


async def test_post_retries_freely_after_429_but_looks_up_after_503(
    mocked: aioresponses, client: am.Client
) -> None:
    """A 429 proves nothing was applied; a 503 does not (a proxy may send it after the
    backend committed), so the member is looked up before the POST is resent (issue 10)."""
    mocked.post(
        MEMBERS,
        status=429,
        payload={"type": "TooManyRequests", "message": "x"},
        headers={"Retry-After": "1"},
    )
    mocked.post(MEMBERS, status=503, payload={"type": "Unavailable", "message": "x"})
    mocked.get(ANY_MEMBERS, payload={"items": [], "count": 0})
    mocked.post(MEMBERS, payload=member())
    await client.instance_members.post(instanceId=IID, member={"userId": UID, "role": "view"})
    assert sorted(c[0] for c in calls(mocked)) == ["GET", "POST", "POST", "POST"]


async def test_post_after_connection_cut_finds_member_and_does_not_resend(
    mocked: aioresponses, client: am.Client
) -> None:
    mocked.post(MEMBERS, exception=aiohttp.ServerDisconnectedError())
    mocked.get(ANY_MEMBERS, payload={"items": [member(email="Ann@Example.com")], "count": 1})
    created = await client.instance_members.post(
        instanceId=IID, member={"email": "ann@example.com", "role": "view"}
    )
    assert created.user_id == UID
    methods = [c[0] for c in calls(mocked)]
    assert methods.count("POST") == 1, methods
    [(_, url, _)] = calls(mocked, "GET")
    assert dict(url.query) == {"filterField": "email", "filter": "ann@example.com"}


async def test_post_after_timeout_resends_when_member_absent(
    mocked: aioresponses, client: am.Client
) -> None:
    mocked.post(MEMBERS, exception=TimeoutError())
    mocked.get(ANY_MEMBERS, payload={"items": [member(email="other@example.com")], "count": 1})
    mocked.post(MEMBERS, payload=member())
    await client.instance_members.post(
        instanceId=IID, member={"email": "ann@example.com", "role": "view"}
    )
    assert [c[0] for c in calls(mocked)].count("POST") == 2


async def test_post_by_user_id_after_502_looks_user_up(
    mocked: aioresponses, client: am.Client
) -> None:
    mocked.post(MEMBERS, status=502, payload={"type": "BadGateway", "message": "x"})
    mocked.get(MEMBERS, payload={"items": [member()], "count": 1})
    created = await client.instance_members.post(
        instanceId=IID, member={"userId": UID, "role": "view"}
    )
    assert created.user_id == UID
    assert [c[0] for c in calls(mocked)] == ["POST", "GET"]


async def test_already_member_after_ambiguous_attempt_is_success(
    mocked: aioresponses, client: am.Client
) -> None:
    """Cut after commit, then the lookup misses (replica lag), and the resend says 'already'."""
    mocked.post(MEMBERS, exception=aiohttp.ServerDisconnectedError())
    mocked.get(ANY_MEMBERS, payload={"items": [], "count": 0})
    mocked.post(
        MEMBERS,
        status=400,
        payload={"type": "Validation", "message": "User is already a member of this instance"},
    )
    mocked.get(ANY_MEMBERS, payload={"items": [member()], "count": 1})
    created = await client.instance_members.post(
        instanceId=IID, member={"email": "ann@example.com", "role": "view"}
    )
    assert created.email == "ann@example.com"


async def test_already_member_without_ambiguity_is_an_error(
    mocked: aioresponses, client: am.Client
) -> None:
    mocked.post(
        MEMBERS,
        status=400,
        payload={"type": "Validation", "message": "User is already a member of this instance"},
    )
    with pytest.raises(am.BadRequestError) as info:
        await client.instance_members.post(
            instanceId=IID, member={"email": "ann@example.com", "role": "view"}
        )
    assert info.value.already_member
    assert len(calls(mocked)) == 1


async def test_post_without_retries_reports_ambiguous_failure(mocked: aioresponses) -> None:
    mocked.post(MEMBERS, exception=aiohttp.ServerDisconnectedError())
    async with am.Client(TOKEN, retry=am.RetryPolicy(attempts=1)) as c:
        with pytest.raises(am.TransportError, match="may have been applied") as info:
            await c.instance_members.post(instanceId=IID, member={"userId": UID, "role": "view"})
    assert info.value.sent is True


# --- validation before sending --------------------------------------------------------

BAD_CALLS: list[tuple[str, dict[str, Any], str]] = [
    ("get", {"instanceId": "nope"}, "instanceId"),
    ("get", {"instanceId": IID + "/../x"}, "instanceId"),
    ("get", {"instanceId": 12345}, "instanceId"),
    ("get", {"instanceId": IID, "sortField": "name"}, "sortField"),
    ("get", {"instanceId": IID, "sortDirection": "up"}, "sortDirection"),
    ("get", {"instanceId": IID, "filterField": "userId"}, "filterField"),
    ("get", {"instanceId": IID, "filter": 5}, "filter"),
    ("post", {"instanceId": "x" * 24, "member": {"userId": UID, "role": "view"}}, "instanceId"),
    ("post", {"instanceId": IID, "member": {"userId": "123", "role": "view"}}, "userId"),
    ("post", {"instanceId": IID, "member": {"email": "not-an-email", "role": "view"}}, "email"),
    (
        "post",
        {"instanceId": IID, "member": {"email": "a" * 1020 + "@b.co", "role": "view"}},
        "email",
    ),
    ("post", {"instanceId": IID, "member": {"email": "a@b.co", "role": "owner"}}, "role"),
    ("post", {"instanceId": IID, "member": {"email": "a@b.co"}}, "role"),
    ("post", {"instanceId": IID, "member": {"role": "view"}}, "email"),
    ("post", {"instanceId": IID, "member": {"email": "a@b.co", "role": "view", "x": 1}}, "x"),
    ("post", {"instanceId": IID, "member": ["email", "a@b.co"]}, ""),
]


@pytest.mark.parametrize(("method", "kwargs", "field"), BAD_CALLS)
async def test_invalid_arguments_raise_before_any_request(
    mocked: aioresponses, client: am.Client, method: str, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(am.ValidationError) as info:
        await getattr(client.instance_members, method)(**kwargs)
    assert isinstance(info.value, ValueError)
    if field:
        assert info.value.field == field
        assert field in str(info.value)
    assert calls(mocked) == []
