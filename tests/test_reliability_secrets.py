"""The access token never leaks: not in logs, errors, results, reports or CLI output.

Everything runs with DEBUG logging on for the root logger, ``asyncmembers``, aiohttp's
and asyncio's loggers, and every record is captured. Calls go through retries (5xx, 429,
cut connections, stalls) and end in errors of every class; bulk imports end with
failures; an error report is written; the command line runs with ``--token`` and with
``LOSANT_API_TOKEN``, with ``-vv``. The token (and its ``Bearer`` header form) must appear
in none of it. Also: plain ``http`` to a host other than loopback is refused unless
``allow_insecure_http=True``, and a redirect to another origin does not carry the token.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import sys
import traceback
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

import asyncmembers as am
from asyncmembers.report import ErrorReportWriter
from asyncmembers.testing import FakeLosantServer, Faults

IID = "575ec8687ae143cd83dc4a97"
UNKNOWN_IID = "575ec8687ae143cd83dc4a00"
# Distinctive, and long enough that no message could contain it by chance.
TOKEN = "tok-S3CRET-2b7e151628aed2a6abf71588"
READ_ONLY = "tok-READONLY-09cf4f3c762e71604f2c"
WRONG = "tok-WRONG-6bc1bee22e409f96e93d7e11"
SECRETS = (TOKEN, READ_ONLY, WRONG)
LOGGERS = (
    "",
    "asyncmembers",
    "aiohttp",
    "aiohttp.client",
    "aiohttp.server",
    "aiohttp.web",
    "aiohttp.access",
    "aiohttp.internal",
    "asyncio",
)
FAST = am.RetryPolicy(attempts=3, wait_initial=0.001, wait_max=0.01, timeout=10)


def assert_clean(text: str, where: str = "") -> None:
    for secret in SECRETS:
        assert secret not in text, (
            f"a token leaked {where}: ...{text[max(0, text.find(secret) - 80) :][:200]}"
        )


def error_text(exc: BaseException) -> str:
    """Everything an error shows: str, repr, attributes, traceback and the repr of every
    exception chained to it (a tool that reports errors shows those too), pickle."""
    parts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    parts += [repr(v) for v in vars(exc).values()]
    chained: BaseException | None = exc
    seen: set[int] = set()
    while chained is not None and id(chained) not in seen:
        seen.add(id(chained))
        parts += [repr(chained), repr(getattr(chained, "request_info", None))]
        chained = chained.__cause__ or chained.__context__
    parts.append(repr(pickle.loads(pickle.dumps(exc)).__dict__))
    parts.append(pickle.dumps(exc).decode("latin-1"))
    return "\n".join(parts)


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    saved = {name: logging.getLogger(name).level for name in LOGGERS}
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name or None)
    yield caplog
    for name, level in saved.items():
        logging.getLogger(name or None).setLevel(level)
    text = "\n".join(
        f"{r.name} {r.levelname} {r.getMessage()} {r.exc_text or ''} {r.args!r}"
        for r in caplog.records
    )
    assert_clean(text + caplog.text, "into the logs")


@pytest.fixture
async def server() -> AsyncIterator[FakeLosantServer]:
    async with FakeLosantServer(
        tokens={TOKEN: ["all.Instance"], READ_ONLY: ["all.Instance.read"]}, instances=[IID], seed=4
    ) as s:
        yield s


# -- library: errors of every class, through retries ------------------------------------------


async def collect_errors(server: FakeLosantServer) -> list[BaseException]:
    errors: list[BaseException] = []

    async def expect(kind: type[BaseException], call: Any) -> None:
        try:
            await call
        except kind as exc:
            errors.append(exc)
        else:  # pragma: no cover - the scenario is wrong if it succeeds
            raise AssertionError(f"expected {kind.__name__}")

    members = "instance_members"
    async with am.Client(TOKEN, url=server.url, retry=FAST, timeout=0.3) as c:
        res = getattr(c, members)
        await res.post(instanceId=IID, member={"email": "ann@example.com", "role": "view"})
        await expect(
            am.BadRequestError,
            res.post(instanceId=IID, member={"email": "ann@example.com", "role": "view"}),
        )
        await expect(am.NotFoundError, res.get(instanceId=UNKNOWN_IID))
        await expect(am.ValidationError, res.get(instanceId="nope"))
        await expect(
            am.ValidationError, res.post(instanceId=IID, member={"email": "bad", "role": "view"})
        )
        server.faults = Faults(error_rate=1.0)
        await expect(am.ServerError, res.get(instanceId=IID))
        await expect(
            am.ServerError,
            res.post(instanceId=IID, member={"email": "s@example.com", "role": "view"}),
        )
        server.faults = Faults(drop_after_commit_rate=1.0)
        await expect(
            am.TransportError,
            res.post(instanceId=IID, member={"email": "d@example.com", "role": "view"}),
        )
        server.faults = Faults(stall_rate=1.0, stall_seconds=30)
        await expect(am.TransportError, res.get(instanceId=IID))
        server.faults = Faults(rate_limit=0.01, rate_limit_burst=1)  # Retry-After 100 > max
        await res.get(instanceId=IID)
        await expect(am.RateLimitError, res.get(instanceId=IID))
        server.faults = Faults()
    await expect(am.ClientClosedError, c.instance_members.get(instanceId=IID))
    async with am.Client(READ_ONLY, url=server.url, retry=FAST) as c:
        await expect(
            am.ForbiddenError,
            c.instance_members.post(
                instanceId=IID, member={"email": "f@example.com", "role": "view"}
            ),
        )
    async with am.Client(WRONG, url=server.url, retry=FAST) as c:
        await expect(am.UnauthorizedError, c.instance_members.get(instanceId=IID))
    async with am.Client(TOKEN, url="http://127.0.0.1:9", retry=FAST) as c:  # nothing listens
        await expect(am.TransportError, c.instance_members.get(instanceId=IID))
    try:
        am.Client(TOKEN, url="http://api.example.com")
    except am.ValidationError as exc:
        errors.append(exc)
    for bad in (TOKEN + "\n", TOKEN + "\x00", "\ud800" + TOKEN):
        try:
            am.Client(bad, url=server.url)
        except am.ValidationError as exc:
            errors.append(exc)
    return errors


async def test_no_error_of_any_class_shows_the_token(
    server: FakeLosantServer, debug_logs: pytest.LogCaptureFixture
) -> None:
    errors = await collect_errors(server)
    kinds = {type(e) for e in errors}
    assert kinds >= {
        am.BadRequestError,
        am.UnauthorizedError,
        am.ForbiddenError,
        am.NotFoundError,
        am.RateLimitError,
        am.ServerError,
        am.TransportError,
        am.ValidationError,
        am.ClientClosedError,
    }
    assert len([e for e in errors if isinstance(e, am.ValidationError)]) >= 5
    for exc in errors:
        assert_clean(error_text(exc), f"into {type(exc).__name__}")
    # Retries did happen and were logged (so the log check is not vacuous).
    assert any("retrying" in r.getMessage() for r in debug_logs.records)


async def test_client_repr_and_str_hide_the_token(server: FakeLosantServer) -> None:
    async with am.Client(TOKEN, url=server.url) as c:
        await c.instance_members.get(instanceId=IID)
        shown = [repr(c), str(c), repr(c.instance_members), repr(c._session), repr(vars(c))]
    shown += [repr(c), str(c)]
    for text in shown:
        assert_clean(text, "into the client's repr")
    assert "redacted" in repr(c)


async def test_bulk_results_failures_and_reports_hide_the_token(
    server: FakeLosantServer, debug_logs: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    server.faults = Faults(
        error_rate=0.3, drop_after_commit_rate=0.1, drop_before_commit_rate=0.1, rate_limit=400
    )
    rows: list[Any] = [{"email": f"b{i}@example.com", "role": "view"} for i in range(60)]
    rows += [
        {"email": "broken", "role": "view"},
        {"email": "x@example.com", "role": "boss"},
        "junk",
    ]
    outcomes: list[am.Outcome] = []
    stingy = am.RetryPolicy(attempts=2, wait_initial=0.001, wait_max=0.01, timeout=10)
    async with am.Client(TOKEN, url=server.url, retry=stingy) as c:
        result = await am.bulk_import(
            c, instanceId=IID, members=rows, concurrency=8, on_outcome=outcomes.append
        )
    assert len(result.failures) > 3  # some rows failed after retries, not only the invalid ones
    report_path = tmp_path / "errors.csv"
    with ErrorReportWriter(report_path) as report:
        for failure in result.failures:
            report.write(failure.member, failure.error)
    texts = [repr(result), str(result), repr(result.failures), report_path.read_text()]
    texts += [str(f) + repr(f) + error_text(f.error) for f in result.failures]
    texts += [repr(o) for o in outcomes]
    for text in texts:
        assert_clean(text, "into a bulk result or report")

    # A fatal stop keeps its partial result: neither shows the token.
    async with am.Client(WRONG, url=server.url) as c:
        with pytest.raises(am.UnauthorizedError) as info:
            await am.bulk_import(c, instanceId=IID, members=rows)
    assert_clean(error_text(info.value) + repr(info.value.result), "into a fatal bulk error")


# -- plain http and redirects ---------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://api.example.com",
        "HTTP://API.EXAMPLE.COM",
        "http://127.0.0.1.nip.io",
        "http://localhost.example.com",
        "http://10.0.0.1",
        "http://[::ffff:7f00:1]:8080",
        "http://0.0.0.0",
    ],
)
def test_plain_http_to_another_host_is_refused(url: str) -> None:
    with pytest.raises(am.ValidationError, match="plain http") as info:
        am.Client(TOKEN, url=url)
    assert info.value.field == "url"
    assert_clean(error_text(info.value))
    am.Client(TOKEN, url=url, allow_insecure_http=True)  # the caller's explicit choice
    am.Client(None, url=url)  # no token, nothing to leak


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:1",
        "http://localhost",
        "http://[::1]:8080",
        "http://127.1.2.3",
        "https://api.example.com",
    ],
)
def test_loopback_and_https_are_allowed(url: str) -> None:
    am.Client(TOKEN, url=url)


async def test_allow_insecure_http_really_sends(server: FakeLosantServer) -> None:
    url = server.url.replace("127.0.0.1", "localhost")
    async with am.Client(TOKEN, url=url, allow_insecure_http=True) as c:
        assert (await c.instance_members.get(instanceId=IID)).count == 0


async def test_a_redirect_to_another_origin_is_refused_and_nothing_reaches_it() -> None:
    """A 307 to another origin (issue 10): never followed, for any method; the other origin
    receives nothing at all (no token, no member's email), and the error names its host."""
    seen: list[str] = []

    async def elsewhere(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.path_qs}")
        return web.json_response({"items": [], "count": 0})

    other = web.Application()
    other.router.add_route("*", "/{tail:.*}", elsewhere)
    other_runner = web.AppRunner(other)
    await other_runner.setup()
    other_site = web.TCPSite(other_runner, "localhost", 0)
    await other_site.start()
    other_port = other_runner.addresses[0][1]

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(f"http://localhost:{other_port}{request.path_qs}")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", redirect)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        async with am.Client(TOKEN, url=f"http://127.0.0.1:{port}", retry=FAST) as c:
            with pytest.raises(am.RedirectError, match="to localhost") as got:
                await c.instance_members.get(instanceId=IID)
            assert got.value.status == 307 and got.value.fatal
            assert_clean(error_text(got.value))
            with pytest.raises(am.RedirectError) as posted:
                await c.instance_members.post(
                    instanceId=IID, member={"email": "r@example.com", "role": "view"}
                )
            assert_clean(error_text(posted.value))
    finally:
        await runner.cleanup()
        await other_runner.cleanup()
    assert seen == [], seen


async def test_a_redirect_loop_is_one_redirect_error_without_the_request_headers() -> None:
    """A redirect loop is not even entered: the first 302 is the error, and its chain holds
    no request headers (aiohttp's redirect errors carry request_info with the token)."""
    hits: list[str] = []

    async def loop(request: web.Request) -> web.Response:
        hits.append(request.method)
        raise web.HTTPFound(request.path_qs)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", loop)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with am.Client(TOKEN, url=url, retry=FAST) as c:
            with pytest.raises(am.RedirectError, match="302") as info:
                await c.instance_members.get(instanceId=IID)
            with pytest.raises(am.RedirectError, match="302") as post_info:
                await c.instance_members.post(
                    instanceId=IID, member={"email": "l@example.com", "role": "view"}
                )
    finally:
        await runner.cleanup()
    assert hits == ["GET", "POST"]  # one request each: nothing followed, nothing retried
    assert_clean(error_text(info.value), "into a redirect error's chain")
    assert_clean(error_text(post_info.value), "into a redirect error's chain")


# -- the command line -----------------------------------------------------------------------


async def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run ``python -m asyncmembers ARGS``; return its exit status and all its output."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("LOSANT_")}
    child_env.update(env or {})
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "asyncmembers",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=child_env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace") + "\n" + err.decode(errors="replace")


@pytest.mark.subprocess
async def test_cli_output_never_shows_the_token(server: FakeLosantServer, tmp_path: Path) -> None:
    server.faults = Faults(error_rate=0.2, drop_after_commit_rate=0.05)
    members = tmp_path / "members.csv"
    members.write_text(
        "email,role\n" + "".join(f"c{i}@example.com,view\n" for i in range(30)) + "bad,view\n"
    )
    errors = tmp_path / "errors.csv"
    journal = tmp_path / "j.journal"
    url = server.url
    common = ["--instance", IID]
    runs = [
        (
            [
                "-vv",
                "--url",
                url,
                "--token",
                TOKEN,
                "import",
                str(members),
                *common,
                "--errors",
                str(errors),
                "--journal",
                str(journal),
            ],
            None,
            1,
        ),
        (
            ["-vv", "import", str(members), *common, "--no-progress"],
            {"LOSANT_API_URL": url, "LOSANT_API_TOKEN": TOKEN},
            1,
        ),
        (["-vv", "list", *common, "--url", url, "--token", TOKEN, "--format", "json"], None, 0),
        (
            [
                "-vv",
                "add",
                *common,
                "--email",
                "bad",
                "--role",
                "view",
                "--url",
                url,
                "--token",
                TOKEN,
            ],
            None,
            2,
        ),
        (
            [
                "-vv",
                "add",
                *common,
                "--email",
                "z@example.com",
                "--role",
                "view",
                "--url",
                url,
                "--token",
                WRONG,
            ],
            None,
            3,
        ),
        (["-vv", "list", "--instance", UNKNOWN_IID, "--url", url, "--token", TOKEN], None, 3),
        (["list", *common, "--url", "http://api.example.com", "--token", TOKEN], None, 2),
        (
            ["import", str(members), *common, "--concurrency", "0", "--url", url, "--token", TOKEN],
            None,
            2,
        ),
        (["-vv", "list", *common, "--url", url], {"LOSANT_API_TOKEN": READ_ONLY + "\n"}, None),
        (["--token", TOKEN, "--bogus-option"], None, 2),
        (
            ["-vv", "list", *common, "--url", "http://127.0.0.1:9", "--token", TOKEN],
            None,
            4,
        ),  # unreachable: exit 4 (SPEC 3)
    ]
    outputs: list[str] = []
    for args, env, want in runs:
        code, output = await cli(*args, env=env)
        assert_clean(output, f"into the output of {' '.join(a for a in args if a not in SECRETS)}")
        if want is not None:
            assert code == want, (args, code, output[-2000:])
        outputs.append(output)
    assert_clean(errors.read_text() + journal.read_text(), "into the report or journal")
    # -vv did log the retries (so the check covers log lines), and errors were shown.
    assert "retrying" in outputs[0]
    assert "Unauthorized" in outputs[4]


# -- the token given where something else belongs (found by an outside attack) -------------

MISPLACED = [
    ["list", "--instance", TOKEN],
    ["add", "--instance", IID, "--user-id", TOKEN, "--role", "view"],
    ["add", "--instance", IID, "--email", TOKEN, "--role", "view"],
    ["import", TOKEN, "--instance", IID],
    ["list", "--instance", IID, "--sort-field", TOKEN],
    ["sync", "m.csv", "--instance", IID, "--max-removals", TOKEN],
    ["--url", f"http://127.0.0.1:9/?access_token={TOKEN}", "list", "--instance", IID],
    ["--url", f"http://{TOKEN.upper()}.example.com/", "list", "--instance", IID],
]


@pytest.mark.parametrize("args", MISPLACED, ids=lambda a: " ".join(a[:2]))
@pytest.mark.parametrize("given", ["env", "option"])
async def test_a_usage_error_never_quotes_the_token(
    args: list[str], given: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A usage error quotes the value it refused: before, the token put in --instance,
    --user-id, a FILE argument or the URL was printed in full (and a host name in lower
    case, as yarl reads it)."""
    from tests.test_cli import run

    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.csv").write_text("email,role\n")
    if given == "env":
        result = await run(
            None, "--url", "http://127.0.0.1:9", *args, token=None, env={"LOSANT_API_TOKEN": TOKEN}
        )
    else:
        result = await run(None, "--url", "http://127.0.0.1:9", "--token", TOKEN, *args, token=None)
    assert result.exit_code == 2, result.output
    assert "Error:" in result.stderr
    assert TOKEN.lower() not in result.output.lower(), result.output


async def test_a_redirect_to_the_token_in_capitals_as_a_host_is_masked() -> None:
    """The Location header is masked where it spells the token; a host name is read in
    lower case, so a token of lower-case letters spelled in capitals came out whole."""
    token = "0123456789abcdef0123456789abcdef"

    async def redirect(request: web.Request) -> web.Response:
        # The header as sent (web.HTTPFound would lower-case the host through yarl).
        return web.Response(
            status=302, headers={"Location": f"http://{token.upper()}.evil.example/"}
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", redirect)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        async with am.Client(token, url=f"http://127.0.0.1:{runner.addresses[0][1]}") as c:
            with pytest.raises(am.RedirectError, match=r"to \*\*\*\.evil\.example") as info:
                await c.instance_members.get(instanceId=IID)
    finally:
        await runner.cleanup()
    assert token not in error_text(info.value).lower()


async def test_a_token_too_short_to_mask_does_not_blot_out_usage_errors() -> None:
    """A token shorter than the transport masks (8 characters) is not masked in usage
    errors either: masking "ab" would garble the message that says what was wrong."""
    from tests.test_cli import run

    result = await run(
        None, "--url", "http://127.0.0.1:9", "--token", "ab", "list", "--instance", "labrador",
        token=None,
    )  # fmt: skip
    assert result.exit_code == 2
    assert "'labrador'" in result.stderr, result.stderr
