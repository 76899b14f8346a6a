"""The embedded server behaves like the Losant API, checked over real loopback HTTP.

Every answer body is validated against the JSON Schemas in ``tests/schemas.py``.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import re
import signal
import textwrap
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncmembers.testing import (
    DEFAULT_INSTANCE_ID,
    DEFAULT_TOKEN,
    GET_SCOPES,
    POST_SCOPES,
    FakeLosantServer,
    serve_forever,
)
from tests import schemas

pytest_plugins = ["pytester"]

IID = "575ec8687ae143cd83dc4a97"
OTHER_IID = "675ec8687ae143cd83dc4a98"
UNKNOWN_IID = "deadbeefdeadbeefdeadbeef"
KNOWN_USER = "575ef90f7ae143cd83dc4aad"
TOKENS = {
    "admin-token": ["all.Instance"],
    "read-token": ["all.Instance.read"],
    "post-only-token": ["instanceMembers.post"],
    "get-only-token": ["instanceMembers.get"],
    "unrelated-token": ["all.Application"],
}
PEOPLE = [  # email, role
    ("bob@x.io", "admin"),
    ("Alice@x.io", "view"),
    ("carol@x.io", "admin"),
    ("dave@x.io", "view"),
    ("Eve@x.io", "admin"),
]


@pytest.fixture
async def server() -> AsyncIterator[FakeLosantServer]:
    async with FakeLosantServer(
        tokens=TOKENS,
        instances=[IID, OTHER_IID],
        users=[
            {
                "userId": KNOWN_USER,
                "email": "Known@Example.com",
                "firstName": "Kim",
                "lastName": "Known",
            }
        ],
    ) as srv:
        yield srv


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def check_body(status: int, body: Any, *, listing: bool) -> None:
    """Validate an answer against the schema its status calls for."""
    if status == 200:
        schemas.validate(body, schemas.INSTANCE_MEMBERS if listing else schemas.INSTANCE_MEMBER)
    else:
        schemas.validate(body, schemas.ERROR)


async def call(
    http: aiohttp.ClientSession,
    server: FakeLosantServer,
    method: str,
    *,
    instance: str = IID,
    token: str | None = "admin-token",
    params: Mapping[str, str] | None = None,
    json_body: Any = None,
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, Any]:
    all_headers = {"Accept": "application/json", "Accept-Version": "^1.29.3", **(headers or {})}
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    if data is not None:
        all_headers["Content-Type"] = "application/json"
    async with http.request(
        method,
        f"{server.url}/instances/{instance}/members",
        params=params,
        json=json_body,
        data=data,
        headers=all_headers,
    ) as resp:
        assert resp.content_type == "application/json"
        body = await resp.json()
        check_body(resp.status, body, listing=method == "GET")
        return resp.status, body


async def list_emails(
    http: aiohttp.ClientSession, server: FakeLosantServer, **params: str
) -> list[str]:
    status, body = await call(http, server, "GET", params=params)
    assert status == 200, body
    assert body["count"] == len(body["items"])
    return [item["email"] for item in body["items"]]


def seed_people(server: FakeLosantServer) -> None:
    for email, role in PEOPLE:
        server.add_member(IID, email=email, role=role)


# -- listing and adding ---------------------------------------------------------------------


async def test_list_of_an_empty_instance_echoes_the_defaults(server, http) -> None:
    status, body = await call(http, server, "GET")
    assert status == 200
    assert body["items"] == []
    assert body["count"] == 0
    assert body["instanceId"] == IID
    assert (body["sortField"], body["sortDirection"]) == ("email", "asc")
    assert "filterField" not in body
    assert "filter" not in body


async def test_add_by_email_creates_a_user_and_a_member(server, http) -> None:
    status, member = await call(
        http, server, "POST", json_body={"email": "new@example.com", "role": "admin"}
    )
    assert status == 200
    assert member["instanceId"] == IID
    assert member["email"] == "new@example.com"
    assert member["role"] == "admin"
    assert member["twoFactorAuthEnabled"] is False
    assert member["ssoLinked"] is False
    assert "_links" in member
    truth = server.members(IID)
    assert truth == [{k: v for k, v in member.items() if k != "_links"}]
    status, listing = await call(http, server, "GET")
    assert [item["userId"] for item in listing["items"]] == [member["userId"]]
    assert server.stats.posts_applied == 1


async def test_add_by_unknown_user_id_makes_a_placeholder_without_email(server, http) -> None:
    user_id = "675ed18f7ae143cd83dc4bb7"
    status, member = await call(http, server, "POST", json_body={"userId": user_id, "role": "view"})
    assert status == 200
    assert member["userId"] == user_id
    assert "email" not in member
    assert server.members(IID)[0]["userId"] == user_id


async def test_add_by_known_user_id_returns_the_directory_user(server, http) -> None:
    status, member = await call(
        http, server, "POST", json_body={"userId": KNOWN_USER, "role": "view"}
    )
    assert status == 200
    assert (member["email"], member["firstName"], member["lastName"]) == (
        "Known@Example.com",
        "Kim",
        "Known",
    )


async def test_email_and_user_id_resolve_to_the_same_user(server, http) -> None:
    _, by_email = await call(
        http, server, "POST", json_body={"email": "x@example.com", "role": "view"}
    )
    status, again = await call(
        http, server, "POST", json_body={"userId": by_email["userId"], "role": "admin"}
    )
    assert (status, again["type"]) == (400, "Validation")
    assert "already" in again["message"] and "member" in again["message"]
    # The same user joins another instance through its userId, email included.
    status, elsewhere = await call(
        http,
        server,
        "POST",
        instance=OTHER_IID,
        json_body={"userId": by_email["userId"], "role": "view"},
    )
    assert status == 200
    assert elsewhere["email"] == "x@example.com"
    assert elsewhere["instanceId"] == OTHER_IID
    # And a known user's email (in another case) resolves to its userId.
    status, known = await call(
        http, server, "POST", json_body={"email": "KNOWN@example.COM", "role": "view"}
    )
    assert (status, known["userId"]) == (200, KNOWN_USER)
    assert len(server.members(IID)) == 2


async def test_generated_user_ids_depend_on_seed_and_email_not_on_order() -> None:
    async def ids(seed: int, emails: list[str]) -> dict[str, str]:
        srv = FakeLosantServer(seed=seed)
        for email in emails:
            srv.add_member(srv.instance_id, email=email)
        return {m["email"].lower(): m["userId"] for m in srv.members(srv.instance_id)}

    first = await ids(0, ["a@x.io", "b@x.io"])
    assert first == await ids(0, ["B@x.io", "a@x.io"])
    assert first != await ids(1, ["a@x.io", "b@x.io"])


# -- sorting and filtering ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ["Alice@x.io", "bob@x.io", "carol@x.io", "dave@x.io", "Eve@x.io"]),
        (
            {"sortField": "email", "sortDirection": "asc"},
            ["Alice@x.io", "bob@x.io", "carol@x.io", "dave@x.io", "Eve@x.io"],
        ),
        (
            {"sortField": "email", "sortDirection": "desc"},
            ["Eve@x.io", "dave@x.io", "carol@x.io", "bob@x.io", "Alice@x.io"],
        ),
        ({"sortField": "role"}, ["bob@x.io", "carol@x.io", "Eve@x.io", "Alice@x.io", "dave@x.io"]),
        (
            {"sortField": "role", "sortDirection": "desc"},
            ["Alice@x.io", "dave@x.io", "bob@x.io", "carol@x.io", "Eve@x.io"],
        ),
    ],
    ids=["default", "email-asc", "email-desc", "role-asc", "role-desc"],
)
async def test_sorting_is_case_insensitive_and_ties_go_by_email(
    server, http, params, expected
) -> None:
    seed_people(server)
    assert await list_emails(http, server, **params) == expected


async def test_sort_settings_are_echoed(server, http) -> None:
    _, body = await call(http, server, "GET", params={"sortField": "role", "sortDirection": "desc"})
    assert (body["sortField"], body["sortDirection"]) == ("role", "desc")


@pytest.mark.parametrize(
    ("field", "pattern", "expected"),
    [
        ("email", "*@x.io", ["Alice@x.io", "bob@x.io", "carol@x.io", "dave@x.io", "Eve@x.io"]),
        ("email", "a*", ["Alice@x.io"]),
        ("email", "E*", ["Eve@x.io"]),
        ("email", "BOB@X.IO", ["bob@x.io"]),
        ("email", "?ob@x.io", ["bob@x.io"]),
        ("email", "?@x.io", []),
        ("email", "*a*", ["Alice@x.io", "carol@x.io", "dave@x.io"]),
        ("email", "bob", []),  # the glob covers the whole value
        ("email", "[b]ob@x.io", []),  # "[" is an ordinary character
        ("email", "bob@x?io", ["bob@x.io"]),
        ("role", "adm*", ["bob@x.io", "carol@x.io", "Eve@x.io"]),
        ("role", "VIEW", ["Alice@x.io", "dave@x.io"]),
    ],
)
async def test_filter_globs_case_insensitively(server, http, field, pattern, expected) -> None:
    seed_people(server)
    status, body = await call(http, server, "GET", params={"filterField": field, "filter": pattern})
    assert status == 200
    assert [item["email"] for item in body["items"]] == expected
    assert body["count"] == len(expected)
    assert (body["filterField"], body["filter"]) == (field, pattern)


@pytest.mark.parametrize(
    "params",
    [
        {"filterField": "email", "filter": ""},
        {"filterField": "", "filter": "bob*"},
        {"filter": "bob*"},
        {"filterField": "email"},
    ],
    ids=["blank-filter", "blank-field", "no-field", "no-filter"],
)
async def test_blank_or_missing_filter_settings_mean_no_filtering(server, http, params) -> None:
    seed_people(server)
    status, body = await call(http, server, "GET", params=params)
    assert status == 200
    assert body["count"] == len(PEOPLE)
    assert "filterField" not in body
    assert "filter" not in body


async def test_filter_and_sort_combine(server, http) -> None:
    seed_people(server)
    emails = await list_emails(
        http, server, filterField="role", filter="admin", sortField="email", sortDirection="desc"
    )
    assert emails == ["Eve@x.io", "carol@x.io", "bob@x.io"]


async def test_members_without_email_never_match_an_email_filter(server, http) -> None:
    seed_people(server)
    server.add_member(IID, user_id="675ed18f7ae143cd83dc4bb7")
    _, everyone = await call(http, server, "GET")
    assert everyone["count"] == len(PEOPLE) + 1
    assert len(await list_emails(http, server, filterField="email", filter="*")) == len(PEOPLE)


async def test_a_new_member_shows_up_in_a_listing_seen_before(server, http) -> None:
    seed_people(server)
    assert len(await list_emails(http, server, sortField="role")) == len(PEOPLE)
    await call(http, server, "POST", json_body={"email": "zed@x.io", "role": "admin"})
    assert "zed@x.io" in await list_emails(http, server, sortField="role")


async def test_official_client_flags_unknown_params_and_headers_are_ignored(server, http) -> None:
    seed_people(server)
    params = {"_actions": "false", "_links": "true", "_embedded": "true", "whatever": "1"}
    headers = {"Accept-Version": "^1.31.0", "losantdomain": "example.com"}
    status, body = await call(http, server, "GET", params=params, headers=headers)
    assert (status, body["count"]) == (200, len(PEOPLE))
    status, _ = await call(
        http,
        server,
        "POST",
        params=params,
        headers=headers,
        json_body={"email": "z@x.io", "role": "view"},
    )
    assert status == 200


# -- errors ---------------------------------------------------------------------------------

UNAUTHORIZED = {"type": "Unauthorized", "message": "Unauthorized"}


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Token admin-token"},
        {"Authorization": "Bearer "},
    ],
    ids=["none", "unknown", "wrong-scheme", "empty"],
)
async def test_missing_or_unknown_token_is_401(server, http, method, headers) -> None:
    status, body = await call(
        http,
        server,
        method,
        token=None,
        headers=headers,
        json_body={"email": "a@x.io", "role": "view"},
    )
    assert (status, body) == (401, UNAUTHORIZED)
    assert server.members(IID) == []


async def test_401_comes_before_404(server, http) -> None:
    status, body = await call(http, server, "GET", token="nope", instance=UNKNOWN_IID)
    assert (status, body) == (401, UNAUTHORIZED)


@pytest.mark.parametrize(
    ("method", "token"),
    [
        ("GET", "post-only-token"),
        ("GET", "unrelated-token"),
        ("POST", "read-token"),
        ("POST", "get-only-token"),
        ("POST", "unrelated-token"),
    ],
)
async def test_token_lacking_the_scope_is_403(server, http, method, token) -> None:
    status, body = await call(
        http,
        server,
        method,
        token=token,
        instance=UNKNOWN_IID,
        json_body={"email": "a@x.io", "role": "view"},
    )
    assert (status, body["type"]) == (403, "Forbidden")
    assert server.members(IID) == []


@pytest.mark.parametrize(
    ("method", "scope"),
    [("GET", s) for s in sorted(GET_SCOPES)] + [("POST", s) for s in sorted(POST_SCOPES)],
)
async def test_each_documented_scope_is_enough(http, method, scope) -> None:
    async with FakeLosantServer(tokens={"t": [scope]}, instances=[IID]) as srv:
        status, _ = await call(
            http, srv, method, token="t", json_body={"email": "a@x.io", "role": "view"}
        )
    assert status == 200


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("instance", [UNKNOWN_IID, "not-an-object-id", IID[:-1]])
async def test_unknown_or_malformed_instance_is_404(server, http, method, instance) -> None:
    status, body = await call(
        http, server, method, instance=instance, json_body={"email": "a@x.io", "role": "view"}
    )
    assert (status, body) == (404, {"type": "NotFound", "message": "Instance was not found"})
    assert server.stats.posts_applied == 0


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/"),
        ("GET", f"/instances/{IID}"),
        ("PUT", f"/instances/{IID}/members"),
        ("GET", f"/instances/{IID}/members/x/y"),
    ],
)
async def test_other_routes_are_404_json(server, http, method, path) -> None:
    async with http.request(
        method, server.url + path, headers={"Authorization": "Bearer admin-token"}
    ) as resp:
        body = await resp.json()
    assert resp.status == 404
    schemas.validate(body, schemas.ERROR)
    assert body["type"] == "NotFound"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{not json",
        b"\xff\xfe",
        b"[]",
        b'"text"',
        b"null",
        json.dumps({"email": "a@x.io", "role": "view", "name": "A"}).encode(),
        json.dumps({"email": "not-an-email", "role": "view"}).encode(),
        json.dumps({"email": "a" * 1020 + "@x.io", "role": "view"}).encode(),
        json.dumps({"email": 5, "role": "view"}).encode(),
        json.dumps({"userId": "123", "role": "view"}).encode(),
        json.dumps({"userId": "zz" * 12, "role": "view"}).encode(),
        json.dumps({"email": "a@x.io", "role": "owner"}).encode(),
        json.dumps({"email": "a@x.io", "role": "Admin"}).encode(),
        json.dumps({"email": "a@x.io"}).encode(),
        json.dumps({"role": "view"}).encode(),
        json.dumps({}).encode(),
    ],
    ids=[
        "empty", "not-json", "not-utf8", "array", "string", "null", "extra-property", "bad-email",
        "email-too-long", "email-not-string", "short-user-id", "non-hex-user-id", "bad-role",
        "role-case", "missing-role", "neither-email-nor-user-id", "empty-object",
    ],
)  # fmt: skip
async def test_body_failing_the_schema_is_400_and_applies_nothing(server, http, data) -> None:
    status, body = await call(http, server, "POST", data=data)
    assert (status, body["type"]) == (400, "Validation")
    assert body["message"]
    assert "already" not in body["message"]
    assert server.members(IID) == []


@pytest.mark.parametrize(
    "params",
    [
        {"sortField": "name"},
        {"sortField": ""},
        {"sortDirection": "up"},
        {"filterField": "firstName", "filter": "a*"},
        [("sortField", "email"), ("sortField", "role")],
    ],
    ids=["sortField", "blank-sortField", "sortDirection", "filterField", "repeated"],
)
async def test_bad_query_values_are_400(server, http, params) -> None:
    status, body = await call(http, server, "GET", params=params)
    assert (status, body["type"]) == (400, "Validation")


@pytest.mark.parametrize("again", ["a@x.io", "A@X.IO", "a@X.io"])
async def test_adding_a_member_twice_is_400_already_a_member(server, http, again) -> None:
    status, _ = await call(http, server, "POST", json_body={"email": "a@x.io", "role": "view"})
    assert status == 200
    status, body = await call(http, server, "POST", json_body={"email": again, "role": "admin"})
    assert (status, body) == (
        400,
        {"type": "Validation", "message": "User is already a member of this instance"},
    )
    assert [m["role"] for m in server.members(IID)] == ["view"]


# -- the Python side ------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com", "::"])
def test_non_loopback_hosts_are_refused(host) -> None:
    with pytest.raises(ValueError, match="loopback"):
        FakeLosantServer(host=host)


async def test_localhost_and_ipv6_loopback_are_served(http) -> None:
    async with FakeLosantServer(host="localhost") as srv:
        assert srv.url.startswith("http://127.0.0.1:")
    try:
        srv6 = FakeLosantServer(host="::1")
        await srv6.start()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    try:
        assert srv6.url.startswith("http://[::1]:")
        async with http.get(
            f"{srv6.url}/instances/{DEFAULT_INSTANCE_ID}/members",
            headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"},
        ) as resp:
            assert resp.status == 200
    finally:
        await srv6.close()


def test_scopes_given_as_a_string_are_refused() -> None:
    with pytest.raises(TypeError, match=r"\['all.Instance'\]"):
        FakeLosantServer(tokens={"t": "all.Instance"})


def test_defaults_and_convenience_attributes() -> None:
    srv = FakeLosantServer()
    assert (srv.token, srv.instance_id) == (DEFAULT_TOKEN, DEFAULT_INSTANCE_ID)
    assert "test-token" not in repr(srv)
    with pytest.raises(RuntimeError, match="started"):
        _ = srv.url


async def test_lifecycle_start_once_close_twice_and_port_freed(http) -> None:
    srv = FakeLosantServer()
    await srv.start()
    url = srv.url
    with pytest.raises(RuntimeError):
        await srv.start()
    await srv.close()
    await srv.close()
    with pytest.raises(aiohttp.ClientConnectorError):
        async with http.get(url):
            pass


def test_add_member_and_members_report_misuse() -> None:
    srv = FakeLosantServer(instances=[IID])
    srv.add_member(IID, email="a@x.io")
    with pytest.raises(ValueError, match="already a member"):
        srv.add_member(IID, email="A@x.io", role="admin")
    with pytest.raises(ValueError, match="role"):
        srv.add_member(IID, email="b@x.io", role="owner")
    with pytest.raises(KeyError):
        srv.add_member(UNKNOWN_IID, email="b@x.io")
    with pytest.raises(KeyError):
        srv.members(UNKNOWN_IID)
    srv.add_instance(UNKNOWN_IID)
    assert srv.members(UNKNOWN_IID) == []


async def test_stats_count_requests_statuses_and_posts(server, http) -> None:
    await call(http, server, "GET")
    await call(http, server, "GET", token=None)
    await call(http, server, "POST", json_body={"email": "a@x.io", "role": "view"})
    await call(http, server, "POST", json_body={"email": "a@x.io", "role": "view"})
    stats = server.stats
    assert stats.requests == 4
    assert stats.by_status == {200: 2, 401: 1, 400: 1}
    assert stats.posts_applied == 1
    assert not stats.faults
    old = server.reset_stats()
    assert old is stats
    assert server.stats.requests == 0


async def test_serve_forever_reports_the_url_and_stops_on_cancel(http) -> None:
    ready: asyncio.Queue[str] = asyncio.Queue()
    task = asyncio.create_task(serve_forever(FakeLosantServer(), on_ready=ready.put_nowait))
    url = await ready.get()
    async with http.get(
        f"{url}/instances/{DEFAULT_INSTANCE_ID}/members",
        headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"},
    ) as resp:
        assert resp.status == 200
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(aiohttp.ClientConnectorError):
        async with http.get(url):
            pass


async def test_serve_forever_stops_on_sigterm_and_says_so() -> None:
    ready: asyncio.Queue[str] = asyncio.Queue()
    previous = signal.getsignal(signal.SIGTERM)
    task = asyncio.create_task(serve_forever(FakeLosantServer(), on_ready=ready.put_nowait))
    await ready.get()
    os.kill(os.getpid(), signal.SIGTERM)
    assert await task == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == previous


# -- the pytest plugin ----------------------------------------------------------------------


def _plugin_is_installed() -> bool:
    return any(
        ep.name == "asyncmembers" for ep in importlib.metadata.entry_points(group="pytest11")
    )


def test_pytest_plugin_fixture_serves_and_can_be_customised(
    pytester: pytest.Pytester, monkeypatch
) -> None:
    repo = Path(__file__).resolve().parent.parent
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))
    )
    pytester.makeini(
        """
        [pytest]
        asyncio_mode = auto
        asyncio_default_fixture_loop_scope = function
        filterwarnings = error
        """
    )
    pytester.makepyfile(
        test_uses_fixture=textwrap.dedent(
            """
            import aiohttp
            import pytest
            from asyncmembers.testing import Faults

            async def test_default(losant_server):
                assert losant_server.token == "test-token"
                url = f"{losant_server.url}/instances/{losant_server.instance_id}/members"
                async with aiohttp.ClientSession() as http:
                    async with http.post(url, json={"email": "a@x.io", "role": "view"},
                                         headers={"Authorization": "Bearer test-token"}) as r:
                        assert r.status == 200
                assert len(losant_server.members(losant_server.instance_id)) == 1

            class TestOverrides:
                @pytest.fixture
                def losant_server_faults(self):
                    return Faults(error_rate=1.0)

                @pytest.fixture
                def losant_server_tokens(self):
                    return {"mine": ["instanceMembers.get"]}

                async def test_overridden(self, losant_server):
                    assert losant_server.token == "mine"
                    assert losant_server.faults.error_rate == 1.0
            """
        )
    )
    args = [] if _plugin_is_installed() else ["-p", "asyncmembers.testing.pytest_plugin"]
    result = pytester.runpytest_subprocess(*args)
    result.assert_outcomes(passed=2)


@settings(max_examples=300, deadline=None)
@given(
    pattern=st.text(alphabet="ab*?.", max_size=8),
    text=st.text(alphabet="abAB.", max_size=10),
)
def test_glob_matches_like_the_regex_reading(pattern: str, text: str) -> None:
    from asyncmembers.testing._state import compile_glob

    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    expected = re.fullmatch(regex, text, re.IGNORECASE | re.DOTALL) is not None
    assert compile_glob(pattern).fullmatch(text) == expected


def test_many_stars_do_not_backtrack() -> None:
    """*a*a*a*a*a*b against a long address ran for minutes with one regex per glob."""
    from concurrent.futures import ThreadPoolExecutor

    from asyncmembers.testing._state import compile_glob

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(compile_glob("*a" * 5 + "*b").fullmatch, "a" * 200 + "@example.com")
        assert future.result(timeout=60) is False
