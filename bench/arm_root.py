"""A Debian root for the Raspberry Pi's processor, run on this x86 machine under qemu-user-static.

``bench.check_arm`` runs the Pi's code in it. A root is made with Debian's own
tools, as a new user on a Pi would start: ``debootstrap`` (bookworm, the base of
Raspberry Pi OS 12), then a virtual environment with what ``little_client.py``
imports, from PyPI. Arm binaries run through ``qemu-user-static``, which the
kernel starts for them by its binfmt_misc entries (``qemu-aarch64``, ``qemu-arm``);
when binfmt_misc is not mounted it is mounted and the entries enabled here. (Calling
``qemu-aarch64-static`` by hand is no substitute: debootstrap's second stage, ``venv`` and
pip are Arm programs that start other Arm programs, which only binfmt_misc can start.)

Building takes minutes, so each finished root is kept as a tarball under
``.arm/`` (git-ignored), named after everything it was built from; a run unpacks
a fresh copy. ``/sys`` is deliberately not mounted in the root: with it, TFLite's
CPU detection makes ``Interpreter.__init__`` segfault under qemu 7.2 (without
it the interpreter only logs harmless "cpuinfo" lines).

    python -m bench.arm_root --arch arm64          # build (or find) the cached root, print its path
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from kws.util.logs import setup_logging

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = REPO_ROOT / ".arm"
SUITE = "bookworm"
#: The virtual environment inside the root, and where the project is staged for a run.
VENV = "/opt/kws-venv"
PROJECT = "/opt/kws"
#: This machine's CA bundle, copied into the root for pip.
HOST_CA = "/etc/ssl/host-ca-certificates.crt"
BINFMT = Path("/proc/sys/fs/binfmt_misc")
#: Where qemu-user-static puts its binfmt_misc lines (for systemd-binfmt).
BINFMT_D = Path("/usr/lib/binfmt.d")
ROOT_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
            "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}

log = logging.getLogger(__name__)


class RootError(Exception):
    """The root could not be built or entered (a missing tool, no emulation, a failed install)."""


@dataclass(frozen=True)
class ArmTarget:
    """One Raspberry Pi processor: the Debian architecture and what the Pi installs on it."""

    arch: str
    """Debian's name (``arm64``, ``armhf``)."""
    machine: str
    """``platform.machine()`` inside the root."""
    binfmt: str
    """The binfmt_misc entry (and update-binfmts name) that runs its binaries."""
    debian_packages: tuple[str, ...]
    pip_requirements: tuple[str, ...]
    system_site_packages: bool
    """Whether the venv sees Debian's Python packages (armhf: Debian's numpy, as PyPI has no armv7l numpy<2)."""
    interpreter: str
    """The TFLite interpreter package ``kws.model.runtime`` must pick there."""


def pinned(distribution: str) -> str:
    """``name==version`` as installed here: the Arm root gets the versions x86 is compared with."""
    return f"{distribution}=={metadata.version(distribution)}"


def targets() -> dict[str, ArmTarget]:
    """The two Pi processors. What ``little_client.py`` imports (clip mode and ``--listen``): numpy, a TFLite
    interpreter, requests (the Big client) with urllib3, tqdm, and zlib-ng where it has a wheel (else the
    stdlib's zlib inflates the model)."""
    base = ("python3", "python3-venv", "ca-certificates")
    return {
        "arm64": ArmTarget(
            "arm64", "aarch64", "qemu-aarch64", base,
            tuple(pinned(name) for name in ("numpy", "ai-edge-litert", "requests", "urllib3", "tqdm", "zlib-ng")),
            system_site_packages=False, interpreter="ai_edge_litert",
        ),
        # tflite-runtime 2.14.0 is the last release with armv7l wheels; it needs numpy<2, which PyPI has
        # no armv7l wheel of, so Debian's python3-numpy (1.24) comes through the venv's system site.
        # zlib-ng has no armv7l wheel either.
        "armhf": ArmTarget(
            "armhf", "armv7l", "qemu-arm", (*base, "python3-numpy"),
            ("tflite-runtime==2.14.0", pinned("requests"), pinned("urllib3"), pinned("tqdm")),
            system_site_packages=True, interpreter="tflite_runtime",
        ),
    }


