"""Shared pytest fixtures live in fixtures_*.py modules next to this file, one per real part."""
pytest_plugins = ["fixtures_geo", "fixtures_broker", "fixtures_hooks"]
