"""Fault classes beyond SIGKILL (bench/fault_injection.py): full disks, SIGTERM, unreadable
files, FIFOs and decompression bombs, each tried on a real `clreplay run` in a child process.

For every case the script runs the command with the fault and checks what a user gets:

* **full disk** (ENOSPC simulated inside the child: torch.save failing half-way through a
  checkpoint as torch does, the loggers' writes failing once a byte budget is spent, a
  memory-mapped row write coming back short): exit status 1 and one line naming the
  folder's flag; then the same command without the fault must resume to the accuracy
  matrix of an uninterrupted run;
* **SIGTERM** (a cluster pre-empting the job, at a random moment once a checkpoint
  exists): exit status 143, one line saying what the checkpoint holds; the same command
  resumes to the same matrix;
* **unreadable files** (a data file, an IDX file, a CIFAR archive, ``--config``, the
  checkpoint: ``open`` raising PermissionError inside the child, as chmod 000 does to
  anyone but root; and, when this runs as root, chmod 000 for real with the child running
  as ``nobody``): exit status 2, one line naming the file;
* **FIFOs** in the place of each of those files, and an IDX file linked to /dev/zero:
  refused by name (exit status 2) within seconds, never a hang;
* **decompression bombs and forged headers** (a gzip of zeros as Fashion-MNIST images, an
  IDX header of 65536**4, an npz header declaring 4 PB, a CIFAR archive member of 300 MiB
  of zeros, labels up to 2**40 in a 2 KB npz, a uint64 label of 2**63): refused with one
  line (the huge labels run, mapped), the child's peak memory reported.

Every case also counts the files left behind: in the checkpoint folder anything but
``checkpoint.pt``, in the output folder anything but the run's files, in the
memory-mapped folder anything, lock files anywhere.

    python bench/fault_classes.py --quick      # one case per fault point, under 2 minutes
    python bench/fault_classes.py --rounds 3   # random fault points, 3 rounds of each
    python bench/fault_classes.py --only fifo bomb

Not part of the test run (tests/test_bench_fault_classes.py runs its cheapest cases).
Exits 1 if any case ends otherwise than expected or leaves a file behind.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))  # this checkout's clreplay, here and in the children
sys.path.insert(0, str(HERE))
import _hostile_inputs as inputs  # noqa: E402
from _fault_points import child  # noqa: E402

#: The runs resumed after a fault: 3 experiences of split_digits, checkpoints every 7 iterations.
BASE = ["--epochs", "2", "--n-experiences", "3", "--hidden", "16", "--mem-size", "40", "--seed", "3"]
CLASSES = ("disk", "sigterm", "unreadable", "fifo", "bomb")


@dataclass
class Case:
    """One fault: the command's arguments, the child's fault point, what must come out."""

    fault: str
    name: str
    args: List[str]
    status: int  # the exit status expected
    message: str  # a regex the single stderr line (or, for status 0, stdout) must match
    point: str = ""  # the child's fault point (see child())
    resume: bool = False  # run the command again without the fault; compare with the reference
    timeout: float = 120.0
    as_nobody: bool = False
    notes: Dict[str, object] = field(default_factory=dict)


# ----------------------------------------------------------------- the parent
def _env() -> Dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


@dataclass
class Outcome:
    status: Optional[int]  # None: it hung and was killed
    stdout: str
    stderr: str
    seconds: float
    max_rss_mib: float


def start(args: Sequence[str], point: str = "", *, as_nobody: bool = False) -> subprocess.Popen:
    command = ([sys.executable, str(Path(__file__).resolve()), "--child", point, "--", "run", *args]
               if point else [sys.executable, "-m", "clreplay", "run", *args])
    preexec = None
    if as_nobody:
        def preexec():
            os.setgid(65534)
            os.setuid(65534)
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(), preexec_fn=preexec)


def finish(process: subprocess.Popen, started: float, timeout: float) -> Outcome:
    """Wait for ``process`` (killing it after ``timeout``); its output."""
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        return Outcome(None, stdout, stderr, time.monotonic() - started, 0.0)
    return Outcome(process.returncode, stdout, stderr, time.monotonic() - started, 0.0)


def run(args: Sequence[str], point: str = "", *, timeout: float = 120.0, as_nobody: bool = False,
        on_start: Optional[Callable[[subprocess.Popen], None]] = None) -> Outcome:
    started = time.monotonic()
    process = start(args, point, as_nobody=as_nobody)
    peak = 0.0
    if on_start is not None:
        on_start(process)
    while process.poll() is None and time.monotonic() - started < timeout:
        peak = max(peak, _rss_mib(process.pid))
        time.sleep(0.05)
    outcome = finish(process, started, max(1.0, timeout - (time.monotonic() - started)))
    outcome.max_rss_mib = peak  # sampled every 50 ms: the high-water mark seen last
    return outcome


def _rss_mib(pid: int) -> float:
    """The peak resident set of a live process (VmHWM), in MiB; 0 where /proc is absent."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    found = re.search(r"VmHWM:\s+(\d+) kB", text)
    return int(found.group(1)) / 1024 if found else 0.0


