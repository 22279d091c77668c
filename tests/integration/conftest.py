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

Daemons a test leaves running get SIGTERM at teardown, which asserts exit 0.
"""
import pytest

from support import add_fashion_mnist, finish, start_server


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
