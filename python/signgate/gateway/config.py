"""Gateway configuration: keys, their secrets, the headers they add and where they may go.

Configuration is validated when it is read, at start-up and at every reload (``SIGHUP``); a
mistake stops the start with a :class:`ConfigError` naming the file, the key and the field, and a
reload that meets one keeps the configuration already running.

Secrets and header values come from the file itself, from the environment (``secret_env``,
``${VAR}``: the gateway's environment never changes while it runs) or from files
(``secret_file``, ``${file:/path}``: read again at every reload, so a secret rotated on disk
takes effect with a ``SIGHUP``).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import scheme, storeurl
from ..errors import ConfigError
from .store import Limits
from .upstream.models import Target
from .usage import UsageRecord

__all__ = ["ConfigError", "GatewayConfig", "KeyConfig", "UpstreamPrefix", "load_toml"]

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VAR = re.compile(r"\$\{(?:([A-Za-z_][A-Za-z0-9_]*)|file:([^}]+))\}")
_SIZE = re.compile(r"(\d+)\s*(|b|k|kb|kib|m|mb|mib)", re.I)
_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 2**20, "mb": 2**20, "mib": 2**20}


@dataclass(frozen=True, slots=True)
class UpstreamPrefix:
    """An allowed upstream: an exact origin and a path prefix that ends at a segment boundary."""

    scheme: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, text: str, where: str) -> UpstreamPrefix:
        url = scheme.normalize_upstream(text)
        if url is None or not url.startswith(("http://", "https://")):
            raise ConfigError(f"{where}: {text!r} is not an http(s) URL prefix, e.g. 'https://api.openai.com/v1/'")
        parsed = Target.from_url(url)
        if parsed is None:
            raise ConfigError(f"{where}: {text!r} must not hold a user name or password")
        if "?" in url or "#" in url:
            raise ConfigError(f"{where}: {text!r} must not hold a query or fragment")
        return cls(*parsed[:3], parsed[3].split("?", 1)[0])

    def allows(self, target: Target) -> bool:
        target_scheme, host, port, path = target
        if (target_scheme, host, port) != (self.scheme, self.host, self.port):
            return False
        if self.path.endswith("/"):
            return path.startswith(self.path)
        return path == self.path or path.startswith(self.path + "/") or path.startswith(self.path + "?")

    def __str__(self) -> str:
        default = 443 if self.scheme == "https" else 80
        port = "" if self.port == default else f":{self.port}"
        return f"{self.scheme}://{self.host}{port}{self.path}"


@dataclass(frozen=True, slots=True)
class KeyConfig:
    """One signing key: its secrets (several while rotating), what it adds, where it may go."""

    id: str
    secrets: tuple[str, ...]
    headers: tuple[tuple[str, str], ...] = ()
    allow_upstreams: tuple[UpstreamPrefix, ...] = ()
    cors_origins: tuple[str, ...] = ()
    max_expires: int | None = None
    limits: Limits = field(default_factory=Limits)
    tenant_limits: Limits = field(default_factory=Limits)
    user_limits: Limits = field(default_factory=Limits)
    #: The lower-case names of the headers this key adds (they replace the client's).
    header_names: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "header_names", frozenset(name.lower() for name, _ in self.headers))
        # Origins compare lower-cased (a browser sends the scheme and host in lower case).
        object.__setattr__(self, "cors_origins", tuple(origin.lower() for origin in self.cors_origins))

    @property
    def has_budgets(self) -> bool:
        return any(x.tokens_per_day for x in (self.limits, self.tenant_limits, self.user_limits))

    def __repr__(self) -> str:  # never show secrets or header values
        return f"KeyConfig(id={self.id!r}, secrets=<{len(self.secrets)}>, headers={[k for k, _ in self.headers]})"


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Everything a gateway process needs. Sizes in bytes, times in seconds."""

    keys: dict[str, KeyConfig] = field(default_factory=dict)
    cors_origins: tuple[str, ...] = ()
    allow_private_upstreams: bool = False
    max_body: int = 1024 * 1024
    max_buffered: int = 64 * 1024 * 1024
    max_header_bytes: int = 16 * 1024
    max_streams: int = 9000
    max_expires: int = 3600
    skew: int = 60
    connect_timeout: float = 10.0
    read_timeout: float = 300.0
    client_timeout: float = 30.0
    header_timeout: float = 10.0
    shutdown_timeout: float = 30.0
    store: str | None = None
    store_fail_open: bool = False
    usage_webhook: str | None = None
    usage_hook: Callable[[UsageRecord], Any] | None = None
    workers: int = 1
    #: With ``admin_port``, ``signgate serve`` answers admin requests (revoke, reload) there, on
    #: ``admin_host``, to callers with ``admin_token`` (never on the public port).
    admin_host: str = "127.0.0.1"
    admin_port: int | None = None
    admin_token: str | None = None
    #: End live streams a revocation covers, instead of letting the ones already admitted finish.
    revoke_live: bool = False

    def __repr__(self) -> str:
        return f"GatewayConfig(keys={sorted(self.keys)}, max_streams={self.max_streams})"

    @property
    def longest_lifetime(self) -> int:
        """How long after its ``X-Sw-Date`` a URL this gateway accepts can still be valid: the
        longest ``X-Sw-Expires`` any key accepts, the clock skew, and a second of rounding. A
        revocation is kept this long."""
        longest = max([self.max_expires, *(key.max_expires or self.max_expires for key in self.keys.values())])
        return longest + self.skew + 1

    def with_key(self, key: KeyConfig) -> GatewayConfig:
        if key.id in self.keys:
            raise ConfigError(f"key {key.id!r} is configured twice")
        return replace(self, keys={**self.keys, key.id: key})


