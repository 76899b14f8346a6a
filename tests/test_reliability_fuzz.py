"""Fuzzing end to end: hostile files, arguments and request bodies never break the promises.

- Hostile CSV / JSON Lines / JSON files go through ``open_source`` *and* ``bulk_import``
  against the embedded server: the only exception is ``SourceError`` (one per file);
  every row read is accounted for once; a bad row fails with a ``ValidationError`` saying
  ``line N: what``, and is never sent (the server answers no 400); the instance ends with
  exactly the valid rows. (``tests/test_sources_fuzz.py`` covers the reader alone.)
- Client arguments: random ``get``/``post`` arguments and ``bulk_import`` settings raise
  ``ValidationError`` before any request, or make a request the server accepts.
- Server request validation: random bodies, queries and tokens are answered 200, 400
  ``Validation``, 401 or 403, never 500.

One embedded server (on its own event loop) serves the module; each example uses a
fresh instance.
"""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import json
import re
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import attrs
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import asyncmembers as am
from asyncmembers._transport import MIN_SCRUBBED_SECRET
from asyncmembers.sources import MAX_ROW_BYTES, SourceError, SourceRow, open_source
from asyncmembers.testing import FakeLosantServer
from tests._shared import HOSTILE_VALUES, damaged, identities

TOKEN = "fuzz-secret-token"
READER = "fuzz-reader-token"
FIRST_IID = "575ec8687ae143cd83dc4a97"
LINE = re.compile(r"(?:line|element) (\d+): \S")  # a JSON array element: its index
T = TypeVar("T")

FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# -- one server per test function, on its own loop --------------------------------------------


@attrs.define
class Env:
    runner: asyncio.Runner
    server: FakeLosantServer
    client: am.Client
    http: aiohttp.ClientSession
    ids: Iterator[int] = attrs.field(factory=lambda: itertools.count(1))

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coro)

    def new_instance(self) -> str:
        iid = f"{0xABC0000000000000000000 + next(self.ids):024x}"
        self.server.add_instance(iid)
        self.server.reset_stats()
        return iid


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    with asyncio.Runner() as runner:
        server = FakeLosantServer(
            tokens={TOKEN: ["all.Instance"], READER: ["all.Instance.read"]}, instances=[FIRST_IID]
        )
        runner.run(server.start())

        async def session() -> aiohttp.ClientSession:
            return aiohttp.ClientSession()

        http = runner.run(session())
        client = am.Client(TOKEN, url=server.url, retry=am.RetryPolicy(attempts=2, timeout=20))
        try:
            yield Env(runner, server, client, http)
        finally:
            runner.run(client.close())
            runner.run(http.close())
            runner.run(server.close())


# -- hostile values -------------------------------------------------------------------------

HOSTILE = st.sampled_from(list(HOSTILE_VALUES))
TEXT = st.one_of(
    HOSTILE, st.text(max_size=30), st.text(alphabet="ab@.,\"'\n\r =+-\x00é", max_size=20)
)
GOOD_EMAIL = st.builds(
    lambda n, d, pad: f"{pad}u{n}@{d}{pad}",
    st.integers(0, 40),
    st.sampled_from(["example.com", "EXAMPLE.org", "bücher.de", "例子.广告"]),
    st.sampled_from(["", " ", "\t"]),
)
GOOD_ID = st.builds(
    lambda n, upper: f"{n:024x}".upper() if upper else f"{n:024x}",
    st.integers(1, 40),
    st.booleans(),
)
GOOD_ROLE = st.sampled_from(["view", "admin", " Admin ", "VIEW"])


