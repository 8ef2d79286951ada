"""Prometheus exporter for Cloud VoD video splicing tasks (videoConcatQuery)."""

__version__ = "0.1.0"
