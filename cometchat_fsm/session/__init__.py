"""What both front ends share that is not I/O: the session store, login, messages and replay place."""
