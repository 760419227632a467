"""Tests of the service; `make test` runs them."""
