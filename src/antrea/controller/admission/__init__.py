"""Admission webhooks for the Antrea-native policy objects (validation and defaults)."""
