"""The embedded server's data: a user directory and the members of each instance.

Pure, synchronous bookkeeping with no HTTP in it, so it can be reasoned about (and
tested) on its own. Every mutation happens without an ``await`` in between its check and
its write, so concurrent requests cannot race.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from hashlib import blake2b
from typing import Any, Final

import attrs

from .. import _json
from .._schema import (
    EMAIL_RE,
    MAX_EMAIL_LENGTH,
    ROLES,
    check_choice,
    check_email,
    check_object_id,
)
from ..errors import ValidationError

__all__ = [
    "AlreadyMemberError",
    "Glob",
    "MemberStore",
    "User",
    "check_member_patch",
    "compile_glob",
]

#: The fields a user entry (and a seeded member row) may give about the user.
USER_FIELDS: Final = ("userId", "email", "firstName", "lastName", "avatarUrl")
_NAME_FIELDS: Final = ("firstName", "lastName", "avatarUrl")
_ROW_FIELDS: Final = frozenset((*USER_FIELDS, "role"))
_ROLE_SET: Final = frozenset(ROLES)


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


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_member_patch(body: object) -> str:
    """Validate an Instance Member Patch body (``{"role": "admin"|"view"}``); return the role.

    ``role`` is required and no other field is allowed (``additionalProperties: false``).
    Raises :class:`~asyncmembers.errors.ValidationError` naming what is wrong.
    """
    if not isinstance(body, Mapping):
        raise ValidationError(f"member must be an object with a role, got {_show(body)}")
    extra = [k for k in body if k != "role"]
    if extra:
        raise ValidationError(
            f"member has unknown field {extra[0]!r}; the only field allowed is role",
            field=str(extra[0]),
        )
    if "role" not in body:
        raise ValidationError("member is missing role (admin or view)", field="role")
    return check_choice(body["role"], "role", ROLES)


def _check_names(entry: Mapping[str, Any]) -> None:
    for name in _NAME_FIELDS:
        value = entry.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise ValueError(f"user {name} must be a string, got {_show(value)}")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            # A lone surrogate could never be sent in an answer.
            raise ValueError(f"user {name} is not valid UTF-8: {_show(value)}") from None


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
        # user id -> lower-case email ("" for none), and the same + "\0" + user id: the
        # sort keys, looked up by the C-level dict.__getitem__ while sorting user ids
        # (sorting 200k members costs no Python call per comparison). "\0" sorts before
        # any character an email may hold, so the second orders like (email, id).
        self._email_key: dict[str, str] = {}
        self._order_key: dict[str, str] = {}
        # Emails whose lower-case form may not be how a case-insensitive regex compares
        # them; while there are none, an exact email filter is a dictionary lookup.
        self._non_ascii_emails = 0
        # instance id -> {user id -> role}, in the order members were added
        self._members: dict[str, dict[str, str]] = {}
        # instance id -> {user id -> the member's JSON in a listing}; built on first listing,
        # dropped when the member's role changes or it leaves
        self._fragments: dict[str, dict[str, bytes]] = {}
        for instance_id in instances:
            self.add_instance(instance_id)
        for entry in users:
            self.add_user(entry)

    # -- instances and users -------------------------------------------------------------

    def add_instance(self, instance_id: str) -> None:
        """Create an empty instance (no-op if it exists)."""
        check_object_id(instance_id, "instance id")
        self._members.setdefault(instance_id.lower(), {})
        self._fragments.setdefault(instance_id.lower(), {})

    def has_instance(self, instance_id: str) -> bool:
        return instance_id.lower() in self._members

    @property
    def instances(self) -> list[str]:
        return list(self._members)

    def add_user(self, entry: Mapping[str, Any]) -> User:
        """Add a user from ``{"userId"?, "email"?, "firstName"?, "lastName"?, "avatarUrl"?}``."""
        unknown = set(entry) - set(USER_FIELDS)
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
        _check_names(entry)
        user = User(
            user_id=user_id,
            email=email,
            first_name=entry.get("firstName"),
            last_name=entry.get("lastName"),
            avatar_url=entry.get("avatarUrl"),
        )
        self._register(user)
        return user

    def _register(self, user: User) -> None:
        uid = user.user_id
        self._by_id[uid] = user
        email = user.email
        key = ""
        if email is not None:
            key = email.lower()
            self._by_email[key] = user
            if not email.isascii():
                self._non_ascii_emails += 1
        self._email_key[uid] = key
        self._order_key[uid] = f"{key}\0{uid}"

    def _new_user_id(self, email: str, taken: Mapping[str, object] | None = None) -> str:
        salt = 0
        while True:
            text = f"user\0{self._seed}\0{email.lower()}\0{salt}"
            user_id = blake2b(text.encode(), digest_size=12).hexdigest()
            if user_id not in self._by_id and (taken is None or user_id not in taken):
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

    def _invalidate(self, instance_id: str, user_id: str) -> None:
        self._fragments[instance_id].pop(user_id, None)

    def add_member(self, instance_id: str, post: Mapping[str, str]) -> dict[str, Any]:
        """Add the member a *validated* post names; return it in wire form.

        Raises :class:`KeyError` for an unknown instance and :class:`AlreadyMemberError`
        when the user is already a member.
        """
        iid = instance_id.lower()
        members = self._members[iid]
        user = self.resolve(post.get("email"), post.get("userId"))
        if user.user_id in members:
            raise AlreadyMemberError("User is already a member of this instance")
        members[user.user_id] = post["role"]
        return self.wire(iid, user, post["role"])

    def add_members(
        self, instance_id: str, rows: Iterable[Mapping[str, Any]], *, role: str = "view"
    ) -> int:
        """Add many members at once, all or none; return how many were added.

        Each row is a mapping with ``email`` and/or ``userId``, an optional ``role``
        (default ``role``) and, for a user the directory does not know yet, optional
        ``firstName``, ``lastName``, ``avatarUrl`` (ignored for a known user, as a POST
        would). Users resolve as for a POST. Raises :class:`KeyError` for an unknown
        instance; :class:`ValueError` naming the row (0-based) for an invalid row, a user
        who is already a member or a user named twice, in which case nothing is added.
        """
        iid = instance_id.lower()
        members = self._members[iid]
        check_choice(role, "role", ROLES)
        by_id = self._by_id
        by_email = self._by_email
        new_by_id: dict[str, User] = {}
        new_by_email: dict[str, User] = {}
        new_keys: dict[str, str] = {}  # user id -> lower-case email, for the sort keys
        non_ascii = 0
        adds: dict[str, str] = {}
        email_ok = EMAIL_RE.fullmatch
        # The common cases are checked inline (this loop runs 200k times in a second);
        # anything unusual goes through the shared checks, which raise the same errors.
        for index, row in enumerate(rows):
            try:
                if type(row) is not dict and not isinstance(row, Mapping):
                    raise ValueError(f"a row must be a mapping, got {_show(row)}")
                if not _ROW_FIELDS.issuperset(row):
                    extra = sorted(set(row) - _ROW_FIELDS)[0]
                    raise ValueError(
                        f"unknown field {extra!r}; allowed are role, " + ", ".join(USER_FIELDS)
                    )
                row_role = row.get("role", role)
                if type(row_role) is not str or row_role not in _ROLE_SET:
                    check_choice(row_role, "role", ROLES)
                email = row.get("email")
                user_id = row.get("userId")
                user: User | None = None
                if user_id is not None:
                    check_object_id(user_id, "userId")
                    user_id = user_id.lower()
                    user = by_id.get(user_id) or new_by_id.get(user_id)
                key = ""
                if email is not None:
                    if not (
                        type(email) is str
                        and email.isascii()
                        and len(email) <= MAX_EMAIL_LENGTH
                        and email_ok(email)
                    ):
                        check_email(email)
                    key = email.lower()
                    if user is None:
                        user = by_email.get(key) or new_by_email.get(key)
                elif user_id is None:
                    raise ValueError("a row needs an email or a userId")
                if user is None:
                    if len(row) > 2 or "role" not in row:  # more than an id and a role
                        _check_names(row)
                    user = User(
                        user_id or self._new_user_id(key, new_by_id),
                        email,
                        row.get("firstName"),
                        row.get("lastName"),
                        row.get("avatarUrl"),
                    )
                    new_by_id[user.user_id] = user
                    new_keys[user.user_id] = key
                    if email is not None:
                        new_by_email[key] = user
                        non_ascii += not email.isascii()
                uid = user.user_id
                if uid in members:
                    raise ValueError(f"{email or uid} is already a member of this instance")
                if uid in adds:
                    raise ValueError(f"{email or uid} is named by an earlier row too")
                adds[uid] = row_role
            except (ValidationError, ValueError) as exc:
                message = exc.message if isinstance(exc, ValidationError) else str(exc)
                raise ValueError(f"row {index}: {message}; nothing was added") from None
        # Commit: the same entries _register makes, in bulk.
        by_id.update(new_by_id)
        by_email.update(new_by_email)
        self._non_ascii_emails += non_ascii
        self._email_key.update(new_keys)
        self._order_key.update({uid: f"{key}\0{uid}" for uid, key in new_keys.items()})
        members.update(adds)
        return len(adds)

    def get_member(self, instance_id: str, user_id: str) -> dict[str, Any] | None:
        """The member in wire form, or None if the user is not a member (any id case)."""
        iid = instance_id.lower()
        uid = user_id.lower()
        role = self._members[iid].get(uid)
        if role is None:
            return None
        return self.wire(iid, self._by_id[uid], role)

    def set_role(self, instance_id: str, user_id: str, role: str) -> dict[str, Any] | None:
        """Give a member a (validated) role; return it in wire form, or None if not a member.

        The member keeps its place in :meth:`members`.
        """
        iid = instance_id.lower()
        uid = user_id.lower()
        members = self._members[iid]
        old = members.get(uid)
        if old is None:
            return None
        if old != role:
            members[uid] = role
            self._invalidate(iid, uid)
        return self.wire(iid, self._by_id[uid], role)

    def remove_member(self, instance_id: str, user_id: str) -> bool:
        """Remove a member; False if the user was not a member. The user stays known."""
        iid = instance_id.lower()
        uid = user_id.lower()
        if self._members[iid].pop(uid, None) is None:
            return False
        self._invalidate(iid, uid)
        return True

    def count(self, instance_id: str) -> int:
        """How many members the instance has."""
        return len(self._members[instance_id.lower()])

    def members(self, instance_id: str) -> list[dict[str, Any]]:
        """The instance's members in wire form, in the order they were added."""
        iid = instance_id.lower()
        return [self.wire(iid, self._by_id[uid], role) for uid, role in self._members[iid].items()]

    def _ordered(
        self,
        iid: str,
        sort_field: str,
        descending: bool,
        filter_field: str | None,
        pattern: str | None,
    ) -> list[str]:
        """The ids of the members a listing shows, in its order."""
        members = self._members[iid]
        uids: list[str]
        if filter_field and pattern:
            if (
                filter_field == "email"
                and "*" not in pattern
                and "?" not in pattern
                and pattern.isascii()
                and not self._non_ascii_emails
            ):
                # An exact email: a lookup instead of a scan. With only ASCII emails in the
                # directory, a case-insensitive whole match is equality of lower case.
                user = self._by_email.get(pattern.lower())
                return [user.user_id] if user is not None and user.user_id in members else []
            match = compile_glob(pattern).fullmatch
            if filter_field == "role":
                uids = [uid for uid, role in members.items() if match(role)]
            else:
                by_id = self._by_id
                uids = []
                for uid in members:
                    email = by_id[uid].email
                    if email is not None and match(email):
                        uids.append(uid)
        else:
            uids = list(members)
        # Tie order first (ascending email, then id), then a stable sort on the field;
        # a stable sort with reverse=True keeps equal keys in their existing order.
        uids.sort(key=self._order_key.__getitem__)
        if sort_field == "role":
            uids.sort(key=members.__getitem__, reverse=descending)
        elif descending:
            uids.sort(key=self._email_key.__getitem__, reverse=True)
        return uids

    def list_fragments(
        self,
        instance_id: str,
        *,
        sort_field: str = "email",
        descending: bool = False,
        filter_field: str | None = None,
        pattern: str | None = None,
    ) -> list[bytes]:
        """:meth:`list` as each member's JSON (with ``_links``), ready to join into a body.

        Each member's JSON is built once and kept until its role changes or it leaves, so
        listing a large instance again after a few changes costs a sort and a join.
        """
        iid = instance_id.lower()
        uids = self._ordered(iid, sort_field, descending, filter_field, pattern)
        cache = self._fragments[iid]
        missing = [uid for uid in uids if uid not in cache]
        if missing:
            members = self._members[iid]
            by_id = self._by_id
            for uid in missing:
                cache[uid] = self.fragment(iid, by_id[uid], members[uid])
        return list(map(cache.__getitem__, uids))

    @classmethod
    def fragment(cls, instance_id: str, user: User, role: str) -> bytes:
        """A member's JSON in a listing: :meth:`wire` plus ``_links``, as compact UTF-8."""
        uid = user.user_id
        if user.first_name is None and user.last_name is None and user.avatar_url is None:
            # The usual member, formatted directly (twice as fast as building a dict and
            # encoding it). Ids are hex, roles are admin/view, and an accepted email holds
            # no quote, backslash or control character, so none needs escaping; the bytes
            # are the same as the encoder's (a test compares them).
            email = "" if user.email is None else f',"email":"{user.email}"'
            return (
                f'{{"instanceId":"{instance_id}","userId":"{uid}"{email},"role":"{role}",'
                '"twoFactorAuthEnabled":false,"ssoLinked":false,'
                f'"_links":{{"self":{{"href":"/instances/{instance_id}/members/{uid}"}}}}}}'
            ).encode()
        item = cls.wire(instance_id, user, role)
        item["_links"] = {"self": {"href": f"/instances/{instance_id}/members/{uid}"}}
        return _json.dumps(item)

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
        members = self._members[iid]
        by_id = self._by_id
        uids = self._ordered(iid, sort_field, descending, filter_field, pattern)
        return [self.wire(iid, by_id[uid], members[uid]) for uid in uids]

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
