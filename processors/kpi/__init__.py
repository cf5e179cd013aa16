"""The plant's KPIs: energy and kWh/t, anode cycles, anode effects, over calendar periods."""
