"""One member on the embedded server: GET, PATCH and DELETE /instances/{id}/members/{userId}.

Checked over real loopback HTTP with raw aiohttp requests; every answer body is validated
against the JSON Schemas in ``tests/schemas.py``. Also: seeding many members at once
(``add_members``) and listing a large instance.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncmembers.testing import (
    MEMBER_DELETE_SCOPES,
    MEMBER_GET_SCOPES,
    MEMBER_PATCH_SCOPES,
    FakeLosantServer,
)
from tests import schemas

IID = "575ec8687ae143cd83dc4a97"
OTHER_IID = "675ec8687ae143cd83dc4a98"
UNKNOWN_IID = "deadbeefdeadbeefdeadbeef"
UNKNOWN_UID = "0123456789abcdef01234567"
KNOWN_USER = "575ef90f7ae143cd83dc4aad"
PLACEHOLDER = "675ed18f7ae143cd83dc4bb7"

ALL_SCOPES = sorted(
    MEMBER_GET_SCOPES
    | MEMBER_PATCH_SCOPES
    | MEMBER_DELETE_SCOPES
    | {"instanceMembers.*", "instanceMembers.get", "instanceMembers.post", "all.Application"}
)
#: token "admin" plus one token per scope, named after it
TOKENS = {"admin": ["all.Instance"], **{scope: [scope] for scope in ALL_SCOPES}}

NOT_FOUND_INSTANCE = {"type": "NotFound", "message": "Instance was not found"}
NOT_FOUND_MEMBER = {"type": "NotFound", "message": "Member was not found"}
UNAUTHORIZED = {"type": "Unauthorized", "message": "Unauthorized"}


@pytest.fixture
async def server() -> AsyncIterator[FakeLosantServer]:
    async with FakeLosantServer(
        tokens=TOKENS,
        instances=[IID, OTHER_IID],
        users=[{"userId": KNOWN_USER, "email": "Known@Example.com", "firstName": "Kim"}],
    ) as srv:
        yield srv


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(
    http: aiohttp.ClientSession,
    server: FakeLosantServer,
    method: str,
    user_id: str,
    *,
    instance: str = IID,
    token: str | None = "admin",
    json_body: Any = None,
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
) -> tuple[int, Any]:
    """One request on a member path; the answer is checked against its schema."""
    all_headers = {"Accept": "application/json", **(headers or {})}
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    if data is not None:
        all_headers["Content-Type"] = "application/json"
    async with http.request(
        method,
        f"{server.url}/instances/{instance}/members/{user_id}",
        json=json_body,
        data=data,
        headers=all_headers,
        params=params,
    ) as resp:
        assert resp.content_type == "application/json"
        body = await resp.json()
    if resp.status != 200:
        schemas.validate(body, schemas.ERROR)
    elif method == "DELETE":
        schemas.validate(body, schemas.SUCCESS)
    else:
        schemas.validate(body, schemas.INSTANCE_MEMBER)
        href = f"/instances/{body['instanceId']}/members/{body['userId']}"
        assert body["_links"] == {"self": {"href": href}}
    return resp.status, body


def truth(server: FakeLosantServer, instance: str = IID) -> dict[str, str]:
    """userId -> role, from the server's truth."""
    return {m["userId"]: m["role"] for m in server.members(instance)}


def strip_links(member: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in member.items() if k != "_links"}


async def listing(
    http: aiohttp.ClientSession, server: FakeLosantServer, **params: str
) -> dict[str, Any]:
    async with http.get(
        f"{server.url}/instances/{IID}/members",
        params=params,
        headers={"Authorization": "Bearer admin"},
    ) as resp:
        assert resp.status == 200
        body = await resp.json()
    schemas.validate(body, schemas.INSTANCE_MEMBERS)
    assert body["count"] == len(body["items"])
    return body


# -- GET, PATCH, DELETE -----------------------------------------------------------------------


