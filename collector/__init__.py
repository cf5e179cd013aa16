"""The cellmon service: configuration, MQTT source, durable journal, sinks and command line."""
