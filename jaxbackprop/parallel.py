"""Data-parallel training with ``jax.sharding``: the batch split over devices, the model copied.

A 1-D mesh names every device along one axis, ``"data"``. Each batch is split along its first
axis (``P("data")``: device i holds rows i*B/N ... (i+1)*B/N - 1); parameters and optimizer state
are replicated (``P()``). The unchanged jitted step of :func:`jaxbackprop.step.make_train_step`
then runs on all devices: jit partitions the computation to follow its inputs' shardings, so each
device does the forward and backward pass of its own rows, and the compiler inserts the
all-reduces that the global mean loss and summed gradients need. The updated parameters come back
replicated, so the next step reuses the same compiled program::

    mesh = data_mesh()
    step = make_train_step(cfg, tx, backprop.manual_value_and_grad)
    params, opt_state = replicate((params, tx.init(params)), mesh)
    for i, batch in enumerate(batches):
        params, opt_state, J = step(params, opt_state, shard_batch(batch, mesh), jax.random.key(i))

The mesh's axes are ``Auto`` (the compiler chooses how to partition each operation). With
``jax.make_mesh``'s default ``Explicit`` axes the embedding gather ``E[windows]`` would need its
output sharding spelled out, and the model is kept free of sharding annotations.

Training (``jaxbackprop train --devices N|all``) does the same inside the compiled epoch
(:mod:`jaxbackprop.compiled_epoch`): :func:`mesh_for` turns the setting into a mesh,
:func:`check_batch_divides` refuses a batch that does not split evenly (the crf head's sentences
per step, which ``--batch-size`` in tokens makes, are rounded up instead: :func:`round_up_to_devices`),
and each batch gathered on the device is constrained to ``P("data")``.

Several hosts: every process first calls :func:`initialize_distributed` (``jax.distributed.initialize``
with ``coordinator_address="host0:1234", num_processes=P, process_id=i``, or with no arguments where
the cluster is auto-detected: Cloud TPU, SLURM, Open MPI) before any other JAX call. Then the same
program runs unchanged on every host: ``jax.devices()`` (the default of :func:`data_mesh`) spans
all hosts, :func:`replicate` assembles global arrays from the full value every process holds, and
:func:`shard_batch` takes each host's own slice of the global batch
(``jax.make_array_from_process_local_data``). Parameters, optimizer state and step keys must be
equal on all hosts: initialise them from the same seed. What runs on one device only, such as
evaluation, reads :func:`local_copy`. On CPUs the all-reduces go over Gloo (jax's default
``jax_cpu_collectives_implementation``; ``"mpi"`` is the other choice). Launch one process per
host with the cluster's own tool (``srun``, ``mpirun``, ``gcloud ... --worker=all``).
"""

from __future__ import annotations

import math
import threading

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "data"


def data_mesh(devices=None) -> Mesh:
    """A 1-D mesh with axis ``"data"`` over ``devices`` (default: ``jax.devices()``, all hosts).

    >>> mesh = data_mesh()
    >>> mesh.axis_names, mesh.devices.size == jax.device_count()
    (('data',), True)
    """
    devices = jax.devices() if devices is None else list(devices)
    return jax.make_mesh((len(devices),), (AXIS,), axis_types=(AxisType.Auto,), devices=devices)


def shard_batch(batch, mesh: Mesh):
    """Split every array of ``batch`` along its first axis over the mesh's devices.

    Args:
      batch: a pytree of arrays (e.g. ``{"windows": (B, n), "labels": (B,), "weights": (B,)}``)
        holding this process's rows; on one host, the whole batch.
      mesh: from :func:`data_mesh`.

    Returns:
      The same tree of global ``jax.Array``s sharded as ``P("data")``.

    Raises:
      ValueError: the rows do not divide evenly over this process's devices of the mesh, or the
        arrays disagree on the number of rows.

    >>> b = shard_batch({"labels": np.arange(4)}, data_mesh())
    >>> b["labels"].sharding.spec == P("data")
    True
    """
    sizes = {np.shape(x)[0] if np.ndim(x) else None for x in jax.tree.leaves(batch)}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(
            f"every array of the batch needs the same number of rows (first axis), got {sorted(sizes, key=str)}"
        )
    (rows,) = sizes
    n = len(mesh.local_devices)
    if rows % n:
        raise ValueError(
            f"batch size {rows} does not divide evenly over the {n} devices of the mesh; use a multiple of {n}"
        )
    sharding = NamedSharding(mesh, P(AXIS))
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)