async def test_get_answers_the_member_as_the_truth_has_it(server, http) -> None:
    added = server.add_member(IID, email="Ada@x.io", role="admin")
    status, member = await call(http, server, "GET", added["userId"])
    assert status == 200
    assert strip_links(member) == added == server.members(IID)[0]
    assert (member["instanceId"], member["email"], member["role"]) == (IID, "Ada@x.io", "admin")


async def test_a_member_added_by_email_over_http_gets_a_user_id_that_works(server, http) -> None:
    async with http.post(
        f"{server.url}/instances/{IID}/members",
        json={"email": "new@x.io", "role": "view"},
        headers={"Authorization": "Bearer admin"},
    ) as resp:
        posted = await resp.json()
    assert resp.status == 200
    user_id = posted["userId"]
    assert (await call(http, server, "GET", user_id))[1]["email"] == "new@x.io"
    assert (await call(http, server, "PATCH", user_id, json_body={"role": "admin"}))[1][
        "role"
    ] == "admin"
    assert await call(http, server, "DELETE", user_id) == (200, {"success": True})
    assert server.members(IID) == []


async def test_placeholder_and_directory_users_are_served_whole(server, http) -> None:
    server.add_member(IID, user_id=PLACEHOLDER, role="view")
    server.add_member(IID, user_id=KNOWN_USER, role="admin")
    _, placeholder = await call(http, server, "GET", PLACEHOLDER)
    assert "email" not in placeholder
    _, known = await call(http, server, "GET", KNOWN_USER)
    assert (known["email"], known["firstName"], known["role"]) == (
        "Known@Example.com",
        "Kim",
        "admin",
    )


async def test_ids_compare_in_any_case_and_answers_are_lower_case(server, http) -> None:
    added = server.add_member(IID, user_id=PLACEHOLDER.upper(), role="view")
    assert added["userId"] == PLACEHOLDER
    status, member = await call(http, server, "GET", PLACEHOLDER.upper(), instance=IID.upper())
    assert (status, member["userId"], member["instanceId"]) == (200, PLACEHOLDER, IID)
    status, member = await call(
        http,
        server,
        "PATCH",
        PLACEHOLDER.upper(),
        instance=IID.upper(),
        json_body={"role": "admin"},
    )
    assert (status, member["role"]) == (200, "admin")
    assert truth(server) == {PLACEHOLDER: "admin"}
    assert await call(http, server, "DELETE", PLACEHOLDER.upper(), instance=IID.upper()) == (
        200,
        {"success": True},
    )
    assert truth(server) == {}


async def test_patch_changes_the_role_and_keeps_the_member_in_place(server, http) -> None:
    ids = [server.add_member(IID, email=f"u{i}@x.io", role="view")["userId"] for i in range(3)]
    status, member = await call(http, server, "PATCH", ids[1], json_body={"role": "admin"})
    assert (status, member["role"], member["userId"], member["email"]) == (
        200,
        "admin",
        ids[1],
        "u1@x.io",
    )
    assert [(m["userId"], m["role"]) for m in server.members(IID)] == [
        (ids[0], "view"),
        (ids[1], "admin"),
        (ids[2], "view"),
    ]
    assert strip_links((await call(http, server, "GET", ids[1]))[1]) == server.members(IID)[1]
    # The same PATCH again: idempotent, same answer, nothing else changes.
    again = await call(http, server, "PATCH", ids[1], json_body={"role": "admin"})
    assert again == (status, member)
    assert server.stats.patches_applied == 2
    assert server.stats.by_method["PATCH"] == 2


async def test_delete_removes_the_member_and_a_second_delete_is_404(server, http) -> None:
    keep = server.add_member(IID, email="keep@x.io")["userId"]
    gone = server.add_member(IID, email="gone@x.io", role="admin")["userId"]
    server.add_member(OTHER_IID, user_id=gone)
    assert await call(http, server, "DELETE", gone) == (200, {"success": True})
    assert truth(server) == {keep: "view"}
    assert gone in truth(server, OTHER_IID)  # only this instance's membership ended
    for method in ("DELETE", "GET", "PATCH"):
        assert await call(http, server, method, gone, json_body={"role": "view"}) == (
            404,
            NOT_FOUND_MEMBER,
        )
    assert server.stats.deletes_applied == 1
    # The user stays in the directory: adding the email again gives the same user back.
    assert server.add_member(IID, email="GONE@x.io")["userId"] == gone


