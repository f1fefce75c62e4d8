"""Full-reference metrics: the generated video against the ground truth, frame by frame (paper §5).

Both videos are the same aligned crops, so pixel and landmark positions are comparable directly.
"""

from __future__ import annotations

import numpy as np

from . import Metric, register

MOUTH = slice(48, 68)  # iBUG 68-point outer and inner lip contours


@register
class PSNR(Metric):
    """Peak signal-to-noise ratio in dB over the whole video: 10·log10(255² / MSE), with the MSE of
    all pixels of all frames (a mean of per-frame PSNRs would be infinite as soon as one frame is
    exact). Identical videos give inf, reported as such."""

    name = "psnr"
    needs_reference = True

    def compute(self, generated, reference=None, still=None, **context) -> float:
        error = np.mean((generated.astype(np.float64) - reference.astype(np.float64)) ** 2)
        if error == 0:
            return float("inf")
        return float(10.0 * np.log10(255.0**2 / error))


@register
class SSIM(Metric):
    """Structural similarity (Wang et al. 2004), mean over frames: scikit-image's implementation
    with the paper's settings (11×11 Gaussian window, σ = 1.5, population covariances), over RGB."""

    name = "ssim"
    needs_reference = True

    def compute(self, generated, reference=None, still=None, **context) -> float:
        from skimage.metrics import structural_similarity

        scores = [
            structural_similarity(
                g, r, channel_axis=-1, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
            )
            for g, r in zip(generated, reference)
        ]
        return float(np.mean(scores))


@register
class LMD(Metric):
    """Landmark distance (Chen et al. 2018): mean Euclidean distance between the 20 mouth
    landmarks (48-67) of generated and real frames, in crop pixels. Landmarks come from
    `face.crop_landmarks` (dlib's predictor at the canonical face box, no detection)."""

    name = "lmd"
    needs_reference = True
    higher_is_better = False

    def compute(self, generated, reference=None, still=None, **context) -> float:
        from ..face import crop_landmarks

        mouth_generated = crop_landmarks(generated)[:, MOUTH]
        mouth_reference = crop_landmarks(reference)[:, MOUTH]
        return float(np.linalg.norm(mouth_generated - mouth_reference, axis=-1).mean())
