"""A robot's cold sphere-tree build split among worker processes gives the covers and warnings of
a build in one process, and falls back to building in the caller when no worker can start."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
import trimesh

from ros_torch_kin.collision import TreeSettings, robot_sphere_trees_from_urdf, urdf_sphere_trees
from ros_torch_kin.kinematics import Chain

SETTINGS = TreeSettings(target_slack=0.005)


def _robot(tmp_path) -> str:
    trimesh.creation.capsule(height=0.1, radius=0.03, count=[12, 12]).export(tmp_path / "capsule.stl")
    box = trimesh.creation.box([0.08, 0.05, 0.12])
    trimesh.Trimesh(box.vertices, box.faces[2:], process=False).export(tmp_path / "open_box.stl")  # not closed

    def link(name: str, geometry: str) -> str:
        return (f'<link name="{name}"><collision><origin xyz="0.01 0.02 0.03" rpy="0.1 0.2 0.3"/>'
                f"<geometry>{geometry}</geometry></collision></link>")

    links = [
        link("base", '<box size="0.2 0.1 0.05"/>'),
        link("a", f'<mesh filename="{tmp_path / "capsule.stl"}"/>'),
        link("b", '<cylinder radius="0.04" length="0.2"/>'),
        link("c", f'<mesh filename="{tmp_path / "open_box.stl"}"/>'),
        link("d", '<mesh filename="missing.stl"/>'),
        link("e", '<sphere radius="0.05"/>'),
    ]
    joints = "".join(
        f'<joint name="j{i}" type="revolute"><parent link="{p}"/><child link="{c}"/><axis xyz="0 0 1"/>'
        f'<limit lower="-1" upper="1" effort="1" velocity="1"/></joint>'
        for i, (p, c) in enumerate(zip("base a b c d".split(), "a b c d e".split())))
    return f'<robot name="r">{"".join(links)}{joints}</robot>'


@pytest.fixture(autouse=True)
def at_once(monkeypatch):
    """Workers from the start (a cold build of this small robot is quicker than a worker's start)."""
    monkeypatch.setattr(urdf_sphere_trees, "PARALLEL_AFTER", 0.0)


def _build(urdf: str, workers: int):
    chain = Chain.from_urdf(urdf, dtype=torch.float64)
    return robot_sphere_trees_from_urdf(urdf, chain, settings=SETTINGS, use_cache=False, workers=workers)


def _same(one, other):
    for name in ("centers", "radii", "slack", "sphere_links", "sphere_groups"):
        assert torch.equal(getattr(one, name), getattr(other, name)), name
    assert torch.equal(one.tiers.of_sphere, other.tiers.of_sphere) and torch.equal(one.tiers.centers, other.tiers.centers)
    assert one.warnings == other.warnings


def test_workers_build_the_same_covers_and_warnings_as_one_process(tmp_path, monkeypatch):
    urdf = _robot(tmp_path)
    alone = _build(urdf, workers=1)
    here = []
    build = urdf_sphere_trees.build_shape_tree
    monkeypatch.setattr(urdf_sphere_trees, "build_shape_tree", lambda *args: here.append(args) or build(*args))
    shared = _build(urdf, workers=3)
    assert 0 < len(here) < 4  # 4 shapes to build (a missing mesh and a sphere need none): some built elsewhere
    _same(alone, shared)
    assert any("missing.stl" in w for w in alone.warnings)
    assert any("'c'" in w and "not closed" in w for w in alone.warnings)
    assert alone.num_spheres > 10


def test_a_worker_that_cannot_start_leaves_its_shapes_to_the_caller(tmp_path, monkeypatch):
    urdf = _robot(tmp_path)
    alone = _build(urdf, workers=1)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python-here"))
    _same(alone, _build(urdf, workers=4))


def test_a_worker_that_fails_leaves_its_shapes_to_the_caller(tmp_path, monkeypatch):
    urdf = _robot(tmp_path)
    alone = _build(urdf, workers=1)
    monkeypatch.setattr(sys, "executable", "false")  # starts, exits 1 without output
    _same(alone, _build(urdf, workers=2))


def test_jobs_that_cannot_be_sent_to_a_worker_come_back_empty_for_the_caller():
    """A function pickle cannot send (a lambda) starts no worker: the caller's own share is done,
    the others come back None for the caller to do (as the tree and table builds do)."""
    from ros_torch_kin.collision.build_workers import run_in_workers

    results = run_in_workers(lambda x: 2 * x, [(1,), (2,), (3,)], 3)
    done = [(x, r) for (x,), r in zip([(1,), (2,), (3,)], results) if r is not None]
    assert len(done) == 1 and done[0][1] == 2 * done[0][0]


def test_a_worker_that_hangs_is_killed_and_its_jobs_left_to_the_caller(tmp_path, monkeypatch):
    """A worker that never answers (here an executable that only sleeps) is waited for the
    patience (shortened here), killed, and its jobs come back None for the caller: a robot's
    first start is slower, never stuck."""
    import math
    import time

    from ros_torch_kin.collision import build_workers

    sleeper = tmp_path / "sleeper"
    sleeper.write_text("#!/bin/sh\nexec sleep 60\n")
    sleeper.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(sleeper))
    monkeypatch.setattr(build_workers, "MIN_PATIENCE", 0.5)
    began = time.perf_counter()
    results = build_workers.run_in_workers(math.sqrt, [(16.0,), (9.0,)], 2)
    assert time.perf_counter() - began < 20.0
    assert sorted(r is None for r in results) == [False, True]  # the caller's share done, the worker's not
    assert [r for r in results if r is not None][0] in (4.0, 3.0)
    process = build_workers.start_worker(math.sqrt, [(1.0,)])
    assert build_workers.finish_worker(process, 0.2) is None and process.poll() is not None  # killed, reaped


