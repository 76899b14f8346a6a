"""Compact tables of member identities: fixed-size digests in arrays, not Python strings.

A Python ``set`` of key strings costs about 100 bytes a key (the string object, its hash
slot, the table's slack): 400 MB for a resumed 200k-row import once both keys of every row
are counted, and the same again for an instance's members. These tables keep 8 bytes a key
in ``array('Q')`` buckets chosen by the digest's top bits: an add appends (or inserts into
one small sorted bucket), and a bucket is sorted when it is next searched, so no rehash or
sort of the whole table ever blocks the event loop.

- :class:`DigestSet` answers "was this key seen?" from 64-bit digests (:func:`digest`);
  with a million keys the chance that two keys share a digest is about 3 in 100 million.
- :class:`MemberTable` holds an instance's members (userId, email, role, a "matched" mark
  for pruning) with an index from both keys to the member; a digest hit is confirmed
  against the stored userId or email, so a collision can never be mistaken for a match.
"""

from __future__ import annotations

import array
import collections
import hashlib
import re
import sys
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["DigestSet", "MemberTable", "digest"]

_BUCKET_BITS = 12
_SHIFT = 64 - _BUCKET_BITS
_BUCKETS = 1 << _BUCKET_BITS


def _blake2b_digest(key: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big"
    )


def _siphash_digest(key: str) -> int:
    return hash(key) & _MASK64


_MASK64 = (1 << 64) - 1
#: The 64-bit digest of a member key such as ``e:ann@example.com``. The digests live only
#: in this process's memory, so the interpreter's own string hash serves: 64-bit SipHash
#: keyed with a per-process random secret (so inputs cannot be crafted to collide), about
#: 20 times cheaper than a hashlib call. Where it is narrower than 64 bits, BLAKE2b.
digest = _siphash_digest if sys.hash_info.width >= 64 else _blake2b_digest


def _sorted(bucket: array.array[int]) -> array.array[int]:
    return array.array(bucket.typecode, sorted(bucket))


class DigestSet:
    """A set of member keys, 8 bytes each (plus about 12 % slack).

    Adding appends to the key's bucket; a bucket is sorted the first time it is searched
    after an add (a few dozen entries: microseconds), so loading a large journal is one
    append per key and no search ever scans more than one small bucket.
    """

    __slots__ = ("_buckets", "_dirty", "_len")

    def __init__(self) -> None:
        self._buckets: list[array.array[int] | None] = [None] * _BUCKETS
        self._dirty = bytearray(_BUCKETS)
        self._len = 0

    def __len__(self) -> int:
        """The number of distinct keys (sorts every bucket not yet searched)."""
        for i in range(_BUCKETS):
            self._bucket(i)
        return self._len

    def add(self, key: str) -> None:
        """Add ``key`` (adding a key twice keeps one: duplicates are dropped when sorted)."""
        d = digest(key)
        i = d >> _SHIFT
        bucket = self._buckets[i]
        if bucket is None:
            bucket = self._buckets[i] = array.array("Q")
        bucket.append(d)
        self._dirty[i] = 1
        self._len += 1

    def _bucket(self, i: int) -> array.array[int] | None:
        bucket = self._buckets[i]
        if bucket is not None and self._dirty[i]:
            unique = array.array("Q", sorted(set(bucket)))
            self._len -= len(bucket) - len(unique)
            bucket = self._buckets[i] = unique
            self._dirty[i] = 0
        return bucket

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        d = digest(key)
        bucket = self._bucket(d >> _SHIFT)
        if bucket is None:
            return False
        at = bisect_left(bucket, d)
        return at < len(bucket) and bucket[at] == d

    def nbytes(self) -> int:
        """Bytes held by the digests (for benchmarks and tests)."""
        return sum(b.buffer_info()[1] * b.itemsize for b in self._buckets if b is not None)


#: An index entry packs 36 more bits of the key's digest above a 28-bit ordinal, so one
#: sort orders a bucket by digest, then by ordinal (the first member with a key wins).
_ORD_BITS = 28
_ORD_MASK = (1 << _ORD_BITS) - 1
_HASH_MASK = (1 << 36) - 1
#: Most members a table holds (268 million).
MAX_MEMBERS = 1 << _ORD_BITS


#: Role codes; a role this version does not know is kept by name in ``MemberTable._odd``.
_ROLE_CODES = {"view": 0, "admin": 1}
_ROLE_NAMES = ("view", "admin")
_ODD_ROLE = 255
_NO_ID = bytes(12)