def cache_key(target: ArmTarget) -> str:
    """Names everything a root is built from, so a changed requirement builds a new one."""
    recipe = json.dumps({"suite": SUITE, "venv": VENV, **asdict(target)}, sort_keys=True)
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def cached_tarball(target: ArmTarget, cache_dir: Path) -> Path:
    return cache_dir / f"{SUITE}-{target.arch}-{cache_key(target)}.tar.zst"


def apt_mirror(sources_dirs: Sequence[Path] = (Path("/etc/apt"),)) -> str:
    """The Debian mirror this machine's apt uses for the main archive (not -security), from its sources files."""
    for directory in sources_dirs:
        files = [directory / "sources.list", *sorted((directory / "sources.list.d").glob("*"))]
        for path in files:
            if not path.is_file():
                continue
            text = path.read_text(errors="replace")
            # deb822 (.sources): URIs: lines; one-line format: "deb [options] URI suite components".
            uris = re.findall(r"^URIs:\s*(\S+)", text, re.MULTILINE)
            uris += re.findall(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+", text, re.MULTILINE)
            for uri in uris:
                if uri.rstrip("/").endswith("/debian"):
                    return uri
    raise RootError("no Debian mirror (a URI ending in /debian) in /etc/apt's sources: pass --mirror URL")


def require_tools() -> None:
    """debootstrap, tar with zstd, unshare and chroot: a missing one is named with its Debian package."""
    needed = {"debootstrap": "debootstrap", "zstd": "zstd", "unshare": "util-linux", "chroot": "coreutils"}
    missing = sorted({package for tool, package in needed.items() if shutil.which(tool) is None})
    if missing:
        raise RootError(f"missing tools: apt-get install {' '.join(missing)}")


def ensure_emulation(target: ArmTarget) -> None:
    """Make sure the kernel runs ``target``'s binaries through qemu: mount binfmt_misc and enable the
    entry qemu-user-static installed, when they are not already there."""
    entry = BINFMT / target.binfmt
    if not (BINFMT / "status").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], check=False, capture_output=True)
    # What systemd-binfmt would do at boot: register qemu-user-static's own line; else binfmt-support's way.
    conf = BINFMT_D / f"{target.binfmt}.conf"
    if not entry.exists() and conf.is_file() and (BINFMT / "register").exists():
        try:
            (BINFMT / "register").write_text(conf.read_text().strip())
        except OSError as error:
            log.warning("could not register %s: %s", conf, error)
    if not entry.exists() and shutil.which("update-binfmts"):
        subprocess.run(["update-binfmts", "--enable", target.binfmt], check=False, capture_output=True)
    if not entry.exists():
        raise RootError(f"no binfmt_misc entry {entry}: apt-get install qemu-user-static binfmt-support "
                        "(and binfmt_misc must be mountable at /proc/sys/fs/binfmt_misc)")
    settings = entry.read_text()
    if not settings.startswith("enabled"):
        raise RootError(f"{entry} is disabled: update-binfmts --enable {target.binfmt}")
    flags = re.search(r"^flags: (\S*)", settings, re.MULTILINE)
    if flags is None or "F" not in flags.group(1):
        raise RootError(f"{entry} lacks the F flag, so qemu is not found inside a chroot: reinstall qemu-user-static")


def in_root(root: Path, command: Sequence[str], timeout: float = 1800, **kwargs) -> subprocess.CompletedProcess:
    """Run ``command`` inside ``root`` with a clean environment and /proc (never /sys), in a private mount
    namespace, so the mount goes away with the command whatever happens."""
    script = 'mount -t proc proc "$0/proc" && exec chroot "$0" "$@"'
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "--fork", "--",
                           "sh", "-c", script, str(root), *command],
                          env=ROOT_ENV, timeout=timeout, **kwargs)


