"""StyleGAN2/3 generators in plain torch, their checkpoint loaders, and the "stylegan" vj Generator."""
