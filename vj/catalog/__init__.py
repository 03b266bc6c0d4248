"""Released networks one command away: the catalog (data), safe resumable downloads, the models folder."""
