"""DistributedDataParallel on the CPU: two processes (gloo), each training on its own shard of the
batches, must end with identical weights (DDP averages the gradients every step)."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from utils.batching import TokenBatches
from utils.model import make_model
from utils.schedules import warmup_schedule
from utils.train import make_optimizer, train

STEPS = 4


def worker(rank: int, world_size: int, folder: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=world_size)
    try:
        gen = torch.Generator().manual_seed(0)                                   # the same corpus everywhere
        src = [[1, *torch.randint(4, 20, (int(n),), generator=gen).tolist(), 2]
               for n in torch.randint(2, 9, (200,), generator=gen)]
        tgt = [[1, *s[1:-1][::-1], 2] for s in src]
        data = TokenBatches(src, tgt, max_tokens=100, seed=0, rank=rank, world_size=world_size)
        torch.manual_seed(rank)                  # different initial weights: DDP must copy rank 0's
        model = make_model(20, 20, n_layers=1, d_model=16, n_heads=2, d_ff=32, dropout=0.1)
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        opt = make_optimizer(ddp)
        sched = warmup_schedule(opt, 16, warmup=10)
        state = train(ddp, data, opt, sched, max_steps=STEPS, max_minutes=10, device="cpu", progress=False,
                      checkpoint_path=os.path.join(folder, "ddp.pt"))
        torch.save({"weights": model.state_dict(), "batches": data.batches(0)[:STEPS],
                    "losses": [h["loss"] for h in state.history]}, os.path.join(folder, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_two_cpu_processes_end_with_identical_weights(tmp_path):
    mp.spawn(worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert len(r0["losses"]) == len(r1["losses"]) == STEPS
    assert not set(i for b in r0["batches"] for i in b) & set(i for b in r1["batches"] for i in b), \
        "each process reads its own shard"
    assert r0["losses"] != r1["losses"], "different batches, different losses"
    for name, w in r0["weights"].items():
        assert torch.equal(w, r1["weights"][name]), f"{name} differs between the processes"
    saved = torch.load(tmp_path / "ddp.pt", weights_only=True)
    assert saved["train_state"]["step"] == STEPS, "rank 0 wrote the checkpoint"
    assert all(torch.equal(saved["model"][k], w) for k, w in r0["weights"].items())
