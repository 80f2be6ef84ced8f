"""MQTT topic filters and topic templates: which levels of a topic carry a site or device id.

A template is a topic with whole levels replaced by placeholders, e.g. `sensors/{site_id}/{device_id}`:

    {site_id}, {device_id}   the level is that id (each at most once)
    +                        any one level, ignored
    #                        any number of further levels, ignored (last level only)

Anything else is a literal level the topic must have. `fields("sensors/GH1/GH1-D01")` gives
`{"site_id": "GH1", "device_id": "GH1-D01"}`; a topic that does not fit gives None (its payload
must then carry its own ids). The ids are used only when the payload lacks them.
"""

from dataclasses import dataclass

PLACEHOLDERS = ("site_id", "device_id")
MAX_TOPIC_BYTES = 65535


def check_topic_filter(topic_filter: str) -> str:
    """`topic_filter` if it is a valid MQTT subscription filter, else a ValueError saying why."""
    _check_text("topic filter", topic_filter)
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            raise ValueError(
                f"invalid MQTT topic filter {topic_filter!r}: '#' must be a whole level, the last"
            )
        if "+" in level and level != "+":
            raise ValueError(
                f"invalid MQTT topic filter {topic_filter!r}: '+' must be a whole level"
            )
    return topic_filter


def check_topic_name(topic: str) -> str:
    """`topic` if messages may be published to it (no wildcards), else a ValueError."""
    _check_text("topic", topic)
    if "+" in topic or "#" in topic:
        raise ValueError(f"invalid MQTT topic {topic!r}: wildcards '+' and '#' are for filters")
    return topic


def _check_text(what: str, text: str) -> None:
    if not text:
        raise ValueError(f"empty MQTT {what}")
    if "\x00" in text:
        raise ValueError(f"invalid MQTT {what} {text!r}: contains a NUL character")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_TOPIC_BYTES:
        raise ValueError(f"MQTT {what} longer than {MAX_TOPIC_BYTES} bytes")


@dataclass(frozen=True)
class TopicTemplate:
    text: str
    levels: tuple[str, ...]  # literal text, "{site_id}", "{device_id}", "+" or "#"

    @classmethod
    def parse(cls, text: str) -> "TopicTemplate":
        def bad(why: str) -> ValueError:
            return ValueError(
                f"invalid MQTT topic template {text!r}: {why}. Example: sensors/{{site_id}}/"
                "{device_id}; placeholders are {site_id} and {device_id}, each a whole level; "
                "'+' skips one level, a final '#' any further levels"
            )

        if not text:
            raise bad("it is empty")
        levels = tuple(text.split("/"))
        seen: set[str] = set()
        for index, level in enumerate(levels):
            if level.startswith("{") and level.endswith("}"):
                name = level[1:-1]
                if name not in PLACEHOLDERS:
                    raise bad(f"unknown placeholder {level}")
                if name in seen:
                    raise bad(f"{level} appears twice")
                seen.add(name)
            elif "{" in level or "}" in level:
                raise bad(f"level {level!r}: a placeholder must be a whole level")
            elif level == "#":
                if index != len(levels) - 1:
                    raise bad("'#' must be the last level")
            elif "#" in level or "+" in level and level != "+":
                raise bad(f"level {level!r}: '+' and '#' must be whole levels")
            elif "\x00" in level:
                raise bad("it contains a NUL character")
        if not seen:
            raise bad("it has no placeholder, so it carries no id")
        return cls(text, levels)

    def fields(self, topic: str) -> dict[str, str] | None:
        """The ids `topic` carries, or None when it does not fit the template."""
        parts = topic.split("/")
        levels = self.levels
        if levels[-1] == "#":
            levels = levels[:-1]
            if len(parts) < len(levels):
                return None
        elif len(parts) != len(levels):
            return None
        found: dict[str, str] = {}
        for level, part in zip(levels, parts, strict=False):
            if level[0:1] == "{":
                if not part:  # an empty level is no id
                    return None
                found[level[1:-1]] = part
            elif level != "+" and level != part:
                return None
        return found

    def topic(self, *, site_id: str, device_id: str) -> str:
        """The topic to publish one device's messages to (templates without '+' or '#')."""
        values = {"site_id": site_id, "device_id": device_id}
        parts = []
        for level in self.levels:
            if level in ("+", "#"):
                raise ValueError(
                    f"cannot publish with topic template {self.text!r}: it has wildcard levels"
                )
            if level[0:1] == "{":
                value = values[level[1:-1]]
                if not value or any(c in value for c in "/+#\x00"):
                    raise ValueError(
                        f"{level[1:-1]} {value!r} cannot be a topic level (empty, or has / + # NUL)"
                    )
                level = value
            parts.append(level)
        return check_topic_name("/".join(parts))