def mostly(good: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """``good`` three times in four, else a hostile value."""
    return st.integers(0, 3).flatmap(lambda i: good if i else TEXT)


def value_for(column: str) -> st.SearchStrategy[str]:
    key = column.strip().lower()
    if key == "email":
        return mostly(GOOD_EMAIL)
    if key in ("userid", "user_id"):
        return mostly(GOOD_ID)
    if key == "role":
        return mostly(GOOD_ROLE)
    return TEXT


GOOD_HEADERS = st.sampled_from(
    [
        ["email", "role"],
        ["userId", "role"],
        [" Email ", "user_id", "ROLE", "notes"],
        ["notes", "role", "email", "", "=x"],
    ]
)
HEADERS = st.one_of(
    GOOD_HEADERS,
    GOOD_HEADERS,
    GOOD_HEADERS,
    st.sampled_from(
        [
            ["email", "role", "email"],  # duplicate header
            ["email", "Email", "role"],
            ["user_id", "userId", "role"],
            ["email"],  # no role
            ["role", "notes"],  # neither email nor userId
        ]
    ),
    st.lists(st.sampled_from(["email", "userId", "role", "note", "", "a,b", "l\nb"]), max_size=4),
)


def encode(text: str, encoding: str) -> bytes:
    return text.encode(encoding, "surrogatepass" if encoding.startswith("utf") else "replace")


ENCODINGS = st.sampled_from(["utf-8"] * 12 + ["utf-8-sig", "latin-1", "utf-16", "cp1252"])


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    header = draw(HEADERS)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=draw(st.sampled_from(["\r\n", "\n"])))
    writer.writerow(header)
    for _ in range(draw(st.integers(0, 10))):
        if draw(st.integers(0, 5)) == 0:
            out.write(draw(st.sampled_from(["\n", "   \n", ",,,\n", '"', '""\n', "\x00\n"])))
        row = [draw(value_for(name)) for name in header]
        if draw(st.integers(0, 5)) == 0:  # too few or too many cells
            row = row[: draw(st.integers(0, len(row)))] + draw(st.lists(TEXT, max_size=2))
        writer.writerow(row)
    return draw(damaged(encode(out.getvalue(), draw(ENCODINGS))))


KEYS = st.sampled_from(["email", "userId", "user_id", "role", "Email", " ROLE ", "note", "x"])
JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT


@st.composite
def json_objects(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 6)) == 0:  # not an object at all
        return draw(st.one_of(JSON_SCALARS, st.lists(JSON_SCALARS, max_size=3)))
    obj: dict[str, Any] = {}
    if draw(st.integers(0, 3)):
        if draw(st.booleans()):
            obj[draw(st.sampled_from(["email", "Email", " EMAIL "]))] = draw(mostly(GOOD_EMAIL))
        else:
            obj[draw(st.sampled_from(["userId", "user_id"]))] = draw(mostly(GOOD_ID))
        obj["role"] = draw(mostly(GOOD_ROLE))
    if draw(st.integers(0, 2)) == 0:
        for key in draw(st.lists(KEYS, max_size=3)):
            obj[key] = draw(st.one_of(TEXT, JSON_SCALARS, st.lists(JSON_SCALARS, max_size=2)))
    return obj


def dump(value: Any, ensure_ascii: bool) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii)


@st.composite
def jsonl_files(draw: st.DrawFn) -> bytes:
    ascii_ = draw(st.booleans())
    lines = []
    for _ in range(draw(st.integers(0, 10))):
        if draw(st.integers(0, 6)) == 0:
            lines.append(
                draw(st.sampled_from(["", "{", "[1,", "nul\x00", '{"email": "a@b.co"', "{}{}"]))
            )
        else:
            lines.append(dump(draw(json_objects()), ascii_))
        if draw(st.integers(0, 8)) == 0:  # duplicate keys in one object
            lines.append(
                '{"email": "dup@example.com", "email": "dup2@example.com", "role": "view"}'
            )
    return draw(damaged(encode("\n".join(lines), draw(ENCODINGS))))


@st.composite
def json_files(draw: st.DrawFn) -> bytes:
    items = draw(st.lists(json_objects(), max_size=10))
    text = json.dumps(
        items, ensure_ascii=draw(st.booleans()), indent=draw(st.sampled_from([None, 1]))
    )
    return draw(damaged(encode(text, draw(ENCODINGS))))


# -- the end-to-end check -------------------------------------------------------------------


