"""Training curves: a CSV always, a PNG when matplotlib is installed
(pip install matplotlib, or the [viz] extra)."""
import io

from pytransformer._atomic import atomic_write

__all__ = ["save_loss_curve"]


def save_loss_curve(history, stem):
    """Write `stem`.loss.csv (step,loss) and, with matplotlib, `stem`.loss.png
    (loss against step, log scale). Returns the list of files written."""
    if not history:
        return []
    written = [stem + ".loss.csv"]
    atomic_write(written[0], [("step,loss\n" + "".join(
        f"{s},{loss!r}\n" for s, loss in history)).encode()])
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return written
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot([s for s, _ in history], [loss for _, loss in history], lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (label-smoothed cross-entropy)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    atomic_write(stem + ".loss.png", [buf.getvalue()])
    return written + [stem + ".loss.png"]
