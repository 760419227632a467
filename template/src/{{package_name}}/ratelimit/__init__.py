"""Inbound rate limiting on `limits`: who a request counts against, the limits, and their storage."""
