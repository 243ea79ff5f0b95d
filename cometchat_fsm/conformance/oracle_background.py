"""The oracle's rules for the app's state and the network: the background and the foreground
(A1-A3, M2-M5, D2, D8), the manual background window coming due, the network lost and
restored (D6, D6a), and a restart (L2)."""

from __future__ import annotations

from cometchat_fsm.conformance.oracle_state import OracleState


class OracleBackground(OracleState):
    """Platform signals: app state, network, restart; the background window."""

    def enter_background(self) -> None:
        if not self.foreground:
            return
        self.foreground = False
        if not self.wants:
            return
        if self.auto:
            self._settle("A2")
        elif self.socket_up:
            self._arm("window", self.window_us)  # D2: from the moment of entering background
            self.hit("M2")
            self.hit("D2")
        else:
            self._settle("D8")

    def enter_foreground(self) -> None:
        if self.foreground:
            return
        self.foreground = True
        if self.auto:
            if self.rejected:
                self.hit("D16")  # no socket with rejected credentials
            elif self.user is not None and not self.wants:
                self._want_connection("A1")
                self.hit("D6")
        else:
            if "window" in self.deadlines:
                self._disarm("window")
                self.hit("D2")
            self.hit("M5")

    def network_lost(self) -> None:
        if not self.online:
            return
        self.online = False
        if not self.wants:
            return
        if self.socket_up or self.attempt:
            if self.foreground:
                self._end_socket("D6a")
                self.set_status("disconnected", "D6a")
            else:
                self._settle("M5")
        elif "retry" in self.deadlines:
            self._disarm("retry")
            self.set_status("disconnected", "D6b")
        self.hit("D6")

    def network_restored(self) -> None:
        if self.online:
            return
        self.online = True
        if self.wants and not (self.socket_up or self.attempt) and "retry" not in self.deadlines:
            self._start_attempt("D6a")

    def restart(self) -> None:
        """A new process: nothing survives but the stored session (L1), restored by init (L2)."""
        self.attempt = False  # the process dies with its attempt: nobody is told
        self._end_socket("L2")
        self._queue.clear()
        self.login_generation += 1
        self.deadlines.clear()
        self._timer_seq.clear()
        self.wants = False
        self.retries = 0
        self.user = self.login_pending = None
        self.rejected = False
        self.foreground = True
        self.status = "disconnected"  # a new process: no listener is told about the old one
        self.status_log.append((self.now, "disconnected"))
        self.status_history.append((self.now, "disconnected", "L2"))
        self.status_rule = "L2"
        if self.stored is not None:
            self.user = self.stored
            self._after_login("L2")

    def _window_due(self) -> None:
        """M2: the manual background window ends the connection."""
        self._settle("M2")
        self.hit("D2")
        self.hit("M5")
