"""Shared pytest fixtures live in fixtures_*.py modules next to this file, one per real part;
plugin_ci.py turns skips into failures under CI=true."""
pytest_plugins = ["fixtures_geo", "fixtures_broker", "fixtures_hooks", "plugin_ci"]
