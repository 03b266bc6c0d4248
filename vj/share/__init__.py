"""The output shared with other programs on this machine: Syphon (macOS) and Spout (Windows), beside NDI."""
