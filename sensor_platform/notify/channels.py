"""Notification channels (Discord, Slack, a generic JSON webhook): routing, building them from
settings one by one, and URL masking.

A webhook URL is a secret: whoever has it can post to the channel. It never leaves this package
unmasked: `Channel` does not print it, and `mask_url` / `redact` turn it into
`https://discord.com/api/webhooks/***` wherever a text might reach a log, metadata or the UI. A
configuration error names the variable that holds the URL, never its value.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sensor_platform.detection.rules import SEVERITIES

CHANNEL_KINDS = ("discord", "slack", "webhook")

# The part of a path that is public knowledge for each service; everything after it is secret.
_PUBLIC_PREFIXES = ("/api/webhooks/", "/services/")
_PUBLIC_SEGMENTS = {"webhooks", "services"}


@dataclass(frozen=True)
class Channel:
    """Where alerts go. `sites` empty: every site. Episodes below `min_severity` are not sent."""

    name: str
    kind: str
    url: str = field(repr=False)
    min_severity: str = "warning"
    sites: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.kind not in CHANNEL_KINDS:
            raise ValueError(f"channel {self.name!r}: kind must be one of {CHANNEL_KINDS}")
        if self.min_severity not in SEVERITIES:
            raise ValueError(
                f"channel {self.name!r}: min_severity must be one of {sorted(SEVERITIES)}"
            )
        if url_problem(self.url):
            # The URL itself stays out of the message: it may be a secret with a typo.
            raise ValueError(f"channel {self.name!r}: the webhook URL must be http(s)://host/...")

    @property
    def masked_url(self) -> str:
        return mask_url(self.url)

    @property
    def post_url(self) -> str:
        """The URL requests go to. Discord gets `wait=true`, so that it answers once the message
        exists (200 with the message) instead of 204 before it is saved; the user's own query
        (e.g. `thread_id`) is kept."""
        if self.kind != "discord":
            return self.url
        parts = urlsplit(self.url)
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "wait"]
        return urlunsplit(parts._replace(query=urlencode([*query, ("wait", "true")])))

    def accepts(self, severity: str, site_id: str | None) -> bool:
        if SEVERITIES[severity] < SEVERITIES[self.min_severity]:
            return False
        return not self.sites or site_id in self.sites


def url_problem(url: str) -> str | None:
    """Why `url` cannot be a webhook URL (never quoting it), or None when it can."""
    if not isinstance(url, str) or url != url.strip() or any(ord(c) < 33 for c in url):
        return "is not an http(s) URL (it holds spaces or control characters)"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number in range
    except ValueError:
        return "is not an http(s) URL (it cannot be parsed)"
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return "is not an http(s) URL"
    return None


@dataclass(frozen=True)
class ChannelSetting:
    """One channel as configured: plain values and the names of the variables they came from
    (the names go into error messages; the values, which may be secrets, never do)."""

    name: str
    kind: str
    url: str | None
    url_variable: str
    min_severity: str | None = None
    min_severity_variable: str = ""
    sites: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChannelSetup:
    channels: list[Channel]  # the channels that are configured and valid
    errors: dict[str, str]  # channel name -> what is wrong, naming the variable only

    @property
    def configured(self) -> bool:
        """At least one channel was configured, valid or not."""
        return bool(self.channels or self.errors)


def build_channels(settings: Iterable[ChannelSetting]) -> ChannelSetup:
    """The valid channels and one clear error per invalid one: a bad channel stops no other.
    A setting without a URL is a channel that is not configured, not an error."""
    channels, errors = [], {}
    for setting in settings:
        if not setting.url:
            continue
        problem = url_problem(setting.url)
        if problem:
            errors[setting.name] = f"{setting.url_variable} {problem}"
            continue
        severity = setting.min_severity or "warning"
        if severity not in SEVERITIES:
            variable = setting.min_severity_variable or f"{setting.name} min_severity"
            errors[setting.name] = f"{variable} must be one of {sorted(SEVERITIES)}"
            continue
        sites = frozenset(s.strip() for s in setting.sites if s.strip())
        channels.append(Channel(setting.name, setting.kind, setting.url, severity, sites))
    return ChannelSetup(channels, errors)


def mask_url(url: str) -> str:
    """Scheme, host and the service's public path prefix only: the token never shows."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "***"
    if not parts.scheme or not host:
        return "***"
    prefix = next((p for p in _PUBLIC_PREFIXES if parts.path.startswith(p)), "/")
    return f"{parts.scheme}://{host}{port}{prefix}***"


def redact(text: str, channels: list[Channel] | tuple[Channel, ...]) -> str:
    """`text` with every channel URL, and every secret path in it, replaced by its masked form."""
    for channel in channels:
        text = text.replace(channel.post_url, channel.masked_url)
        text = text.replace(channel.url, channel.masked_url)
        parts = urlsplit(channel.url)
        secrets = [*parts.path.split("/"), *(v for _, v in parse_qsl(parts.query))]
        for secret in secrets:
            if len(secret) >= 8 and secret not in _PUBLIC_SEGMENTS:  # tokens, not "hook"
                text = text.replace(secret, "***")
    return text
