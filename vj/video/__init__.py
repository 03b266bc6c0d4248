"""Video input: files decoded through PyAV (looped, seekable, rate-controlled), webcams, folders of clips."""
