"""Make, without any registry, the base images the generated Dockerfiles name (level 7 of the test ladder).

- ``python:3.X-slim-trixie``: Debian trixie from ``debootstrap --variant=minbase`` (its python3 is only there
  for the shared libraries CPython links against) plus a CPython of that minor version at ``/usr/local``,
  where the official images keep theirs, taken from pyenv or any other self-contained install.
- ``ghcr.io/astral-sh/uv:<version>``: the uv binary the template's venv pins, alone, as in the real image.

Each image carries the key of what built it (label ``org.rampart.base-key``): a rerun with the same inputs
does nothing, a changed input rebuilds only what it touched. A stand-in base proves the Dockerfile's
mechanics (stages, user, permissions, health check, signals, volumes), not the real image's contents.

Exit status 0: every image is ready. 3: a tool or an interpreter is missing (the message says which), so
the level 7 tests skip, or fail under CI=true.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO_ROOT / "template" / "Dockerfile.jinja"
CONTAINERS_CONF = REPO_ROOT / "tests" / "containers" / "containers.conf"
KEY_LABEL = "org.rampart.base-key"
SUITE = "trixie"
# python3 brings the shared libraries CPython needs (libssl, libffi, libsqlite3, libexpat, ...).
INCLUDES = "python3,ca-certificates"
ROOTFS_IMAGE = f"localhost/rampart-base/{SUITE}-minbase:latest"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PATH_VALUE = "/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"
MISSING = 3


class Missing(Exception):
    """A tool or an interpreter this machine lacks: the level skips (fails under CI=true) with this reason."""


def say(message: str) -> None:
    print(f"container-bases: {message}", file=sys.stderr, flush=True)


def podman_environment() -> dict[str, str]:
    # This repository's containers.conf (runc, explicit ulimits) unless the caller chose another one.
    return {**os.environ, "CONTAINERS_CONF": os.environ.get("CONTAINERS_CONF", str(CONTAINERS_CONF))}


def podman(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], env=podman_environment(), text=True, check=True, **kwargs)  # type: ignore[call-overload]


def image_key(reference: str) -> str | None:
    """The build key an image carries, or None when there is no such image."""
    found = subprocess.run(
        ["podman", "image", "inspect", "--format", "json", reference],
        env=podman_environment(),
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode != 0:
        return None
    labels = json.loads(found.stdout)[0].get("Labels") or {}
    return labels.get(KEY_LABEL)


def digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps([str(part) for part in parts]).encode()).hexdigest()[:24]


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def wanted_tags() -> tuple[list[str], str]:
    """The Python minor versions copier.yml offers, and the uv image the Dockerfile copies uv from."""
    copier = yaml.safe_load((REPO_ROOT / "copier.yml").read_text(encoding="utf-8"))
    versions = [str(version) for version in copier["python_version"]["choices"]]
    dockerfile = DOCKERFILE.read_text(encoding="utf-8")
    uv_from = re.search(
        r"^FROM (ghcr\.io/astral-sh/uv:[0-9.]+)(?:@sha256:[0-9a-f]+)? AS uv$", dockerfile, re.M
    )
    if uv_from is None or "FROM python:{{ python_version }}-slim-trixie" not in dockerfile:
        raise SystemExit(
            "container-bases: the Dockerfile's FROM lines changed: update scripts/container_bases.py"
        )
    return versions, uv_from[1]


def debian_mirror() -> str:
    """The Debian mirror apt already uses here (deb.debian.org where apt has none, e.g. on Ubuntu)."""
    if mirror := os.environ.get("DEBIAN_MIRROR"):
        return mirror
    sources = [*Path("/etc/apt").glob("sources.list"), *Path("/etc/apt/sources.list.d").glob("*.sources")]
    for source in sources:
        for match in re.finditer(r"(?:^deb\s+|^URIs:\s*)(\S+/debian)/?\s", source.read_text(), re.M):
            return match[1]
    return "http://deb.debian.org/debian"


def require(tool: str) -> str:
    found = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
    if found is None:
        raise Missing(
            f"{tool} is not installed (`sudo make container-tools` installs podman, runc, debootstrap)"
        )
    return found


def as_root(command: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return command
    if shutil.which("sudo") is None:
        raise Missing(f"{command[0]} needs root, and there is no sudo")
    return ["sudo", "--non-interactive", *command]


def rootfs_image() -> str:
    """Debian minbase imported into podman's store; returns its key."""
    debootstrap = require("debootstrap")
    mirror = debian_mirror()
    version = subprocess.run(
        ["dpkg-query", "--showformat=${Version}", "--show", "debootstrap"], capture_output=True, text=True
    ).stdout.strip()
    ca = file_digest(HOST_CA_BUNDLE) if HOST_CA_BUNDLE.is_file() else "none"
    key = digest("rootfs", version, SUITE, INCLUDES, mirror, ca)
    if image_key(ROOTFS_IMAGE) == key:
        say(f"{ROOTFS_IMAGE} is current")
        return key
    say(f"debootstrap {SUITE} from {mirror} (a few minutes, once)")
    with tempfile.TemporaryDirectory(prefix="rampart-rootfs-") as scratch:
        rootfs = Path(scratch) / "rootfs"
        bootstrap = [debootstrap, "--variant=minbase", f"--include={INCLUDES}", SUITE, str(rootfs), mirror]
        subprocess.run(as_root(bootstrap), check=True, stdout=subprocess.DEVNULL)
        if HOST_CA_BUNDLE.is_file():
            # HTTPS to the package index may be re-signed by this machine's CA: builds must trust it.
            copy = ["cp", str(HOST_CA_BUNDLE), str(rootfs / "etc/ssl/certs/ca-certificates.crt")]
            subprocess.run(as_root(copy), check=True)
        archive = subprocess.Popen(
            as_root(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", "-", "."]), stdout=subprocess.PIPE
        )
        changes = [
            f"ENV PATH={PATH_VALUE}",
            "ENV LANG=C.UTF-8",
            f"ENV SSL_CERT_FILE={HOST_CA_BUNDLE}",
            f"LABEL {KEY_LABEL}={key}",
            'CMD ["bash"]',
        ]
        options = [item for change in changes for item in ("--change", change)]
        podman(
            "import", "--quiet", *options, "-", ROOTFS_IMAGE, stdin=archive.stdout, stdout=subprocess.DEVNULL
        )
        if archive.wait() != 0:
            raise SystemExit("container-bases: tar of the debootstrap tree failed")
        subprocess.run(as_root(["rm", "-rf", str(rootfs)]), check=True)
    return key


def cpython_prefix(minor: str) -> Path:
    """A self-contained CPython ``minor`` install (pyenv's, setup-python's), never the distribution's /usr."""
    candidates: list[Path] = []
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    patch = re.compile(rf"^{re.escape(minor)}\.(\d+)$")
    installs = [path for path in (pyenv_root / "versions").glob(f"{minor}.*") if patch.match(path.name)]
    candidates += sorted(installs, key=lambda path: int(patch.match(path.name)[1]), reverse=True)  # type: ignore[index]
    if found := shutil.which(f"python{minor}"):
        candidates.append(Path(found).resolve().parents[1])
    for prefix in candidates:
        if prefix != Path("/usr") and (prefix / "lib" / f"libpython{minor}.so.1.0").is_file():
            return prefix
    raise Missing(f"no self-contained CPython {minor} with libpython{minor}.so (pyenv install {minor})")


def stage_cpython(prefix: Path, minor: str, context: Path) -> None:
    """The interpreter, its shared library and standard library under ``context/usr/local``."""
    local = context / "usr" / "local"
    (local / "bin").mkdir(parents=True)
    (local / "lib").mkdir()
    shutil.copy2(prefix / "bin" / f"python{minor}", local / "bin" / f"python{minor}")
    for alias in ("python3", "python"):
        (local / "bin" / alias).symlink_to(f"python{minor}")
    for library in (prefix / "lib").glob(f"libpython{minor}.so*"):
        shutil.copy2(library, local / "lib" / library.name, follow_symlinks=True)
    # The test suite, the static library and third-party packages are not part of a slim image.
    skipped = shutil.ignore_patterns("test", "config-*", "idlelib", "tkinter", "turtledemo", "__pycache__")
    shutil.copytree(prefix / "lib" / f"python{minor}", local / "lib" / f"python{minor}", ignore=skipped)
    site_packages = local / "lib" / f"python{minor}" / "site-packages"
    shutil.rmtree(site_packages)
    site_packages.mkdir()


def python_image(minor: str, rootfs_key: str) -> None:
    tag = f"docker.io/library/python:{minor}-slim-{SUITE}"
    prefix = cpython_prefix(minor)
    executable = prefix / "bin" / f"python{minor}"
    full_version = subprocess.run(
        [str(executable), "-c", "import sys; print(sys.version)"], capture_output=True, text=True, check=True
    ).stdout.strip()
    key = digest("python", rootfs_key, prefix, full_version, file_digest(Path(__file__)))
    if image_key(tag) == key:
        say(f"{tag} is current")
        return
    say(f"{tag} from {prefix}")
    with tempfile.TemporaryDirectory(prefix="rampart-python-") as scratch:
        context = Path(scratch)
        stage_cpython(prefix, minor, context)
        (context / "Containerfile").write_text(
            f"FROM {ROOTFS_IMAGE}\n"
            "COPY usr/local/ /usr/local/\n"
            # /usr/local/lib is on the loader's path: the cache makes libpython findable.
            f"RUN ldconfig && python{minor} -c 'import ssl, sqlite3, ctypes, zlib, lzma, bz2, uuid'\n"
            f"LABEL {KEY_LABEL}={key}\n"
            'CMD ["python3"]\n',
            encoding="utf-8",
        )
        build(tag, context)


def build(tag: str, context: Path) -> None:
    """Build ``context``'s Containerfile as ``tag``: nothing pulled, docker format (OCI drops HEALTHCHECK)."""
    podman(
        "build",
        "--pull=never",
        "--format",
        "docker",
        "--quiet",
        "--tag",
        tag,
        str(context),
        stdout=subprocess.DEVNULL,
    )


def uv_image(tag: str) -> None:
    version = tag.rsplit(":", 1)[1]
    binaries = [Path(sys.prefix) / "bin" / name for name in ("uv", "uvx")]
    reported = subprocess.run(
        [str(binaries[0]), "--version"], capture_output=True, text=True, check=True
    ).stdout
    if reported.split()[1] != version:
        raise SystemExit(
            f"container-bases: the Dockerfile names uv {version}, the venv has {reported.strip()}"
        )
    key = digest("uv", *(file_digest(binary) for binary in binaries))
    if image_key(tag) == key:
        say(f"{tag} is current")
        return
    say(f"{tag} from {binaries[0]}")
    with tempfile.TemporaryDirectory(prefix="rampart-uv-") as scratch:
        context = Path(scratch)
        for binary in binaries:
            shutil.copy2(binary, context / binary.name)
        (context / "Containerfile").write_text(
            f"FROM scratch\nCOPY uv uvx /\nLABEL {KEY_LABEL}={key}\n", encoding="utf-8"
        )
        build(tag, context)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", action="append", help="only these minor versions (default: copier.yml's)")
    options = parser.parse_args()
    versions, uv_tag = wanted_tags()
    try:
        require("podman")
        uv_image(uv_tag)
        rootfs_key = rootfs_image()
    except Missing as missing:
        say(f"cannot make the base images: {missing}")
        return MISSING
    status = 0
    for minor in options.python or versions:
        try:
            python_image(minor, rootfs_key)
        except Missing as missing:
            # The other versions are still useful: only this one's images are skipped.
            say(f"cannot make python:{minor}-slim-{SUITE}: {missing}")
            status = MISSING
    return status


if __name__ == "__main__":
    sys.exit(main())
