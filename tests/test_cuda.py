"""The CUDA paths, on a real GPU: bf16 autocast, channels_last, SyncBatchNorm in a 1-process group, torch.compile
of each model family, the device-resident loader's augmentation, resume. Marked `cuda` and skipped without a
GPU; `make gpu-check` (scripts/gpu_check.py) runs them with `pytest -m cuda tests/test_cuda.py`.
The cheap tests come first and the compiling ones last, so a run cut at its time cap has the most results."""
from __future__ import annotations

import copy
import json
import sys
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F

from bnrepro.data import TensorLoader, crop_flip
from bnrepro.models import build_model, model_config, to_channels_last
from bnrepro.tracking import Tracker
from bnrepro.train import train
from conftest import ROOT, compose_cfg

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
sys.path.insert(0, str(ROOT / "scripts"))
DEV = torch.device("cuda")


def model(name: str, in_shape, classes: int = 10, **kw):
    cfg = {**model_config(name), **kw}
    torch.manual_seed(0)
    return build_model(cfg, in_shape, classes)


@pytest.fixture
def fp32_exact():
    """No TF32 in matmuls and convolutions while a test compares two computations in fp32."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def fwd_bwd(net, x, y):
    net.zero_grad(set_to_none=True)
    out = net(x)
    F.cross_entropy(out.float(), y).backward()
    return out.float(), {n: p.grad.float().clone() for n, p in net.named_parameters() if p.grad is not None}


def assert_close_grads(a: dict, b: dict, rel: float):
    """Each parameter's gradient within `rel` of the reference in relative L2 norm (a layout or fusion bug is
    an O(1) error; fp32 summation order and BN's division by small batch spreads give percents at the stem)."""
    assert a.keys() == b.keys()
    for n in a:
        err = (a[n] - b[n]).norm() / b[n].norm().clamp_min(1e-12)
        assert err < rel, f"{n}: relative gradient error {err:.2e}"


def first_modules(net: torch.nn.Sequential, last: str, classes: int = 10) -> torch.nn.Sequential:
    """An Inception net's children up to `last`, then global average pooling and a new classifier."""
    layers = []
    for name, child in net.named_children():
        layers.append((name, child))
        if name == last:
            break
    head = [("pool", torch.nn.AdaptiveAvgPool2d(1)), ("flatten", torch.nn.Flatten()),
            ("fc", torch.nn.Linear(child.out_channels, classes))]
    return torch.nn.Sequential(OrderedDict(layers + head))


@pytest.fixture
def cifar_root(tmp_path, monkeypatch):
    from gpu_check import write_cifar

    write_cifar(tmp_path, per_file=256, n_test=256)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    return tmp_path


CIFAR_RUN = ("data=cifar10", "model=resnet_cifar", "model.depth=8", "trainer.batch_size=64", "trainer.device=cuda",
             "trainer.train_eval_examples=128", "logger=none", "trainer.progress=none", "scale=cpu")


