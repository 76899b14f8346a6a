"""The compact identity tables: exact answers, a digest collision never taken for a match."""

from __future__ import annotations

import random

import pytest

from asyncmembers.bulk import _digest
from asyncmembers.bulk._digest import DigestSet, MemberTable


def test_member_table_finds_by_either_key_and_keeps_what_it_was_given() -> None:
    t = MemberTable()
    a = t.add("AAAAAAAAAAAAAAAAAAAAAAAA", "Ann@Example.com", "admin")
    b = t.add(None, "bob@example.com", "view")
    c = t.add("000000000000000000000000", None, "owner")  # a role this version does not know
    assert t.find("u:" + "a" * 24) == a and t.find("e:ann@example.com") == a
    assert t.find_any(("u:" + "b" * 24, "e:bob@example.com")) == b
    assert t.find("u:" + "0" * 24) == c
    assert t.find("e:nobody@example.com") is None and t.find("u:" + "c" * 24) is None
    assert t.wire(a) == {"userId": "a" * 24, "email": "ann@example.com", "role": "admin"}
    assert t.wire(b) == {"email": "bob@example.com", "role": "view"}
    assert t.role(c) == "owner" and t.user_id(b) is None
    t.set_mark(b, 1)
    assert list(t.unmarked()) == [a, c] and t.count_unmarked(len(t)) == 2
    assert list(t.unmarked(limit=1)) == [a]


def test_a_key_two_members_share_finds_the_first() -> None:
    t = MemberTable()
    first = t.add(None, "same@example.com", "view")
    t.add(None, "SAME@example.com", "admin")
    assert t.find("e:same@example.com") == first


@pytest.mark.parametrize("constant", [0, 12345, (1 << 64) - 1])
def test_colliding_digests_are_confirmed_against_the_stored_key(
    monkeypatch: pytest.MonkeyPatch, constant: int
) -> None:
    """Every key with the same digest: answers stay exact (the table checks the key)."""
    monkeypatch.setattr(_digest, "digest", lambda key: constant)
    t = MemberTable()
    emails = [f"u{i}@example.com" for i in range(700)]  # past the in-place insert size
    for email in emails:
        t.add(None, email, "view")
    for i, email in enumerate(emails):
        assert t.find("e:" + email) == i
    assert t.find("e:other@example.com") is None


def test_many_members_in_random_order_against_a_dict() -> None:
    rng = random.Random(5)
    t = MemberTable()
    truth: dict[str, int] = {}
    for n in range(20_000):
        key = f"{rng.getrandbits(96):024x}"
        truth[key] = t.add(key, f"{key}@example.com", rng.choice(["view", "admin"]))
        if n % 97 == 0:  # lookups interleaved with adds, as a sync's plan does
            probe = rng.choice(list(truth)[-50:])
            assert t.find("u:" + probe) == truth[probe]
    for key, ordinal in truth.items():
        assert t.find("u:" + key) == ordinal == t.find(f"e:{key}@example.com")
    assert t.nbytes() < 20_000 * 80  # compact: about 40 bytes and the email per member


def test_digest_set() -> None:
    s = DigestSet()
    keys = [f"e:k{i}@example.com" for i in range(10_000)]
    for key in keys:
        s.add(key)
    s.add(keys[0])  # twice: still one
    assert all(key in s for key in keys)
    assert "e:other@example.com" not in s and 42 not in s
    assert len(s) == 10_000
    assert s.nbytes() < 10_000 * 10
