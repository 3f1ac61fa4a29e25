"""Distributed contrastive losses against the single-process loss of the global batch.

Two and three gloo processes on CPU run `ClipLoss(distributed="gather")` and
`SigLipLoss(distributed="ring")` under DistributedDataParallel on a tiny two-tower model, each rank
on its slice of a seeded global batch. The parent computes the single-process loss of the whole
batch with the same weights and checks the convention of `polymodal.models.losses`: the mean of
the ranks' losses is the global loss, each rank's feature gradients are W times the global ones,
and DDP's averaged parameter gradients (towers, logit scale, logit bias) are the global ones.
A dispatch mode records the shape of every tensor each rank produces, forward and backward: the
ring never forms anything of the global batch size. Unequal local batches, subgroups, one-rank
groups and inconsistent shapes across ranks are covered too.
"""

from __future__ import annotations

import datetime
import math
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from polymodal.errors import InvalidInputError
from polymodal.models.losses import ClipLoss, SigLipLoss, clip_loss, siglip_loss

D_IN, D = 12, 16  # input and feature widths; no global or local batch size may equal them
GROUP_TIMEOUT = 60  # seconds: a collective that waits longer raises in the worker
WALL_TIMEOUT = 150  # seconds: ranks still running by then are killed and the test fails
TOLERANCE = {"float64": dict(rtol=0, atol=1e-10), "float32": dict(rtol=0, atol=1e-5)}


@dataclass(frozen=True)
class Case:
    loss: str  # "clip" (gather) or "siglip" (ring)
    sizes: tuple[int, ...]  # local batch of each member of the group, in group-rank order
    dtype: str = "float64"
    members: tuple[int, ...] | None = None  # world ranks of a subgroup; None: the whole world
    record: bool = False  # record the shape of every tensor produced, forward and backward

    @property
    def name(self) -> str:
        group = "" if self.members is None else "-ranks" + "".join(map(str, self.members))
        record = "-recorded" if self.record else ""
        return f"{self.loss}-{'+'.join(map(str, self.sizes))}-{self.dtype}{group}{record}"


CASES = {
    2: [
        Case("clip", (4, 4), "float32"),
        Case("clip", (4, 4)),
        Case("clip", (5, 3)),
        Case("siglip", (4, 4), "float32", record=True),
        Case("siglip", (4, 4)),
        Case("siglip", (5, 3), record=True),
        Case("clip", (4, 4), "float32", record=True),  # shows that the recorder sees a global block
        # groups of one rank: the single-process loss
        Case("clip", (4,), members=(0,)),
        Case("clip", (3,), members=(1,)),
        Case("siglip", (4,), members=(0,)),
        Case("siglip", (3,), members=(1,)),
    ],
    3: [
        Case("clip", (3, 3, 3), "float32"),
        Case("siglip", (3, 3, 3), "float32", record=True),
        Case("clip", (2, 4, 3)),
        Case("siglip", (2, 4, 3), record=True),
        # a subgroup: rank 1 sits out, group ranks 0 and 1 are world ranks 0 and 2
        Case("clip", (3, 2), members=(0, 2)),
        Case("siglip", (3, 2), members=(0, 2)),
    ],
}


# ----------------------------------------------------------------------------------------------
# The model, the data and the single-process reference


class Towers(nn.Module):
    """Two linear towers and the scoring scalars: the smallest model whose gradients DDP averages."""

    def __init__(self, sigmoid: bool, dtype: torch.dtype):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.image = nn.Linear(D_IN, D, bias=False, dtype=dtype)
        self.text = nn.Linear(D_IN, D, bias=False, dtype=dtype)
        with torch.no_grad():
            self.image.weight.copy_(torch.randn(D, D_IN, generator=gen))
            self.text.weight.copy_(torch.randn(D, D_IN, generator=gen))
        self.log_scale = nn.Parameter(torch.tensor(math.log(10.0), dtype=dtype))
        self.bias = nn.Parameter(torch.tensor(-3.0, dtype=dtype)) if sigmoid else None

    def forward(self, x_image, x_text):
        image = F.normalize(self.image(x_image), dim=-1)
        text = F.normalize(self.text(x_text), dim=-1)
        return image, text, self.log_scale.exp(), self.bias


def global_batch(case: Case) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(sum(case.sizes) * 31 + len(case.sizes))
    dtype = getattr(torch, case.dtype)
    m = sum(case.sizes)
    return torch.randn(m, D_IN, generator=gen).to(dtype), torch.randn(m, D_IN, generator=gen).to(dtype)


def run_loss(case: Case, model, x_image, x_text, distributed: bool, group=None):
    """Loss, feature gradients and parameter gradients of one forward and backward."""
    image, text, scale, bias = model(x_image, x_text)
    image.retain_grad()
    text.retain_grad()
    if case.loss == "clip":
        loss = ClipLoss("gather" if distributed else None, group)(image, text, scale)
    else:
        loss = SigLipLoss("ring" if distributed else None, group)(image, text, scale, bias)
    loss.backward()
    params = {name: p.grad.detach().clone() for name, p in model.named_parameters()}
    return dict(loss=loss.detach(), image=image.grad.detach(), text=text.grad.detach(), params=params)