def replicate(tree, mesh: Mesh):
    """A full copy of every array of ``tree`` on each device of the mesh (``P()``).

    Args:
      tree: a pytree of arrays (numpy, or jax arrays on one device or already on the mesh). With
        several processes, each passes the same values (the full arrays, not a slice).
      mesh: from :func:`data_mesh`.

    Returns:
      The same tree of global ``jax.Array``s, fully replicated over the mesh.

    >>> p = replicate({"b": np.zeros(3, np.float32)}, data_mesh())
    >>> p["b"].sharding.is_fully_replicated
    True
    """
    sharding = NamedSharding(mesh, P())
    if all(d.process_index == jax.process_index() for d in mesh.devices.flat):
        return jax.device_put(tree, sharding)
    # jax.device_put cannot move an array committed to this host's device onto another host's
    # devices ("does not support cross-host device transfers" on CPU); every process instead
    # builds its own devices' copies from the host value it holds
    return jax.tree.map(lambda x: _replicated(x, sharding), tree)


def _replicated(x, sharding: NamedSharding):
    """One leaf of :func:`replicate` across processes: kept if already there, else built from its host value."""
    if isinstance(x, jax.Array) and x.sharding.is_equivalent_to(sharding, x.ndim):
        return x
    host = np.asarray(local_copy(x))
    host = host.astype(jax.dtypes.canonicalize_dtype(host.dtype))  # a Python float is float32 without x64
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def local_copy(tree):
    """The arrays of ``tree`` as arrays on this process's first device, for single-device work (evaluation).

    Args:
      tree: a pytree; its replicated ``jax.Array``s may span several devices and processes.

    Returns:
      The same tree: each replicated array as its copy on ``jax.local_devices()[0]`` (no
      transfer between hosts); an array on one device, and anything not a ``jax.Array``,
      unchanged; an array split over this process's devices, gathered onto that device.

    Raises:
      ValueError: an array is split over devices of other processes, so this process does not
        hold all of it.

    >>> p = replicate({"b": np.arange(3.0, dtype=np.float32)}, data_mesh())
    >>> q = local_copy(p)
    >>> q["b"].sharding.device_set == {jax.local_devices()[0]}, q["b"].tolist()
    (True, [0.0, 1.0, 2.0])
    """
    return jax.tree.map(_local_leaf, tree)


def _local_leaf(x):
    if not isinstance(x, jax.Array) or len(x.sharding.device_set) == 1:
        return x
    device = jax.local_devices()[0]
    if x.is_fully_replicated:
        return jax.device_put(x.addressable_data(0), device)  # any one copy, already on this host
    if x.is_fully_addressable:
        return jax.device_put(x, device)
    raise ValueError(
        f"local_copy needs a replicated array, got one of shape {x.shape} split as {x.sharding.spec} over "
        f"{len(x.sharding.device_set)} devices of several processes"
    )


def mesh_for(devices) -> Mesh | None:
    """The data mesh for a ``devices`` setting, or None where training runs on one device.

    Args:
      devices: None or 1 (one device: None), an int N >= 2 (the first N devices; with several
        processes, N / P of each process's own devices), or ``"all"`` (every device of every
        process; None if that is one).

    Returns:
      A :func:`data_mesh` over the chosen devices, or None.

    Raises:
      ValueError: N is not a positive integer, exceeds the devices there are, or (with several
        processes) is not a multiple of the number of processes.

    >>> mesh_for(None) is None, mesh_for(1) is None
    (True, True)
    >>> mesh_for("all") is None or mesh_for("all").devices.size == jax.device_count()
    True
    """
    if devices is None:
        return None
    available = jax.device_count()
    n = available if devices == "all" else devices
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"--devices must be an integer >= 1 or 'all', got {devices!r}")
    if n > available:
        raise ValueError(f"--devices {n}: {_too_few(n, available)}")
    if n == 1:
        return None
    return data_mesh(_first_devices(int(n)))


