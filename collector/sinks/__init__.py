"""Where output points go: the sinks, the drain loop that feeds them, and the MQTT alerts.

A sink type is its section in ``collector.sinks.options`` (which the config's ``sink``
union is made from) and its module with a ``build(cfg)``, registered in
``collector.build.SINKS``.
"""
