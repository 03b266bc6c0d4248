"""Output: the live window and the video recorder."""
