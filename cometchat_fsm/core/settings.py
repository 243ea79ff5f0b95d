"""App settings: the mode switch of the page, and the timing figures of the rules (docs/rules.md).

The defaults are the documented constants (specs/constants.toml holds the same figures, and a
test keeps the two equal). Validation is L3: it happens at init, not at construction, so that
the error is the SDK's and carries its code.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cometchat_fsm.core.errors import INIT_FAILED

#: CometChat's data regions; `init` refuses any other.
REGIONS = frozenset({"us", "eu", "in"})

INIT_SUCCESS = "Initialization completed successfully"


class Mode(enum.StrEnum):
    """The SDK's connection mode, from `AppSettings.auto_establish_socket_connection`: AUTO keeps
    a connection while logged in and in the foreground (A1, A2), MANUAL connects only on
    `connect()` (M1-M5). A `StrEnum`: the member equals the word `simulate --auto/--manual` and
    traces use ("auto", "manual")."""

    AUTO = "auto"
    MANUAL = "manual"


@dataclass(frozen=True, slots=True)
class AppSettings:
    """What `init` receives. Times are in seconds."""

    region: str
    auto_establish_socket_connection: bool = True
    background_window: float = 30.0  # M2, D2
    inbox_limit: int = 1000  # D21: received messages held for the app at most (not yet taken)
    keepalive_interval: float = 15.0  # D7
    pong_timeout: float = 3.0  # D7
    backoff_base: float = 1.0  # D6
    backoff_cap: float = 30.0  # D6
    max_reconnect_attempts: int | None = None  # D6: unlimited by default
    connect_timeout: float = 10.0  # P2: an attempt that gets no answer fails
    stable_after: float = 10.0  # D14: a connection held this long resets the retry count
    max_retry_after: float = 300.0  # D18: a server's retry-after hint is honoured up to this

    @property
    def mode(self) -> Mode:
        """`Mode.AUTO` if `auto_establish_socket_connection` is true, else `Mode.MANUAL`."""
        return Mode.AUTO if self.auto_establish_socket_connection else Mode.MANUAL


def init(app_id: str, settings: AppSettings) -> str:
    """L3: check the app id and settings; return the SDK's success message or raise its error."""
    problems: list[str] = []
    if not isinstance(app_id, str) or not app_id.strip():
        problems.append("the app id is empty")
    if not isinstance(settings, AppSettings):
        problems.append(f"settings must be an AppSettings, not {type(settings).__name__}")
    else:
        if not isinstance(settings.region, str) or settings.region.strip().lower() not in REGIONS:
            problems.append(f"unknown region {settings.region!r} (known: {', '.join(sorted(REGIONS))})")
        for name in ("background_window", "keepalive_interval", "pong_timeout", "backoff_base",
                     "backoff_cap", "connect_timeout", "stable_after", "max_retry_after"):
            value = getattr(settings, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                problems.append(f"{name} must be a positive number of seconds, not {value!r}")
        inbox = settings.inbox_limit
        if not isinstance(inbox, int) or isinstance(inbox, bool) or inbox < 1:
            problems.append(f"inbox_limit must be a whole number >= 1, not {inbox!r}")
        limit = settings.max_reconnect_attempts
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
            problems.append(f"max_reconnect_attempts must be None or a whole number >= 0, not {limit!r}")
    if problems:
        raise INIT_FAILED.exception("; ".join(problems))
    return INIT_SUCCESS
