"""Hypothesis strategies shared by the fuzz tests."""

from __future__ import annotations

from hypothesis import strategies as st

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
