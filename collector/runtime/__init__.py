"""The running pipeline: the MQTT process, the worker process, reloads and self-metrics."""
