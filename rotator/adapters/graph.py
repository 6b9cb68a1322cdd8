"""Directory port over msgraph-sdk: list, read and change app registrations.

Reads go through the SDK's request adapter as raw JSON (see graph_json); writes use
the SDK's typed request builders. Every SDK or network error leaves this module as
a ``DirectoryError`` carrying Graph's code and message, never a secret.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import random
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import SplitResult, urlsplit

import httpx

from rotator.adapters.graph_json import (
    APP_SELECT,
    OWNERS_EXPAND,
    SP_SELECT,
    AppParseError,
    describe,
    guid,
    parse_application,
    parse_datetime,
    parse_service_principal,
    quote,
    thumbprint_from_custom_key_identifier,
)
from rotator.domain.app_management import (
    CredentialRestrictions,
    PolicyParseError,
    TenantPolicies,
    restrictions_from,
)
from rotator.domain.certificates import KeyEntry, thumbprint_of
from rotator.domain.credentials import AppRegistration, Credential, CredentialKind
from rotator.domain.secret_value import SecretValue
from rotator.ports import DeltaRound, DirectoryError, NewPassword, ScanItem

if TYPE_CHECKING:
    from msgraph.graph_service_client import GraphServiceClient

T = TypeVar("T")
PAGE_SIZE = 999
ADVANCED_QUERY = ("ConsistencyLevel", "eventual")
# A listing page that fails transiently is asked again this many times in all, waiting
# PAGE_RETRY_SECONDS (doubling, jittered) or what Retry-After asks, up to PAGE_MAX_WAIT.
PAGE_ATTEMPTS = 4
PAGE_RETRY_SECONDS = 1.0
PAGE_MAX_WAIT = 60.0
# Owner reads of the objects a delta page reports changed: requests in flight at once,
# and reads a JSON batch carries (Graph's limit is 20).
OWNER_READS_AT_ONCE = 8
OWNER_BATCH = 20


def _retry_after(headers: object) -> float | None:
    if not headers:
        return None
    try:
        items = dict(headers).items()  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
    for key, value in items:
        if str(key).lower() == "retry-after":
            try:
                return float(value if not isinstance(value, list) else value[0])
            except (TypeError, ValueError):
                return None
    return None


def translate_error(exc: BaseException, action: str) -> DirectoryError:
    """Turn what the SDK raised into a DirectoryError with Graph's own words."""
    from kiota_abstractions.api_error import APIError
    from msgraph.generated.models.o_data_errors.o_data_error import ODataError

    if isinstance(exc, ODataError):
        code = exc.error.code if exc.error else None
        message = exc.error.message if exc.error else None
        status = exc.response_status_code
        return DirectoryError(
            f"Graph refused to {action}: {code or status}: {message or 'no message'}",
            code=code,
            status=status,
            retry_after=_retry_after(exc.response_headers),
        )
    if isinstance(exc, APIError):
        status = exc.response_status_code
        return DirectoryError(
            f"Graph refused to {action}: HTTP {status}",
            status=status,
            retry_after=_retry_after(exc.response_headers),
        )
    if isinstance(exc, httpx.HTTPError | OSError | asyncio.TimeoutError):
        return DirectoryError(
            f"could not reach Graph to {action}: {type(exc).__name__}", transient=True
        )
    return DirectoryError(f"Graph call to {action} failed: {type(exc).__name__}", transient=True)