def checked(done: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
    if done.returncode != 0:
        output = (done.stderr or "") if isinstance(done.stderr, str) else ""
        raise RootError(f"{what} failed with status {done.returncode}:\n{output[-3000:]}")
    return done


def host_ca_bundle() -> Path:
    """The certificates this machine's pip verifies PyPI with: $PIP_CERT, else OpenSSL's default bundle."""
    for candidate in (os.environ.get("PIP_CERT"), ssl.get_default_verify_paths().cafile,
                      "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise RootError("no CA bundle for pip (set PIP_CERT)")


def build_root(target: ArmTarget, root: Path, mirror: str) -> None:
    """debootstrap ``target`` into ``root``, then the venv with its pip requirements (wheels only)."""
    started = time.monotonic()
    log.info("debootstrap %s %s from %s (a few minutes under emulation)", SUITE, target.arch, mirror)
    checked(subprocess.run(
        ["debootstrap", f"--arch={target.arch}", "--variant=minbase", f"--include={','.join(target.debian_packages)}",
         SUITE, str(root), mirror], capture_output=True, text=True, timeout=1800), "debootstrap")
    log.info("debootstrap done in %.0f s; installing %s", time.monotonic() - started,
             " ".join(target.pip_requirements))
    shutil.copyfile("/etc/resolv.conf", root / "etc" / "resolv.conf")
    # pip in the root trusts what this machine's pip trusts (a mirror or proxy with its own CA works there too).
    shutil.copyfile(host_ca_bundle(), root / HOST_CA.lstrip("/"))
    venv = ["python3", "-m", "venv", *(["--system-site-packages"] if target.system_site_packages else []), VENV]
    checked(in_root(root, venv, capture_output=True, text=True), "python3 -m venv")
    install = [f"{VENV}/bin/pip", "install", "--quiet", "--no-cache-dir", "--only-binary=:all:", "--cert", HOST_CA,
               "--disable-pip-version-check", *target.pip_requirements]
    checked(in_root(root, install, capture_output=True, text=True), "pip install in the root")
    freeze = in_root(root, [f"{VENV}/bin/pip", "freeze", "--all"], capture_output=True, text=True)
    checked(freeze, "pip freeze")
    (root / VENV.lstrip("/") / "pip-freeze.txt").write_text(freeze.stdout)
    for leftovers in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for path in (root / leftovers).glob("*"):
            if path.is_file():
                path.unlink()
    log.info("%s root built in %.0f s", target.arch, time.monotonic() - started)


def ensure_tarball(target: ArmTarget, cache_dir: Path, mirror: str | None, work_dir: Path | None = None,
                   rebuild: bool = False) -> Path:
    """The cached root's tarball, built first when missing (or ``rebuild``)."""
    tarball = cached_tarball(target, cache_dir)
    if tarball.is_file() and not rebuild:
        log.info("using the cached %s root %s", target.arch, tarball)
        return tarball
    require_tools()
    ensure_emulation(target)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"kws-{target.arch}-build-", dir=work_dir) as scratch:
        root = Path(scratch) / "root"
        build_root(target, root, mirror or apt_mirror())
        partial = tarball.with_suffix(".partial")
        checked(subprocess.run(["tar", "--numeric-owner", "--zstd", "-cf", str(partial), "-C", str(root), "."],
                               capture_output=True, text=True), "tar")
        partial.replace(tarball)
        remove_root(root)
    for stale in cache_dir.glob(f"{SUITE}-{target.arch}-*.tar.zst"):
        if stale != tarball:
            stale.unlink()
    log.info("cached %s (%.0f MB)", tarball, tarball.stat().st_size / 1e6)
    return tarball


def unpack(tarball: Path, root: Path) -> None:
    root.mkdir(parents=True)
    checked(subprocess.run(["tar", "--numeric-owner", "--zstd", "-xf", str(tarball), "-C", str(root)],
                           capture_output=True, text=True), "tar -x")


def remove_root(root: Path) -> None:
    """Delete a root; ``--one-file-system`` so that nothing mounted in it by mistake is ever followed."""
    subprocess.run(["rm", "-rf", "--one-file-system", str(root)], check=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--arch", choices=sorted(targets()), default="arm64", help="Debian architecture")
    parser.add_argument("--mirror", metavar="URL", help="Debian mirror (default: the one in /etc/apt's sources)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, metavar="DIR",
                        help="where built roots are kept (default: %(default)s)")
    parser.add_argument("--rebuild", action="store_true", help="build even when a cached root exists")
    args = parser.parse_args(argv)
    setup_logging(logging.INFO)
    try:
        print(ensure_tarball(targets()[args.arch], args.cache_dir, args.mirror, rebuild=args.rebuild))
    except (RootError, subprocess.TimeoutExpired) as error:
        parser.exit(1, f"error: {error}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
