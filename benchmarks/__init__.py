"""Benchmarks of the exporter against the Cloud VoD simulator: `python -m benchmarks.run`."""
