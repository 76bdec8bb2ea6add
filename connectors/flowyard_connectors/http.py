"""http: a webhook route as a source, an HTTP request as a target.

Source: the runtime's web server routes `POST /hooks/{flow}` to the endpoint this source
registers with the runtime's webhook routes (`context.services.webhooks`) while it runs. Every request must prove who sent it (an HMAC
signature, or a bearer token, both from secrets; comparisons take constant time). The
signature covers `TIMESTAMP.BODY`, with the time of signing in its own header: a request
outside the tolerance window, or whose signature was already used inside it, is refused
(see `ReplayGuard` for what is remembered where). Every request must fit the size
limit, and is answered 202 only after `accept` returned, that is after the message is
stored: a partner that got 202 may forget the message.

Target: one request per message with httpx: method, a URL template, headers (secrets as
references), timeout, TLS options, which statuses count as success, an Idempotency-Key
header carrying the delivery's key, and OAuth2 client credentials. The host is resolved
and checked against the address allowlist (see `netguard`) before every request and
every redirect. Redirects are followed only within the first URL's origin, with the same
method and body (so 307/308, or 301/302/303 of a GET): a redirect to another origin would
carry the credentials there, and a 301/302/303 after a POST would deliver nothing; both
are failed deliveries naming where the server pointed. Network failures, 408, 429 and 5xx are retryable; other refusals are
not (retrying a 400 only repeats it).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ssl
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

import httpx
from pydantic import Field, field_validator, model_validator

from flowyard.connector import Accept, Connector, Source, Target
from flowyard.errors import DeliveryError
from flowyard.message import Message
from flowyard.options import Duration, Options, SecretRef
from flowyard.sandbox import make_environment
from flowyard.secrets import REFERENCE_PATTERN, redactor
from flowyard.step import FlowContext

from .netguard import AddressGuard

# ---------------------------------------------------------------- source (webhook)


class HttpSourceOptions(Options):
    token: SecretRef | None = Field(
        None, description="bearer token the caller must send: Authorization: Bearer TOKEN"
    )
    hmac_secret: SecretRef | None = Field(
        None, description="key of the HMAC-SHA256 signature of the body the caller must send"
    )
    signature_header: str = Field(
        "X-Signature-256", description="header holding the signature, as sha256=HEX or HEX"
    )
    timestamp_header: str = Field(
        "X-Signature-Timestamp",
        description="header with the time of signing (Unix seconds); the signature covers TIMESTAMP.BODY",
    )
    tolerance: Duration = Field(  # type: ignore[assignment]
        "5m", description="signed requests older or newer than this (against our clock) are refused as replays"
    )
    signed_timestamp: bool = Field(
        True,
        description="false: the signature covers the body only, with no replay protection (partners that cannot sign a time)",
    )
    allow_unauthenticated: bool = Field(
        False,
        description="accept requests without a token or signature (only on a trusted network)",
    )
    max_bytes: int = Field(
        10 * 1024 * 1024, gt=0, description="largest body accepted; larger requests get 413"
    )
    content_type: str | None = Field(
        None, description="content type of the messages (default: the request's Content-Type)"
    )

    @model_validator(mode="after")
    def _needs_auth(self) -> HttpSourceOptions:
        if not (self.token or self.hmac_secret or self.allow_unauthenticated):
            raise ValueError(
                "a webhook needs `token: ${secret:NAME}` or `hmac_secret: ${secret:NAME}` "
                "(or allow_unauthenticated: true on a trusted network)"
            )
        return self


HIDDEN_HEADERS = {"authorization", "cookie", "proxy-authorization"}
REPLAY_CACHE_SIZE = 100_000


class ReplayGuard:
    """Signatures seen within the tolerance window, in memory, per runtime process.

    Why not in the store: a replay has to be refused before anything is written, and a
    database round trip per webhook call is the cost the webhook path avoids. What this
    means: a redeploy of the flow keeps them (`replay_guards`), but after a restart of
    the runtime the memory is empty, and each worker process has its own, so
    a request captured in the last few minutes could be accepted once more by a freshly
    started or a different worker. The timestamp still bounds that to the tolerance
    window, and a partner's Idempotency-Key lets the store keep such a repeat once.
    The cache is bounded: when it is full of signatures still inside the window, new
    signed requests get 503 (send later) rather than being let in unguarded."""

    def __init__(self, limit: int = REPLAY_CACHE_SIZE) -> None:
        self.limit = limit
        self.seen: OrderedDict[str, float] = OrderedDict()  # signature -> forget after (Unix time)

    def claim(self, signature: str, until: float) -> bool:
        """False when `signature` was seen and is still inside its window."""
        now = time.time()
        while self.seen:
            first, expires = next(iter(self.seen.items()))
            if expires >= now:
                break
            del self.seen[first]
        if signature in self.seen:
            return False
        if len(self.seen) >= self.limit:
            raise ReplayCacheFull
        self.seen[signature] = until
        return True

    def release(self, signature: str) -> None:
        self.seen.pop(signature, None)


class ReplayCacheFull(Exception):
    """More signed requests inside the window than the replay cache holds."""


@dataclass
class WebhookEndpoint:
    """What `POST /hooks/{flow}` calls; the runtime passes the headers and the raw body.

    The runtime should refuse a Content-Length above `max_bytes` before reading the
    body; `handle` checks the size again for chunked requests."""

    flow: str
    options: HttpSourceOptions
    accept: Accept
    source: HttpSource
    token: str | None = None
    key: bytes | None = None
    received: int = field(default=0)
    replays: ReplayGuard = field(default_factory=lambda: ReplayGuard())
    claimed: str | None = None

    @property
    def max_bytes(self) -> int:
        return self.options.max_bytes

    def check_signature(self, headers: Mapping[str, str], body: bytes) -> tuple[str | None, str | None]:
        """(reason for refusing, or None; the signature to remember against replays)."""
        assert self.key is not None
        options = self.options
        given = headers.get(options.signature_header.lower(), "").strip()
        given = given.split("=", 1)[1] if given.lower().startswith("sha256=") else given
        if not given:
            return f"missing signature header {options.signature_header}", None
        if not options.signed_timestamp:
            expected = hmac.new(self.key, body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(given.lower(), expected):
                return "the signature does not match the body", None
            return None, None
        stamp = headers.get(options.timestamp_header.lower(), "").strip()
        if not stamp.isdigit():
            what = "missing" if not stamp else f"unreadable ({stamp[:20]!r}, expected Unix seconds)"
            return f"{what} timestamp header {options.timestamp_header}; sign TIMESTAMP.BODY", None
        expected = hmac.new(self.key, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(given.lower(), expected):
            return f"the signature does not match {options.timestamp_header}.BODY", None
        skew = time.time() - int(stamp)
        window = options.tolerance.total_seconds()
        if abs(skew) > window:
            when = f"{abs(skew):.0f} s {'old' if skew > 0 else 'in the future'}"
            return f"the signed timestamp is {when}, outside the {window:.0f} s tolerance (replayed or clock off)", None
        if not self.replays.claim(expected, int(stamp) + window):
            return "this signature was already used: a replayed request", None
        return None, expected

    def authenticate(self, headers: Mapping[str, str], body: bytes) -> str | None:
        """None when the caller proved who it is, else the reason it did not. A signature
        that passes is claimed against replays (see `handle`, which releases it when the
        message could not be stored, so the caller's retry is not taken for a replay)."""
        self.claimed = None
        if self.key is not None:
            problem, self.claimed = self.check_signature(headers, body)
            if problem is not None:
                return problem
        if self.token is not None:
            auth = headers.get("authorization", "")
            scheme, _, value = auth.partition(" ")
            problem = None
            if scheme.lower() != "bearer" or not value:
                problem = "missing bearer token"
            elif not hmac.compare_digest(value.strip().encode(), self.token.encode()):
                problem = "wrong bearer token"
            if problem is not None:
                self.release()
                return problem
        return None

    def release(self) -> None:
        if self.claimed is not None:
            self.replays.release(self.claimed)
            self.claimed = None

    async def handle(self, headers: Mapping[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        """Authenticate, check the size, store the message; (status, JSON body)."""
        lowered = {k.lower(): v for k, v in headers.items()}
        if len(body) > self.max_bytes:
            return 413, {"error": f"the body is larger than {self.max_bytes} bytes"}
        try:
            problem = self.authenticate(lowered, body)
        except ReplayCacheFull:
            self.source.health.failed("webhook replay cache full: signed requests refused with 503 until it frees up")
            return 503, {"error": "too many signed requests in the replay window; send again later"}
        if problem is not None:
            self.source.health.details["refused"] = self.source.health.details.get("refused", 0) + 1
            return 401, {"error": problem}
        claimed, self.claimed = self.claimed, None  # this request's, before any await
        content_type = self.options.content_type or lowered.get(
            "content-type", "application/octet-stream"
        )
        message = Message(
            payload=bytes(body),
            content_type=content_type.split(";", 1)[0].strip() or "application/octet-stream",
            source={
                "connector": "http",
                "headers": {
                    k: v
                    for k, v in lowered.items()
                    if k not in HIDDEN_HEADERS and k != self.options.signature_header.lower()
                },
                "size": len(body),
                "key": lowered.get("idempotency-key"),  # a client's retry is stored once
            },
        )
        try:
            await self.accept(message)
        except Exception as exc:  # the store is down: the caller must send again later
            if claimed is not None:  # its retry, same signature, must not count as a replay
                self.replays.release(claimed)
            self.source.health.failed(redactor.redact(f"could not store a webhook message: {exc}"))
            return 503, {"error": "the message could not be stored; send it again later"}
        self.received += 1
        self.source.health.ok()
        return 202, {"id": message.id, "correlation_id": message.correlation_id}


replay_guards: dict[str, ReplayGuard] = {}
"""Flow name -> its used signatures; kept across a redeploy of the flow in this process."""


class HttpSource(Source[HttpSourceOptions]):
    def __init__(self, options: HttpSourceOptions, context: FlowContext) -> None:
        super().__init__(options, context)
        self.endpoint: WebhookEndpoint | None = None

    async def run(self, accept: Accept) -> None:
        name = self.context.flow_name or self.context.flow_file.stem
        secrets = self.context.secrets
        token = secrets.resolve(self.options.token) if self.options.token else None
        key = (
            secrets.resolve(self.options.hmac_secret).encode() if self.options.hmac_secret else None
        )
        self.endpoint = WebhookEndpoint(
            name, self.options, accept, self, token=token, key=key, replays=replay_guards.setdefault(name, ReplayGuard())
        )
        self.context.services.webhooks.register(name, self.endpoint)
        self.health.connected = True
        self.health.details["route"] = f"/hooks/{name}"
        try:
            await asyncio.Event().wait()  # requests arrive through the runtime's server
        finally:
            await self.close()

    async def close(self) -> None:
        if self.endpoint is not None:
            self.context.services.webhooks.unregister(self.endpoint.flow, self.endpoint)
        self.health.connected = False


# ---------------------------------------------------------------- target (request)


class OAuth2Options(Options):
    token_url: str = Field(description="the authorization server's token endpoint")
    client_id: str = Field(description="the client id")
    client_secret: SecretRef = Field(description="the client secret, as ${secret:NAME}")
    scope: str | None = Field(None, description="space-separated scopes to ask for")
    audience: str | None = Field(None, description="audience parameter some servers require")
    client_auth: Literal["basic", "body"] = Field(
        "basic", description="send the client credentials as HTTP Basic or in the form body"
    )


METHODS = Literal["POST", "PUT", "PATCH", "GET", "DELETE"]


class HttpTargetOptions(Options):
    url: str = Field(description="URL template (sandboxed Jinja: message, data, key)")
    method: METHODS = Field("POST", description="HTTP method")
    headers: dict[str, str] = Field(
        default_factory=dict, description="request headers; credentials as ${secret:NAME}"
    )
    timeout: Duration = Field(
        timedelta(seconds=30), description="time allowed for the whole request"
    )
    verify_tls: bool = Field(
        True, description="check the server's certificate (turn off only for a test system)"
    )
    ca_file: str | None = Field(None, description="CA bundle to trust, relative to the flow file")
    client_cert: str | None = Field(
        None, description="client certificate (PEM) for mutual TLS, relative to the flow file"
    )
    client_key: str | None = Field(
        None, description="its private key (PEM), relative to the flow file"
    )
    success: list[str] = Field(
        ["2xx"], description="statuses that count as delivered: codes (204) or classes (2xx)"
    )
    idempotency_header: str | None = Field(
        "Idempotency-Key", description="header carrying the delivery's idempotency key (null: none)"
    )
    content_type: str | None = Field(None, description="Content-Type sent (default: the message's)")
    oauth2: OAuth2Options | None = Field(
        None, description="OAuth2 client-credentials grant for a bearer token"
    )
    allow_networks: list[str] = Field(
        default_factory=list,
        description="networks this target may reach although private or loopback "
        "(CIDR, 'private', 'loopback')",
    )
    follow_redirects: bool = Field(
        True, description="follow redirects (each one is checked against the allowlist)"
    )
    max_redirects: int = Field(5, ge=0, le=20, description="how many redirects to follow")

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        head = value.strip().lower()
        if not (head.startswith(("http://", "https://")) or head.startswith("{{")):
            raise ValueError("the URL must start with http:// or https://")
        return value

    @field_validator("headers")
    @classmethod
    def _credential_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if name.lower() in (
                "authorization",
                "proxy-authorization",
                "x-api-key",
            ) and not REFERENCE_PATTERN.search(text):
                raise ValueError(
                    f"header {name}: write the credential as a reference such as "
                    "${secret:NAME}, not in the flow file"
                )
        return value

    @field_validator("success")
    @classmethod
    def _statuses(cls, value: list[str]) -> list[str]:
        for item in value:
            text = str(item).lower()
            if not (text.isdigit() and len(text) == 3) and not (
                len(text) == 3 and text[0].isdigit() and text[1:] == "xx"
            ):
                raise ValueError(
                    f"{item!r} is not a status: write a code such as 204 or a class such as 2xx"
                )
        return [str(v).lower() for v in value]


RETRYABLE_STATUS = {408, 425, 429}


def status_matches(status: int, patterns: list[str]) -> bool:
    code = str(status)
    return any(p == code or (p.endswith("xx") and p[0] == code[0]) for p in patterns)


def _parse_url(url: str) -> httpx.URL:
    try:
        return httpx.URL(url)
    except (httpx.InvalidURL, UnicodeError, ValueError) as exc:
        raise DeliveryError(f"cannot send to {url[:200]!r}: {exc}", retryable=False) from exc


def _origin(url: httpx.URL) -> tuple[str, str, int]:
    """Scheme, host (lower case) and port, the default port filled in."""
    scheme = url.scheme.lower()
    return scheme, url.host.lower(), url.port or (443 if scheme == "https" else 80)


def _origin_text(origin: tuple[str, str, int]) -> str:
    scheme, host, port = origin
    default = (scheme == "https" and port == 443) or (scheme == "http" and port == 80)
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}" + ("" if default else f":{port}")


@dataclass
class _Token:
    value: str
    expires: float


class HttpTarget(Target[HttpTargetOptions]):
    def __init__(self, options: HttpTargetOptions, context: FlowContext) -> None:
        super().__init__(options, context)
        self.url_template = make_environment(
            autoescape=False, time_limit=1.0, max_output=8192
        ).from_string(options.url)
        self.guard = AddressGuard.from_options(options.allow_networks)
        self.client: httpx.AsyncClient | None = None
        self.headers: dict[str, str] = {}
        self.token: _Token | None = None
        self._token_lock = asyncio.Lock()

    def tls(self) -> ssl.SSLContext | bool:
        options = self.options
        if not options.verify_tls:
            return False
        ctx = ssl.create_default_context(
            cafile=str(self.context.resolve_io_path(options.ca_file)) if options.ca_file else None
        )
        if options.client_cert:
            key = str(self.context.resolve_io_path(options.client_key)) if options.client_key else None
            ctx.load_cert_chain(str(self.context.resolve_io_path(options.client_cert)), key)
        return ctx

    def connect(self) -> httpx.AsyncClient:
        if self.client is None:
            self.headers = {
                k: str(self.context.secrets.resolve(v)) for k, v in self.options.headers.items()
            }
            self.client = httpx.AsyncClient(
                verify=self.tls(),
                timeout=self.options.timeout.total_seconds(),
                follow_redirects=False,  # redirects are followed by hand, each one checked
                trust_env=False,
            )
        return self.client

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    # ---- OAuth2 client credentials

    async def bearer(self, force: bool = False) -> str | None:
        oauth = self.options.oauth2
        if oauth is None:
            return None
        async with self._token_lock:
            if not force and self.token and self.token.expires > time.time() + 30:
                return self.token.value
            secret = str(self.context.secrets.resolve(oauth.client_secret))
            form = {"grant_type": "client_credentials"}
            if oauth.scope:
                form["scope"] = oauth.scope
            if oauth.audience:
                form["audience"] = oauth.audience
            auth: httpx.BasicAuth | None = httpx.BasicAuth(oauth.client_id, secret)
            if oauth.client_auth == "body":
                form.update(client_id=oauth.client_id, client_secret=secret)
                auth = None
            response = await self.request(
                "POST", oauth.token_url, {"Accept": "application/json"}, None, form=form, auth=auth
            )
            if response.status_code != 200:
                raise DeliveryError(
                    f"the OAuth2 token endpoint {oauth.token_url} answered {response.status_code}"
                    + (
                        " (check the client id and secret)"
                        if response.status_code in (400, 401, 403)
                        else ""
                    ),
                    retryable=response.status_code >= 500
                    or response.status_code in RETRYABLE_STATUS,
                )
            try:
                body = response.json()
                value = str(body["access_token"])
                lifetime = float(body.get("expires_in", 3600))
            except (ValueError, KeyError, TypeError) as exc:
                raise DeliveryError(
                    f"the OAuth2 token endpoint {oauth.token_url} gave no access_token",
                    retryable=False,
                ) from exc
            redactor.remember(value)
            self.token = _Token(value, time.time() + lifetime)
            return value

    # ---- one request, pinned to a checked address, redirects re-checked

    async def request(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        content: bytes | None,
        *,
        form: dict[str, str] | None = None,
        auth: httpx.Auth | None = None,
    ) -> httpx.Response:
        """One request; redirects are followed within the first URL's origin only, with
        the same method and body, each hop's host checked by the address guard again.
        A redirect to another origin, or one that would turn the method into a bodiless
        GET (301/302/303 after anything but GET/HEAD), is a failed delivery: the
        credentials never leave for another origin, and a payload never silently drops."""
        client = self.connect()
        origin: tuple[str, str, int] | None = None
        for _hop in range(self.options.max_redirects + 1):
            target = _parse_url(url)
            if target.scheme not in ("http", "https") or not target.host:
                raise DeliveryError(
                    f"cannot send to {url!r}: only http and https URLs are allowed", retryable=False
                )
            port = target.port or (443 if target.scheme == "https" else 80)
            origin = origin or _origin(target)
            address = await self.guard.resolve(target.host, port)
            host_header = target.netloc.decode("ascii")
            pinned = target.copy_with(host=address)
            request = client.build_request(
                method,
                pinned,
                headers={**headers, "Host": host_header},
                content=content,
                data=form,
                extensions={"sni_hostname": target.host},
            )
            if auth is not None:
                flow = auth.auth_flow(request)
                request = next(flow)
            shown = target.copy_with(query=None)
            try:
                response = await client.send(request)
            except httpx.TimeoutException as exc:
                limit = self.options.timeout.total_seconds()
                raise DeliveryError(
                    f"{method} {shown} timed out after {limit:g}s",
                    retryable=True,
                ) from exc
            except httpx.HTTPError as exc:
                raise DeliveryError(
                    redactor.redact(
                        f"{method} {shown} failed: {type(exc).__name__}: {exc}"
                    ),
                    retryable=True,
                ) from exc
            location = response.headers.get("location")
            if not (self.options.follow_redirects and response.is_redirect and location):
                return response
            await response.aclose()
            status = response.status_code
            try:
                following = target.join(location)
            except (httpx.InvalidURL, UnicodeError, ValueError) as exc:
                raise DeliveryError(
                    f"{method} {shown} answered {status} with an unusable Location "
                    f"{location[:200]!r}: not delivered",
                    retryable=False,
                ) from exc
            there = _origin(following)
            if there != origin:
                raise DeliveryError(
                    f"{method} {shown} answered {status}, a redirect to another origin "
                    f"({_origin_text(there)}): not delivered. Redirects are followed only "
                    f"within {_origin_text(origin)} (the credentials are never sent "
                    "elsewhere); if the service moved, change the target's url",
                    retryable=False,
                )
            if status in (301, 302, 303) and method not in ("GET", "HEAD"):
                raise DeliveryError(
                    f"{method} {shown} answered {status}, a redirect to "
                    f"{following.copy_with(query=None)} that would turn the {method} into "
                    f"a GET without the body: not delivered. Change the target's url to "
                    "the new address (307 and 308 redirects, which keep the method, are followed)",
                    retryable=False,
                )
            url = str(following)
        raise DeliveryError(
            f"more than {self.options.max_redirects} redirects from {self.options.url}",
            retryable=False,
        )

    def render_url(self, message: Message, key: str) -> str:
        try:
            return self.url_template.render(
                message=message.metadata(),
                data=message.last_data if message.is_bytes else message.payload,
                key=key,
            ).strip()
        except Exception as exc:
            raise DeliveryError(f"the URL template failed: {exc}", retryable=False) from exc

    async def send(self, message: Message, idempotency_key: str) -> dict[str, Any]:
        url = self.render_url(message, idempotency_key)
        self.connect()
        method = self.options.method
        headers = dict(self.headers)
        content: bytes | None = None
        if method not in ("GET", "DELETE"):
            content = message.payload_bytes()
            ctype = self.options.content_type or (
                message.content_type if message.is_bytes else "application/json"
            )
            headers.setdefault("Content-Type", ctype)
        if self.options.idempotency_header:
            headers[self.options.idempotency_header] = idempotency_key
        try:
            response = await self._send_authorised(method, url, headers, content)
        except DeliveryError as exc:
            self.health.failed(str(exc))
            raise
        detail: dict[str, Any] = {
            "status": response.status_code,
            "url": str(httpx.URL(url).copy_with(query=None)),
        }
        if status_matches(response.status_code, self.options.success):
            self.health.ok()
            return detail
        text = redactor.redact(response.text[:300])
        retryable = response.status_code >= 500 or response.status_code in RETRYABLE_STATUS
        error = DeliveryError(
            f"{method} {detail['url']} answered {response.status_code}: {text}".rstrip(": "),
            retryable=retryable,
        )
        self.health.failed(str(error))
        raise error

    async def _send_authorised(
        self, method: str, url: str, headers: dict[str, str], content: bytes | None
    ) -> httpx.Response:
        token = await self.bearer()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        response = await self.request(method, url, headers, content)
        if response.status_code == 401 and token:  # the token was revoked early: one fresh try
            headers["Authorization"] = f"Bearer {await self.bearer(force=True)}"
            response = await self.request(method, url, headers, content)
        return response


class HttpConnector(Connector):
    """HTTP: a webhook source (POST /hooks/FLOW) and a request target."""

    kind = "http"
    SourceOptions = HttpSourceOptions
    TargetOptions = HttpTargetOptions
    source_class = HttpSource
    target_class = HttpTarget
