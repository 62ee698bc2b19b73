"""The launcher: the top layer that knows every service (registry, CLI, runtime, embedded stack, AsyncAPI writer)."""
