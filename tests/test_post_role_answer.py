"""A POST answered with the member sent but another role is not a success."""

from __future__ import annotations

import pytest
from aiohttp import web

import asyncmembers as am
from tests.test_attack_hostile import FAST, IID, TOKEN, serve


async def test_post_answered_with_another_role_raises_protocol_error_saying_so() -> None:
    async def handler(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"email": body["email"], "role": "admin", "userId": "a" * 24})

    async with serve(handler) as url, am.Client(auth_token=TOKEN, url=url, retry=FAST) as client:
        with pytest.raises(am.ProtocolError, match=r"with role admin, not view") as info:
            await client.instance_members.post(
                instanceId=IID, member={"email": "ann@example.com", "role": "view"}
            )
    assert info.value.may_have_been_applied


async def test_a_resent_post_answered_with_another_role_is_not_counted_created() -> None:
    posts = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal posts
        if request.method == "GET":
            return web.json_response({"items": [], "count": 0})
        posts += 1
        if posts == 1:  # proves nothing was applied: the POST is resent as it is
            return web.json_response({"type": "TooManyRequests", "message": "x"}, status=429)
        body = await request.json()
        return web.json_response({"email": body["email"], "role": "admin", "userId": "b" * 24})

    async with serve(handler) as url, am.Client(auth_token=TOKEN, url=url, retry=FAST) as client:
        result = await am.bulk_import(
            client, instanceId=IID, members=[{"email": "bo@example.com", "role": "view"}]
        )
    assert posts == 2
    assert (result.created, result.failed) == (0, 1)
    assert "with role admin, not view" in str(result.failures[0].error)


async def test_a_post_answer_without_a_role_is_still_believed() -> None:
    async def handler(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"email": body["email"]})

    async with serve(handler) as url, am.Client(auth_token=TOKEN, url=url, retry=FAST) as client:
        member = await client.instance_members.post(
            instanceId=IID, member={"email": "cy@example.com", "role": "view"}
        )
    assert member.email == "cy@example.com"
