"""MKL_CBWR's cost: the 3x100 BN sigmoid MLP's training step (batch 60) and a 3x3 conv step, one thread.

Run it once per setting, interleaved, e.g.
    for i in 1 2 3; do for v in "" COMPATIBLE; do MKL_CBWR=$v python scripts/bench_cbwr.py; done; done
Prints the setting, the best-of-3 time per step, and the final loss and parameter sum (equal numbers across
settings mean the setting did not change the arithmetic).
"""
import os
import time

import torch
import torch.nn as nn

torch.set_num_threads(1)
torch.manual_seed(0)
net = nn.Sequential(nn.Linear(64, 100), nn.BatchNorm1d(100), nn.Sigmoid(), nn.Linear(100, 100),
                    nn.BatchNorm1d(100), nn.Sigmoid(), nn.Linear(100, 10))
opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
x, y = torch.randn(60, 64), torch.randint(0, 10, (60,))


def run(n):
    for _ in range(n):
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return loss.detach()


run(200)
best = 1e9
for _ in range(3):
    t = time.perf_counter()
    loss = run(300)
    best = min(best, (time.perf_counter() - t) / 300)
conv, xi = nn.Conv2d(16, 32, 3, padding=1), torch.randn(32, 16, 16, 16)
best_conv = 1e9
for _ in range(3):
    t = time.perf_counter()
    for _ in range(50):
        conv(xi).sum().backward()
    best_conv = min(best_conv, (time.perf_counter() - t) / 50)
with torch.no_grad():
    total = float(sum(p.sum() for p in net.parameters()))
print(f"MKL_CBWR={os.environ.get('MKL_CBWR') or 'unset'}: mlp {best * 1e6:.1f} us/step, conv {best_conv * 1e3:.2f} "
      f"ms/step, loss {float(loss):.10g}, parameter sum {total:.10g}")