def _too_few(n: int, available: int) -> str:
    """Why ``n`` devices cannot be had, and on a CPU how to get them."""
    text = f"only {available} device{'s are' if available > 1 else ' is'} available"
    if jax.default_backend() == "cpu":
        text += f" (on CPU, XLA_FLAGS=--xla_force_host_platform_device_count={n} gives {n})"
    return text


def _first_devices(n: int) -> list:
    """``n`` devices, the same number from each process, so every process feeds its own share of the mesh."""
    processes = jax.process_count()
    if n % processes:
        raise ValueError(
            f"--devices {n}: {processes} processes need the same number of devices each; use a multiple of {processes}"
        )
    per_process = n // processes
    by_process = [[d for d in jax.devices() if d.process_index == p] for p in range(processes)]
    return [d for devices in by_process for d in devices[:per_process]]


def check_batch_divides(batch_size: int, mesh: Mesh | None) -> None:
    """Raise if ``batch_size`` rows cannot be split evenly over the devices of ``mesh``.

    Each device takes ``batch_size / N`` rows of every batch; an uneven split would make the
    devices' shares differ in shape. None (one device) accepts any batch size.

    Raises:
      ValueError: naming the batch size, the number of devices and the nearest sizes that work.

    >>> check_batch_divides(7, None)
    """
    if mesh is None:
        return
    n = mesh.devices.size
    if batch_size % n:
        lower, upper = batch_size // n * n, -(-batch_size // n) * n
        nearest = f"{lower} or {upper}" if lower else f"{upper}"
        raise ValueError(
            f"--batch-size {batch_size} does not divide evenly over {n} devices; use a multiple of {n} (e.g. {nearest})"
        )


def round_up_to_devices(rows: int, mesh: Mesh | None) -> int:
    """``rows`` rounded up to a multiple of the mesh's devices, so a batch of them splits evenly (None: as is).

    What the crf head does with the sentences per step that ``--batch-size`` (in tokens) makes:
    the user did not choose that count, so it is rounded instead of refused.

    >>> round_up_to_devices(61, None)
    61
    """
    n = 1 if mesh is None else mesh.devices.size
    return -(-rows // n) * n


# jax.distributed.initialize gets this much longer than the watchdog of initialize_distributed, so that
# the watchdog, not jax (whose timeout aborts the process with a C++ stack trace), ends a wait
_JAX_TIMEOUT_MARGIN = 60


def initialize_distributed(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id=None,
    *,
    timeout: float | None = None,
    on_timeout=None,
):
    """Join this process to the others of a multi-process run (``jax.distributed.initialize``).

    Must come before any other JAX call (before the first ``jax.devices()`` or computation).
    Without arguments the cluster is auto-detected (SLURM, Open MPI, Cloud TPU; also the
    environment variable ``JAX_COORDINATOR_ADDRESS``); on other machines give all three.

    Args:
      coordinator: ``"host:port"`` of process 0, which all processes reach.
      num_processes: how many processes take part, P.
      process_id: this process's index in ``0 ... P-1``.
      timeout: seconds to wait for every process to join (None: JAX's default, 300 s, after
        which JAX aborts the process, exit 134, with a C++ stack trace).
      on_timeout: with ``timeout``, called from a watchdog thread with :func:`not_joined`'s
        message when the processes have not all joined in time. It must end the process
        (``os._exit``): JAX's wait cannot be interrupted, and its own timeout comes
        60 s later and aborts.

    Returns:
      ``(jax.process_index(), jax.process_count())``.

    Raises:
      ValueError: the cluster was not detected and an argument is missing or out of range.
      RuntimeError: JAX had already started.
    """
    limit = {}
    if timeout is not None:
        watchdog = threading.Timer(timeout, lambda: on_timeout(not_joined(coordinator, num_processes, timeout)))
        watchdog.daemon = True  # never keeps a finished process alive
        watchdog.start()
        limit = {"initialization_timeout": int(math.ceil(timeout)) + _JAX_TIMEOUT_MARGIN}
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator, num_processes=num_processes, process_id=process_id, **limit
        )
    except ValueError as err:  # jax's own words, plus what to give where nothing was detected
        raise ValueError(
            f"jax.distributed.initialize: {err} (outside a SLURM or Open MPI job give all three of "
            "--coordinator HOST:PORT, --num-processes P, --process-id I)"
        ) from None
    finally:
        if timeout is not None:
            watchdog.cancel()
    return jax.process_index(), jax.process_count()


