"""Projection mapping: outputs files, corner-pin and mesh warps, edge blends, masks and trims for each projector."""
