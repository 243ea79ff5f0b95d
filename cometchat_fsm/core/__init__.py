"""The pure core: states, events, effects, the one transition table (`lifecycle`), the per-client
model, backoff, settings and errors. No I/O, no clock, no event loop."""
