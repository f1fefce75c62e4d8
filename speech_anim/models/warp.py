"""Move the still's mouth: a thin-plate-spline warp from landmarks (used with models/mouth_motion.py).

A thin-plate spline is the smoothest map (least bending energy) that takes a set of control points
exactly where they are told to go. Control points here: the jaw and lips at their new places, the brows,
nose and eyes where they are, and eight points on the crop's border, so that the warp stays on the lower
face and the frame's edges do not move. The spline is solved backwards, from the output frame to the
still (each output pixel finds where to read from), which is what `grid_sample` needs.

Given an eye closure as well (GeneratorConfig.eyelids), the same spline shuts the still's eyelids: the
upper lid's two middle points come down, and the lower lid's come up, to all but meet at closure 1;
the eye corners stay. A blink then shows on any face the still is of, however faintly the decoder, which learnt
its blinks from three GRID speakers, draws them on it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .mouth_motion import FIXED_POINTS, MOVING_POINTS

# Added to the spline's kernel matrix: smoothing, so that control points that fall together (dlib puts the
# inner lip corners on the outer ones, and the inner lips on each other when closed) do not make it
# singular. At 1e-3 a real clip's frames with such points got coefficients that float32 could not
# evaluate (13-16 px errors); at 1 the lips still land within ~0.1 px of their targets.
REGULARISATION = 1.0

# The middle points of each eyelid, upper with the lower one beneath it (iBUG 68 numbering, from 0).
EYELID_PAIRS = ((37, 41), (38, 40), (43, 47), (44, 46))
# Of the gap between a pair, the shares that the upper and the lower lid close at closure 1: in a blink the
# upper lid does most of the travel. They leave a twentieth of the gap, for the spline maps output pixels
# back to the still, and lids that met would have to read two places at once (it read the open eye
# between them instead, so that a fully shut frame showed the eyes open).
UPPER_LID_SHARE, LOWER_LID_SHARE = 0.8, 0.15


def _kernel(squared_distance: torch.Tensor) -> torch.Tensor:
    # U(r) = r² log r², the 2-D thin-plate radial basis (up to a factor that the solve absorbs).
    return squared_distance * torch.log(squared_distance + 1e-9)


def _border(height: int, width: int, device, dtype) -> torch.Tensor:
    points = [(x, y) for x in (0.0, width / 2, width) for y in (0.0, height / 2, height) if (x, y) != (width / 2, height / 2)]
    return torch.tensor(points, device=device, dtype=dtype)


def source_coordinates(target: torch.Tensor, source: torch.Tensor, height: int, width: int, step: int = 1) -> torch.Tensor:
    """For N control points that move source -> target (both F×N×2, pixel (x, y)), the F×H×W×2 pixel
    coordinates in the source that each output pixel (at its centre) reads. With `step` > 1 the spline is
    evaluated at every step-th pixel only and its displacement upsampled bilinearly (step² times fewer
    kernel evaluations, which are most of the cost)."""
    frames, n, _ = target.shape
    dtype = torch.float64  # the solve is ill-conditioned in float32 (kernel values ~1e5 beside ones)
    target, source = target.to(dtype), source.to(dtype)
    system = target.new_zeros(frames, n + 3, n + 3)
    system[:, :n, :n] = _kernel(torch.cdist(target, target).square()) + REGULARISATION * torch.eye(n, dtype=dtype, device=target.device)
    affine = torch.cat([target.new_ones(frames, n, 1), target], -1)
    system[:, :n, n:] = affine
    system[:, n:, :n] = affine.transpose(1, 2)
    rhs = torch.cat([source, source.new_zeros(frames, 3, 2)], 1)
    coefficients = torch.linalg.solve(system, rhs).float()  # F×(N+3)×2
    # Evaluated in float32 (errors ~1e-3 px), with squared distances from one matrix product: the
    # kernel over the grid is most of the cost.
    target = target.float()
    rows, columns = -(-height // step), -(-width // step)
    ys, xs = torch.meshgrid(torch.arange(rows, device=target.device) * step + step / 2,
                            torch.arange(columns, device=target.device) * step + step / 2, indexing="ij")  # fmt: skip
    grid = torch.stack([xs, ys], -1).reshape(-1, 2).float()
    squared = (grid.square().sum(-1)[None, :, None] + target.square().sum(-1)[:, None, :]
               - 2 * grid[None] @ target.transpose(1, 2)).clamp(min=0)  # fmt: skip
    basis = _kernel(squared)  # F×(rows·columns)×N
    mapped = basis @ coefficients[:, :n] + (torch.cat([grid.new_ones(len(grid), 1), grid], -1) @ coefficients[:, n:])
    shift = (mapped - grid).view(frames, rows, columns, 2)
    if step > 1:
        shift = F.interpolate(shift.permute(0, 3, 1, 2), scale_factor=step, mode="bilinear", align_corners=False)
        shift = shift[:, :, :height, :width].permute(0, 2, 3, 1)
    ys, xs = torch.meshgrid(torch.arange(height, device=target.device) + 0.5,
                            torch.arange(width, device=target.device) + 0.5, indexing="ij")  # fmt: skip
    return torch.stack([xs, ys], -1).float() + shift


# The spline is evaluated every WARP_STEP pixels and its displacement upsampled: 5x faster than at every
# pixel, within 0.13 px of it at 99.9 % of the pixels of a real clip's mouth motion (0.8 px at worst,
# at the corners of the lips).
WARP_STEP = 2


def warp_still(still: torch.Tensor, landmarks: torch.Tensor, displacement: torch.Tensor,
               closure: torch.Tensor | None = None) -> torch.Tensor:
    """The still with its jaw and lips moved, one frame per displacement, and its eyelids shut by `closure`.

    still B×3×H×W, landmarks B×68×2 (the still's, crop pixels), displacement B×T×len(MOVING_POINTS)×2
    (crop pixels, `MouthMotion`'s), closure B×T (0 = the still's eyes, 1 = shut; clamped to [0, 1])
    -> B×T×3×H×W. Differentiable in the still and the displacement.
    """
    batch, _, height, width = still.shape
    frames = displacement.shape[1]
    if tuple(landmarks.shape) != (batch, 68, 2):
        raise ValueError(f"still landmarks must be {batch}×68×2 (crop pixels), got {tuple(landmarks.shape)}")
    if tuple(displacement.shape) != (batch, frames, len(MOVING_POINTS), 2):
        raise ValueError(f"mouth displacement must be {batch}×T×{len(MOVING_POINTS)}×2, got {tuple(displacement.shape)}")
    landmarks = landmarks.to(displacement)
    moving_points, fixed_points = list(MOVING_POINTS), list(FIXED_POINTS)
    moves = displacement
    if closure is not None:
        if tuple(closure.shape) != (batch, frames):
            raise ValueError(f"eye closure must be {batch}×{frames} (one per frame), got {tuple(closure.shape)}")
        upper, lower = [list(points) for points in zip(*EYELID_PAIRS)]
        gap = landmarks[:, lower] - landmarks[:, upper]  # B×4×2, from each upper lid point to the one beneath
        shut = closure.to(displacement).clamp(0.0, 1.0)[..., None, None] * gap[:, None]  # B×T×4×2
        moving_points += upper + lower
        fixed_points = [i for i in fixed_points if i not in upper + lower]
        moves = torch.cat([displacement, UPPER_LID_SHARE * shut, -LOWER_LID_SHARE * shut], 2)
    moving, fixed = landmarks[:, moving_points], landmarks[:, fixed_points]
    border = _border(height, width, displacement.device, displacement.dtype).expand(batch, -1, -1)
    source = torch.cat([moving, fixed, border], 1)[:, None].expand(-1, frames, -1, -1)
    target = torch.cat([moving[:, None] + moves,
                        torch.cat([fixed, border], 1)[:, None].expand(-1, frames, -1, -1)], 2)  # fmt: skip
    n = source.shape[2]
    coords = source_coordinates(target.reshape(-1, n, 2), source.reshape(-1, n, 2), height, width, WARP_STEP).to(still)
    # Pixel centres -> grid_sample's [-1, 1] (align_corners=False: -1 and 1 are the outer pixel edges).
    grid = torch.stack([coords[..., 0] / width * 2 - 1, coords[..., 1] / height * 2 - 1], -1)
    repeated = still[:, None].expand(-1, frames, -1, -1, -1).reshape(batch * frames, *still.shape[1:])
    warped = F.grid_sample(repeated, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return warped.view(batch, frames, *still.shape[1:])