async def test_listing_follows_patches_and_deletes(server, http) -> None:
    ids = {
        e: server.add_member(IID, email=e, role="view")["userId"]
        for e in ("a@x.io", "b@x.io", "c@x.io")
    }
    before = await listing(http, server)
    assert [(m["email"], m["role"]) for m in before["items"]] == [
        ("a@x.io", "view"),
        ("b@x.io", "view"),
        ("c@x.io", "view"),
    ]
    await call(http, server, "PATCH", ids["b@x.io"], json_body={"role": "admin"})
    await call(http, server, "DELETE", ids["c@x.io"])
    after = await listing(http, server)
    assert [(m["email"], m["role"]) for m in after["items"]] == [
        ("a@x.io", "view"),
        ("b@x.io", "admin"),
    ]
    by_role = await listing(http, server, sortField="role")
    assert [m["email"] for m in by_role["items"]] == ["b@x.io", "a@x.io"]
    # Re-added with another role: the listing shows the new role, not a stale one.
    server.add_member(IID, email="c@x.io", role="admin")
    again = await listing(http, server, filterField="email", filter="C@X.IO")
    assert [(m["userId"], m["role"]) for m in again["items"]] == [(ids["c@x.io"], "admin")]


# -- scopes and authentication ----------------------------------------------------------------


def test_member_scopes_are_the_documented_ones() -> None:
    assert {
        "all.Instance", "all.Instance.read", "all.User", "all.User.read",
        "instanceMember.*", "instanceMember.get",
    } == MEMBER_GET_SCOPES  # fmt: skip
    assert {
        "all.Instance",
        "all.User",
        "instanceMember.*",
        "instanceMember.patch",
    } == MEMBER_PATCH_SCOPES
    assert {
        "all.Instance",
        "all.User",
        "instanceMember.*",
        "instanceMember.delete",
    } == MEMBER_DELETE_SCOPES


SCOPES_OF = {"GET": MEMBER_GET_SCOPES, "PATCH": MEMBER_PATCH_SCOPES, "DELETE": MEMBER_DELETE_SCOPES}


@pytest.mark.parametrize(
    ("method", "scope"),
    [(method, scope) for method, scopes in SCOPES_OF.items() for scope in ALL_SCOPES],
)
async def test_each_scope_allows_exactly_what_it_should(server, http, method, scope) -> None:
    user_id = server.add_member(IID, email="a@x.io", role="view")["userId"]
    status, body = await call(
        http, server, method, user_id, token=scope, json_body={"role": "admin"}
    )
    if scope in SCOPES_OF[method]:
        assert status == 200
        expected = {"GET": "view", "PATCH": "admin"}.get(method)
        assert truth(server) == ({} if method == "DELETE" else {user_id: expected})
    else:
        assert (status, body["type"]) == (403, "Forbidden")
        assert truth(server) == {user_id: "view"}
        assert server.stats.changes_applied == 0


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Token admin"},
        {"Authorization": "Bearer "},
    ],
    ids=["none", "unknown", "wrong-scheme", "empty"],
)
async def test_missing_or_unknown_token_is_401_before_anything_else(
    server, http, method, headers
) -> None:
    user_id = server.add_member(IID, email="a@x.io")["userId"]
    for instance, uid in [(IID, user_id), (UNKNOWN_IID, UNKNOWN_UID)]:
        status, body = await call(
            http,
            server,
            method,
            uid,
            instance=instance,
            token=None,
            headers=headers,
            json_body={"role": "bad"},
        )
        assert (status, body) == (401, UNAUTHORIZED)
    assert truth(server) == {user_id: "view"}


