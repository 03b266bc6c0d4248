"""GFX: GL context, texture upload, ISF shader loading and the effect chain."""
