"""The real-Kubernetes lab mode: `antrea lab up --kubernetes real` (see docs/design/lab.md)."""
