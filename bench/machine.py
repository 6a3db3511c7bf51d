"""What the numbers were measured on, for RESULTS.md.

Why: the same harness runs on a developer's x86 VM and on a Raspberry Pi, and a
figure means nothing without the CPU, cores, memory and software behind it.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

import psutil

from bench.wrk_load import wrk_version

PACKAGES = (
    "flask",
    "werkzeug",
    "gunicorn",
    "gevent",
    "greenlet",
    "requests",
    "urllib3",
    "marshmallow",
    "python-decouple",
    "psutil",
)


def cpu_model() -> str:
    """x86 says "model name"; a Raspberry Pi says "Model" (the board), and
    "Hardware" (the SoC) on older kernels."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                name, _, value = line.partition(":")
                fields.setdefault(name.strip(), value.strip())
    except OSError:
        pass
    for name in ("model name", "Model", "Hardware"):
        if fields.get(name):
            return fields[name]
    return platform.processor() or platform.machine()


def describe() -> dict[str, str]:
    """CPU, cores, RAM, kernel, Python and the versions of the packages that matter."""
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    return {
        "cpu": f"{cpu_model()} ({platform.machine()})",
        "cores": str(os.cpu_count()),
        "ram": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "kernel": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "packages": ", ".join(versions),
        "load generator": wrk_version(),
    }
