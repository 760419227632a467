"""Outbound HTTP clients, each wired through breaker -> retry -> throttle (see upstream.py)."""
