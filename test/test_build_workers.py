"""A robot's cold sphere-tree build shared with worker processes gives the covers and warnings of
a build in one process, and falls back to building in the caller when no worker can start; the
pool's jobs go to whoever is free, largest first, and a worker that fails, hangs or cannot be
sent a job leaves it to the caller."""

from __future__ import annotations

import math
import os
import sys
import time

import numpy as np
import pytest
import torch
import trimesh

from ros_torch_kin.collision import TreeSettings, robot_sphere_trees_from_urdf, urdf_sphere_trees
from ros_torch_kin.kinematics import Chain

import worker_jobs

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

    def slowly(*args):  # this process slowed, so that the workers (a second to start) take shapes
        here.append(args)
        time.sleep(3.0)
        return build(*args)

    monkeypatch.setattr(urdf_sphere_trees, "build_shape_tree", slowly)
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


def test_jobs_go_to_whoever_is_free_largest_first_with_shared_arguments_sent_once():
    """Whichever process takes the largest job (by weight, the first taken) takes no other: the
    other one, free meanwhile, takes them all (a split made in advance would have given the
    first half of them); ``shared`` arguments reach both processes."""
    from ros_torch_kin.collision.build_workers import WorkerPool

    with WorkerPool(2) as pool:
        pool.map(worker_jobs.process_with, [("worker_jobs",)] * 2)  # the worker started and ready
        jobs = [(0.0,), (0.0,), (4.0,), (0.0,), (0.0,)]
        results = pool.map(worker_jobs.pause_and_name, jobs, weights=[1, 1, 9, 1, 1], shared=("tag",))
    assert all(tag == "tag" for tag, _ in results)
    both = {os.getpid(), pool._workers[0].process.pid}
    others = {pid for _, pid in results[:2] + results[3:]}
    assert results[2][1] in both and others == both - {results[2][1]}


def test_jobs_a_worker_cannot_take_are_computed_by_the_caller():
    """A function pickle cannot send (a lambda) and a job that raises in the worker come back
    computed here: the results are complete, and the job's own error is raised here."""
    from ros_torch_kin.collision.build_workers import WorkerPool

    with WorkerPool(3) as pool:
        assert pool.map(lambda x: 2 * x, [(1,), (2,), (3,)]) == [2, 4, 6]
    with WorkerPool(2) as pool:
        pool.map(worker_jobs.process_with, [("worker_jobs",)] * 2)
        with pytest.raises(ValueError, match="no root for"):
            pool.map(worker_jobs.fails, [(1.0,), (2.0,), (3.0,)])
        assert pool.warm  # a job's error does not stop its worker
        assert pool.map(worker_jobs.slow_root, [(4.0,), (9.0,)]) == [2.0, 3.0]


def test_a_worker_that_hangs_is_killed_and_its_jobs_left_to_the_caller(tmp_path, monkeypatch):
    """A worker that never answers (here an executable that only sleeps) is waited for the
    patience (shortened here), killed and reaped, and its job computed by the caller: a robot's
    first start is slower, never stuck."""
    from ros_torch_kin.collision import build_workers

    sleeper = tmp_path / "sleeper"
    sleeper.write_text("#!/bin/sh\nexec sleep 60\n")
    sleeper.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(sleeper))
    monkeypatch.setattr(build_workers, "MIN_PATIENCE", 0.5)
    began = time.perf_counter()
    with build_workers.WorkerPool(2) as pool:
        assert pool.map(worker_jobs.slow_root, [(16.0,), (9.0,)]) == [4.0, 3.0]
        worker = pool._workers[0]
        assert not worker.alive and worker.process.wait(timeout=5) is not None  # killed, reaped
        assert not pool.submit(math.sqrt, (1.0,)).wait(0.2)  # no worker left: nothing done there
    assert time.perf_counter() - began < 20.0
    with build_workers.WorkerPool(2) as pool:
        pending = pool.submit(math.sqrt, (1.0,))
        assert not pending.wait(0.2) and pool._workers[0].process.wait(timeout=5) is not None


def test_coarse_covers_cached_by_a_worker_are_those_built_here(tmp_path, monkeypatch):
    """A cold model build covers the coarse spheres in a worker process into the disk cache while
    it builds the trees: what the caller then reads equals what it would have built itself, and
    only a robot with a link missing from the cache starts that worker."""
    from ros_torch_kin.collision import urdf_spheres
    from ros_torch_kin.collision.build_workers import WorkerPool

    urdf = _robot(tmp_path)
    chain = Chain.from_urdf(urdf, dtype=torch.float64)
    monkeypatch.setenv("RTK_CACHE", str(tmp_path / "here"))
    urdf_spheres.clear_cover_cache()
    here = urdf_spheres.robot_spheres_from_urdf(urdf, chain)
    monkeypatch.setenv("RTK_CACHE", str(tmp_path / "worker"))
    urdf_spheres.clear_cover_cache()
    assert urdf_spheres.covers_missing(urdf, chain)
    with WorkerPool(2) as pool:
        assert pool.submit(urdf_spheres.cache_covers, (urdf, (), None)).wait()
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
