"""The fast path (loyalty.http.fastpath) answers exactly as Litestar does.

Two apps share the database: one with the fast path (the default), the
reference with ``fast_path=False`` (every request through Litestar). Each
request of a corpus goes to both at the raw ASGI level and the answers are
compared: status, headers (sorted; ``x-request-id`` and the seconds until the
rate limit resets aside) and body bytes. Each app has its own keys of the
same scopes (each app counts its own rate limits), sent the same requests in
the same order, so ``RateLimit-Remaining`` matches too. Every case also says
whether the fast path takes the request or hands it to Litestar, so a fast
path that handed everything on could not pass.

Reads compare byte for byte. Writes go to a customer of each app with the
same history, so balances match; their ids and timestamps are masked.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import quote

import httpx
import pytest
from litestar import Litestar
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty import metrics
from loyalty.app import create_app, start_services, stop_services
from loyalty.auth import service as auth_service
from loyalty.auth.tokens import token_prefix
from loyalty.db.engine import Database
from loyalty.settings import RATE_LIMIT_PATTERN, Settings
from tests.support.rewards import FIVE_OFF, REDEEM, REDEEMABLE, REWARDS, TEN_PERCENT
from tests.support.tenant import create_key, create_merchant

CUSTOMERS = "/api/v1/public/customers"
TRANSACTIONS = "/api/v1/public/customers/transactions"
BODY_MAX = Settings().request_body_bytes_max
SECONDS_PER_ANSWER = 30.0
# An id of the widest length Litestar accepts (255) and one past it.
LONGEST_ID = "i" * 255
# A valid email (by the pattern) one character longer than the 254 allowed.
LONG_EMAIL = "e" * 243 + "@example.com"

Headers = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class Step:
    """One request, as templates: ``{customer}``, ``{email}`` (percent-encoded),
    ``{idem}`` and ``{token}`` are filled in per app (see ``Context``)."""

    method: str = "GET"
    path: str = CUSTOMERS
    query: bytes = b"customer_id={customer}"
    # The scopes of the app's key sent as ``Authorization: Bearer`` ("all", a
    # scope list, "revoked", or a rate limit such as "2/minute"); None: no header.
    key: str | None = "all"
    # Sent instead of ``Bearer <token>`` ({token} is the key's).
    authorization: bytes | None = None
    authorization_name: bytes = b"authorization"
    headers: Headers = ()
    # The body, sent in one message with its Content-Length.
    body: bytes | None = None
    # Content-Length instead of the body's length; b"" sends none.
    content_length: bytes | None = None
    # The body in this many messages (``more_body``).
    parts: int = 1
    # The body in these messages, with ``Transfer-Encoding: chunked``.
    chunks: tuple[bytes, ...] | None = None
    host: bytes = b"loyalty.test"
    # The status Litestar answers (the reference), None: any.
    status: int | None = None
    # Whether the fast path takes the request (False: it hands it to Litestar).
    fast: bool = True


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    steps: tuple[Step, ...]


def case(name: str, *steps: Step) -> Any:
    return pytest.param(Case(name, steps), id=name)


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    # What the application raised instead of answering (a server would answer 500).
    raised: str | None
    request_id: str | None
    # The fast path set the route template and Litestar's router never saw the request.
    taken_by_fast_path: bool


@dataclass
class Context:
    """What one app's requests name: its customer, idempotency key and keys' tokens."""

    customer: str
    email: str
    idem: str
    # Another customer, whose id is not ASCII.
    accented: str = "café"
    tokens: dict[str, str] = field(default_factory=dict)

    def fill(self, template: bytes, key: str | None) -> bytes:
        filled = (
            template.replace(b"{customer}", quote(self.customer, safe="").encode())
            .replace(b"{email}", quote(self.email, safe="").encode())
            .replace(b"{EMAIL}", quote(self.email.upper(), safe="").encode())
            .replace(b"{accented}", quote(self.accented, safe="").encode())
            .replace(b"{accented-raw}", self.accented.encode())
            .replace(b"{idem}", self.idem.encode())
        )
        if key is not None:
            filled = filled.replace(b"{token}", self.tokens[key].encode())
        return filled

    def mask(self, data: bytes) -> bytes:
        """``data`` with what differs between the two apps' requests masked."""
        for value, placeholder in (
            (self.email, b"<email>"),
            (self.customer, b"<customer>"),
            (self.idem, b"<idem>"),
        ):
            data = data.replace(value.encode(), placeholder)
            data = data.replace(value.lower().encode(), placeholder)
        for name, token in self.tokens.items():
            prefix = token_prefix(token)
            assert prefix is not None
            data = data.replace(f"api_key:{prefix}".encode(), f"api_key:<{name}>".encode())
        return data