def expand_env(template: str, where: str) -> str:
    """Replace ``${VAR}`` with the environment's value and ``${file:PATH}`` with the file's
    content (without its final line end); a missing variable or an unreadable or empty file is a
    ConfigError naming it (never a value)."""

    def value(match: re.Match[str]) -> str:
        name, path = match.group(1), match.group(2)
        if path is not None:
            return read_secret_file(path, where)
        got = os.environ.get(name)
        if not got:
            raise ConfigError(f"{where}: the environment variable {name} is not set or empty")
        return got

    return _VAR.sub(value, template)


def read_secret_file(path: str, where: str) -> str:
    """The secret a file holds: its text without the final line end. Raises ConfigError naming
    the file when it cannot be read or is empty; never shows what it holds."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read the secret file {path!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: the secret file {path!r} is not UTF-8 text") from None
    text = text.removesuffix("\n").removesuffix("\r")
    if not text:
        raise ConfigError(f"{where}: the secret file {path!r} is empty")
    return text


def check_header(name: str, value: str, where: str) -> tuple[str, str]:
    if not _TOKEN.fullmatch(name):
        raise ConfigError(f"{where}: {name!r} is not a valid header name")
    if any(c in value for c in "\r\n\x00"):
        raise ConfigError(f"{where}: the value of {name!r} contains CR, LF or NUL")
    return name, value.strip()


def check_key_id(key_id: str, where: str) -> str:
    if not key_id or "/" in key_id:
        raise ConfigError(f"{where}: key id {key_id!r} must be non-empty and must not contain '/'")
    return key_id


def check_origin(origin: str, where: str) -> str:
    if origin == "*":
        return origin
    if not re.fullmatch(r"https?://[^/?#\s]+", origin):
        raise ConfigError(f"{where}: {origin!r} is not an origin like 'https://app.example.com' (no path) or '*'")
    return origin.lower()


def parse_size(value: Any, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = _SIZE.fullmatch(str(value).strip())
    if not match or int(match.group(1)) <= 0:
        raise ConfigError(f"{where}: {value!r} is not a size like 1048576, '512k' or '1MiB'")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def _positive(value: Any, where: str, kind: type = float) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{where}: must be a positive number, got {value!r}")
    if kind is int and not isinstance(value, int):
        raise ConfigError(f"{where}: must be a whole number, got {value!r}")
    return kind(value)


def _str_list(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: must be a list of strings")
    return list(value)


_GATEWAY_FIELDS: dict[str, Callable[[Any, str], Any]] = {
    "max_body": lambda v, w: parse_size(v, w),
    "max_header_bytes": lambda v, w: parse_size(v, w),
    "max_buffered": lambda v, w: parse_size(v, w),
    "max_streams": lambda v, w: _positive(v, w, int),
    "max_expires": lambda v, w: _positive(v, w, int),
    "skew": lambda v, w: _positive(v, w, int),
    "connect_timeout": lambda v, w: _positive(v, w),
    "read_timeout": lambda v, w: _positive(v, w),
    "client_timeout": lambda v, w: _positive(v, w),
    "header_timeout": lambda v, w: _positive(v, w),
    "shutdown_timeout": lambda v, w: _positive(v, w),
}
_GATEWAY_OTHER = ("cors_origins", "allow_private_upstreams", "store", "store_fail_open", "usage_webhook")
_KEY_FIELDS = {
    "secrets",
    "secret_env",
    "secret_file",
    "headers",
    "allow_upstreams",
    "cors_origins",
    "max_expires",
    "limits",
}
_LIMIT_SCOPES = ("key", "tenant", "user")


def check_store(value: Any, where: str) -> str:
    """A store URL in one of the forms of :mod:`signgate.gateway.storeurl`, checked at start-up."""
    if not isinstance(value, str):
        raise ConfigError(f"{where}: {value!r} is not a store; use {storeurl.EXAMPLES}")
    try:
        storeurl.parse(value)
    except storeurl.StoreURLError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return value


def check_webhook(value: Any, where: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"https?://\S+", value):
        raise ConfigError(f"{where}: {value!r} is not an http(s) URL")
    return value


def parse_limits(table: Any, where: str) -> Limits:
    """A ``{requests_per_minute, concurrent_streams, tokens_per_day}`` table."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    unknown = set(table) - set(Limits.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"{where}: unknown limit(s) {sorted(unknown)}; known: {sorted(Limits.__dataclass_fields__)}")
    return Limits(**{name: _positive(value, f"{where}.{name}", int) for name, value in table.items()})