def test_coarse_covers_cached_by_a_worker_are_those_built_here(tmp_path, monkeypatch):
    """A cold model build covers the coarse spheres in a worker process into the disk cache while
    it builds the trees: what the caller then reads equals what it would have built itself, and
    only a robot with a link missing from the cache starts that worker."""
    from ros_torch_kin.collision import urdf_spheres
    from ros_torch_kin.collision.build_workers import finish_worker, start_worker

    urdf = _robot(tmp_path)
    chain = Chain.from_urdf(urdf, dtype=torch.float64)
    monkeypatch.setenv("RTK_CACHE", str(tmp_path / "here"))
    urdf_spheres.clear_cover_cache()
    here = urdf_spheres.robot_spheres_from_urdf(urdf, chain)
    monkeypatch.setenv("RTK_CACHE", str(tmp_path / "worker"))
    urdf_spheres.clear_cover_cache()
    assert urdf_spheres.covers_missing(urdf, chain)
    assert finish_worker(start_worker(urdf_spheres.cache_covers, [(urdf, (), None)])) == [None]
    assert not urdf_spheres.covers_missing(urdf, chain)  # on disk now, not in this process's memory
    read = urdf_spheres.robot_spheres_from_urdf(urdf, chain)
    for name in ("centers", "radii", "slack", "sphere_links"):
        assert torch.equal(getattr(read, name), getattr(here, name)), name
    assert read.warnings == here.warnings and any("missing.stl" in w for w in read.warnings)
    urdf_spheres.clear_cover_cache()


def test_a_link_with_a_sphere_beside_other_shapes_counts_as_cached_once_covered(tmp_path, monkeypatch):
    """A link whose collision is a sphere and a box (the box covered with the spheres the exact
    one leaves of the cap): once covered, ``covers_missing`` finds it in the disk cache (it keyed
    it with the full cap, so every later start started a worker for nothing)."""
    from ros_torch_kin.collision import urdf_spheres

    urdf = ('<robot name="r"><link name="base"><collision><geometry><sphere radius="0.05"/></geometry></collision>'
            '<collision><origin xyz="0.2 0 0"/><geometry><box size="0.1 0.2 0.3"/></geometry></collision></link>'
            '<link name="tip"/><joint name="j" type="revolute"><parent link="base"/><child link="tip"/>'
            '<axis xyz="0 0 1"/><limit lower="-1" upper="1" effort="1" velocity="1"/></joint></robot>')
    chain = Chain.from_urdf(urdf, dtype=torch.float64)
    monkeypatch.setenv("RTK_CACHE", str(tmp_path))
    urdf_spheres.clear_cover_cache()
    assert urdf_spheres.covers_missing(urdf, chain)
    urdf_spheres.robot_spheres_from_urdf(urdf, chain)
    urdf_spheres.clear_cover_cache()  # the disk cache alone
    assert not urdf_spheres.covers_missing(urdf, chain)
