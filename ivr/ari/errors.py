"""Exceptions raised by the ARI client and the events stream.

Every HTTP error carries the ARI ``message`` from the response body (Asterisk answers errors with
``{"message": "..."}``), the status, and the method and path of the request (never the credentials).
Use the specific classes to react to the cases an IVR meets in practice, e.g. :class:`UnprocessableEntity`
("Channel not in Stasis application") while a media channel's ``StasisStart`` is still in flight.
"""

from __future__ import annotations


class AriError(Exception):
    """Base class of everything this package raises."""


class AriConnectionError(AriError):
    """Asterisk could not be reached (refused, reset, DNS, timeout) or answered something that is not ARI."""


class BadReply(AriConnectionError):
    """Something answered at the ARI URL, but not with ARI: not HTTP, too large, not UTF-8, not JSON,
    nested too deep, or not the object that was asked for. The message is one short line."""


class AriHttpError(AriError):
    """ARI answered with an HTTP error status; ``message`` is the ARI error text."""

    status: int = 0

    def __init__(self, status: int, message: str, *, method: str = "", path: str = "") -> None:
        self.status = status
        self.message = message
        self.method = method
        self.path = path
        where = f" ({method} {path})" if method else ""
        super().__init__(f"ARI {status}: {message}{where}")


class BadRequest(AriHttpError):
    """400: invalid or missing parameters (e.g. externalMedia "data can not be empty")."""


class Unauthorized(AriHttpError):
    """401: wrong ARI user or password."""


class Forbidden(AriHttpError):
    """403: the ARI user may not do this (read-only user)."""


class NotFound(AriHttpError):
    """404: no such channel, bridge, variable or resource."""


class Conflict(AriHttpError):
    """409: e.g. "Channel not in a Stasis application" or an id that already exists."""


class PreconditionFailed(AriHttpError):
    """412: "Channel in invalid state"."""


class UnprocessableEntity(AriHttpError):
    """422: e.g. addChannel before the channel's StasisStart: "Channel not in Stasis application"."""


class ServerError(AriHttpError):
    """500 and other 5xx: Asterisk failed internally (e.g. externalMedia with a non-UUID ``data``)."""


_BY_STATUS: dict[int, type[AriHttpError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    412: PreconditionFailed,
    422: UnprocessableEntity,
}


def error_for_status(status: int, message: str, *, method: str = "", path: str = "") -> AriHttpError:
    """Build the most specific exception for an HTTP error status."""
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else AriHttpError
    return cls(status, message, method=method, path=path)


class ApplicationReplacedError(AriError):
    """Another process opened the events WebSocket for the same application name and took it over.

    Asterisk allows one events connection per application; the newest wins. The events stream stops
    instead of reconnecting (which would take the name back and make both processes flap).
    """

    def __init__(self, app: str) -> None:
        self.app = app
        super().__init__(
            f"ARI application {app!r} was taken over by another connection "
            "(is a second `ivr run` using the same app name?); not reconnecting"
        )


class AriTimeout(AriConnectionError):
    """No answer within the request timeout. Asterisk may still carry the request out (and answer late)."""


class RequestTooLarge(AriError):
    """A request does not fit in one frame the peer accepts (Asterisk: 65,535 bytes); it was not sent."""
