"""The configuration: typed models of ``cellmon.yaml`` and the rules, and their loader."""
