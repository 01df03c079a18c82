"""Side-by-side installs, trials and rollbacks with real programs started from ``current``."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from gateway.update import InstallRoot, UpdateError, clean, install, launch
from tests.lifecycle.bundles import make_bundle

KEY = ed25519.Ed25519PrivateKey.generate()
REPO = Path(__file__).resolve().parents[2]
#: A version that is healthy: it confirms its trial, as the gateway does once its link is up.
HEALTHY = (
    "import sys, pathlib\n"
    f"sys.path.insert(0, {str(REPO)!r})\n"
    "from gateway.update import InstallRoot, confirm\n"
    "root = InstallRoot(pathlib.Path(sys.argv[1]))\n"
    "confirm(root)\n"
    "(root.path / 'ran').open('a').write(root.current_version() + '\\n')\n"
)


@pytest.fixture
def root(tmp_path: Path) -> InstallRoot:
    root = InstallRoot(tmp_path / "opt")
    root.path.mkdir()
    install(root, make_bundle(tmp_path, KEY, "1.0", HEALTHY), KEY.public_key())
    return root


def ran(root: InstallRoot) -> list[str]:
    return (root.path / "ran").read_text().split()


def test_a_new_version_is_installed_beside_the_old_one_on_trial(
    root: InstallRoot, tmp_path: Path
) -> None:
    install(root, make_bundle(tmp_path, KEY, "1.1", HEALTHY), KEY.public_key())
    assert root.current_version() == "1.1"
    assert (root.versions / "1.0" / "bin" / "assetbook-gateway").is_file()
    assert root.read_json(root.trial) == {"from": "1.0", "to": "1.1", "started": False}


def test_versions_never_go_backwards_unless_forced(root: InstallRoot, tmp_path: Path) -> None:
    install(root, make_bundle(tmp_path, KEY, "2.0", HEALTHY), KEY.public_key())
    old = make_bundle(tmp_path, KEY, "1.5", HEALTHY)
    with pytest.raises(UpdateError, match="not newer"):
        install(root, old, KEY.public_key())
    assert root.current_version() == "2.0"
    install(root, old, KEY.public_key(), force=True)
    assert root.current_version() == "1.5"


def test_a_wrongly_signed_bundle_changes_nothing(root: InstallRoot, tmp_path: Path) -> None:
    other = ed25519.Ed25519PrivateKey.generate()
    with pytest.raises(UpdateError, match="signature"):
        install(root, make_bundle(tmp_path, other, "1.1", HEALTHY), KEY.public_key())
    assert root.current_version() == "1.0"
    assert not (root.versions / "1.1").exists()
    assert not root.trial.exists()


def test_a_healthy_version_is_kept(root: InstallRoot, tmp_path: Path) -> None:
    install(root, make_bundle(tmp_path, KEY, "1.1", HEALTHY), KEY.public_key())
    assert launch(root, [str(root.path)], trial_s=20) == 0
    assert ran(root) == ["1.1"]
    assert root.current_version() == "1.1"
    assert not root.trial.exists()
    assert root.read_json(root.state)["update_state"] == "running"


def test_a_version_that_crashes_is_rolled_back_and_the_old_one_runs(
    root: InstallRoot, tmp_path: Path
) -> None:
    install(root, make_bundle(tmp_path, KEY, "1.1", "raise SystemExit(3)"), KEY.public_key())
    assert launch(root, [str(root.path)], trial_s=20) == 0
    assert ran(root) == ["1.0"]
    assert root.current_version() == "1.0"
    state = root.read_json(root.state)
    assert state["update_state"] == "rolled_back"
    assert state["update_failed_version"] == "1.1"
    assert "status 3" in state["update_error"]


def test_a_version_that_never_gets_healthy_is_killed_and_rolled_back(
    root: InstallRoot, tmp_path: Path
) -> None:
    hang = "import time\ntime.sleep(60)"
    install(root, make_bundle(tmp_path, KEY, "1.1", hang), KEY.public_key())
    started = time.monotonic()
    assert launch(root, [str(root.path)], trial_s=1.0) == 0
    assert time.monotonic() - started < 30
    assert root.current_version() == "1.0"
    assert "not healthy within 1 s" in root.read_json(root.state)["update_error"]


def test_a_trial_interrupted_by_a_power_cut_is_rolled_back_at_next_start(
    root: InstallRoot, tmp_path: Path
) -> None:
    install(root, make_bundle(tmp_path, KEY, "1.1", HEALTHY), KEY.public_key())
    trial = root.read_json(root.trial)
    root.write_json(root.trial, {**trial, "started": True})  # started once, never confirmed
    assert launch(root, [str(root.path)], trial_s=20) == 0
    assert ran(root) == ["1.0"]


INSTALLER = """
import sys, pathlib
sys.path.insert(0, {repo!r})
from cryptography.hazmat.primitives.asymmetric import ed25519
from gateway.update import InstallRoot, install
key = ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(sys.argv[3]))
print("go", flush=True)
install(InstallRoot(pathlib.Path(sys.argv[1])), pathlib.Path(sys.argv[2]), key)
"""


def test_killing_the_installer_at_any_moment_leaves_a_working_version(
    root: InstallRoot, tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives import serialization

    raw = (
        KEY.public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        .hex()
    )
    bundle = make_bundle(tmp_path, KEY, "1.1", HEALTHY, padding=4 << 20)
    seed = int(os.environ.get("FUZZ_SEED", random.randrange(2**32)))
    print(f"FUZZ_SEED={seed}")
    rng = random.Random(seed)
    script = INSTALLER.format(repo=str(REPO))
    for attempt in range(4):
        # Fresh copy of the one-version install for every kill.
        work = InstallRoot(tmp_path / f"opt-{attempt}")
        subprocess.run(["cp", "-a", str(root.path), str(work.path)], check=True)
        with subprocess.Popen(
            [sys.executable, "-c", script, str(work.path), str(bundle), raw],
            stdout=subprocess.PIPE,
        ) as child:
            assert child.stdout is not None
            child.stdout.readline()  # imports done: the install starts now
            time.sleep(rng.uniform(0, 0.4))
            child.send_signal(signal.SIGKILL)
            child.wait()
        clean(work)
        version = work.current_version()
        assert version in ("1.0", "1.1"), version
        described = json.loads((work.versions / version / ".manifest.json").read_text())
        assert described["version"] == version
        assert not list(work.versions.glob(".*partial*"))
        assert launch(work, [str(work.path)], trial_s=20) == 0
        assert ran(work)[-1] in ("1.0", "1.1")
        assert not work.trial.exists()
