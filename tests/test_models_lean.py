"""The lean per-row path for plain dict rows decides exactly as the general path does.

``InstanceMemberPost.coerce`` checks a plain ``dict`` directly (``_from_dict``); every other
mapping goes through ``from_mapping`` and the attrs converters. For every row of the fuzz
corpus both must give the same member, or the same error class, message and field.
"""

from __future__ import annotations

from collections import UserDict
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from asyncmembers import InstanceMemberPost, Role, ValidationError
from tests._shared import HOSTILE_VALUES
from tests.test_reliability_fuzz import MEMBERS


def _outcome(build: Any, row: Any) -> tuple[str, Any]:
    try:
        post = build(row)
    except ValidationError as exc:
        return "error", (type(exc), exc.message, exc.field)
    assert isinstance(post, InstanceMemberPost)
    assert isinstance(post.role, Role)
    return "ok", (post.role, type(post.role), post.email, post.user_id)


def _general(row: dict[Any, Any]) -> InstanceMemberPost:
    # A Mapping that is not a dict takes the general path (from_mapping + attrs converters).
    return InstanceMemberPost.coerce(UserDict(row))


HOSTILE = st.sampled_from(HOSTILE_VALUES)
ODD = st.one_of(
    HOSTILE,
    st.none(),
    st.integers(),
    st.booleans(),
    st.just(Role.ADMIN),
    st.just(Role.VIEW),
    st.builds(lambda s: type("S", (str,), {})(s), HOSTILE),  # a str subclass
)
HOSTILE_ROWS = st.dictionaries(
    st.sampled_from(["email", "userId", "user_id", "role", "Role", "name"]), ODD, max_size=4
)


@settings(max_examples=1500, deadline=None)
@example(row={"email": "a@example.com", "role": "view"})
@example(row={"email": " A@Example.COM ", "role": " Admin "})
@example(row={"userId": "675ED18F7AE143CD83DC4BB7", "role": Role.VIEW})
@example(row={"email": "", "userId": "", "role": "view"})
@example(row={"email": "bad@", "role": "owner"})
@example(row={"role": None, "email": "a@example.com"})
@example(row={"user_id": "675ed18f7ae143cd83dc4bb7", "userId": "x", "role": "view"})
@example(row={"email": "\ud800@example.com", "role": "view"})
@example(row={"email": "a@example.com", "role": "view", "extra": 1})
@given(row=st.one_of(MEMBERS.filter(lambda m: type(m) is dict), HOSTILE_ROWS))
def test_lean_dict_path_gives_the_same_member_or_the_same_error(row: dict[Any, Any]) -> None:
    lean = _outcome(InstanceMemberPost.coerce, row)
    assert lean == _outcome(_general, row)
    assert lean == _outcome(InstanceMemberPost.from_mapping, row)


def test_the_lean_path_is_the_one_plain_dicts_take(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    real = InstanceMemberPost._from_dict.__func__  # type: ignore[attr-defined]

    def spy(cls: type[InstanceMemberPost], data: dict[Any, Any]) -> InstanceMemberPost:
        calls.append(data)
        return real(cls, data)  # type: ignore[no-any-return]

    monkeypatch.setattr(InstanceMemberPost, "_from_dict", classmethod(spy))
    row = {"email": "a@example.com", "role": "view"}
    post = InstanceMemberPost.coerce(row)
    assert calls == [row]
    assert post == InstanceMemberPost(role="view", email="a@example.com")
    assert post.to_wire() == row
    InstanceMemberPost.coerce(UserDict(row))
    assert calls == [row]  # not a plain dict: the general path


@pytest.mark.parametrize(
    ("email", "what"),
    [
        ("\u200bann@example.com", "U+200B ZERO WIDTH SPACE) at character 1"),
        ("an\u00adn@example.com", "U+00AD SOFT HYPHEN) at character 3"),
        ("ann@example.com\ufeff", "U+FEFF ZERO WIDTH NO-BREAK SPACE) at character 16"),
    ],
)
def test_an_invisible_character_in_an_email_is_refused_saying_which_and_where(
    email: str, what: str
) -> None:
    """Before, each of these added a second member beside ann@example.com (an outside
    attack). Both paths refuse it with the same message; a visible accent is fine."""
    for build in (InstanceMemberPost.coerce, _general):
        with pytest.raises(ValidationError, match="invisible character") as info:
            build({"email": email, "role": "view"})
        assert what in info.value.message and info.value.field == "email"
    assert InstanceMemberPost.coerce({"email": "zoë@example.com", "role": "view"}).email
