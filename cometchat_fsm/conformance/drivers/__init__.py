"""Drivers for `cometchat-fsm conform` (specs/driver-protocol.md), shipped with the package:

- `python -m cometchat_fsm.conformance.drivers.simulation`: the in-memory Simulation (conforms);
- `python -m cometchat_fsm.conformance.drivers.live`: the trio live client against the reference server,
  in virtual time over in-memory streams (conforms);
- `python -m cometchat_fsm.conformance.drivers.js_sdk`: the real CometChat JavaScript SDK under Node with
  fake timers, a fake WebSocket and fake HTTP endpoints (installed from npm at first use).

`pipe.serve` is the protocol loop a Python driver plugs its implementation into.
"""