def judge(case: Case, outcome: Outcome) -> Optional[str]:
    """None when ``outcome`` is what ``case`` expects, else what is wrong."""
    if outcome.status is None:
        return f"hung (killed after {outcome.seconds:.0f}s)"
    if "Traceback" in outcome.stderr:
        return "traceback: " + outcome.stderr.strip().splitlines()[-1][:200]
    if outcome.status != case.status:
        return f"exit status {outcome.status}, expected {case.status}: {outcome.stderr.strip()[-200:]}"
    if case.status == 0:
        return None if re.search(case.message, outcome.stdout) else f"stdout lacks {case.message!r}"
    lines = outcome.stderr.strip().splitlines()
    if len(lines) != 1 or not lines[0].startswith("clreplay run:"):
        return f"not one clreplay line: {outcome.stderr.strip()[-300:]}"
    return None if re.search(case.message, lines[0]) else f"message {lines[0][:300]!r} lacks {case.message!r}"


def leaks(folder: Path) -> List[str]:
    """Files a run left where none belong (see the module docstring)."""
    from clreplay.checkpoint import CHECKPOINT_FILENAME
    from clreplay.locking import LOCK_FILENAME
    from clreplay.workspace import RUN_FILES

    found = []
    for name, allowed in (("ck", {CHECKPOINT_FILENAME}), ("out", set(RUN_FILES)), ("mm", set())):
        sub = folder / name
        for path in sorted(sub.iterdir()) if sub.is_dir() else []:
            if path.name not in allowed or path.name == LOCK_FILENAME:
                found.append(str(path.relative_to(folder)))
    return found


def matrix(folder: Path):
    path = folder / "out" / "results.json"
    return json.loads(path.read_text())["accuracy_matrix"] if path.exists() else None


def resumable(folder: Path, extra: Sequence[str] = ()) -> List[str]:
    return [*BASE, *extra, "--output", str(folder / "out"), "--checkpoint-dir", str(folder / "ck")]


# ------------------------------------------------------------------ the cases
def disk_cases(work: Path, rng: random.Random, rounds: int, quick: bool) -> List[Case]:
    ck_line = (r"the last checkpoint, '.*', is intact: make room and run the same command to resume|"
               r"no checkpoint was saved yet: make room there and run the same command to start again")
    cases = []
    for r in range(rounds):
        # --quick: one case per fault point; otherwise random points, and the untrained save.
        saves = [4] if quick else [1, rng.randint(2, 8)] if r == 0 else [rng.randint(2, 8)]
        for at in saves:
            folder = work / f"disk-save{at}-{r}"
            cases.append(Case("disk", f"torch.save fails at save {at}",
                              resumable(folder, ["--checkpoint-every", "7"]), 1,
                              rf"^clreplay run: error: --checkpoint-dir '.*': writing the checkpoint failed: "
                              rf"No space left on device; ({ck_line})$", f"save:{at}", True))
        for budget in ([400] if quick else [rng.randint(100, 8000)]):
            folder = work / f"disk-log{budget}-{r}"
            cases.append(Case("disk", f"log files full after {budget} bytes", resumable(folder), 1,
                              r"^clreplay run: error: --output '.*': writing the run's logs and results "
                              rf"failed: No space left on device; ({ck_line})$", f"log:{budget}", True))
        at = 2 if quick else rng.randint(1, 4)
        folder = work / f"disk-memmap{at}-{r}"
        cases.append(Case("disk", f"memory-mapped write short at call {at}",
                          resumable(folder, ["--memmap-dir", str(folder / "mm")]), 1,
                          rf"^clreplay run: error: --memmap-dir '.*': writing the memory-mapped replay memory "
                          rf"failed: short write to .*; ({ck_line})$", f"memmap:{at}", True))
    return cases


