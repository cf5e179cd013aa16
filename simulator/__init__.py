"""A simulated potline and a publisher that sends its telemetry and events over MQTT."""