class MemberTable:
    """An instance's members, compactly: about 40 bytes a member plus its email's bytes.

    Members get ordinals in the order added. Per ordinal: the userId (12 bytes, or zeros
    when unknown), the role (one byte), a mark byte (matched by a desired row / changed by
    this run) and the lower-cased email in one shared byte string. Both keys (``u:`` +
    userId, ``e:`` + email) index the ordinal through digest buckets.
    """

    __slots__ = (
        "_buckets",
        "_dirty",
        "_emails",
        "_ends",
        "_has_id",
        "_ids",
        "_marks",
        "_odd",
        "_roles",
        "ready",
        "seen_any",
    )

    def __init__(self) -> None:
        # Each bucket: packed (digest bits, ordinal) entries, sorted unless marked dirty.
        self._buckets: list[array.array[int] | None] = [None] * _BUCKETS
        self._dirty = bytearray(_BUCKETS)
        self._ids = bytearray()
        self._has_id = bytearray()
        self._roles = bytearray()
        self._marks = bytearray()
        self._emails = bytearray()
        self._ends = array.array("I")
        self._odd: dict[int, str] = {}
        #: True once the table holds every member of one complete read.
        self.ready = False
        #: True once a read has put a member in the table (its answer is a member list).
        self.seen_any = False

    def clear(self) -> None:
        """Empty the table (a read that is retried starts again from scratch)."""
        self.__init__()  # type: ignore[misc]

    def __len__(self) -> int:
        return len(self._roles)

    # -- building ----------------------------------------------------------------------

    def add(self, user_id: str | None, email: str | None, role: str, mark: int = 0) -> int:
        """Add a member; return its ordinal. A key two members share finds the first."""
        n = len(self._roles)
        if n >= MAX_MEMBERS:
            raise OverflowError(f"a member table holds at most {MAX_MEMBERS:,} members")
        uid = user_id.lower() if user_id else None
        raw_id: bytes | None = None
        if uid is not None and len(uid) == 24:
            try:
                raw_id = bytes.fromhex(uid)
            except ValueError:
                raw_id = None
        self._ids += _NO_ID if raw_id is None else raw_id
        self._has_id.append(raw_id is not None)
        code = _ROLE_CODES.get(role, _ODD_ROLE)
        if code == _ODD_ROLE:
            self._odd[n] = role
        self._roles.append(code)
        self._marks.append(mark)
        # As a row's email is read: trimmed, then compared case-insensitively. A listing's
        # " Ann@Example.com " is the member a row's "ann@example.com" names (a prune must
        # never remove it as unlisted).
        low = email.strip().lower() if email else ""
        self._emails += low.encode("utf-8", "surrogatepass")
        self._ends.append(len(self._emails))
        if raw_id is not None and uid is not None:
            self._index(digest("u:" + uid), n)
        if low:
            self._index(digest("e:" + low), n)
        return n

    def add_wire(self, item: dict[str, Any]) -> None:
        """Add a member from its wire form (fields of the wrong type are ignored)."""
        user_id, email, role = item.get("userId"), item.get("email"), item.get("role")
        self.add(
            user_id if isinstance(user_id, str) else None,
            email if isinstance(email, str) else None,
            role if isinstance(role, str) else "",
        )

    def _index(self, d: int, ordinal: int) -> None:
        i = d >> _SHIFT
        entry = ((d & _HASH_MASK) << _ORD_BITS) | ordinal
        bucket = self._buckets[i]
        if bucket is None:
            self._buckets[i] = array.array("Q", (entry,))
        elif self._dirty[i]:
            bucket.append(entry)  # sorted when next searched
        elif not bucket or entry > bucket[-1]:
            bucket.append(entry)
        elif len(bucket) < 512:
            bucket.insert(bisect_left(bucket, entry), entry)  # a small memmove: stays sorted
        else:
            self._dirty[i] = 1
            bucket.append(entry)

    # -- reading -----------------------------------------------------------------------

    def find(self, key: str) -> int | None:
        """The ordinal of the member with this key (``u:<id>`` or ``e:<email>``), or None."""
        d = digest(key)
        i = d >> _SHIFT
        bucket = self._buckets[i]
        if bucket is None:
            return None
        if self._dirty[i]:
            bucket = self._buckets[i] = _sorted(bucket)
            self._dirty[i] = 0
        h = d & _HASH_MASK
        at = bisect_left(bucket, h << _ORD_BITS)
        while at < len(bucket) and bucket[at] >> _ORD_BITS == h:
            ordinal = bucket[at] & _ORD_MASK
            if self._key_matches(ordinal, key):
                return ordinal
            at += 1  # a digest collision: confirmed against the stored key, never trusted
        return None

    def owners(self, key: str) -> Iterator[int]:
        """Every ordinal with this key, in order (a server's list may name a member twice)."""
        d = digest(key)
        i = d >> _SHIFT
        bucket = self._buckets[i]
        if bucket is None:
            return
        if self._dirty[i]:
            bucket = self._buckets[i] = _sorted(bucket)
            self._dirty[i] = 0
        h = d & _HASH_MASK
        at = bisect_left(bucket, h << _ORD_BITS)
        while at < len(bucket) and bucket[at] >> _ORD_BITS == h:
            ordinal = bucket[at] & _ORD_MASK
            if self._key_matches(ordinal, key):
                yield ordinal
            at += 1

    def keys(self, ordinal: int) -> tuple[str, ...]:
        """The member's keys: ``u:`` + userId and/or ``e:`` + email."""
        uid, email = self.user_id(ordinal), self.email(ordinal)
        return (("u:" + uid,) if uid else ()) + (("e:" + email,) if email else ())

    def find_any(self, keys: tuple[str, ...]) -> int | None:
        """The member any of ``keys`` names (the first key that is found wins)."""
        for key in keys:
            ordinal = self.find(key)
            if ordinal is not None:
                return ordinal
        return None

    def _key_matches(self, ordinal: int, key: str) -> bool:
        if key.startswith("u:"):
            return self.user_id(ordinal) == key[2:]
        return self.email(ordinal) == key[2:]

    def user_id(self, ordinal: int) -> str | None:
        if not self._has_id[ordinal]:
            return None
        return self._ids[ordinal * 12 : ordinal * 12 + 12].hex()

    def email(self, ordinal: int) -> str:
        start = self._ends[ordinal - 1] if ordinal else 0
        return self._emails[start : self._ends[ordinal]].decode("utf-8", "surrogatepass")

    def role(self, ordinal: int) -> str:
        code = self._roles[ordinal]
        return self._odd[ordinal] if code == _ODD_ROLE else _ROLE_NAMES[code]

    def set_role(self, ordinal: int, role: str) -> None:
        code = _ROLE_CODES.get(role, _ODD_ROLE)
        if code == _ODD_ROLE:
            self._odd[ordinal] = role
        self._roles[ordinal] = code

    def mark(self, ordinal: int) -> int:
        return self._marks[ordinal]

    def set_mark(self, ordinal: int, mark: int) -> None:
        self._marks[ordinal] = mark

    def unmarked(self, limit: int | None = None) -> Iterator[int]:
        """Ordinals whose mark is 0 (members no desired row matched), in order."""
        marks = self._marks
        at = marks.find(0)
        while at != -1 and (limit is None or at < limit):
            yield at
            at = marks.find(0, at + 1)

    def count_unmarked(self, limit: int) -> int:
        return self._marks.count(0, 0, limit)

    def with_marks(self, marks: bytes, limit: int) -> Iterator[int]:
        """Ordinals below ``limit`` whose mark is one of ``marks``, in order."""
        # A byte-class search runs in C: a million members are scanned in milliseconds.
        pattern = re.compile(b"[" + b"".join(re.escape(bytes((m,))) for m in marks) + b"]")
        for found in pattern.finditer(self._marks, 0, limit):
            yield found.start()

    def wire(self, ordinal: int) -> dict[str, str]:
        """The member as a small wire-form dict (what an Outcome of a removal names)."""
        out: dict[str, str] = {}
        uid = self.user_id(ordinal)
        if uid is not None:
            out["userId"] = uid
        email = self.email(ordinal)
        if email:
            out["email"] = email
        out["role"] = self.role(ordinal)
        return out

    def nbytes(self) -> int:
        """Bytes held by the table's arrays (for benchmarks and tests)."""
        total = (
            len(self._ids)
            + len(self._has_id)
            + len(self._roles)
            + len(self._marks)
            + len(self._emails)
        )
        total += self._ends.buffer_info()[1] * self._ends.itemsize
        for bucket in self._buckets:
            if bucket is not None:
                total += bucket.buffer_info()[1] * bucket.itemsize
        return total


class RecentKeys:
    """The row that first named each of the last ``size`` keys: a row naming one of them
    again is a duplicate. Memory stays flat however long the input; a repeat farther
    apart is sent again and the server's "already a member" settles it."""

    __slots__ = ("_order", "_size", "first")

    def __init__(self, size: int) -> None:
        #: key -> the index of the row that first named it (read it directly: per row).
        self.first: dict[str, int] = {}
        self._order: collections.deque[str] = collections.deque()
        self._size = size

    def add(self, keys: Iterable[str], index: int) -> None:
        """Remember ``keys`` as named by row ``index``, forgetting the oldest past ``size``."""
        first, order = self.first, self._order
        for key in keys:
            if len(order) >= self._size:
                del first[order.popleft()]
            first[key] = index
            order.append(key)
