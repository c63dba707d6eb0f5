"""C7's mechanism check (issue 9): accuracy on a fixed training subset with the normalization in training mode
(statistics of each normalization batch, as in training) minus in eval mode (the running/population statistics).
A BN net whose small normalization batches make its training-time statistics unlike its population statistics
shows a gap; GN and LN (per-example statistics) show none. Registered as `mode_gap`; measured once, at the end
(summary.json `end_probes`: `train_mode_acc`, `eval_mode_acc`, `mode_gap`).

The subset is the one the loop evaluates (trainer.train_eval_examples, drawn with the run's seed), cut into
batches of trainer.batch_size (the training batch, so ghost BN splits it as in training; a last partial batch is
dropped). The training-mode passes run under `preserved`, so the running statistics they update are restored."""
from __future__ import annotations

import torch

from bnrepro.probes import LoopProbe, preserved, register


class ModeGap(LoopProbe):
    def __init__(self, examples: int, batch: int):
        self.examples, self.batch = examples, batch

    def _acc(self, view, training: bool) -> float:
        hits = n = 0
        view.model.train(training)
        for x, y in view.data.eval_batches("train", self.batch, limit=self.examples, seed=int(view.cfg.seed)):
            if len(y) < self.batch:
                continue
            with view.speed.autocast():
                logits = view.model(view.speed.input(x)).float()
            hits += int((logits.argmax(1) == y).sum())
            n += len(y)
        return hits / max(n, 1)

    def at_end(self, view) -> dict:
        with preserved(view.model), torch.no_grad():
            eval_acc = self._acc(view, False)
            train_acc = self._acc(view, True)
        return {"train_mode_acc": train_acc, "eval_mode_acc": eval_acc, "mode_gap": train_acc - eval_acc}


@register("mode_gap")
def mode_gap(cfg, model) -> list[LoopProbe]:
    return [ModeGap(int(cfg.trainer.train_eval_examples), int(cfg.trainer.batch_size))]
