"""Test-session setup shared by every test module."""

from __future__ import annotations

import asyncio

import trio_asyncio  # noqa: F401  (imported here so that the policy below is set after its patch)

# trio_asyncio (tests/asyncio_bridge.py runs the asyncio client on trio's virtual clock) patches
# asyncio's policy functions when imported: outside a trio run, `asyncio.run` would then get a
# loop that runs inside a trio task of its own thread, where `trio.from_thread` refuses to work
# (the asyncio server's `run_sync`). The tests of the asyncio front end run it as users do, on
# asyncio's own loop, whatever test module imported trio_asyncio before them.
asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
