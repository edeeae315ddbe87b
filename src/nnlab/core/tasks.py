"""The learning tasks nnlab knows, named once: a datamodule declares one, a network and a loss
list those they fit, and nnlab.tasks has one LightningModule per task."""

REGRESSION, BINARY, MULTICLASS = "regression", "binary", "multiclass"
TASKS = (REGRESSION, BINARY, MULTICLASS)
