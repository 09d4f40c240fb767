"""``nerfkit train`` under torchrun with one test-only change, for tests/test_distributed.py:

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_helper.py MODE ARG -- train ...

MODE ``dump DIR``: every rank writes its model's state to ``DIR/rank{r}-step{s}.pt`` whenever the trainer checks
that the ranks are in sync (at each checkpoint), so a test can compare the ranks' models itself.
MODE ``die N``: rank 1 kills itself with SIGKILL in its training step N + 1.
MODE ``stall N``: rank 1 stops answering (sleeps for an hour) in its training step N + 1.

The changes are monkeypatches made here, so the trainer carries no test hooks.
"""

import os
import signal
import sys
import time
from pathlib import Path

import torch

from nerfkit.cli import main
from nerfkit.methods import VanillaNeRF
from nerfkit.train.distributed import World

mode, arg = sys.argv[1], sys.argv[2]
argv = sys.argv[sys.argv.index("--") + 1:]
rank = int(os.environ.get("RANK", "0"))

if mode == "dump":
    check = World.check_in_sync

    def check_and_dump(self, module, step, *values):
        state = {**module.state_dict(), "values": torch.tensor(values)}  # values: batch size, lr scale
        torch.save(state, Path(arg) / f"rank{self.rank}-step{step}.pt")
        check(self, module, step, *values)

    World.check_in_sync = check_and_dump
elif mode in ("die", "stall") and rank == 1:
    loss, calls = VanillaNeRF.loss, [0]

    def failing_loss(self, outputs, target):
        calls[0] += 1
        if calls[0] > int(arg):
            if mode == "die":
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(3600)
        return loss(self, outputs, target)

    VanillaNeRF.loss = failing_loss

sys.exit(main(argv))
