"""Devices and dtypes: the one place that turns ``--device`` / ``--dtype`` words into torch objects,
for Osprey and SAM alike, and measures the memory left on a device.

Both spellings of a dtype are accepted everywhere: ``fp32``/``float32``, ``bf16``/``bfloat16``,
``fp16``/``float16``/``half``; ``auto`` (or None) lets the caller's policy decide.
"""

from __future__ import annotations

import torch

from osprey.core.errors import UsageError

DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
}
DTYPE_CHOICES = ("auto", "fp32", "float32", "bf16", "bfloat16", "fp16", "float16", "half")


def mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"``: CUDA, else MPS, else CPU. A named device must exist on this machine
    (``cuda`` without a GPU is a :class:`UsageError`, not a crash on first use)."""
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_available() else torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise UsageError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"device {device!r} was asked for, but CUDA is not available here")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(f"device {device!r}: only {torch.cuda.device_count()} GPU(s) here")
    if dev.type == "mps" and not mps_available():
        raise UsageError(f"device {device!r} was asked for, but MPS is not available here")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"unsupported device {device!r}; use auto, cpu, cuda, cuda:N or mps")
    return dev


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """A dtype word (either spelling) or a torch dtype -> torch dtype; ``None``/``"auto"`` -> None."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    name = str(dtype).lower()
    if name == "auto":
        return None
    if name not in DTYPES:
        raise UsageError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPE_CHOICES)}")
    return DTYPES[name]


def default_dtype(device: torch.device) -> torch.dtype:
    """What ``auto`` means for a model that runs well in any precision: bf16 on CUDA (fp16 where
    bf16 is unsupported), fp16 on MPS, fp32 on the CPU."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32


def resolve_dtype(device: torch.device, dtype: str | torch.dtype | None = None) -> torch.dtype:
    """``dtype`` as a torch dtype, or :func:`default_dtype` for ``None``/``"auto"``."""
    return parse_dtype(dtype) or default_dtype(device)


def rng_devices(device: torch.device) -> list[torch.device]:
    """The devices whose RNG ``torch.random.fork_rng`` must fork for work on ``device``."""
    return [device] if device.type == "cuda" else []


def free_memory(device: torch.device) -> int:
    """Bytes the process can still allocate on ``device``: free device memory plus what torch's
    caching allocator holds unused (CUDA), or the kernel's MemAvailable (CPU, Linux)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 * 2**30  # unknown: assume a modest machine
