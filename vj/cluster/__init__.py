"""Offline renders spread over a Ray cluster: chunks rendered on workers, joined and encoded once (issue 20)."""
