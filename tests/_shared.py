"""Helpers shared by the fuzz, soak and reliability tests."""

from __future__ import annotations

from hypothesis import strategies as st

import asyncmembers as am

#: Values that have broken, or could break, readers, validators and reports: whitespace,
#: letter case, unicode emails, ObjectIds in any case, formulas (CSV injection), quoting,
#: line breaks, NUL bytes, a BOM, a lone surrogate, huge values.
HOSTILE_VALUES: tuple[str, ...] = (
    "",
    " ",
    "bob@example.com",
    " Bob@Example.COM ",
    "jürgen@bücher.de",
    "用户@例子.广告",
    "ǅemo@example.com",
    "İnfo@example.com",
    "bad@",
    "@",
    "a@b",
    "a b@example.com",
    "675ed18f7ae143cd83dc4bb7",
    "675ED18F7AE143CD83DC4BB7",
    "675ed18f7ae143cd83dc4bb",
    "admin",
    " VIEW ",
    "Admin\u00a0",
    "owner",
    "=cmd|'/c calc'!A0",
    '\'=HYPERLINK("http://x")',
    "+1",
    "-2@example.com",
    "@SUM(A1)",
    "\t=x",
    "a,b",
    'say "hi"',
    "multi\nline",
    "cr\rlf\r\n",
    "nul\x00byte@example.com",
    "\u200bann@example.com",
    "an\u00adn@example.com",
    "rtl\u200f@example.com",
    "\ufeff",
    "\u200bzero@example.com",
    "\ud800@example.com",
    "x" * 1100 + "@example.com",
    "*@example.com",
    "a?c@example.com",
    "=cmd()",
    "'=cmd()",
    "-2",
    "nul\x00byte",
    "\ud800",
)

#: Byte prefixes that trip readers up: UTF-8/16 byte order marks, blank lines, a NUL, a space.
HOSTILE_PREFIXES = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\n\n", b"\x00", b" ")


@st.composite
def damaged(draw: st.DrawFn, data: bytes, *, one_in: int = 4) -> bytes:
    """``data``, or (one time in ``one_in``) cut, with random bytes spliced in, or prefixed."""
    if draw(st.integers(0, one_in - 1)):
        return data
    if data and draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(max_size=8)) + data[at:]
    if draw(st.booleans()):
        data = draw(st.sampled_from(HOSTILE_PREFIXES)) + data
    return data


def identities(post: am.InstanceMemberPost) -> set[str]:
    """The keys a member is known by: ``e:`` + lower-cased email, ``u:`` + lower-cased userId."""
    out = set()
    if post.email is not None:
        out.add("e:" + post.email.lower())
    if post.user_id is not None:
        out.add("u:" + post.user_id.lower())
    return out


#: uvloop's clock counts whole milliseconds (libuv's cached ``uv_now``), so a 50 ms delay
#: can read as 0.04999... s on it; timing assertions allow this much.
LOOP_CLOCK_SLACK = 0.002