def sigterm_cases(work: Path, rng: random.Random, rounds: int, quick: bool) -> List[Case]:
    cases = []
    for r in range(1 if quick else 2 * rounds):
        folder = work / f"sigterm-{r}"
        # Longer runs than the others': the signal lands inside training most of the time.
        case = Case("sigterm", f"SIGTERM #{r + 1}",
                    resumable(folder, ["--epochs", "8", "--checkpoint-every", "5"]), 143,
                    r"^clreplay run: terminated \(SIGTERM\) (during experience \d of 3; .* holds the run up "
                    r"to its last save \(every 5 iterations\): run the same command to resume|after "
                    r"training, while writing the results; .* holds the whole run: run the same command "
                    r"to write them)$", resume=True)
        # After the first save inside training: at once with --quick, else at a random moment.
        case.notes["delay"] = 0.2 if quick else round(rng.uniform(0.0, 2.0), 2)
        cases.append(case)
    return cases


def unreadable_cases(work: Path, nobody: bool) -> List[Case]:
    cases = []
    for name, build, target in (
            ("npz data file", lambda f: inputs.npz(f), "data.npz"),
            ("gzipped IDX file", lambda f: inputs.idx_folder(f, compress=True), "t10k-labels-idx1-ubyte.gz"),
            ("CIFAR archive", lambda f: inputs.cifar_archive(f), "cifar-10-python.tar.gz")):
        folder = work / f"unreadable-{name.split()[0]}"
        args = build(folder)
        path = folder / target
        cases.append(Case("unreadable", name, args, 2,
                          rf"'{re.escape(str(path))}' cannot be read: permission denied", f"deny:{path}"))
    folder = work / "unreadable-config"
    folder.mkdir(parents=True)
    (folder / "c.toml").write_text("epochs = 1\n")
    cases.append(Case("unreadable", "--config file", ["--config", str(folder / "c.toml")], 2,
                      r"config file '.*c.toml' cannot be read: permission denied",
                      f"deny:{folder / 'c.toml'}"))
    folder = work / "unreadable-checkpoint"
    cases.append(Case("unreadable", "checkpoint", ["--checkpoint-dir", str(folder / "ck"), *BASE], 2,
                      r"^clreplay run: error: --checkpoint-dir '.*': checkpoint '.*' cannot be read: "
                      r"permission denied", f"deny:{folder / 'ck' / 'checkpoint.pt'}",
                      notes={"prepare": "checkpoint"}))
    if nobody:  # chmod 000 for real, read by a child running as nobody
        folder = work / "nobody-npz"
        args = inputs.npz(folder)
        cases.append(Case("unreadable", "npz data file, chmod 000, as nobody", args, 2,
                          r"npz file '.*' cannot be read: permission denied", as_nobody=True,
                          notes={"chmod": str(folder / "data.npz")}))
    return cases


def fifo_cases(work: Path) -> List[Case]:
    cases = []
    for name, build, target, what in (
            ("IDX file", lambda f: inputs.idx_folder(f), "t10k-images-idx3-ubyte", "IDX file"),
            ("npz data file", lambda f: inputs.npz(f), "data.npz", "npz file"),
            ("CIFAR archive", lambda f: inputs.cifar_archive(f), "cifar-10-python.tar.gz", "CIFAR-10 archive")):
        folder = work / f"fifo-{name.split()[0]}"
        args = build(folder)
        inputs.replace_with_fifo(folder / target)
        cases.append(Case("fifo", f"FIFO as {name}", args, 2,
                          rf"{what} '.*' must be a regular file, got a FIFO", timeout=30))
    folder = work / "fifo-config"
    folder.mkdir(parents=True)
    inputs.replace_with_fifo(folder / "c.toml")
    cases.append(Case("fifo", "FIFO as --config", ["--config", str(folder / "c.toml")], 2,
                      r"config file '.*' must be a regular file, got a FIFO", timeout=30))
    folder = work / "fifo-checkpoint"
    (folder / "ck").mkdir(parents=True)
    inputs.replace_with_fifo(folder / "ck" / "checkpoint.pt")
    cases.append(Case("fifo", "FIFO as the checkpoint", ["--checkpoint-dir", str(folder / "ck")], 2,
                      r"checkpoint '.*' must be a regular file, got a FIFO", timeout=30))
    folder = work / "devzero"
    cases.append(Case("fifo", "IDX file linked to /dev/zero", inputs.idx_linked_to_dev_zero(folder), 2,
                      r"IDX file '.*' must be a regular file, got a character device", timeout=30))
    return cases


