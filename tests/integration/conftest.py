"""Fixtures for inferd's integration tests: the real daemon, real HTTP, loopback.

The binary is build/inferd, or $INFERD_BIN relative to the repository root.
Nothing here skips: without the binary every test that needs it fails.

    server          a ready daemon serving fashion_mnist, shared by a test
                    module; parametrize it (indirect) with extra flags:
                    @pytest.mark.parametrize("server", [["--max-body-bytes", "10000"]],
                                             indirect=True)
    start_daemon    a function that starts a fresh daemon for one test:
                    start_daemon(flags=(), repo=None, model="fashion_mnist", wait=True)
    model_repo      a temporary model repository holding fashion_mnist
    v2_repo, v2     a repository with fashion_mnist and the v2 test models
                    (models/make_test_models.py), and a daemon serving it,
                    shared by a test module
    reference       python3-torch running v2_repo's model files
    rng             a numpy generator seeded by the test's name

Daemons a test leaves running get SIGTERM at teardown, which asserts exit 0.
"""
import zlib

import numpy as np
import pytest

from support import add_fashion_mnist, finish, start_server
from v2_client import TorchReference

import make_test_models  # noqa: E402  (models/ is on sys.path: support puts it there)


@pytest.fixture(scope="session")
def model_repo(tmp_path_factory):
    """A model repository with fashion_mnist only (tests must not change it)."""
    repo = tmp_path_factory.mktemp("repo")
    add_fashion_mnist(repo)
    return repo


@pytest.fixture(scope="module")
def server(request, tmp_path_factory, model_repo):
    """A ready daemon shared by the tests of one module (one per flag set)."""
    flags = list(getattr(request, "param", None) or [])
    daemon = start_server(tmp_path_factory.mktemp("inferd"), model_repo, flags)
    yield daemon
    finish(daemon)


@pytest.fixture
def start_daemon(tmp_path, model_repo):
    """Start fresh daemons for this test; each gets its own log file under tmp_path."""
    daemons = []

    def start(flags=(), repo=None, model="fashion_mnist", wait=True):
        workdir = tmp_path / f"inferd{len(daemons)}"
        workdir.mkdir()
        daemon = start_server(workdir, repo or model_repo, flags, model=model, wait=wait)
        daemons.append(daemon)
        return daemon

    yield start
    errors = []
    for daemon in daemons:
        try:
            finish(daemon)
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, "\n\n".join(errors)


@pytest.fixture(scope="module")
def v2_repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("v2repo")
    add_fashion_mnist(repo)
    make_test_models.make_all(repo)
    return repo


@pytest.fixture(scope="module")
def v2(tmp_path_factory, v2_repo):
    daemon = start_server(tmp_path_factory.mktemp("inferd-v2"), v2_repo)
    yield daemon
    finish(daemon)


@pytest.fixture(scope="module")
def reference(v2_repo):
    return TorchReference(v2_repo)


@pytest.fixture
def rng(request):
    """Seeded by the test's name: reruns send the same values."""
    return np.random.default_rng(zlib.crc32(request.node.name.encode()))
