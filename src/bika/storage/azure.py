"""Azure Blob storage for az://container/prefix and azure://account/container/prefix.

Streams block uploads through obstore; the storage class of a write is the blob's access tier.

Credentials: settings, then AZURE_STORAGE_CONNECTION_STRING (account key or SAS connection
strings, and azurite's UseDevelopmentStorage=true or explicit BlobEndpoint), then the account
key (AZURE_STORAGE_ACCOUNT_KEY, or AZURE_STORAGE_KEY as the az CLI names it) or a SAS token
(AZURE_STORAGE_SAS_TOKEN), then obstore's own chain (service principal, workload or managed
identity, az CLI) -- what DefaultAzureCredential would find.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from obstore.store import AzureStore

from bika.errors import ConfigError, StorageError
from bika.storage import StorageSettings, reveal
from bika.storage.cloud import (
    CloudStorage,
    ServerReply,
    check_endpoint,
    client_options,
    one_line,
    retry_config,
    settings_error,
)
from bika.storage.facts import BucketFacts, Kind, Setting

if TYPE_CHECKING:
    from obstore.store import AzureConfig

# Azurite's well-known development account; published by Microsoft, not a secret.
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
DEV_ENDPOINT = "http://127.0.0.1:10000/devstoreaccount1"

_TIERS = {"hot": "Hot", "cool": "Cool", "cold": "Cold", "archive": "Archive"}
STORAGE_CLASSES = frozenset(name.upper() for name in _TIERS)
SEALED_CLASSES = frozenset({"ARCHIVE"})  # rehydrate before reading
# bika's object-lock modes in Azure's words: a Locked policy can only be extended; an Unlocked
# one can be shortened or deleted by whoever may set policies (SAS permission i)
IMMUTABILITY_MODES = {"compliance": "Locked", "governance": "Unlocked"}
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


@dataclass(frozen=True)
class AzureOptions:
    """What an AzureStorage is built from: resolve_azure's answer, before any request."""

    container: str
    prefix: str
    account: str
    endpoint: str | None
    config: AzureConfig
    """obstore's AzureStore settings: the account, its key or SAS, the endpoint."""
    allow_http: bool
    key: str | None = None
    sas: str | None = None
    """Used only when there is no key (the key wins, as in obstore)."""

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(secret for secret in (self.key, self.sas) if secret)


def resolve_azure(url: str, settings: StorageSettings, environ: Mapping[str, str]) -> AzureOptions:
    """Where and how to reach an az:// or azure:// URL: settings, then the connection string
    (settings or AZURE_STORAGE_CONNECTION_STRING), then AZURE_STORAGE_* variables; no key or
    SAS leaves obstore's own chain (service principal, managed identity, az CLI). Pure."""
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
        raise ConfigError(f"repository {url!r}: name the container, as in az://container/prefix")
    container, prefix = parts[0], "/".join(parts[1:])

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
    return AzureOptions(
        container,
        prefix,
        account,
        endpoint,
        config,
        allow_http,
        key=key or None,
        sas=sas.lstrip("?") if sas else None,
    )


