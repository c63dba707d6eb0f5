"""MKL_CBWR's cost: the 3x100 BN sigmoid MLP's training step (batch 60) and a 3x3 conv step, one thread.

MKL reads MKL_CBWR once, when it loads, so each setting runs in its own child process; the parent interleaves
the settings over ROUNDS rounds (a shared VM drifts) and prints one markdown table: the best time per step of
each setting, the ratio side by side, and the final loss and parameter sum (equal numbers across settings mean
the setting did not change the arithmetic on this machine). `make bench` writes it to results/bench/cbwr.md.
"""
import json
import os
import subprocess
import sys
import time

SETTINGS = ("", "COMPATIBLE")  # "": MKL's default (unset)
ROUNDS = 3


def measure() -> dict:
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
    return {"mlp_us": best * 1e6, "conv_ms": best_conv * 1e3, "loss": float(loss), "param_sum": total}


def main() -> None:
    if os.environ.get("BENCH_CBWR_CHILD"):
        print(json.dumps(measure()))
        return
    rows = {s: [] for s in SETTINGS}
    for _ in range(ROUNDS):
        for setting in SETTINGS:
            env = {**os.environ, "BENCH_CBWR_CHILD": "1", "MKL_CBWR": setting}
            if not setting:
                env.pop("MKL_CBWR")
            out = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True, check=True)
            rows[setting].append(json.loads(out.stdout))
    best = {s: {"mlp_us": min(r["mlp_us"] for r in rs), "conv_ms": min(r["conv_ms"] for r in rs), **rs[-1]}
            for s, rs in rows.items()}
    base, cbwr = best[""], best["COMPATIBLE"]
    print(f"# MKL_CBWR=COMPATIBLE vs MKL's default\n\nOne torch thread; best of {ROUNDS} interleaved rounds, each "
          "setting in its own process.\n")
    print("| step | default | MKL_CBWR=COMPATIBLE | ratio (COMPATIBLE / default) |\n|---|---|---|---|")
    print(f"| MLP (3x100 BN sigmoid, batch 60) | {base['mlp_us']:.1f} us | {cbwr['mlp_us']:.1f} us | "
          f"**{cbwr['mlp_us'] / base['mlp_us']:.2f}x** |")
    print(f"| conv 3x3, 16->32 ch, 32x16x16 | {base['conv_ms']:.2f} ms | {cbwr['conv_ms']:.2f} ms | "
          f"**{cbwr['conv_ms'] / base['conv_ms']:.2f}x** |")
    same = base["loss"] == cbwr["loss"] and base["param_sum"] == cbwr["param_sum"]
    print(f"\nFinal loss {base['loss']:.10g} vs {cbwr['loss']:.10g}, parameter sum {base['param_sum']:.10g} vs "
          f"{cbwr['param_sum']:.10g}: the setting {'did not change' if same else 'changed'} the arithmetic here.")
    print("\nPer round (default / COMPATIBLE, MLP us): " + ", ".join(
        f"{a['mlp_us']:.0f}/{b['mlp_us']:.0f}" for a, b in zip(rows[""], rows["COMPATIBLE"])))


if __name__ == "__main__":
    main()
