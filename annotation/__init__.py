"""Turning a clustering model's predictions into something a person reads and edits: the
annotations CSV, cluster names, per-cluster grids and the HTML gallery (used by eval.py)."""
