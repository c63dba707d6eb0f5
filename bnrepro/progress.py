"""Live progress of one run: a tqdm bar on a terminal, quiet labelled log lines otherwise, one summary line.

Costs nothing the loop has to wait for: `advance()` is called once per step and only counts (tqdm's update,
about a microsecond; it redraws at most every `BAR_INTERVAL_S`); loss and accuracy come in at evaluation
steps, where the loop has already read them back from the device.

Modes (`trainer.progress`): `bar` a tqdm bar (steps/s, ETA, last evaluated loss and accuracy); `log` one line
per evaluation at most, at most one every `trainer.progress_every_s` seconds, plus the first and the last,
each prefixed with the run's label (several joblib jobs share one stream); `none` no progress lines; `auto` a
bar on a terminal outside a multirun, log lines otherwise. Every mode ends with `summary_line`.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from tqdm import tqdm

BAR_INTERVAL_S = 0.5


def run_label(cfg, run_dir, multirun: bool) -> str:
    """The experiment name, and in a multirun the job's overrides (Hydra's override_dirname, which is also the
    sweep's run dir name) so that interleaved lines of parallel jobs say which job they come from."""
    if not multirun:
        return str(cfg.name)
    overrides = ""
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            overrides = HydraConfig.get().job.override_dirname
    except Exception:  # noqa: BLE001 - a label is cosmetic; fall back to the run dir's name
        pass
    return f"{cfg.name}[{overrides or Path(run_dir).name}]"


def summary_line(label: str, summary: dict, run_dir) -> str:
    """`<label>: <status> score <x> (<what the score is>) in <wall> s, run dir <dir>`.

    `score` is the mean test accuracy over the last `score_k` evaluations; a summary without it (older runs)
    falls back to the test accuracy at the last evaluation."""
    if summary.get("status") == "interrupted":
        return (f"{label}: interrupted by {summary.get('signal', 'a signal')} after step {summary.get('steps')}: "
                f"checkpoint saved, rerun the same command to resume; run dir {run_dir}")
    if summary.get("score") is not None:
        score, what = summary["score"], f"mean test acc over the last {summary.get('score_k') or 'k'} eval{'' if summary.get('score_k') == 1 else 's'}"
    else:
        score, what = summary.get("final_acc"), "test acc at the last eval"
    shown = "n/a" if score is None else f"{score:.4f}"
    wall = summary.get("wall_s")
    wall_text = "?" if wall is None else f"{wall:.1f}"
    return f"{label}: {summary.get('status', 'unknown')} score {shown} ({what}) in {wall_text} s, run dir {run_dir}"


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
    """One run's progress output (rank 0 only: pass enabled=False on the others)."""

    def __init__(self, label: str, total: int, initial: int = 0, mode: str = "log", every_s: float = 15.0,
                 stream=None, clock=time.monotonic, enabled: bool = True):
        self.label, self.total, self.initial = label, int(total), int(initial)
        self.every_s, self.clock = float(every_s), clock
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.mode = mode if enabled else "none"
        if self.mode == "auto":
            self.mode = "bar" if self.stream.isatty() else "log"
        self.start = clock()
        self.last_line = None  # clock time of the last log line
        self.finished = False
        self.bar = None
        if self.mode == "bar":
            self.bar = tqdm(total=self.total, initial=self.initial, desc=label, unit="step", file=self.stream,
                            dynamic_ncols=True, mininterval=BAR_INTERVAL_S, smoothing=0.1)
        # the per-step call: tqdm's counter in bar mode, nothing otherwise
        self.advance = self.bar.update if self.bar is not None else _nothing

    @classmethod
    def for_run(cls, cfg, label: str, initial: int, multirun: bool, enabled: bool = True) -> "Progress":
        t = cfg.trainer
        mode = t.progress
        if mode == "auto" and multirun:
            mode = "log"
        return cls(label, t.max_steps, initial, mode, t.progress_every_s, enabled=enabled)

    def rate(self, step: int) -> float:
        """Steps per second since this process started the run (resumed steps excluded)."""
        return (step - self.initial) / max(self.clock() - self.start, 1e-9)

    def evaluated(self, step: int, loss: float, acc: float) -> None:
        """The loss and accuracy just evaluated at `step`: shown on the bar, or logged when a line is due."""
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.3f}")  # redraws: evaluations are rare
            return
        if self.mode != "log":
            return
        now = self.clock()
        if self.last_line is not None and step < self.total and now - self.last_line < self.every_s:
            return
        self.last_line = now
        rate = self.rate(step)
        eta = (self.total - step) / rate if rate > 0 else float("inf")
        self._write(f"{self.label}: step {step}/{self.total} ({100 * step / max(self.total, 1):.0f}%) "
                    f"{rate:.1f} steps/s, ETA {_clock(eta) if eta != float('inf') else '?'}, "
                    f"loss {loss:.4f}, test acc {acc:.4f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
            self.advance = _nothing

    def finish(self, summary: dict, run_dir) -> None:
        """The run's one closing line (even in mode none: it is the run's result, not progress)."""
        self.close()
        if self.finished:
            return
        self.finished = True
        if self.enabled:
            self._write(summary_line(self.label, summary, run_dir))

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")  # one write: lines of parallel jobs on one stream never split
        self.stream.flush()


def _nothing(n: int = 1) -> None:
    return None
