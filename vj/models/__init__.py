"""Models: the generator protocol, the default CPPN, and the latest-wins model worker."""
