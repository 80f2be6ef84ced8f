"""The two ways a message broker (Kafka, MQTT) fails a client, shared by every source.

`BrokerUnavailable`: it could not be reached, did not answer in time or dropped us; nothing was
read, committed or acknowledged, so trying again later is right. `BrokerAccessDenied`: it
answered and refused this client (credentials, authorization, TLS, protocol); a person must act.
Messages name the broker and the user, never a password.
"""


class BrokerUnavailable(Exception):
    """The broker could not be reached or did not answer in time; nothing was read or changed."""


class BrokerAccessDenied(Exception):
    """The broker answered but refused this client (credentials, authorization, TLS, protocol).

    Retrying does not help: a person must fix the configuration. The message names the broker,
    how we presented ourselves and the user, and never a password."""


def describe_error(exc: BaseException) -> str:
    """An exception as one line for a message: its type, then its text unless that names it."""
    text = str(exc)
    name = type(exc).__name__
    if not text:
        return name
    return text if name in text else f"{name}: {text}"