def import_file(env: Env, path: Path, concurrency: int = 4) -> None:
    """Import ``path`` end to end and assert every promise about the result."""
    iid = env.new_instance()
    source, error = caught(lambda: open_source(path), SourceError)
    if source is None:
        assert str(error) and "\n" not in str(error)
        assert env.server.stats.requests == 0
        return
    read: list[SourceRow] = []

    def counted() -> Iterator[SourceRow]:
        for row in source:
            read.append(row)
            yield row

    with source:
        done, file_error = caught(
            lambda: env.run(
                am.bulk_import(
                    env.client, instanceId=iid, members=counted(), concurrency=concurrency
                )
            ),
            SourceError,
        )
    if done is None:  # a per-file problem part-way: the rows before it still count
        assert isinstance(file_error, SourceError)
        assert str(file_error) and "\n" not in str(file_error)
        assert file_error.result is not None
        result = file_error.result
    else:
        result = done

    # Every row read is accounted for, exactly once.
    assert result.total == len(read)
    assert result.total == result.created + result.skipped + len(result.failures)
    assert len({f.index for f in result.failures}) == len(result.failures)

    valid: list[set[str]] = []
    expected_failures: set[int] = set()
    for i, row in enumerate(read):
        try:
            post = row.to_member_post()
        except am.ValidationError:
            expected_failures.add(i)
            continue
        valid.append(identities(post))
    for failure in result.failures:
        # Only invalid rows fail (nothing else can go wrong here), saying what and where.
        assert isinstance(failure.error, am.ValidationError), repr(failure.error)
        assert failure.member is read[failure.index]
        match = LINE.match(failure.error.message)
        row = read[failure.index]
        where = row.line if row.line is not None else row.element
        assert match is not None and int(match[1]) == where, failure.error.message
        assert len(failure.error.message) < 400
    assert {f.index for f in result.failures} == expected_failures

    # No request for an invalid row: the only 400s are "already a member", for two rows
    # naming one user in different ways (users are global; the server knows them).
    stats = env.server.stats
    assert stats.by_status[400] == result.skipped_by_reason.get("already a member", 0)
    assert stats.by_status[500] == 0
    # The instance holds exactly the valid rows: each member was asked for, each valid
    # row is a member (known by its email or its userId), and nothing was added twice.
    members = [member_keys(m) for m in env.server.members(iid)]
    every_key = set().union(*members)
    assert all(any(keys & row for row in valid) for keys in members)
    assert all(row & every_key for row in valid)
    assert stats.posts_applied == len(members) == result.created


def member_keys(member: dict[str, Any]) -> set[str]:
    keys = {"u:" + str(member["userId"]).lower()}
    if member.get("email"):
        keys.add("e:" + member["email"].lower())
    return keys


