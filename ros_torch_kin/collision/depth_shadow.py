"""The unseen band behind what a depth camera sees: its "shadow".

A depth camera sees surfaces, not solids: along each pixel's ray everything behind the first
surface is unknown. Counted as free (MoveIt's octomap does so), a plan may pass through an
obstacle's unseen back part: on the first 20 MotionBenchMaker Panda problems per family seen by
two depth cameras facing each scene, 3 of 112 successes did (fingers under a shelf board whose
underside neither camera saw, behind cans; ``bench/mbm_point_world_benchmark.py --depth-views 2
--limit 20``). A TSDF (nvblox,
cuRobo's world from depth) counts the band just behind each surface, its truncation distance, as
inside; the node does the same for a band of depth T (m, along the ray) behind every surface a
camera sees, kept as its boundary:

* the **back face**: every occupied cube's centre moved T farther along its ray from the camera;
* the **side walls**: from every cube that holds an *edge* pixel (a 4-neighbour whose range is
  farther by more than the cube side, a hole, out of range or beyond the image border), samples
  along its ray every half side out to T.

With the seen surface in front, these close the band: a robot part can only get inside it by
crossing one of them, which the motion checks see (as they see a surface cloud's surface). What
is thinner than T along a ray gets a band beyond its back (a plan may not pass just behind a thin
object the camera sees edge-on); what is thicker is still unknown beyond T. T = 0: no band.

Everything here is numpy on integer cube coordinates of side ``side`` in the root frame (cube
(i, j, k) spans [i·side, (i + 1)·side) per axis); no loop over pixels or cubes.
"""

from __future__ import annotations

import math

import numpy as np


def edge_pixels(ranges: np.ndarray, jump: float) -> np.ndarray:
    """(H, W) ranges (m from the camera; inf where nothing was kept: a hole, out of range) ->
    (H, W) bool: kept pixels with a 4-neighbour farther by more than ``jump`` m, not kept, or
    beyond the image border (there the band's side is open to unknown space)."""
    padded = np.pad(ranges, 1, constant_values=np.inf)
    farthest = np.maximum(np.maximum(padded[:-2, 1:-1], padded[2:, 1:-1]),
                          np.maximum(padded[1:-1, :-2], padded[1:-1, 2:]))
    with np.errstate(invalid="ignore"):  # inf - inf beside a hole that is itself not kept
        return np.isfinite(ranges) & (farthest - ranges > jump)


def shadow_cubes(surface: np.ndarray, walls: np.ndarray, side: float, camera: np.ndarray, depth: float) -> np.ndarray:
    """The band's boundary (module doc) as cubes. ``surface`` (M, 3) int64: the occupied cubes;
    ``walls`` (E, 3) int64: the cubes holding edge pixels; ``side`` (m); ``camera`` (3,) its
    position (root frame, m); ``depth`` T (m, > 0). -> (K, 3) int64 cubes (may repeat, may
    include surface cubes)."""
    def along(cubes: np.ndarray, distances: np.ndarray) -> np.ndarray:
        centers = (cubes + 0.5) * side  # (n, 3)
        ray = centers - camera
        ray /= np.maximum(np.linalg.norm(ray, axis=1, keepdims=True), 1e-12)
        moved = centers[:, None, :] + distances[None, :, None] * ray[:, None, :]  # (n, d, 3)
        return np.floor(moved.reshape(-1, 3) / side).astype(np.int64)

    back = along(surface, np.array([depth]))
    steps = max(1, math.ceil(depth / (0.5 * side)))
    wall = along(walls, np.linspace(depth / steps, depth, steps)) if walls.shape[0] else back[:0]
    return np.concatenate([back, wall])
