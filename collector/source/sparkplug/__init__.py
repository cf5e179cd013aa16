"""Sparkplug B input: payloads, topics and the host application's view of each edge node."""
