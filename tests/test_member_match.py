"""How an answer is matched to the member sent (``resources._same``, ``is_member``), pinned.

``_same`` tells identical text apart first, without trimming or lower-casing (the usual
answer repeats the row's email as sent), and ``is_member`` compares only the fields the
row names; neither shortcut may change a verdict.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from asyncmembers.resources import _same, is_member
from tests._shared import HOSTILE_VALUES


def _reference(a: object, b: str | None) -> bool:
    # The rule without the shortcut: trimmed and lower-cased, both sides.
    return b is not None and isinstance(a, str) and a.strip().lower() == b.strip().lower()


TEXT = st.one_of(st.sampled_from(HOSTILE_VALUES), st.text(max_size=12))
ANSWERED = st.one_of(TEXT, st.none(), st.integers(), st.booleans(), st.just({"a": 1}))


@settings(max_examples=1000, deadline=None)
@given(a=ANSWERED, b=st.one_of(TEXT, st.none()))
def test_same_decides_as_the_trimmed_lower_cased_comparison(a: Any, b: str | None) -> None:
    assert _same(a, b) == _reference(a, b)
    if isinstance(a, str):
        assert _same(a, a) == _reference(a, a)
        assert _same(a.upper(), a) == _reference(a.upper(), a)


def _reference_member(item: object, email: str | None, user_id: str | None) -> bool:
    if not isinstance(item, dict):
        return False
    return _reference(item.get("userId"), user_id) or _reference(item.get("email"), email)


@settings(max_examples=1000, deadline=None)
@given(
    item=st.one_of(
        st.dictionaries(st.sampled_from(["email", "userId", "role"]), ANSWERED, max_size=3),
        ANSWERED,
    ),
    email=st.one_of(TEXT, st.none()),
    user_id=st.one_of(TEXT, st.none()),
)
def test_is_member_decides_as_comparing_both_fields(
    item: Any, email: str | None, user_id: str | None
) -> None:
    assert is_member(item, email, user_id) == _reference_member(item, email, user_id)
    if isinstance(item, dict):
        named = {k: v for k, v in item.items() if isinstance(v, str)}
        assert is_member(item, named.get("email"), named.get("userId")) == _reference_member(
            item, named.get("email"), named.get("userId")
        )