async def exchange(
    app: Litestar,
    method: str,
    path: str,
    query: bytes,
    headers: Headers,
    chunks: tuple[bytes, ...] = (b"",),
) -> Answer:
    """``app``'s answer to one request, sent as an ASGI server would send it."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": list(headers),
        "client": ("127.0.0.1", 51000),
        "server": ("loyalty.test", 80),
        "state": {},
    }
    messages = [
        {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
        for index, chunk in enumerate(chunks)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()  # the client waits for the answer
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    # A task of its own, as under a server: what a request sets in contextvars
    # (the request id, the audit actor) does not leak into the next one.
    task = asyncio.create_task(app(cast("Any", scope), cast("Any", receive), cast("Any", send)))
    raised = None
    try:
        await asyncio.wait_for(task, SECONDS_PER_ANSWER)
    except Exception as error:  # what a server would log before answering 500
        raised = f"{type(error).__name__}: {error}"
    taken = "path_template" in scope and "route_handler" not in scope
    if raised is not None:
        return Answer(500, (), b"", raised, None, taken)
    starts = [message for message in sent if message["type"] == "http.response.start"]
    bodies = [message for message in sent if message["type"] == "http.response.body"]
    assert len(starts) == 1, sent
    assert sent[0] is starts[0], sent
    assert bodies, sent
    assert not bodies[-1].get("more_body", False), sent
    body = b"".join(message.get("body", b"") for message in bodies)
    response_headers = [
        (bytes(name).decode("latin-1"), bytes(value).decode("latin-1"))
        for name, value in starts[0].get("headers", ())
    ]
    request_ids = [value for name, value in response_headers if name.lower() == "x-request-id"]
    assert len(request_ids) == 1, f"x-request-id once: {response_headers}"
    kept = tuple(
        sorted((name, value) for name, value in response_headers if name != "x-request-id")
    )
    return Answer(starts[0]["status"], kept, body, None, request_ids[0], taken)


async def send_step(app: Litestar, step: Step, context: Context) -> Answer:
    headers: list[tuple[bytes, bytes]] = [(b"host", step.host)]
    if step.authorization is not None:
        headers.append((step.authorization_name, context.fill(step.authorization, step.key)))
    elif step.key is not None:
        bearer = f"Bearer {context.tokens[step.key]}".encode()
        headers.append((step.authorization_name, bearer))
    headers.extend((name, context.fill(value, step.key)) for name, value in step.headers)
    chunks: tuple[bytes, ...] = (b"",)
    if step.chunks is not None:
        headers.append((b"transfer-encoding", b"chunked"))
        chunks = tuple(context.fill(chunk, step.key) for chunk in step.chunks)
    elif step.body is not None:
        body = context.fill(step.body, step.key)
        length = str(len(body)).encode() if step.content_length is None else step.content_length
        if length:
            headers.append((b"content-length", length))
        size = -(-len(body) // step.parts) or 1
        chunks = tuple(body[start : start + size] for start in range(0, len(body), size)) or (b"",)
        assert len(chunks) == step.parts, "a body too short for its parts"
    return await exchange(
        app, step.method, step.path, context.fill(step.query, step.key), tuple(headers), chunks
    )


_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TIMESTAMP = re.compile(
    rb"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
)


def comparable(answer: Answer, context: Context, *, volatile: bool) -> dict[str, Any]:
    """What must be equal between the two apps' answers: the status, the headers
    and the body, without the seconds until the rate limit resets (an app may
    cross a second boundary the other did not); for writes (``volatile``) with
    the new rows' ids and timestamps masked too."""
    if answer.raised is not None:
        return {"raised": answer.raised}
    headers = dict(answer.headers)
    assert len(headers) == len(answer.headers), f"a header repeated: {answer.headers}"
    assert headers.get("content-length") == str(len(answer.body)), answer
    body = context.mask(answer.body)
    if "ratelimit-limit" in headers:
        reset = headers["ratelimit-reset"]
        assert reset.isdigit(), answer
        headers["ratelimit-reset"] = "<seconds>"
        if answer.status == 429:
            retry_after = str(max(int(reset), 1))
            assert headers.pop("retry-after") == retry_after, answer
            headers["retry-after"] = "<seconds>"
            body = body.replace(f"retry in {reset} s.".encode(), b"retry in <seconds> s.")
            body = body.replace(f'"retry_after":{retry_after}'.encode(), b'"retry_after":"<s>"')
    else:
        assert "ratelimit-reset" not in headers, answer
        assert "retry-after" not in headers, answer
    if "allow" in headers:
        # Litestar lists a route's methods in set order, which varies between two
        # instances of the same app (fast path or not).
        headers["allow"] = ", ".join(sorted(headers["allow"].split(", ")))
    if volatile:
        headers["content-length"] = "<length>"
        body = _TIMESTAMP.sub(b"<time>", _UUID.sub(b"<uuid>", body))
    return {
        "status": answer.status,
        "headers": sorted(
            (name, context.mask(value.encode()).decode()) for name, value in headers.items()
        ),
        "body": body,
    }


