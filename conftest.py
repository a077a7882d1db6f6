# The live-service fixtures (real workers, a real ASGI server, committed tenants) for every test package.
pytest_plugins = ["tests.live_services"]