def parse_limit_flag(spec: str, table: dict[str, Any]) -> None:
    """``--limit user.requests_per_minute=10`` into a key's ``limits`` table:
    ``table["user"]["requests_per_minute"] = 10`` (a ``key.`` limit goes in the table itself)."""
    name, sep, value = spec.partition("=")
    scope, dot, limit = name.strip().partition(".")
    if not sep or not dot or scope not in _LIMIT_SCOPES or limit not in Limits.__dataclass_fields__:
        raise ConfigError(
            f"--limit {spec!r} must look like SCOPE.LIMIT=N with SCOPE in {list(_LIMIT_SCOPES)} "
            f"and LIMIT in {sorted(Limits.__dataclass_fields__)}"
        )
    if not (value.strip().isascii() and value.strip().isdigit()) or int(value) < 1:
        raise ConfigError(f"--limit {spec!r}: N must be a positive whole number")
    (table if scope == "key" else table.setdefault(scope, {}))[limit] = int(value)


def limits_by_scope(tables: dict[str, Any], where: str) -> dict[str, Limits]:
    """The key's ``limits`` table: its own numbers, and ``tenant`` and ``user`` sub-tables."""
    if not isinstance(tables, dict):
        raise ConfigError(f"{where}: must be a table")
    own = {k: v for k, v in tables.items() if k not in ("tenant", "user")}
    return {
        "limits": parse_limits(own, where),
        "tenant_limits": parse_limits(tables.get("tenant", {}), f"{where}.tenant"),
        "user_limits": parse_limits(tables.get("user", {}), f"{where}.user"),
    }


