"""A real QEMU/KVM-less hypervisor for the integration tests (a helper, not a test).

What it needs from the machine: the Debian packages `.ci/run` installs (qemu-system-x86,
libvirt-daemon, libvirt-daemon-driver-qemu, libvirt-clients, busybox-static; not
libvirt-daemon-system, which pulls in systemd), and root. From them, at test time, in the
test's temp dir:

- a guest kernel: the `linux-image-*-cloud-amd64` package, fetched with `apt-get download` and
  unpacked with `dpkg-deb -x` (never installed); its virtio modules go into the initramfs;
- an initramfs with busybox whose init answers commands on the serial console (a unix socket
  here): `read N` / `write N` do N 4 KiB O_DIRECT requests on /dev/vda, so the block counters
  grow by exactly N, and nothing else touches the disk;
- a sparse raw disk.

The libvirt daemon: the one answering on `qemu:///system` if any; else this starts `virtlogd`
and `libvirtd` itself (there is no systemd here) and stops them at the end. Two things
libvirt-daemon-system would have set up are done here when missing: the `libvirt-qemu` user
(libvirtd resolves its default QEMU user before reading any configuration, and exits without
it), and `/etc/libvirt/qemu.conf` running QEMU as root. The latter because libvirt checks its
cached QEMU capabilities against /dev/kvm as the QEMU user: where /dev/kvm is root's only (as
here), the cache never validates and every call that needs capabilities probes QEMU again
(4 s each, a minute on a loaded machine). Each domain also runs QEMU as root through its own
`<seclabel>`, so the images can stay in the 0700 temp dir whatever the daemon's config.

Domains are `type='qemu'` (TCG: no KVM needed) with direct kernel boot. A guest never brings up
a network: the only NIC, `type='user'`, has no driver loaded in the guest, so no traffic
leaves the machine.

Outside CI a missing piece skips the tests with the reason; under CI=true it fails them.
"""

from __future__ import annotations

import contextlib
import gzip
import lzma
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

URI = "qemu:///system"
QEMU_CONF = Path("/etc/libvirt/qemu.conf")
VMLB_NS = "https://vmlb.dev/ns"
#: Where `.ci/run` lists the Debian packages this needs (the one place to change them).
PACKAGES_AT = ".ci/run"
#: The virtio modules the guest needs for its disk (their dependencies come along).
GUEST_MODULES = ("virtio_pci", "virtio_blk")

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t devtmpfs dev /dev
mount -t proc proc /proc
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m.ko; done
exec </dev/ttyS0 >/dev/ttyS0 2>&1
stty -echo
i=0
while [ ! -b /dev/vda ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
while read cmd n; do
  case "$cmd" in
    ping) if [ -b /dev/vda ]; then echo "vmlb-guest pong"; else echo "vmlb-guest no-disk"; fi;;
    read) dd if=/dev/vda of=/dev/null bs=4k count="$n" iflag=direct 2>/dev/null
          echo "vmlb-guest done read $n";;
    write) dd if=/dev/zero of=/dev/vda bs=4k count="$n" oflag=direct conv=notrunc 2>/dev/null
           echo "vmlb-guest done write $n";;
    *) echo "vmlb-guest unknown $cmd";;
  esac
