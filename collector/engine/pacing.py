"""When the engine steps and checkpoints: the constants that trade CPU for delay and memory.

Each is measured where it is set; ``collector.engine.engine`` is where they act.
"""

PRUNE_EVERY_S = 60.0
WAL_EVERY_S = 1.0
STATE_EVERY_S = 30.0
"""How often the states are checkpointed while rows keep coming: what a crash processes
again, at most. A checkpoint of a 2,000-cell plant (every processor's state of every cell)
takes about 50 ms: at 5 s it was a fifth of the worker's time at 2,000 msg/s
(``benchmarks.worker --cells 2000``: 21.7 µs/msg at 5 s, 17.4 at 30 s). Flink's checkpoints
are minutes apart; 30 s of a plant's telemetry is processed again in about a second."""
QUIET_STATE_S = 5.0
"""… and once the inbox has gone quiet, this long after the last one: the counters and the
position a status reads are then current, at no cost while nothing comes."""
STATE_EVERY_ROWS = 10_000
"""… or after this many rows while a backlog drains (full batches): the batches kept to
recover a failing processor are memory (``_since``; about 240 bytes a sample with its
extra fields), and a checkpoint is a small part of 10,000 rows' work. Draining 200,000
messages of 400 cells, the worker's peak RSS: 90-91 MiB at 10,000 rows, 95-97 at 30,000."""
STATE_EVERY_ROWS_LIVE = 60_000
"""… and at a live rate (batches that do not fill), where the interval decides: 30 s of
2,000 msg/s; the bound only keeps a rate just below a full batch from holding more."""
# After a batch that did not fill, the inbox fills for this long: five 400-cell potlines at
# 1 Hz give batches of 3,000, not of one or two rows each costing a whole commit, and the
# processors' per-cell work is paid once per 1.5 s (``benchmarks.worker --cells 2000``:
# 17.7 µs/msg in batches of 1 s, 13.0 in batches of 2 s). The drain writes a batch's output
# as soon as it is committed (``Drain.nudge``), so at 2,000 msg/s a point still reaches the
# database within the 2 s the plant allows (``benchmarks.sustained --rate 2000 --potlines 5
# --shards 1``: p50 1.09 s, p99 1.83 s, max 1.85 s).
POLL_S = 1.5