def load_toml(path: str | Path, base: GatewayConfig | None = None) -> GatewayConfig:
    """Read a TOML configuration file (format in docs/operations.md) on top of ``base``."""
    where = str(path)
    try:
        data = tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read the file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None

    config = base or GatewayConfig()
    unknown = set(data) - {"gateway", "keys"}
    if unknown:
        raise ConfigError(f"{where}: unknown section(s) {sorted(unknown)}; expected [gateway] and [keys.<id>]")
    gateway = data.get("gateway", {})
    changes: dict[str, Any] = {}
    for name, value in gateway.items():
        field_where = f"{where}: gateway.{name}"
        if name in _GATEWAY_FIELDS:
            changes[name] = _GATEWAY_FIELDS[name](value, field_where)
        elif name == "cors_origins":
            changes[name] = tuple(check_origin(o, field_where) for o in _str_list(value, field_where))
        elif name in ("allow_private_upstreams", "store_fail_open"):
            if not isinstance(value, bool):
                raise ConfigError(f"{field_where}: must be true or false")
            changes[name] = value
        elif name == "store":
            changes[name] = check_store(value, field_where)
        elif name == "usage_webhook":
            changes[name] = check_webhook(value, field_where)
        else:
            known = sorted([*_GATEWAY_FIELDS, *_GATEWAY_OTHER])
            raise ConfigError(f"{field_where}: unknown setting; known: {known}")
    config = replace(config, **changes)

    keys = data.get("keys", {})
    if not isinstance(keys, dict):
        raise ConfigError(f"{where}: [keys] must be tables like [keys.my-app]")
    for key_id, table in keys.items():
        config = config.with_key(key_from_table(key_id, table, f"{where}: keys.{key_id}"))
    return config


def key_from_table(
    key_id: str,
    table: Any,
    where: str,
    *,
    labels: Mapping[str, str] | None = None,
    literal_headers: Sequence[tuple[str, str]] = (),
) -> KeyConfig:
    """The one way a key is built, from a ``[keys.<id>]`` table or from ``signgate serve``'s flags
    (turned into such a table). ``where`` starts every error message; ``labels`` name a field the
    way the user wrote it (``secret_env`` as ``--secret-env``); ``literal_headers`` are added
    as given, without ``${VAR}`` expansion (``--header``). Raises ConfigError."""
    label = {field: f"{where}.{field}" for field in _KEY_FIELDS} | dict(labels or {})
    check_key_id(key_id, where)
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    unknown = set(table) - _KEY_FIELDS
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {sorted(unknown)}; known: {sorted(_KEY_FIELDS)}")
    secrets = _str_list(table.get("secrets", []), label["secrets"])
    for var in _str_list(table.get("secret_env", []), label["secret_env"]):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", var):
            raise ConfigError(f"{label['secret_env']}: {var[:40]!r} is not an environment variable name")
        secrets.append(expand_env("${" + var + "}", label["secret_env"]))
    for path in _str_list(table.get("secret_file", []), label["secret_file"]):
        secrets.append(read_secret_file(path, label["secret_file"]))
    if not secrets or not all(secrets):
        raise ConfigError(
            f"{where}: needs at least one non-empty secret "
            '(secrets = [...], secret_env = ["VAR"] or secret_file = ["/path"])'
        )
    headers_table = table.get("headers", {})
    if not isinstance(headers_table, dict):
        raise ConfigError(f'{label["headers"]}: must be a table of name = "value"')
    headers = [
        check_header(name, expand_env(str(value), f"{label['headers']} {name}"), label["headers"])
        for name, value in headers_table.items()
    ]
    headers += [check_header(name, value, "--header") for name, value in literal_headers]
    uppers = tuple(
        UpstreamPrefix.parse(p, label["allow_upstreams"])
        for p in _str_list(table.get("allow_upstreams", []), label["allow_upstreams"])
    )
    origins = tuple(
        check_origin(o, label["cors_origins"]) for o in _str_list(table.get("cors_origins", []), label["cors_origins"])
    )
    max_expires = table.get("max_expires")
    limits = limits_by_scope(table.get("limits", {}), label["limits"])
    return KeyConfig(
        id=key_id,
        secrets=tuple(secrets),
        headers=tuple(headers),
        allow_upstreams=uppers,
        cors_origins=origins,
        max_expires=None if max_expires is None else _positive(max_expires, label["max_expires"], int),
        **limits,
    )