class GraphDirectory:
    """The Directory port. Writes to one app are serialised: Graph answers concurrent
    writes to the same application with an error, and retrying blindly makes it worse."""

    def __init__(self, client: GraphServiceClient) -> None:
        self._client = client
        self._app_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._list_requests = 0

    def list_requests(self) -> int:
        return self._list_requests

    async def _call(self, action: str, op: Callable[[], Awaitable[T]]) -> T:
        try:
            return await op()
        except DirectoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - every SDK failure becomes a DirectoryError
            raise translate_error(exc, action) from None

    async def _get_json(self, request_info: Any, action: str) -> dict[str, Any] | None:
        from msgraph.generated.models.o_data_errors.o_data_error import ODataError

        adapter = self._client.request_adapter

        async def send() -> bytes | None:
            result: bytes | None = await adapter.send_primitive_async(
                request_info, "bytes", {"XXX": ODataError}
            )
            return result

        raw = await self._call(action, send)
        if raw is None:
            return None
        try:
            parsed = json.loads(raw)
        except ValueError as exc:
            raise DirectoryError(
                f"Graph answered {action} with a body that is not JSON", transient=True
            ) from exc
        if not isinstance(parsed, dict):
            raise DirectoryError(f"Graph answered {action} with unexpected JSON", transient=True)
        return parsed

    async def _get_page(self, info: Any, where: str) -> dict[str, Any]:
        """One page of a listing. A page that fails in a way time may fix (a 5xx, a
        throttled answer the SDK gave up on, a body that is not JSON, a dropped
        connection) is asked again after a backoff, so one bad page does not cost the
        whole scan; past PAGE_ATTEMPTS, or when Graph asks for a long wait, it fails."""
        delay = PAGE_RETRY_SECONDS
        attempt = 1
        while True:
            self._list_requests += 1
            try:
                body = await self._get_json(info, where)
                if body is None:
                    raise DirectoryError(f"Graph answered {where} with no body", transient=True)
                return body
            except DirectoryError as exc:
                wait = max(exc.retry_after or 0.0, delay * random.uniform(1.0, 1.5))  # noqa: S311
                if not exc.transient or attempt >= PAGE_ATTEMPTS or wait > PAGE_MAX_WAIT:
                    raise
            attempt += 1
            delay *= 2
            await asyncio.sleep(wait)

    async def list_applications(self) -> AsyncIterator[ScanItem]:
        from kiota_abstractions.base_request_configuration import RequestConfiguration
        from msgraph.generated.applications.applications_request_builder import (
            ApplicationsRequestBuilder,
        )

        params = ApplicationsRequestBuilder.ApplicationsRequestBuilderGetQueryParameters(
            select=list(APP_SELECT), top=PAGE_SIZE, expand=[OWNERS_EXPAND]
        )
        info = self._client.applications.to_get_request_information(
            RequestConfiguration(query_parameters=params)
        )
        async for raw in self._pages(info, "applications", self._client.applications):
            yield _scan_item(raw)

    async def list_service_principals(self) -> AsyncIterator[ScanItem]:
        from kiota_abstractions.base_request_configuration import RequestConfiguration
        from msgraph.generated.service_principals.service_principals_request_builder import (
            ServicePrincipalsRequestBuilder,
        )

        params = (ServicePrincipalsRequestBuilder
                  .ServicePrincipalsRequestBuilderGetQueryParameters(
                      select=list(SP_SELECT), top=PAGE_SIZE, expand=[OWNERS_EXPAND]))
        builder = self._client.service_principals
        info = builder.to_get_request_information(RequestConfiguration(query_parameters=params))
        async for raw in self._pages(info, "service principals", builder):
            yield _scan_item(raw, parse_service_principal, "service principal")

    async def federated_app_ids(self) -> set[str]:
        from kiota_abstractions.base_request_configuration import RequestConfiguration
        from msgraph.generated.applications.applications_request_builder import (
            ApplicationsRequestBuilder,
        )

        # Counting a relationship in $filter is one of Graph's advanced queries: it needs
        # ConsistencyLevel: eventual and $count=true, on every page.
        params = ApplicationsRequestBuilder.ApplicationsRequestBuilderGetQueryParameters(
            filter="federatedIdentityCredentials/$count ne 0", count=True,
            select=["appId"], top=PAGE_SIZE,
        )
        config = RequestConfiguration(query_parameters=params)
        config.headers.add(*ADVANCED_QUERY)
        info = self._client.applications.to_get_request_information(config)
        found: set[str] = set()
        async for raw in self._pages(info, "applications with federated credentials",
                                     self._client.applications, advanced=True):
            app_id = raw.get("appId") if isinstance(raw, dict) else None
            if not isinstance(app_id, str) or not app_id:
                raise DirectoryError(
                    "Graph listed an application with federated credentials but no appId")
            found.add(app_id.lower())
        return found

    async def _pages(self, info: Any, what: str, builder: Any, *, advanced: bool = False
                     ) -> AsyncIterator[object]:
        """Every entry of a paged listing, following ``@odata.nextLink`` with care.

        One request at a time, but the next page is asked for as soon as a page's link
        to it is read, so Graph (far the slower side) prepares it while this one's
        entries are parsed and written. Errors come in the order they did without the
        read-ahead: a page's entries first, then what is wrong with its link or the next
        page."""
        page_no = 1
        fetching: asyncio.Task[dict[str, Any]] | None = asyncio.create_task(
            self._get_page(info, f"list {what} (page 1)"))
        followed: set[str] = set()
        try:
            while fetching is not None:
                body = await fetching
                fetching = None
                values = body.get("value")
                if not isinstance(values, list):
                    raise DirectoryError(f"page {page_no} of {what} has no 'value' list")
                next_link = body.get("@odata.nextLink")
                link_error: DirectoryError | None = None
                if next_link is not None:
                    try:
                        info = self._next_page(next_link, page_no, what, builder, followed,
                                               advanced=advanced)
                    except DirectoryError as exc:
                        link_error = exc
                    else:
                        page_no += 1
                        fetching = asyncio.create_task(
                            self._get_page(info, f"list {what} (page {page_no})"))
                for raw in values:
                    yield raw
                if link_error is not None:
                    raise link_error
        finally:
            if fetching is not None:
                # The listing stopped early (an error, or the reader left): no page is
                # left being fetched for nobody, and its outcome is not reported as lost.
                fetching.cancel()
                fetching.add_done_callback(_outcome_read)

    def _next_page(self, next_link: object, page_no: int, what: str, builder: Any,
                   followed: set[str], *, advanced: bool) -> Any:
        url = self._checked_next_link(next_link, page_no, what)
        if url in followed:
            raise DirectoryError(
                f"page {page_no} of {what} has an @odata.nextLink to a page "
                "already read; Graph's paging went in a circle"
            )
        followed.add(url)
        info = builder.with_url(url).to_get_request_information()
        if advanced:
            info.headers.add(*ADVANCED_QUERY)
        return info

    def _delta_builder(self, resource: str) -> tuple[Any, tuple[str, ...], str]:
        if resource == "applications":
            return self._client.applications.delta, APP_SELECT, "application"
        if resource == "servicePrincipals":
            return self._client.service_principals.delta, SP_SELECT, "service principal"
        raise ValueError(f"no delta query for {resource!r}")

    async def track_changes(self, resource: str) -> str:
        """``$deltatoken=latest``: a link from now, with the listing's ``$select``.
        Asked before a full listing starts, so a change made while it runs is read again
        by the next incremental scan rather than lost."""
        builder, select, what = self._delta_builder(resource)
        base = str(self._client.request_adapter.base_url or "").rstrip("/")
        url = (f"{base}/{resource}/delta?$deltatoken=latest&$select=" + ",".join(select))
        self._list_requests += 1
        body = await self._get_json(builder.with_url(url).to_get_request_information(),
                                    f"start tracking changes of {what}s")
        link = (body or {}).get("@odata.deltaLink")
        if link is None:
            raise DirectoryError(f"Graph answered the delta query of {what}s without a "
                                 "deltaLink", transient=True)
        return self._checked_next_link(link, 1, f"{what}s")

    async def list_changes(self, resource: str, link: str, into: DeltaRound
                           ) -> AsyncIterator[ScanItem]:
        builder, _select, what = self._delta_builder(resource)
        parse = parse_application if resource == "applications" else parse_service_principal
        url = self._checked_next_link(link, 0, f"{what}s")
        followed = {url}
        page_no = 0
        while True:
            page_no += 1
            where = f"list changed {what}s (page {page_no})"
            requests_before = self._list_requests
            body = await self._get_page(builder.with_url(url).to_get_request_information(),
                                        where)
            into.requests += self._list_requests - requests_before
            values = body.get("value")
            if not isinstance(values, list):
                raise DirectoryError(f"page {page_no} of changed {what}s has no 'value' list")
            await self._fill_owners(resource, values, into)
            for raw in values:
                if isinstance(raw, dict) and "@removed" in raw:
                    raw_id = raw.get("id")
                    if isinstance(raw_id, str) and raw_id:
                        yield ScanItem(app=None, raw_id=raw_id.lower(), removed=True)
                    else:
                        yield ScanItem(app=None, error=f"a removed {what} without an id")
                    continue
                yield _scan_item(raw, parse, what)
            delta_link = body.get("@odata.deltaLink")
            if delta_link is not None:
                into.delta_link = self._checked_next_link(delta_link, page_no, f"{what}s")
                return
            next_link = body.get("@odata.nextLink")
            if next_link is None:
                raise DirectoryError(f"page {page_no} of changed {what}s has neither an "
                                     "@odata.nextLink nor an @odata.deltaLink")
            url = self._checked_next_link(next_link, page_no, f"{what}s")
            if url in followed:
                raise DirectoryError(f"page {page_no} of changed {what}s links to a page "
                                     "already read; Graph's paging went in a circle")
            followed.add(url)

    async def _fill_owners(self, resource: str, values: list[Any], into: DeltaRound) -> None:
        """Delta queries do not expand owners: the owners of each changed object are read
        through JSON batching (20 reads a request) and put where the listing's
        ``$expand`` would have put them. A read the batch did not answer is asked again
        on its own."""
        base = str(self._client.request_adapter.base_url or "").rstrip("/")
        builder, _select, what = self._delta_builder(resource)
        select = OWNERS_EXPAND[OWNERS_EXPAND.index("=") + 1:-1]
        wanted = [raw for raw in values if isinstance(raw, dict) and "@removed" not in raw
                  and isinstance(raw.get("id"), str)]
        limit = asyncio.Semaphore(OWNER_READS_AT_ONCE)

        def path(raw: dict[str, Any]) -> str:
            return f"/{resource}/{raw['id']}/owners?$select={select}"

        async def alone(raw: dict[str, Any]) -> None:
            object_id = str(raw["id"])
            async with limit:
                self._list_requests += 1
                into.requests += 1
                try:
                    body = await self._get_json(
                        builder.with_url(base + path(raw)).to_get_request_information(),
                        f"read the owners of {what} {object_id}")
                except DirectoryError as exc:
                    if exc.status == 404:
                        return  # deleted since: the next round says so
                    raise
            if body is not None and isinstance(body.get("value"), list):
                raw["owners"] = body["value"]

        async def batch(chunk: list[dict[str, Any]]) -> list[dict[str, Any]]:
            """The objects whose owners the batch did not give."""
            from kiota_abstractions.method import Method
            from kiota_abstractions.request_information import RequestInformation

            info = RequestInformation(Method.POST)
            info.url = f"{base}/$batch"
            payload = {"requests": [{"id": str(n), "method": "GET", "url": path(raw)}
                                    for n, raw in enumerate(chunk)]}
            info.set_stream_content(json.dumps(payload).encode(), "application/json")
            async with limit:
                self._list_requests += 1
                into.requests += 1
                try:
                    body = await self._get_json(info, f"read the owners of changed {what}s")
                except DirectoryError as exc:
                    if not exc.transient:
                        raise
                    return chunk
            answers = (body or {}).get("responses")
            missed = list(chunk)
            for answer in answers if isinstance(answers, list) else []:
                try:
                    raw = chunk[int(answer["id"])]
                except (KeyError, ValueError, IndexError, TypeError):
                    continue
                status, owners = answer.get("status"), (answer.get("body") or {})
                if status == 404:
                    missed.remove(raw)
                elif status == 200 and isinstance(owners, dict) and isinstance(
                        owners.get("value"), list):
                    raw["owners"] = owners["value"]
                    missed.remove(raw)
            return missed

        chunks = [wanted[i:i + OWNER_BATCH] for i in range(0, len(wanted), OWNER_BATCH)]
        left = [raw for missed in await asyncio.gather(*(batch(c) for c in chunks))
                for raw in missed]
        await asyncio.gather(*(alone(raw) for raw in left))

    def _checked_next_link(self, link: object, page_no: int, what: str = "applications"
                           ) -> str:
        """The next page's URL, if it is one the SDK may follow with rotator's token."""
        base = urlsplit(str(self._client.request_adapter.base_url or ""))
        try:
            target = urlsplit(link) if isinstance(link, str) else None
        except ValueError:  # e.g. a broken IPv6 literal
            target = None
        if target is None or not target.scheme or not target.netloc:
            problem = "is not an absolute URL"
        elif _origin(target) != _origin(base):
            # The SDK only sends the token to Graph's host: elsewhere the page would be
            # refused anyway, with an error that hides why.
            problem = f"points to {target.scheme}://{target.netloc}, not to Graph"
        else:
            return str(link)
        raise DirectoryError(
            f"page {page_no} of {what} has an @odata.nextLink {quote(link)} that "
            f"{problem}"
        )

    async def get_application(self, app_id: str) -> AppRegistration | None:
        from kiota_abstractions.base_request_configuration import RequestConfiguration
        from msgraph.generated.applications_with_app_id.applications_with_app_id_request_builder import (  # noqa: E501
            ApplicationsWithAppIdRequestBuilder,
        )

        params = ApplicationsWithAppIdRequestBuilder.ApplicationsWithAppIdRequestBuilderGetQueryParameters(  # noqa: E501
            select=list(APP_SELECT)
        )
        info = self._client.applications_with_app_id(app_id).to_get_request_information(
            RequestConfiguration(query_parameters=params)
        )
        try:
            body = await self._get_json(info, f"read application {app_id}")
        except DirectoryError as exc:
            if exc.status == 404:
                return None
            raise
        if body is None:
            # Only a 404 means "no such app"; an empty answer says nothing about the app.
            raise DirectoryError(f"Graph answered read application {app_id} with an empty "
                                 "body", transient=True)
        try:
            app = parse_application(body)
        except AppParseError as exc:
            raise DirectoryError(f"Graph returned application {app_id} in a form rotator "
                                 f"cannot read: {exc}") from None
        if app.app_id != app_id.strip().lower():
            # Acting on it would change an app nobody asked rotator to touch.
            raise DirectoryError(f"Graph answered read application {app_id} with another "
                                 f"application ({app.app_id})")
        return app

    async def get_credential_policy(self, object_id: str) -> CredentialRestrictions | None:
        apps = self._client.applications.by_application_id(object_id)
        own = await self._get_json(
            apps.app_management_policies.to_get_request_information(),
            f"read the app management policies of application {object_id}",
        )
        values = (own or {}).get("value")
        if not isinstance(values, list):
            raise DirectoryError(f"Graph returned no policy list for application {object_id}")
        for policy in values:
            if isinstance(policy, dict) and policy.get("isEnabled") is not False:
                return _restrictions(policy, "restrictions", "application")
        default = await self._get_json(
            self._client.policies.default_app_management_policy.to_get_request_information(),
            "read the tenant's default app management policy",
        )
        if not default or default.get("isEnabled") is not True:
            return None
        return _restrictions(default, "applicationRestrictions", "tenant default")

    async def list_credential_policies(self) -> TenantPolicies:
        policies = self._client.policies.app_management_policies
        raw_default = await self._get_json(
            self._client.policies.default_app_management_policy.to_get_request_information(),
            "read the tenant's default app management policy",
        )
        default = None
        if raw_default and raw_default.get("isEnabled") is True:
            default = _restrictions(raw_default, "applicationRestrictions", "tenant default")
        by_app: dict[str, CredentialRestrictions] = {}
        async for policy in self._values(policies.to_get_request_information(),
                                         policies.with_url, "app management policies"):
            if policy.get("isEnabled") is False or not policy.get("id"):
                continue
            own = _restrictions(policy, "restrictions", "application")
            targets = policies.by_app_management_policy_id(str(policy["id"])).applies_to
            async for target in self._values(targets.to_get_request_information(),
                                             targets.with_url,
                                             f"applications of policy {policy['id']}"):
                if str(target.get("@odata.type", "")).endswith(".application") and target.get(
                        "id"):
                    by_app[str(target["id"]).lower()] = own
        return TenantPolicies(default, by_app)

    async def _values(self, info: Any, with_url: Any, what: str
                      ) -> AsyncIterator[dict[str, Any]]:
        """Every object of a collection, page after page."""
        page_no = 0
        followed: set[str] = set()
        while True:
            page_no += 1
            body = await self._get_json(info, f"read {what} (page {page_no})")
            values = (body or {}).get("value")
            if not isinstance(values, list):
                raise DirectoryError(f"Graph returned no list of {what}")
            for value in values:
                if isinstance(value, dict):
                    yield value
            next_link = (body or {}).get("@odata.nextLink")
            if next_link is None:
                return
            url = self._checked_next_link(next_link, page_no)
            if url in followed:
                raise DirectoryError(f"the pages of {what} go in a circle")
            followed.add(url)
            info = with_url(url).to_get_request_information()

    async def add_password(self, object_id: str, display_name: str, end: datetime) -> NewPassword:
        from msgraph.generated.applications.item.add_password.add_password_post_request_body import (  # noqa: E501
            AddPasswordPostRequestBody,
        )
        from msgraph.generated.models.password_credential import PasswordCredential

        body = AddPasswordPostRequestBody(
            password_credential=PasswordCredential(display_name=display_name, end_date_time=end)
        )
        builder = self._client.applications.by_application_id(object_id).add_password
        async with self._app_locks[object_id]:
            created = await self._call("add a client secret", lambda: builder.post(body))
        if created is None or created.key_id is None or not created.secret_text:
            raise DirectoryError("Graph created a secret but returned no keyId or secretText")
        secret = SecretValue(created.secret_text)
        created.secret_text = None  # drop the SDK model's copy as early as possible
        return NewPassword(
            key_id=str(created.key_id).lower(),
            secret=secret,
            hint=created.hint,
            start=created.start_date_time,
            end=created.end_date_time,
        )

    async def remove_password(self, object_id: str, key_id: str) -> None:
        from msgraph.generated.applications.item.remove_password.remove_password_post_request_body import (  # noqa: E501
            RemovePasswordPostRequestBody,
        )

        body = RemovePasswordPostRequestBody(key_id=uuid.UUID(key_id))
        builder = self._client.applications.by_application_id(object_id).remove_password
        async with self._app_locks[object_id]:
            try:
                await self._call(f"remove client secret {key_id}", lambda: builder.post(body))
            except DirectoryError as exc:
                # Already removed (by a previous run that died before recording it).
                if exc.status == 404 or (exc.status == 400 and _names_missing_key(exc, key_id)):
                    return
                raise


    async def add_key(
        self, object_id: str, certificate_der: bytes, display_name: str, proof: str
    ) -> Credential:
        from msgraph.generated.applications.item.add_key.add_key_post_request_body import (
            AddKeyPostRequestBody,
        )
        from msgraph.generated.models.key_credential import KeyCredential

        body = AddKeyPostRequestBody(
            key_credential=KeyCredential(
                type="AsymmetricX509Cert", usage="Verify", key=certificate_der,
                display_name=display_name,
            ),
            proof=proof,
        )
        builder = self._client.applications.by_application_id(object_id).add_key
        async with self._app_locks[object_id]:
            created = await self._call("add a certificate", lambda: builder.post(body))
        if created is None or created.key_id is None:
            raise DirectoryError("Graph added a certificate but returned no keyId")
        # customKeyIdentifier comes back as hex text the SDK decodes as base64; the
        # thumbprint of what was sent is the one that counts.
        return Credential(
            key_id=str(created.key_id).lower(),
            kind=CredentialKind.CERTIFICATE,
            display_name=created.display_name or display_name,
            start=created.start_date_time,
            end=created.end_date_time,
            thumbprint=thumbprint_of(certificate_der),
        )

    async def remove_key(self, object_id: str, key_id: str, proof: str) -> None:
        from msgraph.generated.applications.item.remove_key.remove_key_post_request_body import (
            RemoveKeyPostRequestBody,
        )

        body = RemoveKeyPostRequestBody(key_id=uuid.UUID(key_id), proof=proof)
        builder = self._client.applications.by_application_id(object_id).remove_key
        async with self._app_locks[object_id]:
            try:
                await self._call(f"remove certificate {key_id}", lambda: builder.post(body))
            except DirectoryError as exc:
                if exc.status == 404 or (exc.status == 400 and _names_missing_key(exc, key_id)):
                    return
                raise

    async def list_key_credentials(self, object_id: str) -> Sequence[KeyEntry]:
        from kiota_abstractions.base_request_configuration import RequestConfiguration
        from msgraph.generated.applications.item.application_item_request_builder import (
            ApplicationItemRequestBuilder,
        )

        params = ApplicationItemRequestBuilder.ApplicationItemRequestBuilderGetQueryParameters(
            select=["id", "keyCredentials"]
        )
        info = self._client.applications.by_application_id(object_id).to_get_request_information(
            RequestConfiguration(query_parameters=params)
        )
        body = await self._get_json(info, f"read the certificates of application {object_id}")
        raw = (body or {}).get("keyCredentials")
        if not isinstance(raw, list):
            raise DirectoryError(f"Graph returned no keyCredentials list for {object_id}")
        try:
            return [_key_entry(item) for item in raw]
        except (AppParseError, TypeError, ValueError) as exc:
            raise DirectoryError(f"Graph returned keyCredentials rotator cannot read: {exc}"
                                 ) from None

    async def set_key_credentials(self, object_id: str, entries: Sequence[KeyEntry]) -> None:
        from msgraph.generated.models.application import Application
        from msgraph.generated.models.key_credential import KeyCredential

        body = Application(
            key_credentials=[
                KeyCredential(
                    key_id=uuid.UUID(e.key_id),
                    key=base64.b64decode(e.key) if e.key else None,
                    display_name=e.display_name,
                    type=e.type,
                    usage=e.usage,
                )
                for e in entries
            ]
        )
        builder = self._client.applications.by_application_id(object_id)
        async with self._app_locks[object_id]:
            await self._call("update the certificates of the application",
                             lambda: builder.patch(body))


