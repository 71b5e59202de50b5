import asyncio, cProfile, pstats, sys, time, gc
sys.path.insert(0, "benchmarks")
from realize import policy_objects, frames, TARGET_PODS, _never
from antrea.agent.networkpolicy.controller import NetworkPolicyController
from antrea.agent.networkpolicy.reconciler import PolicyReconciler
from antrea.apis.controlplane.codec import FrameDecoder
from antrea.apis.controlplane.types import PodReference
from antrea.ovs.openflow.client import FlowClient
from antrea.ovs.openflow.wire import FlowEncoder, FlowModCommand

class EncTransport:
    def __init__(self): self.enc = FlowEncoder(); self.out = []
    async def bundle(self, *, add=(), modify=(), delete=(), set_groups=(), delete_groups=()):
        enc = self.enc
        for i, f in enumerate(add):
            self.out.append(enc.flow_mod(f, FlowModCommand.ADD, i))

async def main(prof):
    objs = policy_objects(int(sys.argv[1]) if len(sys.argv) > 1 else 15000)
    data = frames(objs)
    ofports = {PodReference("bench", f"pod{p}"): 100 + p for p in range(TARGET_PODS)}
    t = EncTransport()
    rec = PolicyReconciler(FlowClient(t), round_num=1, ofport_of=ofports.get, gateway_ip="10.244.1.1", install_miss_flows=True)
    ctl = NetworkPolicyController(node_name="bench", reconciler=rec)
    worker = asyncio.create_task(ctl.run(_never()))
    await asyncio.sleep(0)
    c0 = time.process_time()
    if prof: prof.enable()
    decoder = FrameDecoder()
    for i in range(0, len(data), 1 << 16):
        for ev in decoder.feed(data[i:i + (1 << 16)]):
            ctl.handle(ev)
        await asyncio.sleep(0)
    await ctl.ready.wait()
    if prof: prof.disable()
    print("cpu", time.process_time() - c0, "flows", len(t.out))
    worker.cancel()

import uvloop
mode = sys.argv[2] if len(sys.argv) > 2 else "time"
p = cProfile.Profile() if mode == "prof" else None
uvloop.run(main(p))
if p:
    st = pstats.Stats(p); st.sort_stats("tottime").print_stats(45)
