"""antrea.testbed: what tests, benchmarks and the lab run the product in; never imported by it.

The embedded Kubernetes-compatible API server (`apiserver`), the lab and its kubelet (`lab`),
a private Open vSwitch (`ovssandbox`), a minimal Node/Pod API for integration tests (`fakekube`),
and unit-test fakes and builders (`openflow`, `controlplane`). Only `antrea.cmd` (the `antrea lab`
and `antrea apiserver` roles), tests and benchmarks import it.
"""
