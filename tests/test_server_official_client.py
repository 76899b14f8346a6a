"""The official (synchronous) ``losant-rest`` client works against the embedded server.

The server runs in the test's event loop; the blocking client runs in a worker thread
through ``asyncio.to_thread``. ``losant_rest`` sends ``Accept-Version: ^1.31.0`` and the
query flags ``_actions=false&_links=true&_embedded=true`` on every call.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from losant_rest import Client, LosantError

from asyncmembers.testing import FakeLosantServer
from tests import schemas

IID = "575ec8687ae143cd83dc4a97"
UNKNOWN_IID = "deadbeefdeadbeefdeadbeef"
TOKENS = {"admin": ["all.Instance"], "reader": ["all.Instance.read"]}


@pytest.fixture
async def server() -> AsyncIterator[FakeLosantServer]:
    async with FakeLosantServer(tokens=TOKENS, instances=[IID]) as srv:
        yield srv


def client(server: FakeLosantServer, token: str | None = "admin") -> Client:
    return Client(auth_token=token, url=server.url)


async def run(fn: Callable[..., Any], **kwargs: Any) -> Any:
    return await asyncio.to_thread(fn, **kwargs)


async def fails(fn: Callable[..., Any], **kwargs: Any) -> LosantError:
    with pytest.raises(LosantError) as info:
        await run(fn, **kwargs)
    err = info.value
    schemas.validate(err.data, schemas.ERROR)
    return err


async def test_list_add_by_email_and_by_user_id(server) -> None:
    members = client(server).instance_members
    listing = await run(members.get, instanceId=IID)
    schemas.validate(listing, schemas.INSTANCE_MEMBERS)
    assert (listing["items"], listing["count"]) == ([], 0)

    by_email = await run(
        members.post, instanceId=IID, member={"email": "ada@x.io", "role": "admin"}
    )
    schemas.validate(by_email, schemas.INSTANCE_MEMBER)
    assert (by_email["email"], by_email["role"]) == ("ada@x.io", "admin")

    user_id = "675ed18f7ae143cd83dc4bb7"
    by_id = await run(members.post, instanceId=IID, member={"userId": user_id, "role": "view"})
    schemas.validate(by_id, schemas.INSTANCE_MEMBER)
    assert by_id["userId"] == user_id

    listing = await run(members.get, instanceId=IID)
    schemas.validate(listing, schemas.INSTANCE_MEMBERS)
    assert {m["userId"] for m in listing["items"]} == {by_email["userId"], user_id}
    assert len(server.members(IID)) == 2


async def test_sorting_and_filtering(server) -> None:
    for email, role in [("b@x.io", "admin"), ("A@x.io", "view"), ("c@x.io", "admin")]:
        server.add_member(IID, email=email, role=role)
    members = client(server).instance_members

    listing = await run(members.get, instanceId=IID, sortField="role", sortDirection="desc")
    schemas.validate(listing, schemas.INSTANCE_MEMBERS)
    assert [m["email"] for m in listing["items"]] == ["A@x.io", "b@x.io", "c@x.io"]
    assert (listing["sortField"], listing["sortDirection"]) == ("role", "desc")

    listing = await run(
        members.get, instanceId=IID, filterField="email", filter="?@X.IO", sortDirection="desc"
    )
    schemas.validate(listing, schemas.INSTANCE_MEMBERS)
    assert [m["email"] for m in listing["items"]] == ["c@x.io", "b@x.io", "A@x.io"]
    assert (listing["filterField"], listing["filter"]) == ("email", "?@X.IO")

    listing = await run(members.get, instanceId=IID, filterField="role", filter="adm*")
    assert [m["email"] for m in listing["items"]] == ["b@x.io", "c@x.io"]


@pytest.mark.parametrize("token", [None, "unknown"])
async def test_401(server, token) -> None:
    err = await fails(client(server, token).instance_members.get, instanceId=IID)
    assert (err.status, err.data) == (401, {"type": "Unauthorized", "message": "Unauthorized"})


async def test_403(server) -> None:
    err = await fails(
        client(server, "reader").instance_members.post,
        instanceId=IID,
        member={"email": "a@x.io", "role": "view"},
    )
    assert (err.status, err.data["type"]) == (403, "Forbidden")
    assert server.members(IID) == []


@pytest.mark.parametrize("method", ["get", "post"])
async def test_404(server, method) -> None:
    fn = getattr(client(server).instance_members, method)
    kwargs: dict[str, Any] = {"instanceId": UNKNOWN_IID}
    if method == "post":
        kwargs["member"] = {"email": "a@x.io", "role": "view"}
    err = await fails(fn, **kwargs)
    assert (err.status, err.data) == (
        404,
        {"type": "NotFound", "message": "Instance was not found"},
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"member": {"email": "a@x.io", "role": "owner"}},
        {"member": {"email": "a@x.io", "role": "view", "extra": 1}},
        {"member": {"role": "view"}},
        {},  # no member at all: the client sends no body
    ],
    ids=["bad-role", "extra-property", "neither-email-nor-user-id", "no-body"],
)
async def test_400_for_a_body_failing_the_schema(server, kwargs) -> None:
    err = await fails(client(server).instance_members.post, instanceId=IID, **kwargs)
    assert (err.status, err.data["type"]) == (400, "Validation")
    assert server.members(IID) == []


async def test_400_for_bad_query_values(server) -> None:
    err = await fails(client(server).instance_members.get, instanceId=IID, sortField="firstName")
    assert (err.status, err.data["type"]) == (400, "Validation")


async def test_400_already_a_member(server) -> None:
    members = client(server).instance_members
    await run(members.post, instanceId=IID, member={"email": "a@x.io", "role": "view"})
    err = await fails(members.post, instanceId=IID, member={"email": "A@X.io", "role": "view"})
    assert (err.status, err.data) == (
        400,
        {"type": "Validation", "message": "User is already a member of this instance"},
    )
    assert tuple(err.args) == (400, err.data)
    assert "already a member" in str(err)


# -- one member: client.instance_member.get / patch / delete ------------------------------------

NOT_FOUND_MEMBER = {"type": "NotFound", "message": "Member was not found"}


async def test_instance_member_get_patch_delete(server) -> None:
    api = client(server)
    added = await run(
        api.instance_members.post, instanceId=IID, member={"email": "Ada@x.io", "role": "view"}
    )
    user_id = added["userId"]

    member = await run(api.instance_member.get, instanceId=IID, userId=user_id)
    schemas.validate(member, schemas.INSTANCE_MEMBER)
    assert (member["userId"], member["email"], member["role"]) == (user_id, "Ada@x.io", "view")

    changed = await run(
        api.instance_member.patch, instanceId=IID, userId=user_id.upper(), member={"role": "admin"}
    )
    schemas.validate(changed, schemas.INSTANCE_MEMBER)
    assert (changed["userId"], changed["role"]) == (user_id, "admin")
    assert [m["role"] for m in server.members(IID)] == ["admin"]

    done = await run(api.instance_member.delete, instanceId=IID, userId=user_id)
    schemas.validate(done, schemas.SUCCESS)
    assert done == {"success": True}
    assert server.members(IID) == []
    assert server.stats.by_method == {"POST": 1, "GET": 1, "PATCH": 1, "DELETE": 1}


@pytest.mark.parametrize("method", ["get", "patch", "delete"])
async def test_instance_member_404s_say_which_was_not_found(server, method) -> None:
    kept = server.add_member(IID, email="a@x.io")
    fn = getattr(client(server).instance_member, method)
    extra: dict[str, Any] = {"member": {"role": "admin"}} if method == "patch" else {}
    err = await fails(fn, instanceId=IID, userId="0123456789abcdef01234567", **extra)
    assert (err.status, err.data) == (404, NOT_FOUND_MEMBER)
    err = await fails(fn, instanceId=UNKNOWN_IID, userId=kept["userId"], **extra)
    assert (err.status, err.data) == (
        404,
        {"type": "NotFound", "message": "Instance was not found"},
    )
    assert server.members(IID) == [kept]


async def test_instance_member_reader_may_get_but_not_change(server) -> None:
    user_id = server.add_member(IID, email="a@x.io")["userId"]
    reader = client(server, "reader").instance_member
    member = await run(reader.get, instanceId=IID, userId=user_id)
    assert member["role"] == "view"
    for fn, extra in [(reader.patch, {"member": {"role": "admin"}}), (reader.delete, {})]:
        err = await fails(fn, instanceId=IID, userId=user_id, **extra)
        assert (err.status, err.data["type"]) == (403, "Forbidden")
    err = await fails(client(server, None).instance_member.get, instanceId=IID, userId=user_id)
    assert err.status == 401
    assert [m["role"] for m in server.members(IID)] == ["view"]


@pytest.mark.parametrize(
    "member",
    [{"role": "owner"}, {"role": "admin", "email": "a@x.io"}, {}, None],
    ids=["bad-role", "extra-property", "no-role", "no-body"],
)
async def test_instance_member_patch_failing_the_schema_is_400(server, member) -> None:
    user_id = server.add_member(IID, email="a@x.io")["userId"]
    kwargs: dict[str, Any] = {} if member is None else {"member": member}
    err = await fails(
        client(server).instance_member.patch, instanceId=IID, userId=user_id, **kwargs
    )
    assert (err.status, err.data["type"]) == (400, "Validation")
    assert [m["role"] for m in server.members(IID)] == ["view"]