def test_bf16_autocast_training_step():
    net = model("resnet_cifar", (3, 32, 32), depth=20).to(DEV)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(32, 3, 32, 32, device=DEV), torch.randint(0, 10, (32,), device=DEV)
    before = [p.detach().clone() for p in net.parameters()]
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = net(x)
        loss = F.cross_entropy(logits, y)
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32
    loss.backward()
    assert all(p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all() for p in net.parameters())
    opt.step()
    assert all(p.dtype == torch.float32 for p in net.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_trainer_on_cuda_uses_bf16_and_channels_last(cifar_root):
    from bnrepro.loop import Speed

    cfg = compose_cfg(*CIFAR_RUN, "trainer.max_steps=10", "trainer.eval_every=5")
    speed = Speed(cfg, DEV, (3, 32, 32))
    assert speed.bf16 and speed.channels_last
    summary = train(cfg, run_dir=cifar_root / "run")
    assert summary["status"] == "completed" and summary["steps"] == 10
    rows = [json.loads(r) for r in (cifar_root / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in rows)


@pytest.mark.parametrize("name,shape,kw", [("resnet_cifar", (3, 32, 32), {"depth": 20}),
                                           ("inception_bn", (3, 32, 32), {"width_mult": 0.25}),
                                           ("inception", (3, 32, 32), {"width_mult": 0.25, "dropout": 0.0}),
                                           ("resnet", (3, 64, 64), {"arch": "resnet18"})])
def test_channels_last_equals_contiguous(name, shape, kw, fp32_exact):
    net = model(name, shape, **kw).to(DEV)
    cl = to_channels_last(copy.deepcopy(net))  # as the trainer converts it
    x, y = torch.randn(16, *shape, device=DEV), torch.randint(0, 10, (16,), device=DEV)
    # both GPU layouts against a float64 CPU reference, so a failure says which layout is wrong (the H200 runs of
    # gpu.md found BN-Inception's gradients 76% off between the two: torch's padded avg-pool NHWC backward)
    ref = copy.deepcopy(net).cpu().double()
    out_ref, grads_ref = fwd_bwd(ref, x.cpu().double(), y.cpu())
    to_cpu = lambda grads: {n: g.cpu().double() for n, g in grads.items()}
    for layout, (out, grads) in {"NCHW": fwd_bwd(net, x, y),
                                 "channels_last": fwd_bwd(cl, x.contiguous(memory_format=torch.channels_last), y)}.items():
        torch.testing.assert_close(out.cpu().double(), out_ref.float().double(), rtol=1e-3, atol=1e-3,
                                   msg=lambda m: f"{layout} output: {m}")
        try:  # fp32 summation order, amplified by BN: 2e-2 seen on a CPU
            assert_close_grads(to_cpu(grads), grads_ref, 5e-2)
        except AssertionError as e:
            raise AssertionError(f"{layout} vs float64 CPU reference: {e}") from None
    with torch.autocast("cuda", dtype=torch.bfloat16):  # and the speed path itself runs, finite
        assert torch.isfinite(cl(x.contiguous(memory_format=torch.channels_last))).all()


def test_padded_avg_pool_gradient_in_channels_last():
    """BN-Inception's pool branches (AvgPool2dNCHW, routed through NCHW: its default) give the right input
    gradient on a channels_last CUDA tensor, where torch's own NHWC kernel forgot the padding offset
    (pytorch/pytorch#188344; the torch 2.11 of gpu.md's H200 predates the fix)."""
    from bnrepro.models.inception import AvgPool2dNCHW

    x = torch.randn(2, 8, 7, 7, device=DEV, dtype=torch.float64)
    grad_out = torch.randn(2, 8, 7, 7, device=DEV, dtype=torch.float64)
    grads = {}
    for layout, t in {"NCHW": x, "channels_last": x.contiguous(memory_format=torch.channels_last)}.items():
        t = t.detach().requires_grad_()
        AvgPool2dNCHW(3, 1, 1, count_include_pad=False)(t).backward(grad_out)
        grads[layout] = t.grad
    ref = x.cpu().requires_grad_()
    F.avg_pool2d(ref, 3, 1, 1, count_include_pad=False).backward(grad_out.cpu())
    for layout, g in grads.items():
        torch.testing.assert_close(g.cpu(), ref.grad, msg=lambda m: f"{layout}: {m}")


def test_sync_batchnorm_in_a_one_process_nccl_group(tmp_path, monkeypatch, fp32_exact):
    """convert_sync_bn's CUDA branch makes torch.nn.SyncBatchNorm with the BN state carried over; in a real
    process group (NCCL, one process) under DDP the converted net computes what the plain one does."""
    import torch.distributed as dist

    from bnrepro.norm import convert_sync_bn

    dist.init_process_group("nccl", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        net = model("resnet_cifar", (3, 32, 32), depth=8).to(DEV)
        net(torch.randn(8, 3, 32, 32, device=DEV))  # running statistics that the conversion must keep
        plain = copy.deepcopy(net)
        with monkeypatch.context() as m:  # convert_sync_bn is a no-op in a 1-process group: pretend two
            m.setattr(dist, "get_world_size", lambda *a, **k: 2)
            synced = convert_sync_bn(net)
        bns = [mod for mod in synced.modules() if isinstance(mod, torch.nn.SyncBatchNorm)]
        assert bns and not any(type(mod) is torch.nn.BatchNorm2d for mod in synced.modules())
        for a, b in zip(plain.state_dict().values(), synced.state_dict().values()):
            torch.testing.assert_close(a, b)
        ddp = torch.nn.parallel.DistributedDataParallel(synced, device_ids=[0])
        x, y = torch.randn(16, 3, 32, 32, device=DEV), torch.randint(0, 10, (16,), device=DEV)
        out, grads = fwd_bwd(ddp, x, y)
        ref, ref_grads = fwd_bwd(plain, x, y)
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
        assert_close_grads({k.removeprefix("module."): v for k, v in grads.items()}, ref_grads, 1e-3)
    finally:
        dist.destroy_process_group()


def test_gpu_crop_flip_equals_cpu():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, 32, 32, generator=g)
    shift = torch.randint(0, 9, (2, 64), generator=g)
    flip = torch.rand(64, generator=g) < 0.5
    assert torch.equal(crop_flip(x.to(DEV), shift.to(DEV), flip.to(DEV)).cpu(), crop_flip(x, shift, flip))


def test_gpu_tensor_loader_equals_cpu():
    """The same seed gives the same shuffled, cropped and flipped batches on the GPU as on the CPU."""
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(300, 3, 32, 32, generator=g), torch.randint(0, 10, (300,), generator=g)
    cpu = TensorLoader(x, y, 64, seed=3, augment=True)
    gpu = TensorLoader(x.to(DEV), y.to(DEV), 64, seed=3, augment=True)
    for _ in range(10):  # past an epoch boundary (4 batches per epoch)
        (xc, yc), (xg, yg) = next(cpu), next(gpu)
        assert xg.is_cuda and torch.equal(xg.cpu(), xc) and torch.equal(yg.cpu(), yc)


def test_resume_on_gpu_equals_uninterrupted(cifar_root, monkeypatch):
    """A run that crashes after step 40 and is rerun ends with the metrics of an uninterrupted run (cuDNN held
    to deterministic algorithms; bf16 on the GPU)."""
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    cfg = compose_cfg(*CIFAR_RUN, "trainer.max_steps=60", "trainer.eval_every=20", "trainer.ckpt_every=30",
                      "data.augment=true", "model.dropout=0.1")
    reference = train(cfg, run_dir=cifar_root / "reference")
    real_log = Tracker.log

    def log(self, row):
        real_log(self, row)
        if row["step"] == 40:
            raise RuntimeError("simulated crash")

    with monkeypatch.context() as m:
        m.setattr(Tracker, "log", log)
        with pytest.raises(RuntimeError, match="simulated crash"):
            train(cfg, run_dir=cifar_root / "resumed")
    resumed = train(cfg, run_dir=cifar_root / "resumed")
    read = lambda d: [json.loads(r) for r in (cifar_root / d / "metrics.jsonl").read_text().splitlines()]
    ref_rows, res_rows = read("reference"), read("resumed")
    assert [r["step"] for r in res_rows] == [r["step"] for r in ref_rows] == [20, 40, 60]
    for a, b in zip(res_rows, ref_rows):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-3)
        assert a["test_acc"] == pytest.approx(b["test_acc"], abs=0.02)
    assert resumed["final_acc"] == pytest.approx(reference["final_acc"], abs=0.02)


def test_trainer_compile_runs(tmp_path):
    cfg = compose_cfg("trainer.device=cuda", "trainer.compile=true", "trainer.max_steps=30", "trainer.eval_every=15",
                      "logger=none", "trainer.progress=none")
    summary = train(cfg, run_dir=tmp_path)
    assert summary["status"] == "completed" and summary["steps"] == 30
    rows = [json.loads(r) for r in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [15, 30] and all(torch.isfinite(torch.tensor(r["train_loss"])) for r in rows)


@pytest.mark.parametrize("name,shape,kw", [("mlp", (1, 28, 28), {}),
                                           ("resnet_cifar", (3, 32, 32), {"depth": 20}),
                                           ("inception_bn", (3, 32, 32), {"width_mult": 0.25})])
def test_compile_equals_eager(name, shape, kw, fp32_exact):
    """torch.compile of each model family: forward, gradients and BN running statistics as in eager mode.
    BN-Inception up to module 3c (both pool kinds, a stride-2 module): its ten modules repeat these, and compiling
    all of them took longer than the test's 75 s on an H200."""
    torch._dynamo.reset()
    net = model(name, shape, **kw)
    if name == "inception_bn":
        net = first_modules(net, "inception_3c")
    net = net.to(DEV)
    compiled_net = copy.deepcopy(net)
    compiled = torch.compile(compiled_net)
    x, y = torch.randn(32, *shape, device=DEV), torch.randint(0, 10, (32,), device=DEV)
    out, grads = fwd_bwd(net, x, y)
    out_c, grads_c = fwd_bwd(compiled, x, y)
    torch.testing.assert_close(out_c, out, rtol=1e-3, atol=1e-3)
    assert_close_grads({k.removeprefix("_orig_mod."): v for k, v in grads_c.items()}, grads, 5e-2)
    for (k, a), (_, b) in zip(net.named_buffers(), compiled_net.named_buffers()):
        if a.is_floating_point():
            torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4, msg=k)
