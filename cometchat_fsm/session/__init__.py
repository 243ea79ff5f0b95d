"""What both front ends share that is not I/O, one job per module: driver (the core's events
and effects), calls (connect, disconnect, ping, platform signals), login, inbox (messages and
the replay place), requests (sends and history), sockets (the open sockets: queueing frames,
closing them; the top part, which a front end's Client subclasses), listeners (ConnectionListener,
status_changes), checks, values, state (the shared state and the front end's hooks), store (the
session file)."""
