"""Offline renders spread over a Ray cluster: chunks of frames rendered on workers, joined and encoded once (issue 20)."""
