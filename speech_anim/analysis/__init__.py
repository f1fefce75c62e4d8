"""Analysis figures of the paper: where videos move (Fig. 19) and what the identity encoder
separates (Fig. 11). `motion_heatmap.py` and `identity_tsne.py` each run as a script."""

from pathlib import Path


def save_figure(figure, path, title: str | None = None) -> Path:
    """Title the figure's first axis (if given), lay it out, write it (making folders) and close it."""
    import matplotlib.pyplot as plt

    if title:
        figure.axes[0].set_title(title, fontsize=9)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
