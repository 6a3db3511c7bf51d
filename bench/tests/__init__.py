"""Tests of the harness itself (behaviour only, never timings)."""