def caught(
    call: Callable[[], T], *kinds: type[BaseException]
) -> tuple[T | None, BaseException | None]:
    """``call()`` and None, or None and the exception of one of ``kinds`` it raised."""
    try:
        return call(), None
    except kinds as exc:
        return None, exc


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@FUZZ
@given(data=csv_files())
def test_hostile_csv_end_to_end(
    env: Env, tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    import_file(env, write(tmp_path_factory.mktemp("csv"), "m.csv", data))


@FUZZ
@given(data=jsonl_files())
def test_hostile_jsonl_end_to_end(
    env: Env, tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    import_file(env, write(tmp_path_factory.mktemp("jsonl"), "m.jsonl", data))


@FUZZ
@given(data=json_files())
def test_hostile_json_end_to_end(
    env: Env, tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    import_file(env, write(tmp_path_factory.mktemp("json"), "m.json", data))


@pytest.mark.parametrize(
    ("name", "data"),
    [
        # A 1 MB cell in a valid row and a row over the limit, between good rows.
        (
            "big.csv",
            b"email,role,note\na@example.com,view,"
            + b"x" * 1_000_000
            + b"\n"
            + b"b@example.com,view,"
            + b"y" * (MAX_ROW_BYTES + 10)
            + b"\nc@example.com,admin,\n",
        ),
        (
            "big.jsonl",
            b'{"email":"a@example.com","role":"view","n":"'
            + b"x" * 1_000_000
            + b'"}\n'
            + b'{"email":"b@example.com","role":"view","n":"'
            + b"y" * (MAX_ROW_BYTES + 10)
            + b'"}\n'
            + b'{"email":"c@example.com","role":"admin"}\n',
        ),
        (
            "big.json",
            b'[{"email":"a@example.com","role":"view","n":"'
            + b"x" * 1_000_000
            + b'"},'
            + b'{"email":"c@example.com","role":"admin"}]',
        ),
        (
            "huge-email.csv",
            b"email,role\n" + b"e" * 1_000_000 + b"@example.com,view\nd@example.com,view\n",
        ),
        (
            "nul.csv",
            b"email,role\na@example.com,view\nb\x00@example.com,view\nc@example.com,admin\n",
        ),
        (
            "latin1.csv",
            "email,role\nj\u00fcrgen@example.com,view\nk@example.com,view\n".encode("latin-1"),
        ),
        ("utf16.csv", "email,role\na@example.com,view\n".encode("utf-16")),
        ("no-header.csv", b"a@example.com,view\n"),
        ("dup-header.csv", b"email,role,Email\na@example.com,view,b@example.com\n"),
        (
            "unterminated.csv",
            b'email,role\na@example.com,view\nb@example.com,"view\nc@example.com,view\n',
        ),
        ("cut.json", b'[{"email":"a@example.com","role":"view"},{"email":"b@exa'),
        (
            "formulas.csv",
            b'email,role,note\n=cmd@example.com,view,=HYPERLINK("x")\n'
            b"'=a@example.com,admin,@SUM(A1)\n+x@example.com,view,-2\n",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_hostile_files_end_to_end(env: Env, tmp_path: Path, name: str, data: bytes) -> None:
    import_file(env, write(tmp_path, name, data), concurrency=2)


# -- client arguments -----------------------------------------------------------------------

ANY = st.one_of(
    TEXT,
    st.none(),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.binary(max_size=5),
    st.lists(st.text(max_size=3), max_size=2),
    st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
)
# Strings a header, a URL or JSON may choke on.
NASTY = st.one_of(
    st.sampled_from(
        [
            "a\r\nX-Evil: 1",
            "a\nb",
            "\x00",
            "\x7f",
            "ü.example",
            "\ud800",
            "\udfff",
            "\u2028",
            " ",
            "a b",
        ]
    ),
    st.text(
        alphabet=st.one_of(
            st.characters(), st.sampled_from(["\ud800", "\udc80", "\r", "\n", "\x00"])
        ),
        max_size=8,
    ),
)
INSTANCE = st.one_of(
    st.just("KNOWN"), GOOD_ID, st.sampled_from([FIRST_IID.upper(), FIRST_IID + " "]), ANY, NASTY
)
CHOICE = st.one_of(
    st.sampled_from(["email", "role", "asc", "desc", "", "EMAIL", "Role ", "userId"]), ANY, NASTY
)


def usually(value: Any, other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``value`` two times in three, else anything from ``other``.

    Most arguments of a call must be valid for the one under test to reach the wire.
    """
    return st.integers(0, 2).flatmap(lambda i: st.just(value) if i else other)


def outcome_of(
    env: Env, call: Callable[[], Coroutine[Any, Any, Any]]
) -> tuple[str, BaseException | None]:
    before = env.server.stats.requests
    # NotFoundError: a well-formed request for an instance that does not exist.
    _, exc = caught(
        lambda: env.run(call()), am.ValidationError, am.NotFoundError, am.BadRequestError
    )
    if isinstance(exc, am.ValidationError):
        assert env.server.stats.requests == before, "a ValidationError after sending"
        assert exc.message and len(exc.message) < 400
        return "invalid", exc
    if isinstance(exc, am.NotFoundError):
        return "notfound", exc
    if isinstance(exc, am.BadRequestError):
        return "bad-request", exc
    return "ok", None


@settings(max_examples=200, deadline=None)
@given(
    instance=usually("KNOWN", INSTANCE),
    sort_field=usually(None, CHOICE),
    sort_direction=usually(None, CHOICE),
    filter_field=usually(None, CHOICE),
    pattern=usually(None, st.one_of(ANY, NASTY)),
    domain=usually(None, st.one_of(st.just("example.org"), ANY, NASTY)),
)
def test_get_arguments_are_refused_or_sent_validly(
    env: Env,
    instance: Any,
    sort_field: Any,
    sort_direction: Any,
    filter_field: Any,
    pattern: Any,
    domain: Any,
) -> None:
    iid = env.new_instance() if instance == "KNOWN" else instance
    kind, exc = outcome_of(
        env,
        lambda: env.client.instance_members.get(
            instanceId=iid,
            sortField=sort_field,
            sortDirection=sort_direction,
            filterField=filter_field,
            filter=pattern,
            losantdomain=domain,
        ),
    )
    assert kind != "bad-request", f"the client sent a request the server calls malformed: {exc!r}"
    assert env.server.stats.by_status[500] == 0


EMAILISH = st.builds(
    lambda local, domain: f"{local}@{domain}",
    st.one_of(st.sampled_from(["a", "A.b+c", "*", "a?b", "=x"]), NASTY),
    st.one_of(st.sampled_from(["example.com", "bücher.de", "x.co", "a..b", "-a.com"]), NASTY),
)
MEMBERS = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "email": st.one_of(mostly(GOOD_EMAIL), EMAILISH),
            "userId": st.one_of(mostly(GOOD_ID), NASTY),
            "role": mostly(GOOD_ROLE),
        },
    ),
    st.dictionaries(st.one_of(KEYS, st.text(max_size=4)), ANY, max_size=4),
    ANY,
)


@settings(max_examples=200, deadline=None)
@example(member={"email": "\ud800@example.com", "role": "view"}, instance="KNOWN", domain=None)
@example(member={"email": "a@example.com", "role": "view"}, instance="KNOWN", domain="a\r\nX: 1")
@given(
    member=MEMBERS,
    instance=usually("KNOWN", INSTANCE),
    domain=usually(None, st.one_of(st.just("example.org"), ANY, NASTY)),
)
def test_post_arguments_are_refused_or_sent_validly(
    env: Env, member: Any, instance: Any, domain: Any
) -> None:
    iid = env.new_instance() if instance == "KNOWN" else instance
    kind, exc = outcome_of(
        env,
        lambda: env.client.instance_members.post(
            instanceId=iid, member=member, losantdomain=domain
        ),
    )
    assert kind != "bad-request", f"the client sent a member the server refuses: {exc!r}"
    assert env.server.stats.by_status[500] == 0
    if kind == "ok":
        assert env.server.stats.posts_applied == 1


@settings(max_examples=100, deadline=None)
@given(token=st.one_of(st.just(TOKEN), TEXT, NASTY, ANY))
def test_tokens_are_refused_at_construction_or_sent_validly(env: Env, token: Any) -> None:
    client, refused = caught(
        lambda: am.Client(token, url=env.server.url, retry=am.RetryPolicy(attempts=1)),
        am.ValidationError,
    )
    if client is None:
        assert token != TOKEN, "a good token was refused"
        if isinstance(token, str) and len(token.strip()) >= 3:
            assert token not in str(refused) and token not in repr(refused)
        return

    async def call() -> None:
        async with client:
            await client.instance_members.get(instanceId=FIRST_IID)

    _, denied = caught(lambda: env.run(call()), am.UnauthorizedError)
    if denied is not None:
        # A token shorter than MIN_SCRUBBED_SECRET cannot be told from ordinary text (the
        # token "ins" is in every "/instances/..." path): only real-length ones are checked.
        assert (
            not isinstance(token, str)
            or len(token) < MIN_SCRUBBED_SECRET
            or token not in str(denied)
        )
        return
    assert token == TOKEN


@settings(max_examples=60, deadline=None)
@given(domain=st.one_of(ANY, NASTY))
def test_bulk_losantdomain_is_refused_or_sent_validly(env: Env, domain: Any) -> None:
    iid = env.new_instance()
    rows = [{"email": "a@example.com", "role": "view"}]
    result, refused = caught(
        lambda: env.run(
            am.bulk_import(env.client, instanceId=iid, members=rows, losantdomain=domain)
        ),
        am.ValidationError,
    )
    if result is None:
        assert isinstance(refused, am.ValidationError) and refused.field == "losantdomain"
        assert env.server.stats.requests == 0
        return
    assert result.created == 1


SETTING = st.one_of(
    st.integers(-2, 300),
    # A rate below 1 request/s would (rightly) make rows wait out RetryPolicy.timeout.
    st.floats(min_value=1.0, allow_infinity=True),
    st.floats(max_value=0.0),
    st.sampled_from([1.9, 3.7, 6.3, 7.3, 1e9, float("inf"), float("-inf"), float("nan")]),
    st.none(),
    st.booleans(),
    st.text(max_size=3),
)


@settings(max_examples=100, deadline=None)
@given(concurrency=SETTING, max_rate=SETTING)
def test_bulk_settings_are_refused_or_work(env: Env, concurrency: Any, max_rate: Any) -> None:
    """Found ``max_rate=1.9`` (3.7, 6.3, ...) crashing with aiolimiter's ValueError, and
    ``max_rate=inf`` accepted but failing every row."""
    iid = env.new_instance()
    rows = [{"email": "a@example.com", "role": "view"}, {"email": "b@example.com", "role": "view"}]
    result, refused = caught(
        lambda: env.run(
            am.bulk_import(
                env.client, instanceId=iid, members=rows, concurrency=concurrency, max_rate=max_rate
            )
        ),
        am.ValidationError,
    )
    if result is None:
        assert isinstance(refused, am.ValidationError)
        assert refused.field in ("concurrency", "max_rate")
        assert env.server.stats.requests == 0
        return
    assert result.created == 2 and result.ok


# -- the server's request validation --------------------------------------------------------

BODIES = st.one_of(
    st.binary(max_size=40),
    st.builds(
        lambda v: json.dumps(v).encode(),
        st.one_of(JSON_SCALARS, st.lists(JSON_SCALARS, max_size=3)),
    ),
    st.builds(
        lambda d, ascii_: json.dumps(d, ensure_ascii=ascii_).encode("utf-8", "surrogatepass"),
        st.dictionaries(
            st.one_of(KEYS, st.text(max_size=5)),
            st.one_of(
                TEXT, JSON_SCALARS, GOOD_EMAIL, GOOD_ID, GOOD_ROLE, st.lists(TEXT, max_size=2)
            ),
            max_size=4,
        ),
        st.booleans(),
    ),
)


@settings(max_examples=200, deadline=None)
@example(body=b'{"email": "\\ud800@example.com", "role": "view"}', content_type="application/json")
@example(body=b'{"email": "a@example.com", "role": "view", "role": "admin"}', content_type="")
@given(body=BODIES, content_type=st.sampled_from(["application/json", "text/plain", ""]))
def test_server_answers_any_post_body_with_200_or_400(
    env: Env, body: bytes, content_type: str
) -> None:
    iid = env.new_instance()

    async def send() -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        if content_type:
            headers["Content-Type"] = content_type
        async with env.http.post(
            f"{env.server.url}/instances/{iid}/members", data=body, headers=headers
        ) as resp:
            return resp.status, await resp.json(content_type=None)

    status, answer = env.run(send())
    assert status in (200, 400), (status, answer)
    if status == 400:
        assert answer["type"] == "Validation" and answer["message"]
    else:
        assert env.server.members(iid) == [{k: v for k, v in answer.items() if k != "_links"}]


QUERY_NAMES = st.sampled_from(
    ["sortField", "sortDirection", "filterField", "filter", "_links", "x"]
)


@settings(max_examples=150, deadline=None)
@given(
    query=st.lists(
        st.tuples(QUERY_NAMES, st.one_of(CHOICE.filter(lambda v: isinstance(v, str)), TEXT)),
        max_size=5,
    ),
    token=st.one_of(
        st.just(TOKEN), st.just(READER), TEXT.filter(lambda t: "\n" not in t and "\r" not in t)
    ),
    scheme=st.sampled_from(["Bearer ", "bearer ", "Basic ", ""]),
)
def test_server_answers_any_list_query_without_a_500(
    env: Env, query: list[tuple[str, str]], token: str, scheme: str
) -> None:
    iid = env.new_instance()
    env.server.add_member(iid, email="ann@example.com", role="view")

    async def send() -> tuple[int, Any]:
        headers = {"Authorization": f"{scheme}{token}"}
        params = [
            (k, v.encode("utf-8", "surrogatepass").decode("utf-8", "replace")) for k, v in query
        ]
        params = [(k, v.replace("\x00", "")) for k, v in params]
        async with env.http.get(
            f"{env.server.url}/instances/{iid}/members", params=params, headers=headers
        ) as resp:
            return resp.status, await resp.json(content_type=None)

    try:
        status, answer = env.run(send())
    except (ValueError, aiohttp.InvalidURL):  # the test's own client refused to send it
        return
    assert status in (200, 400, 401, 403), (status, answer)
    if status == 200:
        assert isinstance(answer["items"], list) and answer["count"] == len(answer["items"])
