"""PyTorch peers of the JAX variants: the same window model, batches and Adam, in torch.

torch is optional (``pip install 'jaxbackprop[torch]'``): :func:`import_torch` returns None with a
message when it is missing, and the benchmarks then skip these rows. The variants:

* ``torch_dense``: ``nn.Embedding`` with a dense gradient, fused (else foreach) Adam;
* ``torch_sparse``: ``nn.Embedding(sparse=True)``, ``SparseAdam`` for E and Adam for the rest;
* ``torch_compile``: ``torch_dense`` under ``torch.compile`` (only at :data:`COMPILE_SHAPES`,
  about a minute to compile each); ``torch_graphs``: ``mode="reduce-overhead"`` (CUDA graphs, GPU only);
* ``torch_fwd``: the loss under ``no_grad``; ``torch_fwdbwd``: loss and backward, sparse E gradient.
"""

from __future__ import annotations

import time

import harness
import jax

COMPILE_SHAPES = {(B, 20_000, 50, "zipf") for B in (32, 512, 4096)}  # ~1 min to compile each
COMPILE_MODES = {"torch_compile": "default", "torch_graphs": "reduce-overhead"}


def import_torch():
    """The torch module, or None (with a message) when it is not installed."""
    try:
        import torch
    except ImportError:
        print("torch is not installed: skipping the PyTorch rows (pip install 'jaxbackprop[torch]')")
        return None
    return torch


def torch_device(torch, wanted):
    """ "cuda" when asked, or (auto) when JAX itself runs on a GPU and torch sees one; else "cpu"."""
    if torch is None:
        return None
    if wanted == "auto":
        return "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"
    if wanted == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--torch-device cuda: torch sees no CUDA device (torch.cuda.is_available() is False)")
    return wanted


def thread_setter(torch):
    """``set_threads(n)`` for :func:`harness.time_round_robin`: n torch threads, None for the
    default torch had when this was called; a no-op without torch."""
    if torch is None:
        return None
    default = torch.get_num_threads()
    return lambda threads: torch.set_num_threads(threads or default)


def window_module(torch, shape, hidden, sparse_grad):
    """The benchmark model as an ``nn.Module``: ``module(windows, labels)`` is the mean cross-entropy."""
    nn, F = torch.nn, torch.nn.functional

    class Window(nn.Module):
        def __init__(self):
            super().__init__()
            self.E = nn.Embedding(shape.vocab, shape.dim, sparse=sparse_grad)
            self.hidden = nn.Linear(harness.WINDOW * shape.dim, hidden)
            self.out = nn.Linear(hidden, harness.CLASSES)

        def forward(self, w, y):
            x = self.E(w).reshape(w.shape[0], -1)
            return F.cross_entropy(self.out(torch.relu(self.hidden(x))), y)

    return Window()


def adam(torch, params):
    """``(optimizer, kwargs)``: fused Adam where torch has it, else foreach, else the plain loop."""
    for kw in ({"fused": True}, {"foreach": True}):
        try:
            return torch.optim.Adam(params, lr=harness.LR, **kw), kw
        except (RuntimeError, ValueError):
            continue
    return torch.optim.Adam(params, lr=harness.LR), {}


def train_loop(module, opts, data, sync, before_step=lambda: None):
    """``run(n)``: n training steps cycling the batches; ``sync`` waits for the device."""
    state = {"i": 0}

    def run(n):
        for _ in range(n):
            before_step()
            w, y = data[state["i"] % len(data)]
            module(w, y).backward()
            for opt in opts:
                opt.step()
                opt.zero_grad(set_to_none=True)
            state["i"] += 1
        sync()

    return run


def pass_loop(torch, module, data, sync, backward):
    """``run(n)``: n forward passes (under no_grad), or forward + backward passes."""
    state = {"i": 0}

    def run(n):
        for _ in range(n):
            w, y = data[state["i"] % len(data)]
            if backward:
                module(w, y).backward()
                module.zero_grad(set_to_none=True)
            else:
                with torch.no_grad():
                    module(w, y)
            state["i"] += 1
        sync()

    return run


def compiled_run(torch, name, mode, shape, hidden, data, sync, device):
    """``(run, info)`` of the dense step under ``torch.compile(mode=mode)``, compiled (3 warm-up steps)
    before timing; None with a message when compiling fails."""
    m = window_module(torch, shape, hidden, False).to(device)
    opt, kw = adam(torch, m.parameters())
    # reduce-overhead replays CUDA graphs, whose outputs the next replay overwrites: mark each step
    mark = torch.compiler.cudagraph_mark_step_begin if mode == "reduce-overhead" else (lambda: None)
    run = train_loop(torch.compile(m, mode=mode), [opt], data, sync, mark)
    try:
        t = time.perf_counter()
        run(3)  # compiles forward and backward (and records the graphs)
    except Exception as e:  # noqa: BLE001  (inductor needs a C++ toolchain, among others)
        print(f"  skip {name}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        return None
    return run, {"adam": kw, "compile_s": time.perf_counter() - t, "compile_mode": mode}


def torch_runners(torch, shape, hidden, windows, labels, wanted, thread_settings, quick, device="cpu"):
    """PyTorch peers of the JAX steps, each at every thread setting (None: torch's default)."""
    # CUDA kernels run asynchronously: a repeat ends only when the device has finished its work
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    data = [
        (torch.from_numpy(w).long().to(device), torch.from_numpy(y).long().to(device)) for w, y in zip(windows, labels)
    ]

    def module(sparse_grad):
        return window_module(torch, shape, hidden, sparse_grad).to(device)

    made = {}
    if "torch_dense" in wanted:
        m = module(False)
        opt, kw = adam(torch, m.parameters())
        made["torch_dense"] = (train_loop(m, [opt], data, sync), {"adam": kw})
    if "torch_sparse" in wanted:
        m = module(True)
        opt, kw = adam(torch, [p for n, p in m.named_parameters() if n != "E.weight"])
        opts = [torch.optim.SparseAdam([m.E.weight], lr=harness.LR), opt]
        made["torch_sparse"] = (train_loop(m, opts, data, sync), {"adam": kw})
    for name, mode in COMPILE_MODES.items():
        if name not in wanted or (name == "torch_graphs" and device != "cuda"):
            continue  # CUDA graphs: a GPU-only way to cut launch overhead
        if quick or (shape.batch, shape.vocab, shape.dim, shape.ids) not in COMPILE_SHAPES:
            print(f"  skip {name} at {shape.name}: compiled only at {sorted(COMPILE_SHAPES)} (~1 min each)")
            continue
        if compiled := compiled_run(torch, name, mode, shape, hidden, data, sync, device):
            made[name] = compiled
    if "torch_fwd" in wanted:
        made["torch_fwd"] = (pass_loop(torch, module(False), data, sync, backward=False), {})
    if "torch_fwdbwd" in wanted:
        made["torch_fwdbwd"] = (pass_loop(torch, module(True), data, sync, backward=True), {"embedding_grad": "sparse"})
    return [
        harness.Runner(name + ("" if threads is None else f"[{threads}t]"), run, threads=threads, info=info)
        for threads in thread_settings
        for name, (run, info) in made.items()
    ]
