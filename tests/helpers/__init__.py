"""Modules the tests share that are not tests: data files in their formats (data_formats), a
loopback HTTP server (http_fixtures), fitting helpers (fitting), W&B offline records read back
(wandb_records)."""
