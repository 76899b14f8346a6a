"""Models: wire round trips, tolerance of what a newer server sends, validation."""

from __future__ import annotations

from typing import Any

import cattrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import asyncmembers as am
from asyncmembers.models import converter

IID = "575ec8687ae143cd83dc4a97"
UID = "575ef90f7ae143cd83dc4aad"

FULL_MEMBER = {
    "instanceId": IID,
    "userId": UID,
    "email": "ada@example.com",
    "firstName": "Ada",
    "lastName": "Lovelace",
    "role": "admin",
    "avatarUrl": "https://example.com/a.png",
    "twoFactorAuthEnabled": True,
    "ssoLinked": False,
}


def test_member_round_trip_wire_model_wire() -> None:
    model = converter.structure(FULL_MEMBER, am.InstanceMember)
    assert model == am.InstanceMember(
        instance_id=IID,
        user_id=UID,
        email="ada@example.com",
        first_name="Ada",
        last_name="Lovelace",
        role=am.Role.ADMIN,
        avatar_url="https://example.com/a.png",
        two_factor_auth_enabled=True,
        sso_linked=False,
    )
    assert converter.unstructure(model) == FULL_MEMBER


def test_members_round_trip_omits_absent_fields() -> None:
    wire = {
        "items": [{"userId": UID, "role": "view"}],
        "count": 1,
        "sortField": "email",
        "sortDirection": "asc",
    }
    model = converter.structure(wire, am.InstanceMembers)
    assert model.items == [am.InstanceMember(user_id=UID, role=am.Role.VIEW)]
    assert converter.unstructure(model) == wire


def test_unknown_fields_and_enum_values_are_kept_or_ignored() -> None:
    wire = {
        "items": [
            {**FULL_MEMBER, "role": "superuser", "_links": {"self": "/x"}, "brandNew": {"a": 1}}
        ],
        "count": 1,
        "sortDirection": "DESC",
        "_embedded": {},
    }
    model = converter.structure(wire, am.InstanceMembers)
    assert model.items[0].role == "superuser"  # an unknown role stays a plain string
    assert model.sort_direction == "DESC"


@pytest.mark.parametrize(
    "wire", [{"items": "x"}, {"items": [1]}, ["not", "an", "object"], {"items": [["a"]]}]
)
def test_wrong_json_kinds_are_refused(wire: Any) -> None:
    with pytest.raises((TypeError, cattrs.BaseValidationError)):
        converter.structure(wire, am.InstanceMembers)


def test_post_normalises_and_round_trips() -> None:
    post = am.InstanceMemberPost.from_mapping({"email": "  Ada@Example.com ", "role": " ADMIN "})
    assert post == am.InstanceMemberPost(role=am.Role.ADMIN, email="Ada@Example.com")
    assert post.to_wire() == {"email": "Ada@Example.com", "role": "admin"}
    assert converter.structure(post.to_wire(), am.InstanceMemberPost) == post
    assert am.InstanceMemberPost.from_mapping({"user_id": UID, "role": "view"}).to_wire() == {
        "userId": UID,
        "role": "view",
    }


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"role": "owner", "email": "a@example.com"}, "role"),
        ({"role": "view"}, "email"),
        ({"role": "view", "email": "a@"}, "email"),
        ({"role": "view", "email": "a b@example.com"}, "email"),
        ({"role": "view", "email": "a@example"}, "email"),
        ({"role": "view", "user_id": "xyz"}, "userId"),
        ({"role": "view", "user_id": UID + "0"}, "userId"),
        ({"role": 3, "email": "a@example.com"}, "role"),
    ],
)
def test_post_is_validated_on_construction(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(am.ValidationError) as info:
        am.InstanceMemberPost(**kwargs)
    assert info.value.field == field


def test_post_is_frozen() -> None:
    post = am.InstanceMemberPost(role=am.Role.VIEW, email="a@example.com")
    with pytest.raises(AttributeError):
        post.email = "b@example.com"  # type: ignore[misc]


def test_role_is_a_string_enum() -> None:
    assert am.Role.ADMIN == "admin" and am.Role.VIEW.value == "view"
    assert [r.value for r in am.Role] == ["admin", "view"]


@settings(max_examples=200, deadline=None)
@given(
    local=st.from_regex(r"[A-Za-z0-9._%+-]{1,30}", fullmatch=True),
    domain=st.from_regex(r"[a-z0-9]{1,10}(\.[a-z]{2,6}){1,2}", fullmatch=True),
    role=st.sampled_from(["admin", "view", "Admin", " view "]),
)
def test_any_ordinary_address_round_trips(local: str, domain: str, role: str) -> None:
    post = am.InstanceMemberPost.from_mapping({"email": f"{local}@{domain}", "role": role})
    assert am.InstanceMemberPost.from_mapping(post.to_wire()) == post


def test_public_names_are_complete_and_sorted() -> None:
    expected = {
        "Client", "RetryPolicy", "InstanceMember", "InstanceMemberPost", "InstanceMembers", "Role",
        "LosantError", "ValidationError", "BadRequestError", "UnauthorizedError", "ForbiddenError",
        "NotFoundError", "RateLimitError", "ServerError", "TransportError",
        "bulk_import", "BulkResult", "ItemFailure",
    }  # fmt: skip
    assert expected <= set(am.__all__)
    assert am.__all__ == sorted(am.__all__)
    for name in am.__all__:
        assert hasattr(am, name), name
    public = {
        n for n in dir(am) if (not n.startswith("_") and n[0].isupper()) or n == "bulk_import"
    }
    assert public <= set(am.__all__)


def test_error_tree() -> None:
    for cls in (
        am.ValidationError, am.BadRequestError, am.UnauthorizedError, am.ForbiddenError,
        am.NotFoundError, am.RateLimitError, am.ServerError, am.TransportError,
    ):  # fmt: skip
        assert issubclass(cls, am.LosantError)
    assert issubclass(am.ValidationError, ValueError)
    err = am.TransportError("boom")
    assert (err.status, err.type, err.message, err.data) == (None, None, "boom", None)


def test_to_dict_and_from_dict_round_trip_through_json() -> None:
    import json

    member = am.InstanceMember(
        instance_id="575ec8687ae143cd83dc4a97",
        user_id="675ed18f7ae143cd83dc4bb7",
        email="a@example.com",
        role=am.Role.ADMIN,
        two_factor_auth_enabled=False,
    )
    wire = member.to_dict()
    assert wire == {
        "instanceId": "575ec8687ae143cd83dc4a97",
        "userId": "675ed18f7ae143cd83dc4bb7",
        "email": "a@example.com",
        "role": "admin",
        "twoFactorAuthEnabled": False,
    }
    assert am.InstanceMember.from_dict(json.loads(json.dumps(wire))) == member
    page = am.InstanceMembers(items=[member], count=1, sort_field="email")
    assert am.InstanceMembers.from_dict(json.loads(json.dumps(page.to_dict()))) == page
    post = am.InstanceMemberPost(role="view", email="b@example.com")
    assert am.InstanceMemberPost.from_dict(post.to_dict()) == post
    patch = am.InstanceMemberPatch(role="admin")
    assert patch.to_dict() == {"role": "admin"}
    assert am.InstanceMemberPatch.from_dict(patch.to_dict()) == patch
    with pytest.raises(am.ValidationError, match="InstanceMembers"):
        am.InstanceMembers.from_dict({"items": "nope"})
    with pytest.raises(am.ValidationError):
        am.InstanceMemberPatch.from_dict({"role": "admin", "email": "x@example.com"})
