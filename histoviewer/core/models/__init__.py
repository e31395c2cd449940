"""Patch classifiers: one interface, a CNN (torch), a handcrafted model (scikit-image), model files."""
