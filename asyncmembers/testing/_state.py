"""The embedded server's data: a user directory and the members of each instance.

Pure, synchronous bookkeeping with no HTTP in it, so it can be reasoned about (and
tested) on its own. Every mutation happens without an ``await`` in between its check and
its write, so concurrent requests cannot race.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from .._schema import check_email, check_object_id

__all__ = ["AlreadyMemberError", "Glob", "MemberStore", "User", "compile_glob"]


class AlreadyMemberError(Exception):
    """The user is already a member of the instance."""


@attrs.define(slots=True)
class User:
    """A user in the directory. ``email`` is None for a placeholder made from a userId."""

    user_id: str
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    avatar_url: str | None = None


def _by_email(row: tuple[User, str]) -> str:
    return (row[0].email or "").lower()


def _by_email_then_id(row: tuple[User, str]) -> tuple[str, str]:
    return ((row[0].email or "").lower(), row[0].user_id)


def _by_role(row: tuple[User, str]) -> str:
    return row[1]


class Glob:
    """A Losant filter glob: ``*`` any run, ``?`` one character, nothing else special.

    The match is case-insensitive and covers the whole value. It never backtracks across
    stars (a single regex with one ``.*`` per star does, exponentially, on patterns like
    ``*a*a*a*a*b``): the pattern is split at the stars into fixed-length segments; the
    first must match at the start, the last at the end, and each one between is found left
    to right after the previous one, which is enough for a whole match to exist.
    """

    __slots__ = ("_first", "_last", "_middle", "_star")

    def __init__(self, pattern: str) -> None:
        def segment(text: str) -> tuple[re.Pattern[str], int]:
            regex = "".join("." if ch == "?" else re.escape(ch) for ch in text)
            return re.compile(regex, re.IGNORECASE | re.DOTALL), len(text)

        parts = pattern.split("*")
        self._star = len(parts) > 1
        self._first = segment(parts[0])
        self._last = segment(parts[-1])
        self._middle = [segment(p) for p in parts[1:-1] if p]

    def fullmatch(self, text: str) -> bool:
        first, first_len = self._first
        if not self._star:
            return first.fullmatch(text) is not None
        if first.match(text) is None:
            return False
        pos = first_len
        for regex, _ in self._middle:
            found = regex.search(text, pos)
            if found is None:
                return False
            pos = found.end()
        last, last_len = self._last
        start = len(text) - last_len
        return start >= pos and last.fullmatch(text, start) is not None


def compile_glob(pattern: str) -> Glob:
    """Compile a Losant filter glob (see :class:`Glob`)."""
    return Glob(pattern)


class MemberStore:
    """Users, instances and memberships, with the API's resolution and listing rules.

    Adding a member resolves the post to one user: a known ``userId`` wins; otherwise a
    known ``email`` (compared case-insensitively); otherwise a new user is created: with
    the given ``userId`` (a placeholder with no email unless one was given too) or, for an
    email alone, with a fresh ObjectId derived from ``seed`` and the lower-cased email, so
    the same seed gives the same ids whatever the order of requests.
    """

    def __init__(
        self,
        instances: Iterable[str],
        *,
        seed: int = 0,
        users: Iterable[Mapping[str, Any]] = (),
    ) -> None:
        self._seed = seed
        self._by_id: dict[str, User] = {}
        self._by_email: dict[str, User] = {}
        # instance id -> {user id -> role}, in the order members were added
        self._members: dict[str, dict[str, str]] = {}
        for instance_id in instances:
            self.add_instance(instance_id)
        for entry in users:
            self.add_user(entry)

    # -- instances and users -------------------------------------------------------------

    def add_instance(self, instance_id: str) -> None:
        """Create an empty instance (no-op if it exists)."""
        check_object_id(instance_id, "instance id")
        self._members.setdefault(instance_id.lower(), {})

    def has_instance(self, instance_id: str) -> bool:
        return instance_id.lower() in self._members

    @property
    def instances(self) -> list[str]:
        return list(self._members)

    def add_user(self, entry: Mapping[str, Any]) -> User:
        """Add a user from ``{"userId"?, "email"?, "firstName"?, "lastName"?, "avatarUrl"?}``."""
        unknown = set(entry) - {"userId", "email", "firstName", "lastName", "avatarUrl"}
        if unknown:
            raise ValueError(
                f"unknown user field {sorted(unknown)[0]!r}; "
                "allowed are userId, email, firstName, lastName, avatarUrl"
            )
        email = entry.get("email")
        if email is not None:
            check_email(email)
            if email.lower() in self._by_email:
                raise ValueError(f"a user with email {email!r} already exists")
        user_id = entry.get("userId")
        if user_id is None:
            if email is None:
                raise ValueError("a user needs a userId or an email")
            user_id = self._new_user_id(email)
        check_object_id(user_id, "userId")
        user_id = user_id.lower()
        if user_id in self._by_id:
            raise ValueError(f"a user with userId {user_id!r} already exists")
        for name in ("firstName", "lastName", "avatarUrl"):
            value = entry.get(name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"user {name} must be a string, got {value!r}")
        user = User(
            user_id=user_id,
            email=email,
            first_name=entry.get("firstName"),
            last_name=entry.get("lastName"),
            avatar_url=entry.get("avatarUrl"),
        )
        self._by_id[user_id] = user
        if email is not None:
            self._by_email[email.lower()] = user
        return user

    def _new_user_id(self, email: str) -> str:
        salt = 0
        while True:
            text = f"user\0{self._seed}\0{email.lower()}\0{salt}"
            user_id = hashlib.blake2b(text.encode(), digest_size=12).hexdigest()
            if user_id not in self._by_id:
                return user_id
            salt += 1

    def resolve(self, email: str | None, user_id: str | None) -> User:
        """The one user a post names, creating it if the directory does not know it."""
        if user_id is not None:
            user = self._by_id.get(user_id.lower())
            if user is not None:
                return user
        if email is not None:
            user = self._by_email.get(email.lower())
            if user is not None:
                return user
        entry = {"email": email} if email is not None else {}
        if user_id is not None:
            entry["userId"] = user_id
        return self.add_user(entry)

    # -- members -------------------------------------------------------------------------

    def add_member(self, instance_id: str, post: Mapping[str, str]) -> dict[str, Any]:
        """Add the member a *validated* post names; return it in wire form.

        Raises :class:`KeyError` for an unknown instance and :class:`AlreadyMemberError`
        when the user is already a member.
        """
        members = self._members[instance_id.lower()]
        user = self.resolve(post.get("email"), post.get("userId"))
        if user.user_id in members:
            raise AlreadyMemberError("User is already a member of this instance")
        members[user.user_id] = post["role"]
        return self.wire(instance_id.lower(), user, post["role"])

    def members(self, instance_id: str) -> list[dict[str, Any]]:
        """The instance's members in wire form, in the order they were added."""
        iid = instance_id.lower()
        return [self.wire(iid, self._by_id[uid], role) for uid, role in self._members[iid].items()]

    def list(
        self,
        instance_id: str,
        *,
        sort_field: str = "email",
        descending: bool = False,
        filter_field: str | None = None,
        pattern: str | None = None,
    ) -> list[dict[str, Any]]:
        """Members sorted and filtered as the API does; ties (equal keys) go by email.

        Emails sort case-insensitively; a member with no email sorts as the empty string.
        """
        iid = instance_id.lower()
        rows = [(self._by_id[uid], role) for uid, role in self._members[iid].items()]
        if filter_field and pattern:
            match = compile_glob(pattern).fullmatch
            if filter_field == "role":
                rows = [r for r in rows if match(r[1])]
            else:
                rows = [r for r in rows if r[0].email is not None and match(r[0].email)]
        # Tie order first (ascending email, then id), then a stable sort on the field;
        # a stable sort with reverse=True keeps equal keys in their existing order.
        rows.sort(key=_by_email_then_id)
        if sort_field == "role":
            rows.sort(key=_by_role, reverse=descending)
        elif descending:
            rows.sort(key=_by_email, reverse=True)
        return [self.wire(iid, user, role) for user, role in rows]

    @staticmethod
    def wire(instance_id: str, user: User, role: str) -> dict[str, Any]:
        """A member as the API sends it; fields the server does not know are left out."""
        out: dict[str, Any] = {"instanceId": instance_id, "userId": user.user_id}
        if user.email is not None:
            out["email"] = user.email
        if user.first_name is not None:
            out["firstName"] = user.first_name
        if user.last_name is not None:
            out["lastName"] = user.last_name
        out["role"] = role
        if user.avatar_url is not None:
            out["avatarUrl"] = user.avatar_url
        out["twoFactorAuthEnabled"] = False
        out["ssoLinked"] = False
        return out
