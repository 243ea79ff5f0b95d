"""The wire protocol of docs/protocol.md, sans I/O: typed frames (frames.py) and the one codec
(codec.py) that both the live clients and the reference server use."""