def bomb_cases(work: Path, quick: bool) -> List[Case]:
    mib = 256 if quick else 2048
    return [
        Case("bomb", f"gzip of {mib} MiB of zeros as Fashion-MNIST images",
             inputs.gzip_of_zeros_as_images(work / "bomb-gzip", mib), 2,
             r"holds more data than the 47,040,000 bytes its header declares", notes={"inflates": mib}),
        Case("bomb", "IDX header of 65536**4", inputs.idx_header_65536_to_the_4th(work / "bomb-idx"), 2,
             r"declares shape \[65536, 65536, 65536, 65536\]"),
        Case("bomb", "npz header declaring 4 PB", inputs.npz_declaring_a_huge_array(work / "bomb-npz"), 2,
             r"declares shape \(1000000000, 1000000\)"),
        Case("bomb", "CIFAR member of 300 MiB of zeros",
             inputs.cifar_archive(work / "bomb-tar", member_bytes=300 << 20), 2,
             r"must be at most 268,435,456 bytes, its header declares 314,572,800"),
        Case("bomb", "labels up to 2**40 in a small npz", inputs.npz_with_huge_labels(work / "bomb-labels"),
             0, r"labels mapped to 0\.\.3: .*\[0, 3, 500000000, 1099511627776\]"),
        Case("bomb", "uint64 label 2**63", inputs.npz_with_a_uint64_label_of_2_to_the_63(work / "bomb-u64"),
             2, r"got 9223372036854775808 at sample 3"),
    ]


