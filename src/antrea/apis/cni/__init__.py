"""The CNI contract: the spec's rules and error codes, the plugin <-> agent protocols.

Standard library only: the Python `antrea-cni` imports it (see docs/design/cni.md).
"""