# -- not found --------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
@pytest.mark.parametrize("instance", [UNKNOWN_IID, "not-an-object-id", IID[:-1]])
async def test_unknown_instance_is_404_instance_not_found(server, http, method, instance) -> None:
    user_id = server.add_member(IID, email="a@x.io")["userId"]
    # Even with a body that fails the schema: the instance is checked first.
    status, body = await call(
        http, server, method, user_id, instance=instance, json_body={"role": "owner"}
    )
    assert (status, body) == (404, NOT_FOUND_INSTANCE)
    assert truth(server) == {user_id: "view"}


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
@pytest.mark.parametrize(
    "user_id",
    [UNKNOWN_UID, KNOWN_USER, "not-an-object-id", UNKNOWN_UID[:-1], UNKNOWN_UID + "0"],
    ids=["unknown", "known-user-not-member", "malformed", "short", "long"],
)
async def test_unknown_member_is_404_member_not_found(server, http, method, user_id) -> None:
    other = server.add_member(OTHER_IID, user_id=UNKNOWN_UID)["userId"]  # a member elsewhere only
    kept = server.add_member(IID, email="a@x.io")["userId"]
    status, body = await call(http, server, method, user_id, json_body={"role": "admin"})
    assert (status, body) == (404, NOT_FOUND_MEMBER)
    assert truth(server) == {kept: "view"}
    assert truth(server, OTHER_IID) == {other: "view"}
    assert server.stats.changes_applied == 0


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", f"/instances/{IID}/members/{UNKNOWN_UID}"),
        ("POST", f"/instances/{IID}/members/{UNKNOWN_UID}"),
        ("HEAD", f"/instances/{IID}/members/{UNKNOWN_UID}"),
        ("GET", f"/instances/{IID}/members/{UNKNOWN_UID}/extra"),
        ("DELETE", f"/instances/{IID}/members"),
        ("PATCH", f"/instances/{IID}/members"),
    ],
)
async def test_other_methods_and_routes_are_404_route_not_found(server, http, method, path) -> None:
    server.add_member(IID, user_id=UNKNOWN_UID)
    async with http.request(
        method, server.url + path, headers={"Authorization": "Bearer admin"}
    ) as resp:
        assert resp.status == 404
        if method != "HEAD":
            body = await resp.json()
            assert body == {"type": "NotFound", "message": "Route was not found"}
    assert truth(server) == {UNKNOWN_UID: "view"}


# -- PATCH bodies -----------------------------------------------------------------------------

BAD_PATCH_BODIES = [
    b"",
    b"{not json",
    b"\xff\xfe",
    b"[]",
    b'"admin"',
    b"null",
    b"{}",
    json.dumps({"role": "owner"}).encode(),
    json.dumps({"role": "Admin"}).encode(),
    json.dumps({"role": ""}).encode(),
    json.dumps({"role": 1}).encode(),
    json.dumps({"role": None}).encode(),
    json.dumps({"role": ["admin"]}).encode(),
    json.dumps({"role": "admin", "email": "a@x.io"}).encode(),
    json.dumps({"role": "admin", "userId": UNKNOWN_UID}).encode(),
    json.dumps({"email": "a@x.io"}).encode(),
]
BAD_PATCH_IDS = [
    "empty", "not-json", "not-utf8", "array", "string", "null", "empty-object", "bad-role",
    "role-case", "blank-role", "role-number", "role-null", "role-list", "extra-email",
    "extra-user-id", "no-role",
]  # fmt: skip


