#!/usr/bin/env python3
"""Plots the soak's memory samples (seconds, KiB per line) to a PNG."""
import sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

samples, output, title = sys.argv[1], sys.argv[2], sys.argv[3]
points = [tuple(map(float, line.split())) for line in open(samples) if line.strip()]
minutes = [t / 60 for t, _ in points]
mib = [kib / 1024 for _, kib in points]
plt.figure(figsize=(8, 4))
plt.plot(minutes, mib, marker="o")
plt.ylim(0, max(mib) * 1.3)
plt.xlabel("minutes")
plt.ylabel("netstackd resident memory (MiB)")
plt.title(title)
plt.grid(True, alpha=0.3)
plt.tight_layout()
plt.savefig(output, dpi=100)
