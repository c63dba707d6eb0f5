"""The cost of pinned numerics, MKL_CBWR=COMPATIBLE alone and BNREPRO_PORTABLE_NUMERICS=1 (bnrepro/numerics.py):
the 3x100 BN sigmoid MLP's training step (batch 60) and a 3x3 conv step, one thread.

MKL and ATen read their settings once, when they load, so each setting runs in its own child process; the parent interleaves
the settings over ROUNDS rounds (a shared VM drifts) and prints one markdown table: the best time per step of
each setting, the ratio side by side, and the final loss and parameter sum (equal numbers across settings mean
the setting did not change the arithmetic on this machine). `make bench` writes it to results/bench/cbwr.md.
"""
import json
import os
import subprocess
import sys
import time

SETTINGS = {"default": {}, "MKL_CBWR=COMPATIBLE": {"MKL_CBWR": "COMPATIBLE"},
            "portable": {"BNREPRO_PORTABLE_NUMERICS": "1"}}
ROUNDS = 3


def measure() -> dict:
    import bnrepro  # noqa: F401 - first: BNREPRO_PORTABLE_NUMERICS pins torch's code paths as it loads
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
    rows = {name: [] for name in SETTINGS}
    for _ in range(ROUNDS):
        for name, setting in SETTINGS.items():
            env = {k: v for k, v in os.environ.items() if k not in ("MKL_CBWR", "BNREPRO_PORTABLE_NUMERICS")}
            out = subprocess.run([sys.executable, __file__], env={**env, **setting, "BENCH_CBWR_CHILD": "1"},
                                 capture_output=True, text=True, check=True)
            rows[name].append(json.loads(out.stdout))
    # the best time of the rounds (the last round's loss and sums: equal in every round of a setting)
    best = {s: {**rs[-1], "mlp_us": min(r["mlp_us"] for r in rs), "conv_ms": min(r["conv_ms"] for r in rs)}
            for s, rs in rows.items()}
    base = best["default"]
    names = list(SETTINGS)
    print(f"# Pinned numerics vs the defaults: MKL_CBWR=COMPATIBLE alone, and BNREPRO_PORTABLE_NUMERICS=1\n\nOne "
          f"torch thread; best of {ROUNDS} interleaved rounds, each setting in its own process. Portable: ATen's "
          "baseline kernels, MKL_CBWR=COMPATIBLE, oneDNN and NNPACK off (bnrepro/numerics.py).\n")
    print("| step | " + " | ".join(names) + " | ratios (/ default) |\n|---|" + "---|" * (len(names) + 1))
    for key, label, unit, digits in (("mlp_us", "MLP (3x100 BN sigmoid, batch 60)", "us", 1),
                                     ("conv_ms", "conv 3x3, 16->32 ch, 32x16x16, fwd+bwd", "ms", 2)):
        cells = " | ".join(f"{best[n][key]:.{digits}f} {unit}" for n in names)
        ratios = ", ".join(f"{n} **{best[n][key] / base[key]:.2f}x**" for n in names[1:])
        print(f"| {label} | {cells} | {ratios} |")
    print("\nFinal loss / parameter sum: " + "; ".join(f"{n} {best[n]['loss']:.10g} / {best[n]['param_sum']:.10g}"
                                                      for n in names)
          + " (a setting that changes them changed the arithmetic here).")
    print("\nPer round (MLP us): " + "; ".join(f"{n} " + "/".join(f"{r['mlp_us']:.0f}" for r in rows[n])
                                              for n in names))


if __name__ == "__main__":
    main()