done
"""


class Unavailable(Exception):
    """The hypervisor cannot be had on this machine (the reason says what is missing)."""


def unavailable(reason: str) -> None:
    """Skip with the reason; under CI, fail: CI must run this test, never skip it silently."""
    message = f"real-QEMU test: {reason} (the packages are listed in {PACKAGES_AT})"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def run(
    *command: str, timeout_s: float = 120.0, check: bool = True, cwd: Path | None = None
) -> str:
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL,
        cwd=cwd,
    )  # fmt: skip
    if check and done.returncode != 0:
        raise Unavailable(f"`{' '.join(command)}` failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def virsh(*args: str, check: bool = True) -> str:
    return run("virsh", "-q", "-c", URI, *args, check=check)


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        raise Unavailable(f"`{name}` not found")
    return found


# --- the guest kernel and its initramfs ------------------------------------------------------


@dataclass(frozen=True)
class GuestKernel:
    vmlinuz: Path
    #: The modules to load, in an order that loads each after its dependencies.
    modules: tuple[Path, ...]


def kernel_package() -> str:
    """The cloud kernel that `linux-image-cloud-amd64` depends on now."""

    def depends() -> list[str]:
        out = run("apt-cache", "depends", "--no-recommends", "--no-suggests",
                  "linux-image-cloud-amd64", check=False)  # fmt: skip
        return re.findall(r"Depends:\s*(linux-image-\S+-cloud-amd64)\s*$", out, re.M)

    found = depends()
    if not found and os.geteuid() == 0:
        run("apt-get", "update", "-qq", timeout_s=300)  # a machine whose lists were never fetched
        found = depends()
    if not found:
        raise Unavailable("apt-cache knows no linux-image-*-cloud-amd64 package")
    return found[0]


def unpack_kernel(workdir: Path) -> GuestKernel:
    """`apt-get download` the cloud kernel package and `dpkg-deb -x` it (never installed)."""
    package = kernel_package()
    downloads = workdir / "deb"
    downloads.mkdir(exist_ok=True)
    run("apt-get", "download", "-q", package, timeout_s=600, cwd=downloads)
    debs = sorted(downloads.glob(f"{package}_*.deb"))
    if not debs:
        raise Unavailable(f"apt-get download {package} left no .deb")
    deb = debs[-1]
    tree = workdir / "kernel"
    run("dpkg-deb", "-x", str(deb), str(tree), timeout_s=300)
    deb.unlink()
    vmlinuz = sorted((tree / "boot").glob("vmlinuz-*"))
    module_dirs = sorted((tree / "lib" / "modules").glob("*"))
    if not vmlinuz or not module_dirs:
        raise Unavailable(f"{package} holds no vmlinuz or modules")
    modules = modules_in_load_order(module_dirs[-1], GUEST_MODULES)
    # Keep what the guests use; the rest of the package (100+ MB of modules) goes.
    kept = workdir / "guest-kernel"
    kept.mkdir(exist_ok=True)
    for path in (vmlinuz[-1], *modules):
        shutil.copy2(path, kept / path.name)
    shutil.rmtree(tree)
    return GuestKernel(kept / vmlinuz[-1].name, tuple(kept / m.name for m in modules))


def modules_in_load_order(modules_dir: Path, wanted: tuple[str, ...]) -> tuple[Path, ...]:
    """The `.ko` files of `wanted` and all they depend on (their `depends=` modinfo), each after
    its dependencies; modules built into the kernel are left out."""
    builtin_file = modules_dir / "modules.builtin"
    builtin = {
        Path(line).name.split(".ko")[0].replace("-", "_")
        for line in (builtin_file.read_text().split() if builtin_file.exists() else [])
    }
    files = {
        path.name.split(".ko")[0].replace("-", "_"): path
        for path in (modules_dir / "kernel").rglob("*.ko*")
    }
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen or name in builtin:
            return
        seen.add(name)
        if name not in files:
            raise Unavailable(f"guest kernel module {name} not found in {modules_dir}")
        for dependency in _depends(files[name]):
            visit(dependency)
        order.append(files[name])

    for name in wanted:
        visit(name)
    return tuple(order)


def _module_bytes(path: Path) -> bytes:
    if path.name.endswith(".ko"):
        return path.read_bytes()
    if path.name.endswith(".ko.xz"):
        return lzma.decompress(path.read_bytes())
    if path.name.endswith(".ko.gz"):
        return gzip.decompress(path.read_bytes())
    raise Unavailable(f"{path.name}: a module compression busybox insmod cannot load here")


def _depends(path: Path) -> list[str]:
    found = re.search(rb"(?:^|\x00)depends=([^\x00]*)\x00", _module_bytes(path))
    names = found.group(1).decode() if found else ""
    return [n.replace("-", "_") for n in names.split(",") if n]


def build_initramfs(workdir: Path, kernel: GuestKernel) -> Path:
    """busybox, the modules and the init script, as a gzipped newc cpio archive."""
    # The guest has no libraries: only the static build runs as its init (Debian's `busybox`
    # package, which replaces `busybox-static`, is dynamically linked).
    status = run("dpkg-query", "-W", "-f=${Status}", "busybox-static", check=False)
    busybox = "/bin/busybox"
    if "installed" not in status.split() or not Path(busybox).is_file():
        raise Unavailable("busybox-static is not installed")
    root = workdir / "initramfs"
    for sub in ("bin", "dev", "proc", "sys", "lib/modules"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, root / "bin" / "busybox")
    names = []
    for module in kernel.modules:
        name = module.name.split(".ko")[0]
        (root / "lib" / "modules" / f"{name}.ko").write_bytes(_module_bytes(module))
        names.append(name)
    (root / "lib" / "modules" / "order").write_text("\n".join(names) + "\n")
    init = root / "init"
    init.write_text(INIT)
    init.chmod(0o755)
    listing = "\n".join([".", *sorted(str(p.relative_to(root)) for p in root.rglob("*"))]).encode()
    archive = subprocess.run(
        [busybox, "cpio", "-o", "-H", "newc"],
        input=listing,
        cwd=root,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    initrd = workdir / "initrd.img"
    initrd.write_bytes(gzip.compress(archive, compresslevel=1))
    return initrd


# --- the libvirt daemon --------------------------------------------------------------------


@dataclass
class Libvirtd:
    """The daemon on qemu:///system: the running one, or one this starts (and stops)."""

    workdir: Path
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)
    wrote_conf: bool = False

    def answers(self) -> bool:
        done = subprocess.run(
            ["virsh", "-c", URI, "version"], capture_output=True, timeout=30,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        return done.returncode == 0

    def ensure(self) -> None:
        for tool in ("virsh", "qemu-system-x86_64"):
            _tool(tool)
        if self.answers():
            return
        if os.geteuid() != 0:
            raise Unavailable(
                "no libvirt daemon answers on qemu:///system, and only root may start one"
            )
        libvirtd, virtlogd = _tool("libvirtd"), _tool("virtlogd")
        driver = Path("/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so")
        if not driver.exists():
            raise Unavailable("libvirt's QEMU driver is not installed (libvirt-daemon-driver-qemu)")
        _ensure_qemu_user()
        self.wrote_conf = _ensure_qemu_conf()
        for directory in ("/var/log/libvirt/qemu", "/var/lib/libvirt/qemu", "/run/libvirt"):
            Path(directory).mkdir(parents=True, exist_ok=True)
        for binary in (virtlogd, libvirtd):
            log = (self.workdir / f"{Path(binary).name}.log").open("wb")
            self.started.append(
                subprocess.Popen(
                    [binary], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                )
            )
        deadline = time.monotonic() + 60
        while not self.answers():
            if any(p.poll() is not None for p in self.started):
                raise Unavailable(f"the libvirt daemon exited: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise Unavailable(f"the libvirt daemon did not answer in 60 s: {self.log_tail()}")
            time.sleep(0.2)

    def log_tail(self) -> str:
        log = self.workdir / "libvirtd.log"
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        return " | ".join(line for line in lines if " error " in line)[-800:]

    def stop(self) -> None:
        for process in reversed(self.started):
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self.started.clear()
        if self.wrote_conf:
            QEMU_CONF.unlink(missing_ok=True)
            self.wrote_conf = False


def _ensure_qemu_user() -> None:
    """libvirtd resolves its default QEMU user before reading any configuration, and exits if
    it does not exist; libvirt-daemon-system (not installed: systemd) would have created it."""
    if subprocess.run(["getent", "passwd", "libvirt-qemu"], capture_output=True).returncode == 0:
        return
    if subprocess.run(["getent", "group", "libvirt-qemu"], capture_output=True).returncode != 0:
        run("groupadd", "--system", "libvirt-qemu")
    run("useradd", "--system", "--gid", "libvirt-qemu", "--no-create-home",
        "--home-dir", "/var/lib/libvirt", "--shell", "/usr/sbin/nologin", "libvirt-qemu")  # fmt: skip


def _ensure_qemu_conf() -> bool:
    """QEMU as root, where no qemu.conf exists (see the module docstring: capability probes);
    whether it was written (then `Libvirtd.stop` removes it)."""
    conf = QEMU_CONF
    if conf.exists():
        return False
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(
        "# Written by vmlb's real-QEMU test (tests/integration/producers/qemu_host.py):\n"
        "# no libvirt-daemon-system here. QEMU runs as root, so that libvirt's capability\n"
        "# cache validates against a root-only /dev/kvm.\n"
        'user = "root"\ngroup = "root"\n'
    )
    return True


# --- guests ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlockCounters:
    rd_reqs: int
    wr_reqs: int


class Guest:
    """One persistent domain and its console: define, start, command, destroy."""

    def __init__(
        self, name: str, workdir: Path, kernel: GuestKernel, initrd: Path, job_type: str,
        user_nic: bool = False,
    ) -> None:  # fmt: skip
        self.name = name
        self.console_path = workdir / f"{name}.sock"
        self.disk = workdir / f"{name}.img"
        with self.disk.open("wb") as disk:
            disk.truncate(64 * 1024 * 1024)
        nic = "<interface type='user'><model type='virtio'/></interface>" if user_nic else ""
        self.xml = f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>160</memory>
  <vcpu>1</vcpu>
  <metadata><vmlb:job-type xmlns:vmlb="{VMLB_NS}">{job_type}</vmlb:job-type></metadata>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kernel.vmlinuz}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>console=ttyS0 quiet panic=-1</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/><source file='{self.disk}'/><target dev='vda' bus='virtio'/>
    </disk>
    {nic}
    <serial type='unix'><source mode='bind' path='{self.console_path}'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
  <seclabel type='static' model='dac' relabel='no'><label>+0:+0</label></seclabel>
</domain>"""
        self._console: socket.socket | None = None
        self._buffer = b""
        self.transcript = workdir / f"{name}.console.log"

    def define(self) -> None:
        path = self.console_path.with_suffix(".xml")
        path.write_text(self.xml)
        virsh("define", str(path))

    def start(self) -> None:
        """Boot and wait until its init answers."""
        self.boot()
        self.wait_ready()

    def boot(self) -> None:
        """`virsh start`, not waiting for the guest (boot several at once, then wait)."""
        virsh("start", self.name)
        self._connect()

    def _connect(self) -> None:
        self.close_console()
        deadline = time.monotonic() + 60
        while True:
            try:
                console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                console.connect(str(self.console_path))
                break
            except OSError:
                console.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self._console, self._buffer = console, b""

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        """Until the guest's init answers on its console (a TCG boot takes some seconds)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._send("ping")
            if self._expect(b"vmlb-guest pong", timeout_s=1.0):
                return
        raise AssertionError(f"{self.name} did not boot in {timeout_s:.0f}s; see {self.transcript}")

    def command(self, line: str, timeout_s: float = 120.0) -> None:
        """`read N` or `write N`: N O_DIRECT 4 KiB requests on vda; returns once done."""
        self._send(line)
        if not self._expect(f"vmlb-guest done {line}\n".encode(), timeout_s):
            raise AssertionError(f"{self.name}: `{line}` not done in {timeout_s:.0f}s")

    def _send(self, line: str) -> None:
        assert self._console is not None
        self._console.sendall(line.encode() + b"\n")

    def _expect(self, marker: bytes, timeout_s: float) -> bool:
        assert self._console is not None
        deadline = time.monotonic() + timeout_s
        while marker not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._console.settimeout(remaining)
            try:
                chunk = self._console.recv(4096)
            except TimeoutError:
                return False
            if not chunk:
                return False
            with self.transcript.open("ab") as transcript:
                transcript.write(chunk)
            self._buffer += chunk.replace(b"\r", b"")  # the guest's tty ends lines in CRLF
        self._buffer = self._buffer[self._buffer.index(marker) + len(marker) :]
        return True

    def close_console(self) -> None:
        if self._console is not None:
            self._console.close()
            self._console = None

    def blockstat(self) -> BlockCounters:
        """`virsh domblkstat` of vda, as an operator would read it."""
        fields = dict(
            line.split()[1:3] for line in virsh("domblkstat", self.name, "vda").splitlines()
            if len(line.split()) == 3
        )  # fmt: skip
        return BlockCounters(int(fields["rd_req"]), int(fields["wr_req"]))

    def qemu_pid(self) -> int:
        return int(Path(f"/run/libvirt/qemu/{self.name}.pid").read_text().strip())

    def freeze(self) -> None:
        """Stop QEMU itself (SIGSTOP): its monitor never answers, as a hung QEMU's."""
        os.kill(self.qemu_pid(), signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.qemu_pid(), signal.SIGCONT)

    def destroy(self) -> None:
        self.close_console()
        virsh("destroy", self.name)

    def remove(self) -> None:
        """Whatever state it is in: thawed, destroyed, undefined."""
        self.close_console()
        with contextlib.suppress(OSError, ValueError):
            self.thaw()  # a frozen QEMU would not take SIGTERM
        virsh("destroy", self.name, check=False)
        virsh("undefine", self.name, check=False)


@dataclass
class QemuHost:
    workdir: Path
    kernel: GuestKernel
    initrd: Path
    daemon: Libvirtd
    guests: list[Guest] = field(default_factory=list)

    def guest(self, name: str, job_type: str, user_nic: bool = False) -> Guest:
        guest = Guest(name, self.workdir, self.kernel, self.initrd, job_type, user_nic)
        self.guests.append(guest)
        guest.define()
        return guest


def qemu_host(workdir: Path) -> Iterator[QemuHost]:
    """The whole hypervisor for a test module (a generator for a fixture)."""
    daemon = Libvirtd(workdir)
    host: QemuHost | None = None
    try:
        try:
            daemon.ensure()
            kernel = unpack_kernel(workdir)
            initrd = build_initramfs(workdir, kernel)
        except (Unavailable, OSError, subprocess.SubprocessError) as exc:
            unavailable(str(exc))
            raise  # not reached: unavailable() skips or fails
        host = QemuHost(workdir, kernel, initrd, daemon)
        yield host
    finally:
        for guest in host.guests if host else []:
            guest.remove()
        daemon.stop()
