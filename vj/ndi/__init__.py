"""NDI video over the network: the show's output as an NDI source (sender), NDI sources as live video in (receiver)."""
