"""DeepDream: a feedback loop of gradient ascent on a classifier's layer, over another generator's frames."""
