"""The br-int pipeline: tables and flow builders (pipeline.py), registers and marks (fields.py)."""
