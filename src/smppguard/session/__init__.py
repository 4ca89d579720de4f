"""Connections: asyncio transports around the sans-I/O protocol, windows, timers and tasks."""