@pytest.mark.parametrize("data", BAD_PATCH_BODIES, ids=BAD_PATCH_IDS)
async def test_patch_body_failing_the_schema_is_400_and_changes_nothing(server, http, data) -> None:
    user_id = server.add_member(IID, email="a@x.io", role="view")["userId"]
    status, body = await call(http, server, "PATCH", user_id, data=data)
    assert (status, body["type"]) == (400, "Validation")
    assert body["message"]
    try:
        schemas.validate(json.loads(data), schemas.INSTANCE_MEMBER_PATCH)
    except (ValueError, schemas.jsonschema.ValidationError):
        pass
    else:  # pragma: no cover - the list above must hold only bodies the schema refuses
        pytest.fail(f"{data!r} is a valid Instance Member Patch")
    # A bad body is refused before the member is looked up.
    assert (await call(http, server, "PATCH", UNKNOWN_UID, data=data))[0] == 400
    assert truth(server) == {user_id: "view"}
    assert server.stats.patches_applied == 0


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"role": "owner"}, "role must be one of admin, view"),
        ({}, "missing role"),
        ({"role": "view", "email": "a@x.io"}, "unknown field 'email'"),
        ([], "must be an object"),
    ],
)
async def test_patch_errors_say_what_was_wrong(server, http, body, says) -> None:
    user_id = server.add_member(IID, email="a@x.io")["userId"]
    status, answer = await call(http, server, "PATCH", user_id, json_body=body)
    assert status == 400
    assert says in answer["message"]


async def test_get_and_delete_ignore_a_body_and_unknown_query_flags(server, http) -> None:
    user_id = server.add_member(IID, email="a@x.io")["userId"]
    flags = {"_actions": "false", "_links": "true", "_embedded": "true", "sortField": "nonsense"}
    headers = {"Accept-Version": "^1.31.0", "losantdomain": "example.com"}
    status, _ = await call(
        http, server, "GET", user_id, data=b"{broken", params=flags, headers=headers
    )
    assert status == 200
    status, _ = await call(
        http, server, "PATCH", user_id, json_body={"role": "admin"}, params=flags
    )
    assert status == 200
    assert await call(
        http, server, "DELETE", user_id, data=b"[1]", params=flags, headers=headers
    ) == (
        200,
        {"success": True},
    )


async def test_stats_count_the_new_methods(server, http) -> None:
    user_id = server.add_member(IID, email="a@x.io")["userId"]
    await call(http, server, "GET", user_id)
    await call(http, server, "GET", UNKNOWN_UID)
    await call(http, server, "PATCH", user_id, json_body={"role": "admin"})
    await call(http, server, "PATCH", user_id, json_body={"role": "nope"})
    await call(http, server, "DELETE", user_id, token="all.Instance.read")
    await call(http, server, "DELETE", user_id)
    await call(http, server, "DELETE", user_id)
    stats = server.stats
    assert stats.requests == 7
    assert stats.by_method == {"GET": 2, "PATCH": 2, "DELETE": 3}
    assert stats.by_status == {200: 3, 404: 2, 400: 1, 403: 1}
    assert (stats.posts_applied, stats.patches_applied, stats.deletes_applied) == (0, 1, 1)
    assert stats.changes_applied == 2


# -- seeding many members ---------------------------------------------------------------------


def test_add_members_resolves_users_like_a_post_and_keeps_the_order() -> None:
    one = FakeLosantServer(instances=[IID, OTHER_IID], seed=3)
    other = FakeLosantServer(instances=[IID], seed=3)
    rows = [
        {"email": "a@x.io"},
        {"email": "B@x.io", "role": "admin"},
        {"userId": PLACEHOLDER.upper()},
        {"email": "c@x.io", "userId": UNKNOWN_UID, "firstName": "Cy", "lastName": "C"},
    ]
    assert one.add_members(IID, rows) == 4
    for row in rows:
        other.add_member(
            IID, email=row.get("email"), user_id=row.get("userId"), role=row.get("role", "view")
        )
    got = one.members(IID)
    # The same seed gives the same ids as one add_member per row.
    assert [(m["userId"], m.get("email"), m["role"]) for m in got] == [
        (m["userId"], m.get("email"), m["role"]) for m in other.members(IID)
    ]
    assert got[2]["userId"] == PLACEHOLDER
    assert (got[3]["userId"], got[3]["firstName"], got[3]["lastName"]) == (UNKNOWN_UID, "Cy", "C")
    # Known users resolve: by email (any case) and by userId; other instances are apart.
    assert (
        one.add_members(OTHER_IID, [{"email": "A@X.IO"}, {"userId": UNKNOWN_UID}], role="admin")
        == 2
    )
    assert [(m["userId"], m["role"]) for m in one.members(OTHER_IID)] == [
        (got[0]["userId"], "admin"),
        (UNKNOWN_UID, "admin"),
    ]


