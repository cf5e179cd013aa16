"""Pure, I/O-free computation over typed cell samples and events.

Nothing in this package opens a socket or a file, reads the clock or logs: time arrives
with the data, so the same code serves the live pipeline, ``cellmon replay`` and the tests.
"""
