"""The reference server (trio): authentication, relay, history, keep-alive, scripted faults."""
