"""The demo's checks: each documented behaviour checked when it should happen (`expect`, `hold`,
`check`, message delivery and replay), one timeline row each, and the summary's counts.

Part of `cometchat-fsm demo` (cli/demo.py); the scripted day (cli/demo_day.py) builds on them.
"""

from __future__ import annotations

import trio

from cometchat_fsm.cli.demo_actor import Actor
from cometchat_fsm.cli.demo_timeline import DemoFailure, Timeline
from cometchat_fsm.core.errors import CometChatException
from cometchat_fsm.core.states import ConnectionStatus
from cometchat_fsm.server.faultproxy import FaultProxy
from cometchat_fsm.server.reference import ReferenceServer
from cometchat_fsm.trio.client import Message

#: Virtual seconds allowed for what is immediate on loopback (a login, an attempt, a relay).
QUICK = 2.0
#: Slack on a documented bound, for the loopback I/O between a timer firing and its effect.
SLACK = 0.05


class DemoChecks:
    """The checks that make the scripted day a test; a failed one prints a FAILED row and raises
    DemoFailure with what was expected and what happened."""

    def __init__(self, timeline: Timeline, server: ReferenceServer, alice: Actor, bob: Actor,
                 net: dict[str, FaultProxy], tasks: trio.Nursery) -> None:
        self.t = timeline
        self.server = server
        self.alice = alice
        self.bob = bob
        self.net = net
        self.tasks = tasks

    # --- checks ---------------------------------------------------------------------------------
    def fail(self, who: str, what: str, message: str) -> DemoFailure:
        self.t.row(who, what, "", "FAILED")
        return DemoFailure(message)

    def ok(self, who: str, what: str, status: str, notes: str) -> None:
        self.t.row(who, what, status, f"ok: {notes}")

    def check(self, actor: Actor, holds: bool, what: str, notes: str, failure: str) -> None:
        if not holds:
            raise self.fail(actor.name, f"check: {what}", f"{actor.name}: {what}: {failure}")
        self.ok(actor.name, f"check: {what}", actor.status.value, notes)

    def now_is(self, actor: Actor, status: ConnectionStatus, why: str) -> None:
        actual = actor.status
        self.check(actor, actual is status, f"{status.value} at once", why,
                   f"expected {status.value} right after the call, but it is {actual.value}")

    async def expect(self, actor: Actor, status: ConnectionStatus, *, within: float, after: float = 0.0,
                     since: float | None = None, why: str = "") -> float:
        """Wait until `actor` reports `status`, at most `within` and at least `after` seconds after
        `since` (default: now); return how long it took."""
        start = self.t.now() if since is None else since
        label = f"expect {status.value} within {within:g} s"
        mark = len(actor.notified)
        with trio.move_on_at(self.t.start + start + within):
            while actor.status is not status:  # bounded by the deadline
                await actor.changed()
        took = self.t.now() - start
        if actor.status is not status:
            heard = ", ".join(f"{name}@{at:.3f}" for at, name in actor.notified[mark:]) or "none"
            raise self.fail(actor.name, label, (
                f"{actor.name}: expected status {status.value} within {within:g} s ({why or 'the script'}), "
                f"but after {took:.3f} s it is {actor.status.value} (phase {actor.client.phase}); "
                f"notifications meanwhile: {heard}"))
        if took < after:
            raise self.fail(actor.name, label, (
                f"{actor.name}: expected {status.value} no sooner than {after:g} s ({why}), "
                f"but it came after {took:.3f} s"))
        self.ok(actor.name, label, status.value, f"after {took:.3f} s" + (f" ({why})" if why else ""))
        return took

    async def hold(self, actor: Actor, status: ConnectionStatus, seconds: float, *, why: str,
                   attempts_allowed: bool = False) -> int:
        """Check that `actor` stays at `status` for `seconds`: no notification, and (unless allowed)
        no socket attempt. Return the number of attempts seen."""
        label = f"check: stays {status.value} for {seconds:g} s"
        if actor.status is not status:
            raise self.fail(actor.name, label, f"{actor.name}: expected {status.value} to hold, "
                                               f"but it is {actor.status.value} from the start")
        notes, attempts = len(actor.notified), len(actor.attempts)
        await trio.sleep(seconds)
        heard = actor.notified[notes:]
        tried = actor.attempts[attempts:]
        if actor.status is not status or heard or (tried and not attempts_allowed):
            raise self.fail(actor.name, label, (
                f"{actor.name}: expected {status.value} for {seconds:g} s ({why}), but: status "
                f"{actor.status.value}, notifications {[n for _, n in heard]}, socket attempts {len(tried)}"))
        self.ok(actor.name, label, status.value, why)
        return len(tried)

    def sequence(self, actor: Actor, since: int, expected: list[str], why: str) -> None:
        heard = [name for _, name in actor.notified[since:]]
        self.check(actor, heard == expected, "notifications in order", f"{', '.join(heard)} ({why})",
                   f"expected {expected}, heard {heard}")

    async def server_sockets(self, actor: Actor, count: int, why: str) -> None:
        label = f"check: server holds {count} socket(s)"
        with trio.move_on_after(QUICK):
            await self.server.wait_open_sockets(count, actor.name)
        actual = self.server.open_sockets(actor.name)
        if actual != count:
            raise self.fail(actor.name, label, f"{actor.name}: expected {count} open socket(s) at the "
                                               f"server ({why}), it holds {actual}")
        self.ok(actor.name, label, actor.status.value, why)

    async def _send(self, sender: Actor, receiver: Actor, text: str) -> Message:
        """The app call and its row; the message as the server stamped it."""
        label = f'send_message("{receiver.name}", "{text}")'
        # Its row comes first: the delivery may be printed before the sender hears "sent".
        self.t.row(sender.name, label, sender.status.value)
        try:
            sent = await sender.client.send_message(receiver.name, text)
        except CometChatException as exc:
            raise self.fail(sender.name, label, f"{sender.name}: {label} raised {exc}") from None
        sender.sent.append(sent)
        return sent

    @staticmethod
    async def _delivered(receiver: Actor, sent: Message) -> list[Message]:
        """What `receiver` got with the id of `sent`, waiting at most QUICK for it to arrive."""
        with trio.move_on_after(QUICK):
            while not any(m.id == sent.id for m in receiver.inbox):  # bounded by the timeout
                await receiver.arrival()
        return [m for m in receiver.inbox if m.id == sent.id]

    async def send(self, sender: Actor, receiver: Actor, text: str) -> None:
        """Send and wait for the delivery; the server, not the sender, names the sender."""
        sent = await self._send(sender, receiver, text)
        got = await self._delivered(receiver, sent)
        if [(m.sender, m.receiver, m.text) for m in got] != [(sender.name, receiver.name, text)]:
            raise self.fail(receiver.name, f"check: message #{sent.id} delivered",
                            f"{receiver.name}: expected message #{sent.id} from {sender.name} ({text!r}) "
                            f"once within {QUICK:g} s, got {got}")

    async def send_to_absent(self, sender: Actor, receiver: Actor, text: str) -> Message:
        """Send to a user with no socket: the server keeps it (D13); nothing is delivered yet."""
        sent = await self._send(sender, receiver, text)
        self.ok(sender.name, f"check: message #{sent.id} kept by the server", sender.status.value,
                f"{receiver.name} has no socket; the server stores it (D13)")
        return sent

    async def replayed(self, receiver: Actor, sent: Message) -> None:
        """D13: after the reconnect the server replays what the receiver missed, exactly once."""
        got = await self._delivered(receiver, sent)
        info = receiver.connected_info
        label = f"check: message #{sent.id} replayed on return"
        if len(got) != 1 or info is None or not info.resumed or info.gap:
            raise self.fail(receiver.name, label, f"{receiver.name}: expected message #{sent.id} once, "
                                                  f"replayed without a gap; got {got}, on_connected({info})")
        self.ok(receiver.name, label, receiver.status.value,
                "D13: on_connected(info) said resumed, no gap; the replay came before live traffic")

    def note(self, who: str, what: str, notes: str = "") -> None:
        self.t.row(who, what, "", notes)
    def summary(self) -> None:
        self.t.section("Summary")
        expected = {"alice": 3, "bob": 2}  # alice: network restored, drop, half-open; bob: drop, outage
        self.t.print("user    mode    sockets opened  failed to open  connects  reconnects  sent  received")
        for actor, other in ((self.alice, self.bob), (self.bob, self.alice)):
            opened = sum(1 for attempt in actor.attempts if not attempt.error)
            failed = len(actor.attempts) - opened
            self.t.print(f"{actor.name:<7} {actor.mode:<7} {opened:>14}  {failed:>14}  {actor.connects:>8}  "
                         f"{actor.reconnects:>10}  {len(actor.sent):>4}  {len(actor.inbox):>8}")
            if actor.reconnects != expected[actor.name]:
                raise DemoFailure(f"{actor.name}: expected {expected[actor.name]} automatic reconnections, "
                                  f"counted {actor.reconnects}")
            if sorted(m.id for m in actor.sent) != sorted(m.id for m in other.inbox):
                raise DemoFailure(f"{other.name} did not receive exactly what {actor.name} sent")
        st = self.server.stats
        self.t.print(f"server: auths ok {st.auths_ok}, rejected {st.auths_rejected}; keep-alives "
                     f"answered {st.keepalives_answered}; pings {st.pings_received}; messages relayed "
                     f"{st.messages_relayed}, replayed {st.messages_replayed}; sockets dropped {st.dropped}")


