"""Notification channels (Discord, Slack, a generic JSON webhook), their routing, and URL masking.

A webhook URL is a secret: whoever has it can post to the channel. It never leaves this package
unmasked: `Channel` does not print it, and `mask_url` / `redact` turn it into
`https://discord.com/api/webhooks/***` wherever a text might reach a log, metadata or the UI.
"""

from dataclasses import dataclass, field
from urllib.parse import urlsplit

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
        parts = urlsplit(self.url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            # The URL itself stays out of the message: it may be a secret with a typo.
            raise ValueError(f"channel {self.name!r}: the webhook URL must be http(s)://host/...")

    @property
    def masked_url(self) -> str:
        return mask_url(self.url)

    def accepts(self, severity: str, site_id: str | None) -> bool:
        if SEVERITIES[severity] < SEVERITIES[self.min_severity]:
            return False
        return not self.sites or site_id in self.sites


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
        text = text.replace(channel.url, channel.masked_url)
        for segment in urlsplit(channel.url).path.split("/"):
            if len(segment) >= 8 and segment not in _PUBLIC_SEGMENTS:  # tokens, not "hook"
                text = text.replace(segment, "***")
    return text