# ------------------------------------------------------------------ running
def _nobody_can_run_python() -> bool:
    """Whether this process can run this Python as ``nobody`` (root, and an interpreter
    outside folders closed to others)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return False
    try:
        return subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, timeout=60,
                              preexec_fn=lambda: (os.setgid(65534), os.setuid(65534))).returncode == 0
    except OSError:
        return False


def _prepare(case: Case) -> None:
    if case.notes.get("prepare") == "checkpoint":  # a finished run's checkpoint, to be denied
        ck = Path(case.args[case.args.index("--checkpoint-dir") + 1])
        subprocess.run([sys.executable, "-m", "clreplay", "run", *BASE, "--checkpoint-dir", str(ck)],
                       capture_output=True, env=_env(), check=True)
    if "chmod" in case.notes:
        path = Path(case.notes["chmod"])
        os.chmod(path, 0)
        for parent in [path.parent, *path.parent.parents]:  # traversable by nobody
            if str(parent) in ("/", tempfile.gettempdir()):
                break
            os.chmod(parent, 0o755)


def _sigterm(case: Case, folder: Path) -> Callable[[subprocess.Popen], None]:
    def on_start(process: subprocess.Popen) -> None:
        path = folder / "ck" / "checkpoint.pt"
        deadline, first = time.monotonic() + 60, None
        while process.poll() is None and time.monotonic() < deadline:
            try:  # the untrained state is saved first; a new file (inode) is the next save
                inode = path.stat().st_ino
            except FileNotFoundError:
                inode = None
            first = first or inode
            if inode is not None and inode != first:
                break
            time.sleep(0.005)
        time.sleep(float(case.notes["delay"]))
        if process.poll() is None and not (folder / "out" / "results.json").exists():
            process.send_signal(signal.SIGTERM)
        else:  # a signal now would only hit the interpreter's exit, the run being done
            case.notes["finished before the signal"] = True

    return on_start


def _reference_key(args: Sequence[str]) -> tuple:
    """The settings of a resumed case without its folders: the uninterrupted run to compare with
    (a memory-mapped memory gives the same results as one in RAM)."""
    key, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("--output", "--checkpoint-dir", "--memmap-dir", "--checkpoint-every"):
            skip = True
        else:
            key.append(arg)
    return tuple(key)


def run_case(case: Case, references: Dict[tuple, object]) -> dict:
    _prepare(case)
    folder = Path(case.args[case.args.index("--output") + 1]).parent if "--output" in case.args else None
    on_start = _sigterm(case, folder) if case.fault == "sigterm" else None
    outcome = run(case.args, case.point, timeout=case.timeout, as_nobody=case.as_nobody, on_start=on_start)
    report = {"fault": case.fault, "case": case.name, "status": outcome.status,
              "seconds": round(outcome.seconds, 1), "max_rss_mib": round(outcome.max_rss_mib)}
    if case.notes.get("finished before the signal"):
        report["problem"] = None
        report["note"] = "finished before the signal"
        return report
    report["problem"] = judge(case, outcome)
    report["message"] = outcome.stderr.strip()[:400] if case.status else ""
    if case.resume and report["problem"] is None:
        again = run(case.args, timeout=case.timeout)
        key = _reference_key(case.args)
        if key not in references:
            reference = folder.parent / f"ref-{len(references)}"
            run([*key, "--output", str(reference / "out")])
            references[key] = matrix(reference)
        if again.status != 0:
            report["problem"] = f"the same command failed to resume: {again.stderr.strip()[-300:]}"
        else:
            report["resumed_identically"] = matrix(folder) == references[key]
            if not report["resumed_identically"]:
                report["problem"] = "resumed to another accuracy matrix"
    if folder is not None:
        report["leaked"] = leaks(folder)
        if report["leaked"] and report["problem"] is None:
            report["problem"] = f"left {report['leaked']}"
    return report


def summarize(reports: List[dict]) -> str:
    """The table: per fault class, cases tried, cases ended with one clear line (as
    expected), cases that ran as they should (the huge labels), resumed identically,
    leaked files and the largest peak memory of a child."""
    lines = [f"{'fault':<11} {'cases':>5} {'clear line':>10} {'ran':>4} {'resumed identically':>19} "
             f"{'leaked files':>12} {'peak MiB':>8}"]
    for fault in CLASSES:
        rows = [r for r in reports if r["fault"] == fault]
        if not rows:
            continue
        resumed = [r for r in rows if "resumed_identically" in r]
        clear = sum(r["problem"] is None and r["status"] not in (0, None) for r in rows)
        ran = sum(r["problem"] is None and r["status"] == 0 and not r.get("note") for r in rows)
        lines.append(f"{fault:<11} {len(rows):>5} {clear:>10} {ran:>4} "
                     f"{sum(bool(r['resumed_identically']) for r in resumed):>12}/{len(resumed):<6} "
                     f"{sum(len(r.get('leaked', [])) for r in rows):>12} "
                     f"{max(r['max_rss_mib'] for r in rows):>8}")
    wrong = [r for r in reports if r["problem"] is not None]
    lines.append(f"\n{len(reports)} cases: {len(reports) - len(wrong)} as expected (one clear line, "
                 f"or a correct run), {len(wrong)} not; "
                 f"{sum(bool(r.get('resumed_identically')) for r in reports)} resumed identically; "
                 f"{sum(len(r.get('leaked', [])) for r in reports)} files leaked")
    missed = sum(bool(r.get("note")) for r in reports)
    if missed:
        lines.append(f"  ({missed} signal(s) not sent: the run had finished first)")
    lines += [f"  NOT AS EXPECTED: {r['fault']} / {r['case']}: {r['problem']}" for r in wrong]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        return child(argv[1], argv[3:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one case per fault point (under 2 minutes)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of random fault points (not --quick)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the fault points and delays")
    parser.add_argument("--only", nargs="+", default=None, choices=CLASSES, metavar="CLASS",
                        help=f"fault classes to try, among {list(CLASSES)}")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    rounds = 1 if args.quick else args.rounds
    chosen = args.only or list(CLASSES)
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="clreplay-fault-classes-"))
    nobody = _nobody_can_run_python()
    reports: List[dict] = []
    try:
        references: Dict[tuple, object] = {}  # filled as resumed cases need them
        builders = {"disk": lambda: disk_cases(work, rng, rounds, args.quick),
                    "sigterm": lambda: sigterm_cases(work, rng, rounds, args.quick),
                    "unreadable": lambda: unreadable_cases(work, nobody), "fifo": lambda: fifo_cases(work),
                    "bomb": lambda: bomb_cases(work, args.quick)}
        for fault in chosen:
            for case in builders[fault]():
                report = run_case(case, references)
                reports.append(report)
                print(json.dumps(report), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print("\n" + summarize(reports))
    return 0 if all(r["problem"] is None for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