def _outcome_read(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


def _origin(url: SplitResult) -> tuple[str, str, int | None]:
    scheme = url.scheme.lower()
    try:
        port = url.port or {"https": 443, "http": 80}.get(scheme)
    except ValueError:
        port = -1
    return scheme, (url.hostname or ""), port


def _scan_item(raw: object, parse: Callable[[object], AppRegistration] = parse_application,
               what: str = "application") -> ScanItem:
    raw_id, known = describe(raw)
    prefix = "" if what == "application" else f"{what}: "
    try:
        return ScanItem(app=parse(raw), raw_id=raw_id)
    except AppParseError as exc:
        return ScanItem(app=None, error=f"{prefix}{exc}{known}", raw_id=raw_id)
    except (ValueError, TypeError, ArithmeticError) as exc:
        # A parsing gap must cost one app, not the scan of the whole tenant.
        return ScanItem(app=None, error=f"unreadable {what} ({type(exc).__name__}){known}",
                        raw_id=raw_id)


def _key_entry(item: object) -> KeyEntry:
    # Entries are written back whole by PATCH keyCredentials: what cannot be written
    # back (uuid.UUID(key_id), base64 key) is refused here, before anything changes.
    if not isinstance(item, dict):
        raise AppParseError("a keyCredential that is not an object")
    key_id = guid(item, "keyId")
    key = item.get("key")
    if key is not None:
        if not isinstance(key, str):
            raise AppParseError(f"keyCredential {key_id}: key is not a string")
        try:
            base64.b64decode(key, validate=True)
        except (binascii.Error, ValueError):
            raise AppParseError(f"keyCredential {key_id}: key is not base64") from None
    dates: dict[str, datetime | None] = {}
    for name in ("startDateTime", "endDateTime"):
        try:
            dates[name] = parse_datetime(item.get(name))
        except AppParseError as exc:
            raise AppParseError(f"keyCredential {key_id}: {name}: {exc}") from None
    return KeyEntry(
        key_id=key_id,
        key=key if isinstance(key, str) and key else None,
        display_name=item.get("displayName") if isinstance(item.get("displayName"), str)
        else None,
        type=str(item.get("type") or "AsymmetricX509Cert"),
        usage=str(item.get("usage") or "Verify"),
        start=dates["startDateTime"],
        end=dates["endDateTime"],
        thumbprint=thumbprint_from_custom_key_identifier(item.get("customKeyIdentifier")),
    )


def _restrictions(policy: dict[str, Any], field: str, source: str) -> CredentialRestrictions:
    raw = policy.get(field) or {}
    try:
        if not isinstance(raw, dict):
            raise PolicyParseError(f"{field} is not an object")
        password, key = raw.get("passwordCredentials") or [], raw.get("keyCredentials") or []
        if not isinstance(password, list) or not isinstance(key, list):
            raise PolicyParseError("credential restrictions are not lists")
        return restrictions_from(
            str(policy.get("id") or "?"), source,
            [e for e in password if isinstance(e, dict)], [e for e in key if isinstance(e, dict)],
        )
    except PolicyParseError as exc:
        raise DirectoryError(f"Graph returned an app management policy rotator cannot read: "
                             f"{exc}") from None


def _names_missing_key(exc: DirectoryError, key_id: str) -> bool:
    text = str(exc).lower()
    return (key_id.lower() in text or "no password credential" in text
            or "no key credential" in text or "not found" in text)
