"""The agent end of the CNI socket (server.py) and what each CNI command does (podconfig.py)."""
