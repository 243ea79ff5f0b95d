"""The commands on real sockets: `serve` runs the reference server until Ctrl-C or SIGTERM, `demo`
runs the scripted day on loopback; both import trio late, so the other commands do not load it.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

from cometchat_fsm.cli.usage import fail
from cometchat_fsm.files import history_file


async def _until_interrupted() -> None:
    """Block until Ctrl-C; a seam so that tests can stop `serve` at once."""
    import trio

    await trio.sleep_forever()


async def _until_stopped(sigterm: AsyncIterator[int]) -> None:
    """Block until Ctrl-C (KeyboardInterrupt, raised) or SIGTERM (a normal return): either way
    the server's block then exits and shuts it down, removing its temporary history."""
    import trio

    from cometchat_fsm.trio.groups import single_exception

    try:
        async with trio.open_nursery() as nursery:
            async def stop_on_sigterm() -> None:
                async for _ in sigterm:
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(stop_on_sigterm)
            await _until_interrupted()
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:  # a strict nursery wraps Ctrl-C's KeyboardInterrupt
        raise single_exception(group) from None


def serve_command(args: argparse.Namespace) -> int:
    import signal
    import sqlite3

    import trio  # imported late, like Hypothesis: only `serve` needs the network stack

    from cometchat_fsm.server.control import open_control
    from cometchat_fsm.server.reference import LOGIN_PATH, SOCKET_PATH, serve_reference

    if args.history is not None:
        history_file(args.history)  # before a port is taken: no directory is ever created

    async def run() -> None:
        # SIGTERM is caught from before the first line is printed, so a supervisor that stops
        # the server once it is up always gets the same shutdown as Ctrl-C.
        with trio.open_signal_receiver(signal.SIGTERM) as sigterm:
            async with serve_reference(args.host, args.port, auth_key=args.auth_key, users=args.users,
                                       history=args.history) as server:
                print(f"serving {server.url} (login: {LOGIN_PATH}, realtime socket: {SOCKET_PATH})")
                if args.history:
                    print(f"history: {args.history}")
                print(f"auth key: {server.auth_key}")
                print(f"users: {', '.join(sorted(server.users)) or '(none: pass --user UID)'}", flush=True)
                if args.control is None:
                    await _until_stopped(sigterm)
                    return
                async with open_control(server, args.control) as port:
                    print(f"control: 127.0.0.1:{port} (JSON Lines, docs/control-channel.md)", flush=True)
                    await _until_stopped(sigterm)

    try:
        trio.run(run)  # returns on SIGTERM
    except KeyboardInterrupt:
        pass
    except sqlite3.Error as exc:
        return fail("serve", f"cannot use the history file {args.history}: {exc}")
    except OSError as exc:
        control = "" if args.control is None else f" (or the control port 127.0.0.1:{args.control})"
        return fail("serve", f"cannot listen on {args.host}:{args.port}{control}: {exc.strerror or exc}")
    print("server stopped")
    return 0


def demo_command(args: argparse.Namespace) -> int:
    from cometchat_fsm.cli.demo import (
        main as run_demo,  # imported late, like `serve`: only it needs the network stack
    )

    return run_demo(seed=args.seed)
