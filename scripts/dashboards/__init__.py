"""The Grafana boards as code: one module per board, built with grafana-foundation-sdk.

``scripts/build_dashboards.py`` writes them to config/grafana/dashboards/*.json, which are
committed (Grafana provisions them from there); a test fails when the files and the code
disagree.
"""
