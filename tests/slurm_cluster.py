"""A real single-node SLURM cluster on 127.0.0.1, started from Debian's packages for a test.

Everything lives in one folder: configs, state, logs, sockets, a MariaDB data directory. The
daemons (munged, mariadbd, slurmdbd, slurmctld, slurmd) run in the foreground as children of
this process; :meth:`SlurmCluster.stop` cancels the jobs left and ends exactly those processes.
Ports are picked free on 127.0.0.1 and every daemon listens on loopback only.

The node has fake GPUs (``gres gpu:fake``, backed by ``/dev/null`` and the like): jobs that ask
for one are scheduled and accounted as GPU jobs and see ``CUDA_VISIBLE_DEVICES``. The node declares
more CPUs and memory than this machine has (``SlurmdParameters=config_overrides``), so that the
requests of a real cluster profile can be scheduled here. Accounting goes through slurmdbd and
a private MariaDB, so ``sacct`` works as on a real cluster (the executor plugin polls it).

One thing lies outside the folder: /etc/slurm/slurm.conf is a link to the cluster's config
while it runs (see SYSTEM_CONF), so one such cluster runs on a machine at a time; a second
waits for the first (a lock in /run/lock). Client commands need ``env`` (it sets
``SLURM_CONF``)::

    with SlurmCluster(tmp / "slurm-test-cluster") as cluster:
        subprocess.run(["sinfo"], env=cluster.env)
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = ["munge", "slurmctld", "slurmd", "slurm-client", "slurmdbd", "mariadb-server"]
BINARIES = ["mungekey", "munged", "mariadb-install-db", "mariadbd", "slurmdbd", "slurmctld",
            "slurmd", "sbatch", "sacct", "sacctmgr", "sinfo", "scancel"]
CLUSTER = "barista"
PARTITION = "gpu"        # not the default partition: a job finds it only if it asks for it
ACCOUNT = "lab"
# The executor plugin's job step drops SLURM_CONF from the environment of the `srun` it runs
# inside each job, so srun reads the default path, as on a real cluster: during the test it is
# a link to this cluster's slurm.conf.
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
FAKE_GPU_FILES = ["/dev/null", "/dev/zero", "/dev/full", "/dev/urandom"]
LOCK = Path("/run/lock/barista-slurm-test-cluster.lock")


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None]


def install_slurm() -> str | None:
    """Install SLURM, munge and MariaDB from Debian's packages unless present.

    Returns None on success, else why it could not (for a skip message)."""
    if not missing_binaries():
        return None
    if shutil.which("apt-get") is None:
        return "apt-get not found"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
    # the packages' scripts must not start system daemons: the test starts its own
    policy = Path("/usr/sbin/policy-rc.d")
    ours = not policy.exists()
    if ours:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:  # stale or missing package lists: update once, then retry
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True,
                           timeout=600)
            done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600)
    finally:
        if ours:
            policy.unlink()
    if done.returncode != 0:
        return f"apt-get install {' '.join(PACKAGES)} failed: {done.stderr.strip()[-500:]}"
    if missing := missing_binaries():
        return f"installed, but still missing {missing}"
    return None


def system_conf_in_use() -> bool:
    """A slurm.conf at the default path that is not a link of a test cluster (a running one
    is waited for; one left by a killed run is replaced)."""
    return (SYSTEM_CONF.exists() or SYSTEM_CONF.is_symlink()) and not (
        SYSTEM_CONF.is_symlink() and "slurm-test-cluster" in os.readlink(SYSTEM_CONF))


def hostname_is_loopback() -> bool:
    try:
        return socket.gethostbyname(socket.gethostname()) == "127.0.0.1"
    except OSError:
        return False


def free_ports(n: int) -> list[int]:
    """n distinct ports that are free on 127.0.0.1 right now."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class SlurmCluster:
    """One controller, one compute node (``localhost``), slurmdbd accounting, under ``root``.

    Parameters
    ----------
    root : Path
        Empty or missing folder for everything the cluster writes; its path must contain
        ``slurm-test-cluster`` (how a leftover link at /etc/slurm/slurm.conf is recognised).
    cpus, memory_mb, gpus : int
        What the node declares (the CPUs and memory need not exist; the GPUs are fake).
    """

    def __init__(self, root: Path, cpus: int = 16, memory_mb: int = 128_000, gpus: int = 1):
        self.root = Path(root).resolve()
        if "slurm-test-cluster" not in str(self.root):
            raise ValueError(f"{root}: the path must contain 'slurm-test-cluster'")
        if not 1 <= gpus <= len(FAKE_GPU_FILES):
            raise ValueError(f"gpus: 1 to {len(FAKE_GPU_FILES)}")
        self.cpus, self.memory_mb, self.gpus = cpus, memory_mb, gpus
        self.procs: dict[str, subprocess.Popen] = {}
        self.linked = False
        self.lock: int | None = None
        self.conf = self.root / "etc" / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        for var in [v for v in self.env if v.startswith(("SLURM_", "SBATCH_", "SRUN_"))]:
            if var != "SLURM_CONF":  # not inherited from a surrounding job
                del self.env[var]

    # ---------------------------------------------------------------- configuration
    def _write_configs(self) -> None:
        r = self.root
        for d in ("etc", "state", "spool", "log", "run", "db"):
            (r / d).mkdir(parents=True, exist_ok=True)
        ctld, slurmd, dbd = free_ports(3)
        self.munge_socket = r / "run" / "munge.socket"
        self.mysql_socket = r / "run" / "mysqld.sock"
        common = f"AuthType=auth/munge\nAuthInfo=socket={self.munge_socket}\n"
        self.conf.write_text(
            f"ClusterName={CLUSTER}\n"
            "SlurmctldHost=localhost(127.0.0.1)\n"
            f"SlurmctldPort={ctld}\nSlurmdPort={slurmd}\n"
            "CommunicationParameters=NoInAddrAny,NoCtldInAddrAny\n"
            "SlurmUser=root\nSlurmdUser=root\n"
            f"{common}CredType=cred/munge\n"
            f"StateSaveLocation={r}/state\nSlurmdSpoolDir={r}/spool\n"
            f"SlurmctldPidFile={r}/run/slurmctld.pid\nSlurmdPidFile={r}/run/slurmd.pid\n"
            f"SlurmctldLogFile={r}/log/slurmctld.log\nSlurmdLogFile={r}/log/slurmd.log\n"
            # no cgroups: they need systemd or a writable cgroup tree
            "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n"
            "JobAcctGatherType=jobacct_gather/none\nMpiDefault=none\n"
            "SelectType=select/cons_tres\nSelectTypeParameters=CR_Core_Memory\n"
            "SlurmdParameters=config_overrides\nReturnToService=2\n"
            "MinJobAge=300\nKillWait=5\nGresTypes=gpu\n"

            "AccountingStorageType=accounting_storage/slurmdbd\n"
            f"AccountingStorageHost=localhost\nAccountingStoragePort={dbd}\n"
            # with slurmdbd, this names the munge socket for talking to it
            f"AccountingStoragePass={self.munge_socket}\n"
            "AccountingStorageTRES=gres/gpu\nAccountingStoreFlags=job_comment\n"
            f"NodeName=localhost NodeAddr=127.0.0.1 CPUs={self.cpus} "
            f"RealMemory={self.memory_mb} Gres=gpu:fake:{self.gpus} State=UNKNOWN\n"
            f"PartitionName={PARTITION} Nodes=localhost Default=NO MaxTime=INFINITE State=UP\n"
        )
        # one harmless device file per fake GPU: SLURM counts them and sets
        # CUDA_VISIBLE_DEVICES, nothing opens them
        files = FAKE_GPU_FILES[:self.gpus]
        (r / "etc" / "gres.conf").write_text("AutoDetect=off\n" + "".join(
            f"NodeName=localhost Name=gpu Type=fake File={f}\n" for f in files))
        dbd_conf = r / "etc" / "slurmdbd.conf"
        dbd_conf.write_text(
            f"{common}DbdHost=localhost\nDbdAddr=127.0.0.1\nDbdPort={dbd}\n"
            "CommunicationParameters=NoInAddrAny\nSlurmUser=root\n"
            f"LogFile={r}/log/slurmdbd.log\nPidFile={r}/run/slurmdbd.pid\n"
            "StorageType=accounting_storage/mysql\nStorageHost=localhost\n"
            "StorageUser=root\nStorageLoc=slurm_acct_db\n")
        dbd_conf.chmod(0o600)

    # ---------------------------------------------------------------- processes
    def _spawn(self, name: str, cmd: list[str], env: dict | None = None) -> None:
        log = open(self.root / "log" / f"{name}.out", "ab")  # noqa: SIM115 (kept by Popen)
        self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=env or self.env)
        log.close()

    def _wait(self, what: str, ready, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}) while waiting for "
                                       f"{what}:\n{self.logs()}")
            if ready():
                return
            time.sleep(0.2)
        raise RuntimeError(f"timed out waiting for {what}:\n{self.logs()}")

    def run(self, *cmd: str, check: bool = True, timeout: float = 60) -> str:
        """A SLURM client command against this cluster; its stdout."""
        done = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr}")
        return done.stdout

    def _ok(self, *cmd: str) -> bool:
        return subprocess.run(cmd, env=self.env, capture_output=True, timeout=30).returncode == 0

    def start(self, wait_s: float = 900) -> SlurmCluster:
        """Start the daemons, after waiting up to wait_s for another test cluster to stop."""
        try:
            self._take_lock(wait_s)
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _take_lock(self, wait_s: float) -> None:
        self.lock = os.open(LOCK, os.O_CREAT | os.O_RDWR, 0o644)
        end = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > end:
                    raise TimeoutError(f"another test cluster held {LOCK} for {wait_s} s") from None
                time.sleep(1)

    def _start(self) -> None:
        r = self.root
        if system_conf_in_use():
            raise RuntimeError(f"{SYSTEM_CONF} exists: a SLURM setup this test must not touch")
        self._write_configs()
        SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SYSTEM_CONF.unlink(missing_ok=True)  # the link of a run that was killed (we hold LOCK)
        SYSTEM_CONF.symlink_to(self.conf)
        self.linked = True
        key = r / "etc" / "munge.key"
        subprocess.run(["mungekey", "--create", f"--keyfile={key}"], check=True,
                       capture_output=True)
        key.chmod(0o600)
        self._spawn("munged", ["munged", "--foreground", "--force", f"--key-file={key}",
                               f"--socket={self.munge_socket}",
                               f"--pid-file={r}/run/munged.pid",
                               f"--log-file={r}/log/munged.log",
                               f"--seed-file={r}/run/munged.seed"])
        self._wait("munged", self.munge_socket.exists)

        db = r / "db"
        subprocess.run(["mariadb-install-db", "--no-defaults", "--user=root",
                        f"--datadir={db}", "--auth-root-authentication-method=socket",
                        "--skip-test-db"], check=True, capture_output=True, timeout=120)
        self._spawn("mariadbd", ["mariadbd", "--no-defaults", "--user=root", f"--datadir={db}",
                                 f"--socket={self.mysql_socket}", "--skip-networking",
                                 f"--pid-file={r}/run/mariadbd.pid",
                                 f"--log-error={r}/log/mariadbd.log",
                                 "--innodb-buffer-pool-size=32M",
                                 "--innodb-flush-log-at-trx-commit=0"])
        self._wait("mariadbd", self.mysql_socket.exists)

        # slurmdbd reaches MariaDB on its unix socket (libmariadb reads MYSQL_UNIX_PORT)
        self._spawn("slurmdbd", ["slurmdbd", "-D"],
                    env={**self.env, "MYSQL_UNIX_PORT": str(self.mysql_socket)})
        self._wait("slurmdbd", lambda: self._ok("sacctmgr", "-n", "list", "cluster"))
        self.run("sacctmgr", "-i", "add", "cluster", CLUSTER)
        self.run("sacctmgr", "-i", "add", "account", ACCOUNT, f"cluster={CLUSTER}")
        self.run("sacctmgr", "-i", "add", "user", "root", f"account={ACCOUNT}",
                 f"cluster={CLUSTER}")

        self._spawn("slurmctld", ["slurmctld", "-D", "-i"])
        self._wait("slurmctld", lambda: self._ok("scontrol", "ping"))
        self._spawn("slurmd", ["slurmd", "-D", "-N", "localhost"])
        self._wait("an idle node", lambda: self.run(
            "sinfo", "-h", "-N", "-o", "%T", check=False).strip() == "idle")

    def stop(self) -> None:
        """Cancel the jobs left, then end the daemons this object started (newest first)."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            subprocess.run(["scancel", "--full", "--user=root"], env=self.env,
                           capture_output=True, timeout=30)
            end = time.monotonic() + 15
            while time.monotonic() < end and self.run("squeue", "-h", check=False).strip():
                time.sleep(0.5)
        for name in reversed(list(self.procs)):
            proc = self.procs.pop(name)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        if self.linked and SYSTEM_CONF.is_symlink() and os.readlink(SYSTEM_CONF) == str(self.conf):
            SYSTEM_CONF.unlink()
        self.linked = False
        if self.lock is not None:
            os.close(self.lock)  # releases the lock
            self.lock = None

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---------------------------------------------------------------- inspection
    def jobs(self) -> list[dict[str, str]]:
        """Every job that slurmdbd recorded (allocations only, no steps)."""
        fields = ["JobID", "JobName", "Comment", "State", "Partition", "Account", "AllocTRES",
                  "ExitCode"]
        out = self.run("sacct", "-X", "-n", "-P", "-a", "-S", "2000-01-01",
                       f"--format={','.join(fields)}")
        rows = [line.split("|") for line in out.splitlines() if line]
        return [dict(zip(fields, row, strict=True)) for row in rows]

    def logs(self, tail: int = 1500) -> str:
        parts = []
        for path in sorted((self.root / "log").glob("*")):
            text = path.read_text(errors="replace")[-tail:]
            parts.append(f"--- {path.name}\n{text}")
        return "\n".join(parts)