@pytest.mark.parametrize(
    ("rows", "says"),
    [
        ([{"email": "ok@x.io"}, {"email": "not-an-email"}], "row 1: email is not a valid email"),
        ([{"email": "ok@x.io"}, {"role": "view"}], "row 1: a row needs an email or a userId"),
        ([{"email": "ok@x.io", "role": "owner"}], "row 0: role must be one of admin, view"),
        ([{"email": "ok@x.io", "name": "N"}], "row 0: unknown field 'name'"),
        ([{"userId": "123"}], "row 0: userId must be a 24-character"),
        (
            [{"email": "ok@x.io"}, {"email": "OK@x.io"}],
            "row 1: OK@x.io is named by an earlier row too",
        ),
        ([{"email": "ok@x.io"}, "a@x.io"], "row 1: a row must be a mapping"),
        ([{"email": "new@x.io"}, {"email": "old@x.io"}], "row 1: old@x.io is already a member"),
        ([{"email": "new@x.io", "firstName": 5}], "row 0: user firstName must be a string"),
        (
            [{"email": "new@x.io", "firstName": "\ud800"}],
            "row 0: user firstName is not valid UTF-8",
        ),
    ],
)
def test_add_members_is_all_or_nothing_and_names_the_row(rows, says) -> None:
    srv = FakeLosantServer(instances=[IID])
    srv.add_member(IID, email="old@x.io")
    with pytest.raises(ValueError, match="nothing was added") as info:
        srv.add_members(IID, rows)
    assert says in str(info.value)
    assert [m["email"] for m in srv.members(IID)] == ["old@x.io"]
    # No user was created either: a later add by email gets the id it always would.
    fresh = FakeLosantServer(instances=[IID])
    assert (
        srv.add_member(IID, email="ok@x.io")["userId"]
        == fresh.add_member(IID, email="ok@x.io")["userId"]
    )


def test_add_members_refuses_misuse() -> None:
    srv = FakeLosantServer(instances=[IID])
    with pytest.raises(KeyError):
        srv.add_members(UNKNOWN_IID, [{"email": "a@x.io"}])
    with pytest.raises(TypeError, match="iterable of mappings"):
        srv.add_members(IID, {"email": "a@x.io"})
    with pytest.raises(ValueError, match="role"):
        srv.add_members(IID, [{"email": "a@x.io"}], role="owner")
    assert srv.add_members(IID, iter([])) == 0
    assert srv.member_count(IID) == 0
    with pytest.raises(KeyError):
        srv.member_count(UNKNOWN_IID)


async def test_a_large_seeded_instance_lists_in_order_and_follows_changes(server, http) -> None:
    n = 20_000
    roles = ["admin" if i % 7 == 0 else "view" for i in range(n)]
    added = server.add_members(
        IID, ({"email": f"User{i:05d}@X.io", "role": roles[i]} for i in reversed(range(n)))
    )
    assert added == server.member_count(IID) == n
    assert len(server.members(IID)) == n
    body = await listing(http, server)
    assert [m["email"] for m in body["items"]] == [f"User{i:05d}@X.io" for i in range(n)]
    assert [m["role"] for m in body["items"]] == roles
    by_role = await listing(http, server, sortField="role", sortDirection="desc")
    assert [m["role"] for m in by_role["items"]] == sorted(roles, reverse=True)
    # One change, then the whole listing again: it reflects the change and nothing else.
    first, second = body["items"][0]["userId"], body["items"][1]["userId"]
    await call(http, server, "PATCH", first, json_body={"role": "view"})
    await call(http, server, "DELETE", second)
    again = await listing(http, server)
    assert again["count"] == n - 1
    assert (again["items"][0]["userId"], again["items"][0]["role"]) == (first, "view")
    assert again["items"][1:] == body["items"][2:]
    exact = await listing(http, server, filterField="email", filter="user00007@x.IO")
    assert [(m["email"], m["role"]) for m in exact["items"]] == [("User00007@X.io", "admin")]


