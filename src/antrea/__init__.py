"""antrea: a Kubernetes CNI plugin and NetworkPolicy engine built on Open vSwitch."""

__version__ = "0.1.0"
