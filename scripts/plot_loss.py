"""Plot a training log (`<CKPT>.log.jsonl` from grepq train-ll / train-hl) to a PNG.

    python scripts/plot_loss.py ll_encoder.log.jsonl docs/ll_loss.png
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def main(log: str, out: str):
    rows = [json.loads(line) for line in open(log)]
    steps = np.array([r["step"] for r in rows])
    loss = np.array([r["loss"] for r in rows])
    window = max(1, len(loss) // 20)
    smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=120)
    ax.plot(steps, loss, color="#9bb7d4", lw=0.8, label="loss per step")
    ax.plot(steps[window - 1:], smooth, color="#1f4e79", lw=2, label=f"mean of {window} steps")
    ax.set_xlabel("step")
    ax.set_ylabel("QACL loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    print(f"{len(rows)} steps, loss {loss[:window].mean():.4f} -> {loss[-window:].mean():.4f}; wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
