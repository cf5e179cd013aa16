"""What process engineers configure: expressions, derived fields and alarms."""
