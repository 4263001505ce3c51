"""Fit the app to the machine it lands on: from the memory the chosen device has free, pick the
LLM's form (bf16, else 8-bit, else 4-bit) and, when asked, the SAM; say what was picked and
the estimated peak; refuse with one line when nothing fits.

The estimates are the peaks measured with ``benchmarks/run.py`` (Osprey-7B with random weights
and SAM ViT-B: a click, a two-region question, then "describe all" on 50 regions), plus the
other SAM sizes' extra weights and encoder work. Figures marked measured were measured on the
machines named in the README's Performance section; the others are estimates from the parts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from osprey.core.errors import UsageError

GIB = 2**30
# Peak resident memory (GiB) of Osprey-7B + SAM ViT-B through a click, a question and a 50-region
# describe-all: CPU measured on the 2-core, 24 GB development machine; CUDA bf16 measured on an
# H200, the quantized CUDA forms estimated (LLM weights 13.5 -> 7.1 / 3.9 GB).
PEAK_7B_GIB = {
    "cpu": {"bf16": 16.7, "8bit": 11.6, "4bit": 10.7},
    "cuda": {"bf16": 15.4, "8bit": 9.4, "4bit": 6.4},
}
# What a larger SAM adds over ViT-B: its weights and its encoder's work (GiB, estimated from the
# checkpoint sizes 0.37 / 1.25 / 2.56 GB and the H200 measurement ViT-H - ViT-B = 3.3 GiB). SAM
# 2.1 (39 / 46 / 81 / 224 M parameters against ViT-B's 91 M; estimated, not measured): none but
# the large one adds to ViT-B's share; a SAM 2 given by its Hub id counts as ViT-H (generous).
SAM_EXTRA_GIB = {
    "vit_b": 0.0, "vit_l": 1.5, "vit_h": 3.3,
    "sam2.1-tiny": 0.0, "sam2.1-small": 0.0, "sam2.1-base-plus": 0.0, "sam2.1-large": 1.0,
}  # fmt: skip
OTHER_SAM_GIB = SAM_EXTRA_GIB["vit_h"]
# What SAM `auto` tries, in order, per device (sam_bridge.names.AUTO_GPU / AUTO_CPU are the same
# choices without an LLM beside them): on a GPU the largest SAM 2.1 that fits beside the LLM; on
# a CPU SAM 2.1 tiny, whose new image encodes about 4x faster than ViT-B's (README, "Which SAM").
AUTO_SAM = {"cuda": ("sam2.1-large", "sam2.1-base-plus", "sam2.1-tiny")}
AUTO_SAM_ELSEWHERE = ("sam2.1-tiny",)
TINY_PEAK_GIB = 4.0  # tiny models + SAM's encoder at work: generous
FORMS = ("bf16", "8bit", "4bit")
MARGIN_GIB = 0.5  # left free for the rest of the process


@dataclass(frozen=True)
class Plan:
    device: str  # "cpu" / "cuda" / "mps"
    quantize: str | None  # None (the dtype as asked, bf16 by default), "8bit", "4bit"
    sam_model_type: str
    peak_gib: float
    available_gib: float

    def describe(self) -> str:
        form = {None: "bf16", "8bit": "8-bit (bitsandbytes)", "4bit": "4-bit NF4 (bitsandbytes)"}
        return (
            f"Osprey-7B LLM in {form[self.quantize]} + SAM {self.sam_model_type} on {self.device}: "
            f"estimated peak {self.peak_gib:.1f} GiB of {self.available_gib:.1f} GiB available"
        )


def available_gib(device_type: str) -> float:
    """Memory free for this process: the GPU's free memory, or on the CPU the kernel's
    MemAvailable capped by the container's cgroup limit (Spaces run in containers)."""
    import torch

    from osprey.core.devices import free_memory

    if device_type == "cuda":
        return free_memory(torch.device("cuda")) / GIB
    free = free_memory(torch.device("cpu"))
    return min(free, _cgroup_room() or free) / GIB


def _cgroup_room() -> int | None:
    """cgroup v2 memory.max - memory.current, when the process runs under a limit."""
    limit, used = Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory.current")
    try:
        cap = limit.read_text().strip()
        if cap == "max":
            return None
        return max(0, int(cap) - int(used.read_text()))
    except (OSError, ValueError):
        return None


def estimate_gib(device_type: str, form: str, sam_model_type: str) -> float:
    table = PEAK_7B_GIB["cuda" if device_type == "cuda" else "cpu"]
    return table[form] + SAM_EXTRA_GIB.get(sam_model_type, OTHER_SAM_GIB)


def _preferences(device_type: str, forms, sam_model_type: str) -> list[tuple[str, str]]:
    """(LLM form, SAM) in order of preference: the LLM's quality first; with SAM ``auto``, the
    sizes of :data:`AUTO_SAM` for the device, largest first."""
    if sam_model_type != "auto":
        return [(form, sam_model_type) for form in forms]
    sizes = AUTO_SAM.get(device_type, AUTO_SAM_ELSEWHERE)
    return [(form, sam) for form in forms for sam in sizes]


def plan(
    device_type: str, quantize: str | None, sam_model_type: str, available: float | None = None
) -> Plan:
    """The form to load: ``quantize`` ``"auto"`` tries bf16, then 8-bit, then 4-bit (bitsandbytes
    runs on CUDA and the CPU, not MPS); ``sam_model_type`` ``"auto"`` takes the largest SAM 2.1
    that fits beside the LLM on a GPU, SAM 2.1 tiny elsewhere. A fixed choice is kept but
    checked. Raises :class:`~osprey.core.errors.UsageError` (one line: what would fit, which flag)
    when nothing fits."""
    available = available_gib(device_type) if available is None else available
    room = available - MARGIN_GIB
    forms = FORMS if quantize == "auto" else ["bf16" if quantize in (None, "none") else quantize]
    if device_type == "mps":
        forms = [f for f in forms if f == "bf16"]
    for form, sam in _preferences(device_type, forms, sam_model_type):
        peak = estimate_gib(device_type, form, sam)
        if peak <= room:
            return Plan(device_type, None if form == "bf16" else form, sam, peak, available)
    smallest = min(estimate_gib(device_type, f, "vit_b") for f in (forms or FORMS))
    hint = "--quantize 4bit" if quantize != "4bit" and device_type != "mps" else "a larger machine"
    raise UsageError(
        f"Osprey-7B does not fit here: {available:.1f} GiB free on {device_type}, and the smallest "
        f"form asked for needs about {smallest:.1f} GiB; try {hint}, --device with more memory, "
        "or --tiny to try the app"
    )


def kv_budget_bytes(plan_: Plan, default: int) -> int:
    """What the batching engine's KV cache may take: ``default``, but no more than what is left
    beside the estimated peak (at least 256 MiB)."""
    left = (plan_.available_gib - plan_.peak_gib - MARGIN_GIB) * GIB
    return int(max(256 * 2**20, min(default, left)))
