"""Prometheus exporter for Cloud VoD video splicing tasks (videoConcatQuery)."""

__version__ = "0.2.0"
"""The one source of the version: packaging metadata, --version, build_info, the image tag."""
