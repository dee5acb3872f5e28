"""``python -m rnnlab.kernels``: compile the kernels now (instead of at first use) and say where they stand."""

from rnnlab.kernels import build

if __name__ == "__main__":
    module = build.load()
    print(f"rnnlab kernels: {build.status()}" + (f" ({module.__file__})" if module is not None else ""))
    raise SystemExit(0 if module is not None or not build.enabled() else 1)
