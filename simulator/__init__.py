"""A simulated potline for the demo, the tests and the benchmarks, and its MQTT publisher.

The modules follow the data, parameters and seeds, then physics and schedules drawn from
them, then payloads in the contract's form, the publisher and the command line, so that
each stage can be changed without moving another stage's random draws.
"""
