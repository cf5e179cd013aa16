"""The durable journal in the state directory, and the locks that keep it to one pipeline."""