class AzureStorage(CloudStorage):
    kind: Kind = "azure"
    replaces_locked = True  # version-level immutability: an overwrite adds a version

    def __init__(
        self, url: str, settings: StorageSettings, environ: Mapping[str, str] | None = None
    ) -> None:
        options = resolve_azure(url, settings, os.environ if environ is None else environ)
        try:
            store = AzureStore(
                options.container,
                prefix=options.prefix or None,
                config=options.config,
                client_options=client_options(settings, options.allow_http),
                retry_config=retry_config(settings),
            )
        except Exception as exc:
            raise settings_error(url, exc, options.secrets) from exc
        super().__init__(
            url,
            store,
            settings,
            prefix=options.prefix,
            secrets=options.secrets,
            missing_container_codes=("ContainerNotFound",),
        )
        self.container = options.container
        self.prefix = options.prefix
        self.account = options.account
        self.endpoint = options.endpoint
        self._account_key = options.key
        self._sas = options.sas

    def bucket_facts(self, probe_key: str | None = None) -> BucketFacts:
        """Logging and soft delete (service properties), encryption scope and immutability
        (container properties) and versioning (whether the probe blob got a version id),
        through the Azure SDK with the account key or SAS. Lifecycle management is an
        account setting only Azure Resource Manager shows, which storage credentials cannot
        read."""
        base = BucketFacts(
            "azure",
            self.container,
            self.prefix,
            self.endpoint,
            account=self.account,
            storage_classes=STORAGE_CLASSES,
            sealed_classes=SEALED_CLASSES,
            lifecycle=Setting(
                "unknown",
                "lifecycle management is an account setting only Azure Resource Manager shows",
            ),
        )
        if not self._account_key and not self._sas:
            why = "needs an account key or SAS to read (Azure AD is not used here)"
            return base.all_unknown(why, but_lifecycle=True)
        # Imported here: the SDK is only needed by bika doctor.
        from azure.core.exceptions import HttpResponseError

        def read(call: Callable[[], Any]) -> Any:
            """The reply, or the HTTP status that refused it."""
            try:
                return call()
            except HttpResponseError as exc:
                return int(exc.status_code or 0)

        try:
            service = self._blob_service()
            properties = read(service.get_service_properties)
            container = read(service.get_container_client(self.container).get_container_properties)
            probe = None
            if probe_key is not None:
                name = f"{self.prefix}/{probe_key}" if self.prefix else probe_key
                probe = read(service.get_blob_client(self.container, name).get_blob_properties)
        except Exception as exc:
            return base.all_unknown(one_line(exc), but_lifecycle=True)
        return container_settings(base, properties, container, probe)

    # --- object lock (bika.storage.object_lock): blob immutability policies (version-level
    # WORM), through the Azure SDK with the account key or SAS, as bucket_facts ---

    def _sdk_credentials(self, what: str) -> None:
        if not self._account_key and not self._sas:
            raise ConfigError(
                f"{what} in {self.url} needs an account key or a SAS (Azure AD is not used for"
                " it): set AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_SAS_TOKEN or"
                " AZURE_STORAGE_CONNECTION_STRING"
            )

    def _name(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def require_object_lock(self) -> None:
        self._sdk_credentials("--object-lock")
        from azure.core.exceptions import HttpResponseError

        container = self._blob_service().get_container_client(self.container)
        try:
            properties = container.get_container_properties()
        except HttpResponseError as exc:
            raise StorageError(
                f"cannot read the properties of container {self.container} ({self.url}):"
                f" {_sdk_error(exc)}"
            ) from None
        except Exception as exc:
            raise StorageError(f"cannot reach {self.url}: {one_line(exc)}") from None
        if not properties.immutable_storage_with_versioning_enabled:
            raise ConfigError(
                f"container {self.container} does not have version-level immutability enabled,"
                " so backups cannot be locked; create a container with it (with blob versioning"
                f" on the account: az storage container-rm create --storage-account"
                f" {self.account} --name CONTAINER --enable-vlw), migrate this one"
                " (az storage container-rm migrate-vlw), or leave out --object-lock"
            )

    def retain(self, key: str, until: datetime, mode: str) -> None:
        self._sdk_credentials(f"locking {key}")
        from azure.core.exceptions import HttpResponseError
        from azure.storage.blob import ImmutabilityPolicy

        blob = self._blob_service().get_blob_client(self.container, self._name(key))
        policy = ImmutabilityPolicy(expiry_time=until, policy_mode=IMMUTABILITY_MODES[mode])
        try:
            blob.set_immutability_policy(policy)
        except HttpResponseError as exc:
            status = int(exc.status_code or 0)
            if status == 501:
                hint = (
                    "; this server does not implement blob immutability policies (azurite"
                    " does not): use Azure itself, or leave out --object-lock"
                )
            elif status in (401, 403):
                hint = (
                    "; the SAS needs the i (set immutability policy) permission, or use the"
                    " account key"
                )
            else:
                hint = "; the container needs version-level immutability enabled"
            failure = f"cannot lock {key} in {self.url}: {_sdk_error(exc)}"
            raise StorageError(failure + hint) from None
        except Exception as exc:
            raise StorageError(f"cannot lock {key} in {self.url}: {one_line(exc)}") from None

    def retained_until(self, key: str) -> datetime | None:
        if not self._account_key and not self._sas:
            return None
        blob = self._blob_service().get_blob_client(self.container, self._name(key))
        try:
            properties = blob.get_blob_properties()
        except Exception:
            return None  # gone, or not readable: not judged locked
        until = properties.immutability_policy.expiry_time
        return until if isinstance(until, datetime) else None

    def _blob_service(self) -> Any:
        from azure.core.credentials import AzureNamedKeyCredential
        from azure.storage.blob import BlobServiceClient

        credential: Any = (
            AzureNamedKeyCredential(self.account, self._account_key)
            if self._account_key
            else self._sas
        )
        return BlobServiceClient(
            (self.endpoint or f"https://{self.account}.blob.core.windows.net").rstrip("/"),
            credential=credential,
            retry_total=1,
            connection_timeout=self._settings.connect_timeout,
            read_timeout=self._settings.timeout,
        )

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


def container_settings(base: BucketFacts, service: Any, container: Any, probe: Any) -> BucketFacts:
    """What the SDK's replies say: service properties (a dict), ContainerProperties and the
    probe's BlobProperties (or None), each replaced by the HTTP status when refused."""
    soft_delete = ""
    logging = Setting("unknown", f"HTTP {service} reading the service properties")
    if not isinstance(service, int):
        log = service.get("analytics_logging")
        flags = [op for op in ("read", "write", "delete") if log is not None and getattr(log, op)]
        logging = (
            Setting("on", f"Storage Analytics logs {', '.join(flags)}")
            if flags
            else Setting("off", "Storage Analytics logging off")
        )
        policy = service.get("delete_retention_policy")
        if policy is not None and policy.enabled:
            soft_delete = f"; blob soft delete {policy.days} days"
        else:
            soft_delete = "; blob soft delete off"

    if probe is not None and not isinstance(probe, int):
        versioning = (
            Setting("on", f"enabled{soft_delete}")
            if probe.version_id
            else Setting("off", f"off (a new blob got no version id){soft_delete}")
        )
    else:
        versioning = Setting("unknown", f"no probe blob to tell from{soft_delete}")

    encryption = Setting("unknown", f"HTTP {container} reading the container")
    retention = encryption
    lockable = None
    if not isinstance(container, int):
        given = container.encryption_scope
        scope = (given and given.default_encryption_scope) or "$account-encryption-key"
        encryption = Setting("on", f"always on; default encryption scope {scope}")
        flags = [
            label
            for attribute, label in (
                ("has_immutability_policy", "time-based policy"),
                ("has_legal_hold", "legal hold"),
                (
                    "immutable_storage_with_versioning_enabled",
                    "version-level immutability (bika init --object-lock can lock backups)",
                ),
            )
            if getattr(container, attribute)
        ]
        retention = Setting("on", ", ".join(flags)) if flags else Setting("off", "off")
        lockable = bool(container.immutable_storage_with_versioning_enabled)
    return replace(
        base,
        versioning=versioning,
        encryption=encryption,
        logging=logging,
        retention=retention,
        lockable=lockable,
    )


def _sdk_error(exc: Any) -> str:
    """HTTP status and the service's error code of an Azure SDK error, on one line."""
    code = getattr(exc, "error_code", None) or ""
    message = one_line(exc)
    return f"HTTP {exc.status_code}" + (f" {code}" if code else "") + f": {message}"
