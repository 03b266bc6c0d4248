"""Audio: sources, ring buffer and the analyzer that turns sound into frozen Features."""
