"""The HTTP API: app factory, dependencies, routes and problem-details errors."""