@dataclass(frozen=True, slots=True)
class Apps:
    fast: Litestar
    reference: Litestar
    database: Database
    settings: Settings


@pytest.fixture(scope="module")
async def apps(settings: Settings, database: Database) -> AsyncIterator[Apps]:
    """The app with the fast path and the reference, on the same database."""
    assert settings.fast_path
    assert settings.request_body_bytes_max == BODY_MAX
    reference_settings = dataclasses.replace(settings, fast_path=False)
    fast = create_app(settings, database)
    reference = create_app(reference_settings, database)
    await start_services(fast, settings, database)
    await start_services(reference, reference_settings, database)
    try:
        yield Apps(fast, reference, database, settings)
    finally:
        await stop_services(fast, dispose_database=False)
        await stop_services(reference, dispose_database=False)


@dataclass(frozen=True, slots=True)
class Shop:
    """A merchant with rewards, a customer who redeemed one and has points left,
    and a key for the setting up (never one the compared requests use)."""

    merchant_id: uuid.UUID
    setup_token: str
    reader: str
    reader_email: str
    accented: str


async def api(
    apps: Apps, token: str, method: str, path: str, json: Any = None, **params: str
) -> Any:
    """A call for the setting up, through the reference app."""
    transport = httpx.ASGITransport(app=cast("Any", apps.reference))
    async with httpx.AsyncClient(transport=transport, base_url="http://loyalty.test") as client:
        response = await client.request(
            method,
            path,
            params=params,
            json=json,
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code in (200, 201), response.text
    return response.json()


async def enrol(apps: Apps, token: str, customer_id: str, email: str, points: int) -> None:
    body = {"customer_id": customer_id, "email": email}
    await api(apps, token, "POST", CUSTOMERS, body)
    if points:
        credit = {"points": points, "description": "opening balance"}
        await api(apps, token, "POST", TRANSACTIONS, credit, customer_id=customer_id)


@pytest.fixture(scope="module")
async def shop(apps: Apps) -> Shop:
    merchant_id = await create_merchant(apps.database, "Fast shop")
    token = await create_key(apps.database, merchant_id)
    suffix = uuid.uuid4().hex[:8]
    reader, email = f"reader-{suffix}", f"Reader.{suffix}@Example.com"
    await api(apps, token, "POST", REWARDS, FIVE_OFF)
    await api(apps, token, "POST", REWARDS, TEN_PERCENT)
    five = await api(apps, token, "POST", REWARDS, {**FIVE_OFF, "name": "Another $5 off"})
    await enrol(apps, token, reader, email, 1200)
    await api(apps, token, "POST", REDEEM, {"reward_id": five["data"]["id"]}, customer_id=reader)
    accented = f"café-{suffix}"
    await enrol(apps, token, accented, f"cafe.{suffix}@example.com", 40)
    return Shop(merchant_id, token, reader, email, accented)


class Keys:
    """Each app's keys of the shop, made when a case first names their scopes."""

    def __init__(self, database: Database, merchant_id: uuid.UUID) -> None:
        self.database = database
        self.merchant_id = merchant_id

    async def fill(self, context: Context, names: set[str]) -> None:
        for name in names - set(context.tokens):
            context.tokens[name] = await self._create(name)

    async def _create(self, name: str) -> str:
        limited = RATE_LIMIT_PATTERN.match(name) is not None

        async def work(connection: AsyncConnection) -> str:
            key = await auth_service.create_key(
                connection,
                merchant_id=self.merchant_id,
                scopes="all" if limited or name == "revoked" else name,
                rate_limit=name if limited else None,
            )
            if name == "revoked":
                await auth_service.revoke_key(connection, key.prefix)
            return key.token

        return await self.database.transaction(work)


@dataclass
class Pair:
    apps: Apps
    keys: Keys
    fast: Context
    reference: Context

    async def compare(self, test_case: Case, *, volatile: bool) -> list[Answer]:
        """Send each step to both apps (fast first); the fast path's answers."""
        names = {step.key for step in test_case.steps if step.key is not None}
        await self.keys.fill(self.fast, names)
        await self.keys.fill(self.reference, names)
        answers = []
        for index, step in enumerate(test_case.steps):
            fast = await send_step(self.apps.fast, step, self.fast)
            reference = await send_step(self.apps.reference, step, self.reference)
            where = f"{test_case.name}, step {index + 1}"
            assert not reference.taken_by_fast_path, where
            assert step.status in (None, reference.status), f"{where}: {reference}"
            assert fast.taken_by_fast_path is step.fast, (
                f"{where}: the fast path {'did not take' if step.fast else 'took'} it: {fast}"
            )
            assert comparable(fast, self.fast, volatile=volatile) == comparable(
                reference, self.reference, volatile=volatile
            ), f"{where}: fast path {fast} != Litestar {reference}"
            given = dict(step.headers).get(b"x-request-id")
            if given is not None and fast.raised is None:
                # A safe request id is echoed, another replaced, on both paths alike.
                echoed = given if re.fullmatch(rb"[A-Za-z0-9._-]{1,64}", given) else None
                for answer in (fast, reference):
                    assert answer.request_id is not None, where
                    assert (answer.request_id.encode() == given) is (echoed is not None), where
            answers.append(fast)
        return answers


@pytest.fixture
def readers(apps: Apps, shop: Shop) -> Pair:
    """Both apps read the shop's customer (reads change nothing), with fresh keys."""
    keys = Keys(apps.database, shop.merchant_id)
    idem = uuid.uuid4().hex
    return Pair(
        apps,
        keys,
        Context(shop.reader, shop.reader_email, idem, shop.accented),
        Context(shop.reader, shop.reader_email, idem, shop.accented),
    )


@pytest.fixture
async def writers(apps: Apps, shop: Shop) -> Pair:
    """Each app writes to a customer of its own with the same email and 100 points."""
    keys = Keys(apps.database, shop.merchant_id)
    suffix = uuid.uuid4().hex[:12]
    contexts = []
    for app_name in ("a", "b"):
        customer = f"writer-{app_name}-{suffix}"
        email = f"writer.{app_name}.{suffix}@example.com"
        await enrol(apps, shop.setup_token, customer, email, 100)
        contexts.append(Context(customer, email, f"idem-{app_name}-{suffix}"))
    return Pair(apps, keys, contexts[0], contexts[1])


def _read_cases(path: str, scope: str, other_scope: str) -> list[Any]:
    name = "customer" if path == CUSTOMERS else "redeemable"

    def read(label: str, **fields: Any) -> Any:
        return case(f"{name}-{label}", Step(path=path, **fields))

    return [
        read("by-id", status=200),
        read("by-email", status=200, query=b"customer_email={email}"),
        read("by-email-upper-case", status=200, query=b"customer_email={EMAIL}"),
        read("by-email-spaces", status=200, query=b"customer_email=+{email}+"),
        read("unknown-id", status=404, query=b"customer_id=nobody-here"),
        read("unknown-email", status=404, query=b"customer_email=nobody%40example.com"),
        read("both-params", status=422, query=b"customer_id={customer}&customer_email={email}"),
        read(
            "both-params-other-customer", status=422, query=b"customer_id=x&customer_email={email}"
        ),
        read("neither-param", status=422, query=b""),
        read("only-other-params", status=422, query=b"limit=5&x"),
        read("empty-id", status=422, query=b"customer_id="),
        read("bare-id", status=422, query=b"customer_id"),
        read("empty-email", status=422, query=b"customer_email=", fast=False),
        read("longest-id", status=404, query=f"customer_id={LONGEST_ID}".encode()),
        read("id-too-long", status=422, query=f"customer_id={LONGEST_ID}i".encode(), fast=False),
        read(
            "email-too-long", status=422, query=f"customer_email={LONG_EMAIL}".encode(), fast=False
        ),
        read("email-bad-pattern", status=422, query=b"customer_email=not-an-email", fast=False),
        read(
            "email-bad-pattern-with-id",
            status=422,
            query=b"customer_id={customer}&customer_email=x@y",
            fast=False,
        ),
        read("id-repeated", status=404, query=b"customer_id={customer}&customer_id=x", fast=False),
        read(
            "id-repeated-same",
            status=200,
            query=b"customer_id={customer}&customer_id={customer}",
            fast=False,
        ),
        read(
            "id-repeated-encoded-name",
            status=404,
            query=b"customer_id=a&customer%5Fid=b",
            fast=False,
        ),
        read(
            "email-repeated",
            status=200,
            query=b"customer_email={email}&customer_email={email}",
            fast=False,
        ),
        read(
            "extra-param",
            status=200,
            query=b"customer_id={customer}&utm_source=widget&utm_source=again",
        ),
        read("semicolon", status=404, query=b"customer_id={customer};x=1"),
        read("plus-is-space", status=404, query=b"customer_id=nobody+here"),
        read("percent-utf8", status=404, query=b"customer_id=caf%C3%A9-" + b"x"),
        read("percent-not-utf8", status=404, query=b"customer_id=%FF%FE"),
        read("percent-broken", status=404, query=b"customer_id=%E2%82"),
        read("percent-truncated", status=404, query=b"customer_id=abc%2"),
        # uvicorn's parser refuses a raw non-ASCII byte in the target (400) before any
        # app sees it; in-process, Litestar raises on it and the fast path hands it on.
        read("raw-not-utf8", status=500, query=b"customer_id=\xff", fast=False),
        read("accented", status=200, query=b"customer_id={accented}"),
        read("accented-raw-utf8", status=404, query=b"customer_id={accented-raw}"),
        read("control-characters", status=422, query=b"customer_id=x%0D%0ASet-Cookie:%20a=b"),
        read("nul", status=422, query=b"customer_id=%00"),
        read("hash-in-query", status=404, query=b"customer_id={customer}#fragment"),
        case(f"{name}-trailing-slash", Step(path=path + "/", status=200, fast=False)),
        case(f"{name}-double-slash", Step(path="/" + path, status=200, fast=False)),
        read("head", status=405, method="HEAD", fast=False),
        read("post-to-a-read", status=405, method="PUT", fast=False),
        read("no-authorization", status=401, key=None),
        read("basic", status=401, authorization=b"Basic eDp5"),
        read("bearer-empty", status=401, authorization=b"Bearer "),
        read("bearer-lowercase", status=200, authorization=b"bearer {token}"),
        read("bearer-spaces", status=200, authorization=b"  Bearer   {token}  "),
        read("wrong-token", status=401, authorization=b"Bearer lk_wrong_0123456789abcdef"),
        read("not-a-token", status=401, authorization=b"Bearer \xff\xfe"),
        read("revoked-key", status=401, key="revoked"),
        read("scope-lacking", status=403, key=other_scope),
        read(
            "scope-lacking-bad-query",
            status=403,
            key=other_scope,
            query=b"customer_email=x",
            fast=False,
        ),
        read("scope-exact", status=200, key=scope),
        read(
            "authorization-twice",
            status=200,
            headers=((b"authorization", b"Bearer {token}"),),
            fast=False,
        ),
        read("request-id-given", status=200, headers=((b"x-request-id", b"req-fixed-42"),)),
        read("request-id-unsafe", status=200, headers=((b"x-request-id", b"a b"),)),
        read("host-with-port", status=200, host=b"loyalty.test:8080"),
        read("host-ipv6", status=200, host=b"[::1]:8000"),
        read("host-empty", status=200, host=b""),
        read("host-userinfo", status=200, host=b"user@loyalty.test", fast=False),
        read("host-invalid", status=400, host=b"bad host", fast=False),
        read("host-twice", status=200, headers=((b"host", b"other.test"),), fast=False),
        read(
            "authorization-name-upper-case",
            status=200,
            authorization_name=b"Authorization",
        ),
        read("body-on-a-read", status=200, body=b'{"ignored": true}'),
        read("chunked-body-on-a-read", status=200, chunks=(b"{", b"}")),
    ]


READ_CASES = [
    *_read_cases(CUSTOMERS, "customers:read", "rewards:read,transactions:write"),
    *_read_cases(REDEEMABLE, "rewards:read", "customers:read"),
]


@pytest.mark.parametrize("test_case", READ_CASES)
async def test_reads_answer_as_litestar_does(readers: Pair, test_case: Case) -> None:
    await readers.compare(test_case, volatile=False)


async def test_the_read_corpus_finds_the_customer_and_the_rewards(readers: Pair) -> None:
    """The corpus reads real data: the customer, its balance, a redeemed reward, and
    a catalogue with a reward it can redeem and one it cannot yet."""
    customer, redeemable, by_email = await readers.compare(
        Case(
            "data",
            (Step(), Step(path=REDEEMABLE), Step(path=REDEEMABLE, query=b"customer_email={email}")),
        ),
        volatile=False,
    )
    assert by_email.body == redeemable.body
    assert customer.status == 200
    assert b'"points_balance":700' in customer.body
    assert redeemable.status == 200
    assert b'"can_redeem":true' in redeemable.body
    assert b'"can_redeem":false' in redeemable.body
    assert b'"points_needed":300' in redeemable.body
    assert b'"discount_code":"' in redeemable.body


def _credit(points: bytes = b"10") -> bytes:
    return b'{"points": ' + points + b', "description": "Order #1001"}'


CREDIT = _credit()
PADDED = _credit(b"1")


def write(**fields: Any) -> Step:
    return Step(**{"method": "POST", "path": TRANSACTIONS, "body": CREDIT, **fields})


IDEM = ((b"idempotency-key", b"{idem}"),)
WRITE_CASES = [
    case("credit", write(status=201)),
    case("credit-in-three-messages", write(status=201, parts=3)),
    case("debit", write(status=201, body=_credit(b"-30"))),
    case("credit-by-email", write(status=201, query=b"customer_email={email}")),
    case("credit-decimal-refused", write(status=422, body=_credit(b"1.5"))),
    case(
        "idempotent-credit-and-replay",
        write(status=201, headers=IDEM),
        write(status=201, headers=IDEM),  # a replay
        write(status=422, headers=IDEM, body=_credit(b"11")),  # the key reused
        write(status=422, headers=IDEM, query=b"customer_id={customer}&again=1"),
        # The same body in another key order and spacing is the same request.
        write(status=201, headers=IDEM, body=b'{"description": "Order #1001", "points": 10}'),
        write(status=201),
    ),
    case(
        "idempotent-refusal-replayed",
        write(status=422, headers=IDEM, body=_credit(b"-5000")),
        write(status=422, headers=IDEM, body=_credit(b"-5000")),
    ),
    case("idempotency-key-empty", write(status=422, headers=((b"idempotency-key", b""),))),
    case(
        "idempotency-key-too-long", write(status=422, headers=((b"idempotency-key", b"k" * 300),))
    ),
    case("idempotency-key-control", write(status=422, headers=((b"idempotency-key", b"a\x01b"),))),
    case(
        "idempotency-key-twice",
        write(
            status=201,
            headers=((b"idempotency-key", b"{idem}"), (b"idempotency-key", b"{idem}-2")),
            fast=False,
        ),
    ),
    case("debit-beyond-balance", write(status=422, body=_credit(b"-1000"))),
    case("zero-points", write(status=422, body=_credit(b"0"))),
    case("points-as-string", write(status=422, body=_credit(b'"5"'), fast=False)),
    case("points-missing", write(status=422, body=b'{"description": "x"}', fast=False)),
    case(
        "unknown-field",
        write(status=422, body=b'{"points": 5, "description": "x", "extra": 1}', fast=False),
    ),
    case(
        "duplicate-json-key",
        write(status=201, body=b'{"points": 5, "points": 7, "description": "x"}'),
    ),
    case(
        "html-description",
        write(status=201, body=b'{"points": 5, "description": "<b>bold</b> move"}'),
    ),
    case(
        "pending-credit",
        write(status=201, body=b'{"points": 25, "description": "x", "pending_days": 7}'),
    ),
    case(
        "pending-debit-refused",
        write(status=422, body=b'{"points": -5, "description": "x", "pending_days": 7}'),
    ),
    case(
        "expiring-credit",
        write(
            status=201,
            body=b'{"points": 5, "description": "x", "expires_at": "2099-01-01T00:00:00Z"}',
        ),
    ),
    case("invalid-json", write(status=400, body=b'{"points": 5,', fast=False)),
    case(
        "invalid-json-in-two-messages",
        write(status=400, body=b'{"points": 5,', parts=2, fast=False),
    ),
    case("not-an-object", write(status=422, body=b"[1, 2]", fast=False)),
    case("empty-body", write(status=422, body=b"", fast=False)),
    case("whitespace-body", write(status=400, body=b"  \n", fast=False)),
    case("number-out-of-range", write(status=422, body=_credit(b"1e400"), fast=False)),
    case("no-content-length", write(status=201, content_length=b"", fast=False)),
    case("chunked", write(status=201, chunks=(CREDIT[:7], CREDIT[7:]), fast=False)),
    case(
        "content-length-signed",
        write(status=201, content_length=f"+{len(CREDIT)}".encode(), fast=False),
    ),
    case("content-length-not-a-number", write(status=400, content_length=b"ten", fast=False)),
    case(
        "content-length-leading-zero", write(status=201, content_length=f"0{len(CREDIT)}".encode())
    ),
    # Content-Lengths Litestar refuses (400) that pass ``str.isdigit`` but not ``int``:
    # "²" (Latin-1 0xB2) and more digits than Python converts (4300).
    case("content-length-superscript", write(status=400, content_length=b"\xb2", fast=False)),
    case(
        "content-length-4301-digits",
        write(status=400, content_length=b"0" * 4300 + b"1", fast=False),
    ),
    case("body-at-the-limit", write(status=201, body=PADDED + b" " * (BODY_MAX - len(PADDED)))),
    case(
        "body-over-the-limit",
        write(status=413, body=PADDED + b" " * (BODY_MAX + 1 - len(PADDED)), fast=False),
    ),
    case("content-type-text", write(status=201, headers=((b"content-type", b"text/plain"),))),
    case(
        "content-type-form",
        write(status=201, headers=((b"content-type", b"application/x-www-form-urlencoded"),)),
    ),
    case("unknown-customer", write(status=404, query=b"customer_id=nobody-here")),
    case("no-customer", write(status=422, query=b"")),
    case("id-too-long", write(status=422, query=f"customer_id={LONGEST_ID}i".encode(), fast=False)),
    case(
        "id-repeated",
        write(status=201, query=b"customer_id={customer}&customer_id={customer}", fast=False),
    ),
    case("trailing-slash", write(status=201, path=TRANSACTIONS + "/", fast=False)),
    case("no-authorization", write(status=401, key=None)),
    case("wrong-token", write(status=401, authorization=b"Bearer lk_wrong_0123456789abcdef")),
    case("no-authorization-bad-body", write(status=401, key=None, body=b"{", fast=False)),
    case("scope-lacking", write(status=403, key="transactions:read,customers:read")),
    case(
        "scope-lacking-bad-body", write(status=403, key="transactions:read", body=b"{", fast=False)
    ),
    case(
        "scope-lacking-over-the-limit",
        write(status=403, key="customers:read", body=b" " * (BODY_MAX + 1), fast=False),
    ),
    case("revoked-key", write(status=401, key="revoked")),
    case("get-is-the-activity-log", Step(path=TRANSACTIONS, status=200, fast=False)),
]


@pytest.mark.parametrize("test_case", WRITE_CASES)
async def test_writes_answer_as_litestar_does(writers: Pair, test_case: Case) -> None:
    await writers.compare(test_case, volatile=True)
    # Both customers went through the same movements.
    (balance,) = await writers.compare(Case("balance", (Step(status=200),)), volatile=True)
    assert b'"points_balance":' in balance.body


async def test_the_write_corpus_moves_points_and_replays(writers: Pair) -> None:
    """The write cases are real movements: a credit, a replay, a refusal."""
    fresh, replay, conflict, debit = await writers.compare(
        Case(
            "moves",
            (
                write(headers=IDEM),
                write(headers=IDEM),
                write(headers=IDEM, body=_credit(b"12")),
                write(body=_credit(b"-1000")),
            ),
        ),
        volatile=True,
    )
    assert (fresh.status, replay.status, conflict.status, debit.status) == (201, 201, 422, 422)
    assert ("idempotent-replayed", "true") not in fresh.headers
    assert ("idempotent-replayed", "true") in replay.headers
    assert replay.body == fresh.body
    assert b"idempotency_key_reused" in conflict.body
    assert b"insufficient_points" in debit.body
    (customer,) = await writers.compare(Case("balance", (Step(),)), volatile=True)
    assert b'"points_balance":110' in customer.body


@pytest.mark.parametrize(
    "test_case",
    [
        case(
            "reads-then-refused",
            Step(key="2/minute", status=200),
            Step(key="2/minute", status=200, path=REDEEMABLE),
            Step(key="2/minute", status=429),
            Step(key="2/minute", status=429, path=REDEEMABLE),
        ),
        case(
            "writes-then-refused",
            write(key="2/minute", status=201),
            write(key="2/minute", status=201, headers=IDEM),
            write(key="2/minute", status=429, headers=IDEM),  # refused before the replay
            write(key="2/minute", status=429, body=b"{", fast=False),
            Step(
                key="2/minute", status=429, query=f"customer_id={LONGEST_ID}i".encode(), fast=False
            ),
        ),
        case(
            "handed-on-requests-count-once",
            Step(key="2/minute", status=404, query=b"customer_id=x&customer_id=y", fast=False),
            write(key="2/minute", status=422, body=_credit(b'"5"'), fast=False),
            write(key="2/minute", status=429),
            Step(key="2/minute", status=429),
        ),
    ],
)
async def test_rate_limits_count_and_refuse_as_litestar_does(
    writers: Pair, test_case: Case
) -> None:
    """Two requests a minute: every request with the key counts once, whichever path
    serves it or refuses it, and the third is refused alike (with Retry-After)."""
    answers = await writers.compare(test_case, volatile=True)
    assert all(("ratelimit-limit", "2") in answer.headers for answer in answers)
    assert [dict(answer.headers)["ratelimit-remaining"] for answer in answers[:2]] == ["1", "0"]
    assert all("retry-after" in dict(answer.headers) for answer in answers[2:])
    # A refused write moved nothing.
    credited = 10 * sum(answer.status == 201 for answer in answers)
    (customer,) = await writers.compare(Case("balance", (Step(status=200),)), volatile=True)
    assert f'"points_balance":{100 + credited}'.encode() in customer.body


async def test_an_idempotent_retry_may_cross_paths(writers: Pair) -> None:
    """A write first served by one path and retried through the other is a replay:
    both compute the request's fingerprint alike (method, path, raw query, body)."""
    apps = writers.apps
    context = writers.fast
    await writers.keys.fill(context, {"all"})
    query = b"customer_id={customer}&note=caf%C3%A9+%26+more&raw=caf\xc3\xa9"
    for first, then in ((apps.fast, apps.reference), (apps.reference, apps.fast)):
        context.idem = f"cross-{uuid.uuid4().hex}"
        step = write(headers=IDEM, query=query, body=b'{"points":7, "description":"retry"}')
        fresh = await send_step(first, step, context)
        retried = await send_step(then, step, context)
        assert fresh.taken_by_fast_path is (first is apps.fast)
        assert retried.taken_by_fast_path is (then is apps.fast)
        assert fresh.status == retried.status == 201, (fresh, retried)
        assert ("idempotent-replayed", "true") not in fresh.headers
        assert ("idempotent-replayed", "true") in retried.headers
        assert retried.body == fresh.body
        # The same key with another body is refused on either path.
        other = dataclasses.replace(step, body=b'{"points":8, "description":"retry"}')
        for app in (apps.fast, apps.reference):
            reused = await send_step(app, other, context)
            assert reused.status == 422, reused
            assert b"idempotency_key_reused" in reused.body


def http_requests(method: str, route: str, status: str) -> float:
    text = metrics.exposition().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "loyalty_http_requests_total"
        and sample.labels == {"method": method, "route": route, "status": status}
    )


@pytest.mark.parametrize(
    ("step", "route", "status"),
    [
        (Step(), CUSTOMERS, "200"),
        (Step(query=b"customer_id=nobody"), CUSTOMERS, "404"),
        (Step(path=REDEEMABLE), REDEEMABLE, "200"),
        (write(), TRANSACTIONS, "201"),
        (write(key=None), TRANSACTIONS, "401"),
    ],
)
async def test_the_fast_path_labels_requests_with_the_route_template(
    writers: Pair, step: Step, route: str, status: str
) -> None:
    await writers.keys.fill(writers.fast, {"all"})
    await writers.keys.fill(writers.reference, {"all"})
    for app, context in (
        (writers.apps.fast, writers.fast),
        (writers.apps.reference, writers.reference),
    ):
        before = http_requests(step.method, route, status)
        answer = await send_step(app, step, context)
        assert answer.taken_by_fast_path is (app is writers.apps.fast)
        assert answer.status == int(status)
        assert http_requests(step.method, route, status) == before + 1
