"""vj: a real-time VJ engine that plays neural visuals to music."""

__version__ = "0.1.0"