def reference(case: Case):
    """The single-process loss of the global batch, with its gradients."""
    model = Towers(case.loss == "siglip", getattr(torch, case.dtype))
    return run_loss(case, model, *global_batch(case), distributed=False)


# ----------------------------------------------------------------------------------------------
# The workers


class ShapeRecorder(TorchDispatchMode):
    """(operation, shape) of every tensor that any operation produces while active."""

    def __init__(self):
        super().__init__()
        self.shapes: list[tuple[str, tuple[int, ...]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.shapes.append((func.overloadpacket.__name__, tuple(t.shape)))
        return out


def run_case(case: Case, group) -> dict:
    model = Towers(case.loss == "siglip", getattr(torch, case.dtype))
    ddp = DistributedDataParallel(model, process_group=group)
    me = dist.get_rank(group)
    start = sum(case.sizes[:me])
    rows = slice(start, start + case.sizes[me])
    x_image, x_text = global_batch(case)
    recorder = ShapeRecorder()
    if case.record:
        with recorder:
            out = run_loss(case, ddp, x_image[rows], x_text[rows], distributed=True, group=group)
    else:
        out = run_loss(case, ddp, x_image[rows], x_text[rows], distributed=True, group=group)
    out["params"] = {name.removeprefix("module."): g for name, g in out["params"].items()}
    out["shapes"] = recorder.shapes
    return out


def bad_shapes(rank: int) -> dict:
    """Each rank calls the losses with features that disagree across ranks; all must raise."""
    scale, bias = torch.tensor(10.0), torch.tensor(-3.0)
    errors = {}
    inputs = {
        "dimension": torch.randn(4, D if rank == 0 else D - 1),
        "empty": torch.randn(0 if rank == 1 else 4, D),
    }
    for what, x in inputs.items():
        calls = {"ClipLoss": lambda: ClipLoss("gather")(x, x.clone(), scale),
                 "SigLipLoss": lambda: SigLipLoss("ring")(x, x.clone(), scale, bias)}
        for name, call in calls.items():
            try:
                call()
            except InvalidInputError as error:
                errors[f"{name}-{what}"] = str(error)
    dist.barrier()  # the group still works after the errors: nobody was left waiting
    return errors


def worker(rank: int, world: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    timeout = datetime.timedelta(seconds=GROUP_TIMEOUT)
    store = dist.TCPStore("127.0.0.1", port, None, False, timeout=timeout)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world, timeout=timeout)
    try:
        # every rank creates every subgroup, in the same order
        members = dict.fromkeys(case.members for case in CASES[world] if case.members is not None)
        subgroups = {m: dist.new_group(list(m)) for m in members}
        results = {}
        for case in CASES[world]:
            if case.members is None:
                results[case.name] = run_case(case, None)
            elif rank in case.members:
                results[case.name] = run_case(case, subgroups[case.members])
        if world == 2:
            results["errors"] = bad_shapes(rank)
        torch.save(results, Path(out_dir) / f"world{world}-rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def run_worlds(worlds, tmp: Path) -> dict[int, list[dict]]:
    """One gloo group of each size, all at once; each rank's results. A hang fails, never blocks."""
    timeout = datetime.timedelta(seconds=GROUP_TIMEOUT)
    started = {}
    try:
        for world in worlds:
            # the parent hosts each rendezvous store on a port the system picks: no race for a port
            store = dist.TCPStore("127.0.0.1", 0, None, True, timeout=timeout, wait_for_workers=False)
            context = mp.start_processes(
                worker, args=(world, store.port, str(tmp)), nprocs=world, join=False, start_method="spawn"
            )
            started[world] = (store, context)
        deadline = time.monotonic() + WALL_TIMEOUT
        for world, (_, context) in started.items():
            while not context.join(timeout=1.0):  # raises ProcessRaisedException with the rank's traceback
                if time.monotonic() > deadline:
                    pytest.fail(f"{world} gloo ranks did not finish in {WALL_TIMEOUT} s: a collective hung")
    finally:
        for _, context in started.values():
            for process in context.processes:
                if process.is_alive():
                    process.kill()
    return {world: [torch.load(tmp / f"world{world}-rank{rank}.pt") for rank in range(world)] for world in worlds}


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[int, list[dict]]:
    return run_worlds(CASES, tmp_path_factory.mktemp("ranks"))


# ----------------------------------------------------------------------------------------------
# Parity with the single-process loss


ALL_CASES = [(world, case) for world, cases in CASES.items() for case in cases]


@pytest.mark.parametrize("world,case", ALL_CASES, ids=[f"{w}ranks-{c.name}" for w, c in ALL_CASES])
def test_ranks_reproduce_the_single_process_loss_and_gradients(results, world, case):
    members = list(range(world)) if case.members is None else list(case.members)
    per_rank = [results[world][rank][case.name] for rank in members]
    ref = reference(case)
    tol = TOLERANCE[case.dtype]
    n_ranks = len(members)
    # the mean of the ranks' losses is the loss of the global batch
    torch.testing.assert_close(torch.stack([r["loss"] for r in per_rank]).mean(), ref["loss"], **tol)
    start = 0
    for out, n in zip(per_rank, case.sizes):
        rows = slice(start, start + n)
        start += n
        # every rank's loss reaches these features: their gradient is W times the global one
        torch.testing.assert_close(out["image"], n_ranks * ref["image"][rows], **tol)
        torch.testing.assert_close(out["text"], n_ranks * ref["text"][rows], **tol)
        # DDP's average over ranks: exactly the single-process gradient of every parameter
        assert out["params"].keys() == ref["params"].keys()
        for name, grad in ref["params"].items():
            torch.testing.assert_close(out["params"][name], grad, **tol, msg=lambda m: f"{name}: {m}")


def test_equal_local_batches_give_the_local_loss_as_in_open_clip(results):
    # with equal local batches, l_r = the local mean; the ranks' losses differ but average to L
    case = Case("siglip", (4, 4))
    per_rank = [results[2][rank][case.name]["loss"] for rank in range(2)]
    assert per_rank[0].item() != pytest.approx(per_rank[1].item())
    model = Towers(True, torch.float64)
    image, text, scale, bias = model(*global_batch(case))
    with torch.no_grad():
        own_blocks = siglip_loss(image[:4], text[:4], scale, bias)  # the loss of rank 0's 4 pairs alone
        cross = -F.logsigmoid(-(scale * image[:4] @ text[4:].T + bias)).sum() / 4  # its negatives with rank 1
    torch.testing.assert_close(per_rank[0], own_blocks + cross, rtol=0, atol=1e-10)


# ----------------------------------------------------------------------------------------------
# Memory: the ring forms nothing of the global batch size


def oversized(shapes, sizes):
    """Shapes with a dimension that is neither a feature width nor at most the largest local batch."""
    widths = {D_IN, D, 2 * D}
    return [s for _, s in shapes if len(s) >= 2 and any(d > max(sizes) and d not in widths for d in s)]


RECORDED = [(world, case) for world, case in ALL_CASES if case.record and case.loss == "siglip"]


@pytest.mark.parametrize("world,case", RECORDED, ids=[f"{w}ranks-{c.name}" for w, c in RECORDED])
def test_ring_never_forms_a_global_block(results, world, case):
    for rank in range(world):
        shapes = results[world][rank][case.name]["shapes"]
        assert shapes, "the recorder saw nothing"
        assert oversized(shapes, case.sizes) == []
        # the logits blocks (products without a feature width): this rank's rows against each rank's
        blocks = {s for op, s in shapes if op == "mm" and D not in s and D_IN not in s}
        assert blocks == {(case.sizes[rank], n) for n in case.sizes}
        largest = max(blocks, key=math.prod)
        assert largest == (case.sizes[rank], max(case.sizes))  # (local x local) with equal batches


def test_the_recorder_sees_the_gathered_block_of_clip(results):
    # the check above would catch a global block: the gather forms (n, M) logits on purpose
    case = Case("clip", (4, 4), "float32", record=True)
    for rank in range(2):
        shapes = results[2][rank][case.name]["shapes"]
        assert (4, 8) in oversized(shapes, case.sizes)


# ----------------------------------------------------------------------------------------------
# Bad input, one-rank groups, no group


def test_shapes_that_disagree_across_ranks_raise_on_every_rank(results):
    for rank in range(2):
        errors = results[2][rank]["errors"]
        expected = {f"{loss}-{what}" for loss in ("ClipLoss", "SigLipLoss") for what in ("dimension", "empty")}
        assert set(errors) == expected
        assert "rank 1 has features of dimension 15 but rank 0 has 16" in errors["ClipLoss-dimension"]
        assert "rank 1 has an empty batch" in errors["SigLipLoss-empty"]


def test_without_a_process_group_the_options_are_the_single_process_losses():
    assert not dist.is_initialized()
    gen = torch.Generator().manual_seed(7)
    image = F.normalize(torch.randn(5, D, generator=gen, dtype=torch.float64), dim=-1)
    text = F.normalize(torch.randn(5, D, generator=gen, dtype=torch.float64), dim=-1)
    assert ClipLoss("gather")(image, text, 10.0).item() == clip_loss(image, text, 10.0).item()
    assert SigLipLoss("ring")(image, text, 10.0, -3.0).item() == siglip_loss(image, text, 10.0, -3.0).item()


def test_unknown_distributed_option_names_the_choices():
    with pytest.raises(InvalidInputError, match=r"distributed='ring'.*None, 'gather'"):
        ClipLoss(distributed="ring")
    with pytest.raises(InvalidInputError, match=r"distributed='gather'.*None, 'ring'"):
        SigLipLoss(distributed="gather")
    assert repr(SigLipLoss("ring")) == "SigLipLoss(distributed='ring')"
    assert repr(ClipLoss()) == "ClipLoss()"
