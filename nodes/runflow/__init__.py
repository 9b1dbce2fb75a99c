"""Runflow's public API as a small async client library: httpx and the standard library only."""
