"""Exception groups from trio's strict nurseries, unwrapped where they hold one exception.

A caller of `async with open_client(...)` or `serve_reference(...)` expects to catch the
exception its own block raised, not an ExceptionGroup around it.
"""

from __future__ import annotations


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside `exc`, however deeply grouped."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


def single_exception(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception a group wraps, else the group itself."""
    found = leaves(group)
    return found[0] if len(found) == 1 else group
