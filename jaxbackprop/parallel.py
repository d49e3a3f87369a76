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

Several hosts: every process first calls ``jax.distributed.initialize()`` -- with
``coordinator_address="host0:1234", num_processes=P, process_id=i``, or with no arguments where
the cluster is auto-detected (Cloud TPU, SLURM, Open MPI) -- before any other JAX call. Then the
same program runs unchanged on every host: ``jax.devices()`` (the default of :func:`data_mesh`)
spans all hosts, and each host passes :func:`shard_batch` only its own slice of the global batch
(``jax.make_array_from_process_local_data`` assembles the global array). Parameters, optimizer
state and step keys must be equal on all hosts: initialise them from the same seed. Launch one
process per host with the cluster's own tool (``srun``, ``mpirun``, ``gcloud ... --worker=all``).
"""

from __future__ import annotations

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

    >>> p = replicate({"b": np.zeros(3, np.float32)}, data_mesh())
    >>> p["b"].sharding.is_fully_replicated
    True
    """
    return jax.device_put(tree, NamedSharding(mesh, P()))
