"""Datamodules: each knows its task; shapes and class names flow from the data to the model."""
