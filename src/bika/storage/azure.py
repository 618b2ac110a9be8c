"""Azure Blob storage for az://container/prefix and azure://account/container/prefix.

Streams block uploads through obstore; the storage class of a write is the blob's access tier.

Credentials: settings, then AZURE_STORAGE_CONNECTION_STRING (account key or SAS connection
strings, and azurite's UseDevelopmentStorage=true or explicit BlobEndpoint), then the account
key (AZURE_STORAGE_ACCOUNT_KEY, or AZURE_STORAGE_KEY as the az CLI names it) or a SAS token
(AZURE_STORAGE_SAS_TOKEN), then obstore's own chain (service principal, workload or managed
identity, az CLI) -- what DefaultAzureCredential would find.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode, urlsplit

from obstore.store import AzureStore

from bika.errors import ConfigError
from bika.storage import Kind, StorageSettings, reveal
from bika.storage.cloud import (
    CloudStorage,
    ServerReply,
    check_endpoint,
    client_options,
    retry_config,
    settings_error,
)

if TYPE_CHECKING:
    from obstore.store import AzureConfig

# Azurite's well-known development account; published by Microsoft, not a secret.
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
DEV_ENDPOINT = "http://127.0.0.1:10000/devstoreaccount1"

_TIERS = {"hot": "Hot", "cool": "Cool", "cold": "Cold", "archive": "Archive"}
_CREDENTIALS_HINT = (
    "; check the credentials: set AZURE_STORAGE_CONNECTION_STRING, or"
    " AZURE_STORAGE_ACCOUNT_KEY or AZURE_STORAGE_SAS_TOKEN for the account"
)
_AUTH_CODES = {
    "AuthenticationFailed",
    "AuthorizationFailure",
    "InvalidAuthenticationInfo",
    "NoAuthenticationInformation",
}
_PERMISSION_CODES = {
    "AuthorizationPermissionMismatch",
    "AuthorizationResourceTypeMismatch",
    "AuthorizationServiceMismatch",
    "InsufficientAccountPermissions",
}


@dataclass(frozen=True)
class ConnectionString:
    """The parts of an Azure Storage connection string that locate and open blob storage."""

    account: str | None = None
    key: str | None = None
    sas: str | None = None
    endpoint: str | None = None


@dataclass(frozen=True)
class RestReply:
    status: int
    headers: dict[str, str] = field(repr=False)
    body: bytes = field(repr=False)

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)


def parse_connection_string(text: str) -> ConnectionString:
    fields: dict[str, str] = {}
    for item in text.strip().split(";"):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(
                "AZURE_STORAGE_CONNECTION_STRING is malformed: expected Name=value pairs"
                " separated by ';' (copy it from the portal's Access keys page)"
            )
        fields[name.strip().lower()] = value.strip()
    if fields.get("usedevelopmentstorage", "").lower() == "true":
        proxy = fields.get("developmentstorageproxyuri")
        dev = f"{proxy.rstrip('/')}:10000/{DEV_ACCOUNT}" if proxy else DEV_ENDPOINT
        return ConnectionString(DEV_ACCOUNT, DEV_KEY, None, dev)
    account = fields.get("accountname")
    endpoint: str | None = fields.get("blobendpoint")
    if endpoint:
        endpoint = endpoint.rstrip("/")
    elif account:
        protocol = fields.get("defaultendpointsprotocol", "https")
        suffix = fields.get("endpointsuffix", "core.windows.net")
        endpoint = f"{protocol}://{account}.blob.{suffix}"
    if not account and endpoint:
        # Azurite puts the account in the path, Azure in the first label of the host name.
        host = urlsplit(endpoint).hostname or ""
        path = urlsplit(endpoint).path.strip("/")
        local = host in ("127.0.0.1", "localhost", "::1")
        account = (path.split("/")[0] if local and path else host.split(".")[0]) or None
    sas = fields.get("sharedaccesssignature")
    return ConnectionString(
        account, fields.get("accountkey"), sas.lstrip("?") if sas else None, endpoint
    )


class AzureStorage(CloudStorage):
    kind: Kind = "azure"

    def __init__(self, url: str, settings: StorageSettings) -> None:
        environ: Mapping[str, str] = os.environ
        scheme, rest = url.split("://", 1)
        parts = [p for p in rest.split("/") if p]
        url_account: str | None = None
        if scheme.lower() == "azure":
            if len(parts) < 2:
                raise ConfigError(
                    f"repository {url!r}: use azure://account/container/prefix"
                    " (or az://container/prefix)"
                )
            url_account, parts = parts[0], parts[1:]
        if not parts:
            raise ConfigError(
                f"repository {url!r}: name the container, as in az://container/prefix"
            )
        container, prefix = parts[0], "/".join(parts[1:])
        self.container = container

        text = reveal(settings.azure_connection_string) or environ.get(
            "AZURE_STORAGE_CONNECTION_STRING"
        )
        conn = parse_connection_string(text) if text else ConnectionString()
        account = (
            url_account
            or settings.azure_account
            or conn.account
            or environ.get("AZURE_STORAGE_ACCOUNT_NAME")
            or environ.get("AZURE_STORAGE_ACCOUNT")
        )
        if not account:
            raise ConfigError(
                f"repository {url!r}: which storage account? Use azure://account/container/prefix,"
                " or set AZURE_STORAGE_ACCOUNT_NAME or AZURE_STORAGE_CONNECTION_STRING"
            )
        self.account = account
        from_conn = conn.account in (None, account)
        key = reveal(settings.azure_key) or (conn.key if from_conn else None)
        sas = reveal(settings.azure_sas) or (conn.sas if from_conn else None)
        if not key and not sas:
            key = environ.get("AZURE_STORAGE_ACCOUNT_KEY") or environ.get("AZURE_STORAGE_KEY")
            sas = environ.get("AZURE_STORAGE_SAS_TOKEN") or environ.get("AZURE_STORAGE_SAS_KEY")
        endpoint = settings.endpoint or (conn.endpoint if from_conn else None)
        endpoint = endpoint or environ.get("AZURE_STORAGE_ENDPOINT")

        config: AzureConfig = {"account_name": account}
        if key:
            config["account_key"] = key
        elif sas:
            config["sas_key"] = sas.lstrip("?")
        if endpoint:
            config["endpoint"] = check_endpoint(url, endpoint).rstrip("/")
        allow_http = settings.allow_http
        if allow_http is None:
            allow_http = bool(endpoint and endpoint.lower().startswith("http://"))
        self.endpoint = endpoint
        try:
            store = AzureStore(
                container,
                prefix=prefix or None,
                config=config,
                client_options=client_options(settings, allow_http),
                retry_config=retry_config(settings),
            )
        except Exception as exc:
            raise settings_error(url, exc, tuple(s for s in (key, sas) if s)) from exc
        super().__init__(
            url,
            store,
            settings,
            prefix=prefix,
            secrets=tuple(s for s in (key, sas) if s),
            missing_container_codes=("ContainerNotFound",),
        )
        self.prefix = prefix
        self._account_key = key
        self._sas = sas.lstrip("?") if sas and not key else None

    def rest(
        self, method: str, path: str = "", query: dict[str, str] | None = None
    ) -> RestReply | None:
        """One signed data-plane request for what obstore does not cover (service and
        container properties); path is relative to the account ("" for the service, the
        container's name, or container/blob). None when only Azure AD credentials are at hand,
        which this does not sign."""
        if not self._account_key and not self._sas:
            return None
        query = dict(query or {})
        base = (self.endpoint or f"https://{self.account}.blob.core.windows.net").rstrip("/")
        url = f"{base}/{quote(path)}"
        headers = {"x-ms-date": email.utils.formatdate(usegmt=True), "x-ms-version": "2021-08-06"}
        if self._account_key:
            canonical_headers = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()))
            resource = f"/{self.account}{urlsplit(url).path}" + "".join(
                f"\n{k.lower()}:{v}" for k, v in sorted(query.items())
            )
            to_sign = f"{method}\n" + "\n" * 11 + canonical_headers + resource
            signature = base64.b64encode(
                hmac.new(
                    base64.b64decode(self._account_key), to_sign.encode(), hashlib.sha256
                ).digest()
            ).decode()
            headers["Authorization"] = f"SharedKey {self.account}:{signature}"
        query_text = urlencode(query)
        if self._sas:
            query_text = f"{query_text}&{self._sas}" if query_text else self._sas
        request = urllib.request.Request(
            f"{url}?{query_text}" if query_text else url, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=self._settings.timeout) as response:
                return RestReply(response.status, dict(response.headers.items()), response.read())
        except urllib.error.HTTPError as exc:
            return RestReply(exc.code, dict(exc.headers.items()), exc.read())

    def _storage_class(self, storage_class: str) -> str:
        return _TIERS.get(storage_class.lower(), storage_class)

    def _hint(self, reply: ServerReply, exc: BaseException, name: str) -> str:
        code = reply.code or ""
        if code == "ContainerNotFound":
            return (
                f"; create the container first: az storage container create --name"
                f" {self.container} --account-name {self.account}"
            )
        if code in _AUTH_CODES or reply.status == 401:
            return _CREDENTIALS_HINT
        permissions = (
            "the SAS or role needs read, write, list and delete on the container"
            " (Storage Blob Data Contributor)"
        )
        if code in _PERMISSION_CODES:
            return f"; these credentials may not do this: {permissions}"
        if reply.status == 403:  # a HEAD's 403 has no body to tell bad keys from no right
            return f"{_CREDENTIALS_HINT}; {permissions}"
        if code in ("BlobArchived", "BlobBeingRehydrated"):
            return (
                "; the blob is in the Archive tier: rehydrate it first with az storage blob"
                f" set-tier --account-name {self.account} --container-name {self.container}"
                f" --name {name} --tier Cool --rehydrate-priority High, and retry when done"
            )
        if code in ("InvalidHeaderValue", "InvalidBlobTier"):
            return "; use an access tier Azure knows: Hot, Cool, Cold or Archive"
        if code == "AccountNotFound" or code == "ResourceNotFound":
            return f"; check the storage account name {self.account!r} and the endpoint"
        if reply.status is None:
            where = self.endpoint or f"https://{self.account}.blob.core.windows.net"
            return f"; check that {where} is reachable and the account name is right"
        return ""