# -- the exact-email filter (a lookup, not a scan) agrees with the glob ----------------------------

EMAILS = ["ann@x.io", "Bob@x.io", "ſam@x.io", "\u212aim@x.io", "carl@x.io", "ANN@y.io"]


@settings(max_examples=60, deadline=None)
@given(
    members=st.lists(st.sampled_from(EMAILS), unique_by=str.lower, max_size=5),
    pattern=st.sampled_from(
        [
            "ann@x.io",
            "ANN@X.IO",
            "bob@X.io",
            "sam@x.io",
            "SAM@x.io",
            "kim@x.io",
            "carl@x.io",
            "nobody@x.io",
        ]
    ),
    directory_only=st.booleans(),
)
def test_exact_email_filter_matches_like_the_glob(members, pattern, directory_only) -> None:
    import re

    from asyncmembers.testing._state import MemberStore

    store = MemberStore([IID])
    if directory_only:
        store.add_user({"email": "carl@x.io"})  # a user who is not a member
    for email in members:
        store.add_member(IID, {"email": email, "role": "view"})
    got = [m["email"] for m in store.list(IID, filter_field="email", pattern=pattern)]
    expected = sorted(
        (e for e in members if re.fullmatch(re.escape(pattern), e, re.IGNORECASE)), key=str.lower
    )
    assert got == expected


@settings(max_examples=200, deadline=None)
@given(
    email=st.one_of(
        st.none(),
        st.emails(),
        st.sampled_from(
            ["ünï@exämple.com", "ſam@x.io", "a+b/c=d!#$%&'*^`{|}~@x-y.io", "日本@例え.jp"]
        ),
    ),
    role=st.sampled_from(["admin", "view"]),
    names=st.booleans(),
)
def test_a_listed_member_is_the_same_bytes_as_the_encoder_makes(email, role, names) -> None:
    from asyncmembers import _json
    from asyncmembers._schema import check_email
    from asyncmembers.errors import ValidationError
    from asyncmembers.testing._state import MemberStore, User

    if email is not None:
        try:
            check_email(email)
        except ValidationError:
            return  # the server never holds such an email
    user = User(
        user_id=UNKNOWN_UID,
        email=email,
        first_name='Kim "K" \\ \u2028' if names else None,
        last_name="" if names else None,
    )
    expected = MemberStore.wire(IID, user, role)
    expected["_links"] = {"self": {"href": f"/instances/{IID}/members/{UNKNOWN_UID}"}}
    fragment = MemberStore.fragment(IID, user, role)
    assert fragment == _json.dumps(expected)
    assert json.loads(fragment) == expected


async def test_seeded_non_ascii_emails_still_match_case_insensitively(server, http) -> None:
    server.add_members(IID, [{"email": "ſam@x.io"}, {"email": "ann@x.io"}])
    body = await listing(http, server, filterField="email", filter="SAM@x.io")
    assert [m["email"] for m in body["items"]] == ["ſam@x.io"]
    body = await listing(http, server, filterField="email", filter="ANN@x.io")
    assert [m["email"] for m in body["items"]] == ["ann@x.io"]


def test_fake_server_help_names_the_member_endpoints() -> None:
    from click.testing import CliRunner

    from asyncmembers.cli._commands.fake_server import fake_server

    result = CliRunner().invoke(fake_server, ["--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "GET, PATCH and DELETE /instances/{instanceId}/members/{userId}" in text
