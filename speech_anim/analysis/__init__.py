"""Analysis figures of the paper: where videos move (Fig. 19) and what the identity encoder
separates (Fig. 11). `motion_heatmap.py` and `identity_tsne.py` each run as a script."""