def waiting_for(coordinator: str | None, num_processes: int | None, process_id, timeout: float) -> str:
    """What a process says before :func:`initialize_distributed` waits for the others.

    >>> waiting_for("host0:29500", 3, 1, 300)
    'process 1 of 3: waiting up to 300 s for the other 2 processes at coordinator host0:29500 (--init-timeout)'
    >>> waiting_for(None, None, None, 60)
    'waiting up to 60 s for the other processes of the cluster job (--init-timeout)'
    """
    limit = f"waiting up to {timeout:g} s for the other"
    if num_processes is None or coordinator is None:
        return f"{limit} processes of the cluster job (--init-timeout)"
    others = num_processes - 1
    me = "" if process_id is None else f"process {process_id} of {num_processes}: "
    return f"{me}{limit} {others} process{'es' if others != 1 else ''} at coordinator {coordinator} (--init-timeout)"


def not_joined(coordinator: str | None, num_processes: int | None, timeout: float) -> str:
    """Why :func:`initialize_distributed` gave up: the processes that did not all join in ``timeout`` s.

    >>> not_joined("host0:29500", 2, 5)  # doctest: +NORMALIZE_WHITESPACE
    'the 2 processes did not all join at coordinator host0:29500 within 5 s: start every one with the same
    --coordinator and --num-processes and its own --process-id 0 ... 1 (--init-timeout waits longer)'
    """
    where = "" if coordinator is None else f" at coordinator {coordinator}"
    count = "the processes" if num_processes is None else f"the {num_processes} processes"
    ids = "I" if num_processes is None else f"0 ... {num_processes - 1}"
    return (
        f"{count} did not all join{where} within {timeout:g} s: start every one with the same --coordinator and "
        f"--num-processes and its own --process-id {ids} (--init-timeout waits longer)"
    )


def lost_process(err: BaseException) -> bool:
    """Whether ``err`` says another process of the run is gone (its collectives' connection closed).

    Over Gloo a dead peer surfaces as ``Gloo all-reduce failed: ... Connection closed by peer``,
    raised by the next computation that needs it.

    >>> lost_process(ValueError("UNKNOWN: Gloo all-reduce failed: pair.cc:547 Connection closed by peer"))
    True
    >>> lost_process(ValueError("train.txt:3: bad tag"))
    False
    """
    return any(sign in str(err) for sign in ("Gloo", "Connection closed by peer", "Connection reset by peer"))


def agreed(flag) -> bool:
    """Process 0's ``flag`` on every process: one decision where each process computed its own.

    Every process evaluates the same parameters, but a decision that compares floats (a better dev
    F1, so patience) could still split them on hosts whose CPUs round differently; a split would
    leave one process waiting forever in the next epoch's all-reduce.

    >>> agreed(True)
    True
    """
    if jax.process_count() == 1:
        return bool(flag)
    from jax.experimental import multihost_utils

    return bool(multihost_utils.broadcast_one_to_all(np.asarray(bool(flag))))
