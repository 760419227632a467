"""Policies for calling things that fail: retry (tenacity), circuit breaker, outbound throttle."""
