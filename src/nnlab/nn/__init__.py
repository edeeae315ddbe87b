"""Layers, activations, initializers and network builders."""
