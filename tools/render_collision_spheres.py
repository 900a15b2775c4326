"""Render a real robot's collision spheres next to its collision meshes (docs/panda_spheres.png).

    python tools/render_collision_spheres.py [--output docs/panda_spheres.png]

Franka Panda from example-robot-data, at a fixed configuration: left, the URDF's collision
meshes; right, the spheres ros_torch_kin covers them with (every surface point lies inside one).
Needs matplotlib (requirements/bench.txt).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from report import example_robot_data_dir  # noqa: E402

from ros_torch_kin.collision import robot_spheres_from_urdf  # noqa: E402
from ros_torch_kin.collision.mesh_files import load_mesh_file, resolve_mesh_path  # noqa: E402
from ros_torch_kin.collision.urdf_geometry import read_collision_shapes  # noqa: E402
from ros_torch_kin.kinematics import Chain, forward_kinematics  # noqa: E402

CONFIGURATION = [0.0, -0.4, 0.0, -2.2, 0.0, 1.9, 0.8, 0.03]  # panda joints 1..7, finger


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(ROOT / "docs" / "panda_spheres.png"))
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    robots = example_robot_data_dir()
    urdf = (robots / "panda_description/urdf/panda.urdf").read_text()
    chain = Chain.from_urdf(urdf, device="cpu", dtype=torch.float64)
    spheres = robot_spheres_from_urdf(urdf, chain, search_dirs=[str(robots.parents[1])])
    q = torch.tensor(CONFIGURATION[: chain.num_dofs], dtype=torch.float64)
    T = forward_kinematics(chain, q).numpy()  # (L, 4, 4)

    figure = plt.figure(figsize=(11, 5.5))
    meshes = figure.add_subplot(1, 2, 1, projection="3d")
    covers = figure.add_subplot(1, 2, 2, projection="3d")
    shapes, _ = read_collision_shapes(urdf)
    for shape in shapes:
        if shape.kind != "mesh":
            continue
        path, _ = resolve_mesh_path(shape.filename, [str(robots.parents[1])])
        mesh = load_mesh_file(path, shape.scale)
        pose = T[chain.link_index(shape.link)] @ shape.origin
        vertices = mesh.vertices @ pose[:3, :3].T + pose[:3, 3]
        meshes.add_collection3d(Poly3DCollection(vertices[mesh.faces], facecolor=(0.6, 0.6, 0.65, 0.35),
                                                 edgecolor=(0.3, 0.3, 0.35, 0.15), linewidth=0.2))
    u, v = np.meshgrid(np.linspace(0, 2 * np.pi, 14), np.linspace(0, np.pi, 8))
    unit = np.stack((np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v)))
    colours = plt.get_cmap("tab10")
    for link, centre, radius in zip(spheres.sphere_links.tolist(), spheres.centers.numpy(), spheres.radii.numpy()):
        world = T[link, :3, :3] @ centre + T[link, :3, 3]
        x, y, z = (world[:, None, None] + radius * unit)
        covers.plot_surface(x, y, z, color=colours(link % 10), alpha=0.35, linewidth=0)
    counts = {name: n for name, n in spheres.count_per_link().items() if n}
    meshes.set_title("Panda: URDF collision meshes")
    covers.set_title(f"{spheres.num_spheres} spheres covering them (worst slack "
                     f"{1e3 * float(spheres.slack.max()):.0f} mm)")
    for axes in (meshes, covers):
        axes.set_xlim(-0.4, 0.6)
        axes.set_ylim(-0.5, 0.5)
        axes.set_zlim(0.0, 1.0)
        axes.set_box_aspect((1, 1, 1))
        axes.view_init(elev=18, azim=-60)
        axes.set_xlabel("x (m)")
        axes.set_ylabel("y (m)")
        axes.set_zlabel("z (m)")
    figure.subplots_adjust(left=0.02, right=0.95, top=0.92, bottom=0.05, wspace=0.15)
    figure.savefig(args.output, dpi=110)
    print(f"wrote {args.output}: {counts}")


if __name__ == "__main__":
    main()
