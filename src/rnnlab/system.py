"""Facts about the machine and the installed stack, for ``rnnlab info`` and run summaries."""

from __future__ import annotations

import os
import platform

import torch

from rnnlab.version import __version__


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux), for benchmark and run reports."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def system_info() -> dict[str, str]:
    """Versions, thread count and the recurrent kernel paths that are active."""
    from rnnlab.layers import active_kernel_paths

    return {
        "rnnlab": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu cores": str(os.cpu_count()),
        "torch threads": str(torch.get_num_threads()),
        "cuda available": str(torch.cuda.is_available()),
        "mkldnn": str(torch.backends.mkldnn.is_available()),
        **{f"kernel: {name}": path for name, path in active_kernel_paths().items()},
    }
