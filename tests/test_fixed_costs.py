"""What a short sweep pays before its first call: no build task for a cached environment, a task start
that runs only the programs it needs, and commands that import only what they use (issue 21).

No timing here: the programs started and the modules imported are counted (benchmarks/run.py times them).
"""

from __future__ import annotations

import json
import os
import pwd
import stat
import subprocess
import sys
from pathlib import Path

HEAD = "# /// script\n# dependencies = []\n# ///\n"
LOGGED = ("bash", "mktemp", "cat", "mkdir", "stat", "rm", "sed", "uname", "id", "mv", "git")


def logging_programs(folder: Path) -> tuple[Path, Path]:
    """A folder of stand-ins for the programs a task may start: each notes its name and arguments, then runs
    the real one. Put first on PATH, it shows every program a submit starts by name."""
    bin_dir, log = folder / "bin", folder / "started.log"
    bin_dir.mkdir()
    for name in LOGGED:
        real = subprocess.run(
            ["bash", "-c", f"type -P {name}"], capture_output=True, text=True
        ).stdout.strip()
        wrapper = bin_dir / name
        wrapper.write_text(
            f'#!{real if name == "bash" else "/bin/sh"}\nprintf "%s\\n" "{name} $*" >> {log}\nexec {real} "$@"\n'
        )
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return bin_dir, log


def started(log: Path) -> list[str]:
    lines = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return lines


def test_a_cached_environment_costs_no_build_task_and_a_task_starts_only_what_it_needs(
    project, tmp_path
):
    project.write("work.py", HEAD + "def f(x):\n    return x\n")
    project.manifest("script: work.py\nfunction: f\nsweep:\n  product:\n    x: [1]\n")
    bin_dir, log = logging_programs(tmp_path)
    (tmp_path / "cache").mkdir()
    # The cache in the user's folder under GROUNDHOG_CACHE_DIR, with no USER set: the user's name is bash's
    # own (\u), not `id -un`'s.
    env = {
        "HOG_BATCH_CACHE_DIR": "",
        "GROUNDHOG_CACHE_DIR": str(tmp_path / "cache"),
        "USER": "",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    }
    cold = project.cli("submit", "sweep.yaml", "--local", "--run-dir", "cold", env=env)
    assert cold.returncode == 0, cold.stderr
    cold_bash = [line for line in started(log) if line.startswith("bash ")]
    assert any("environment-" in line for line in cold_bash)  # built once, before the tasks

    warm = project.cli("submit", "sweep.yaml", "--local", "--run-dir", "warm", env=env)
    assert warm.returncode == 0, warm.stderr
    lines = started(log)
    bash = [line for line in lines if line.startswith("bash ")]
    assert len(bash) == 1 and "environment-" not in bash[0], (
        lines
    )  # the one task, nothing before it
    # The task makes its private folder, reads the cache folders' modes with one stat, writes the payload
    # (cat from a heredoc: the endpoint fills the same text, and a payload can be megabytes) and removes the
    # folder at the end: no cat for the script or the runner, no mkdir of folders that are there, no stat
    # per folder.
    assert sorted(line.split()[0] for line in lines if not line.startswith("bash ")) == [
        "cat",
        "mktemp",
        "rm",
        "stat",
    ], lines
    assert "1 succeeded" in warm.stderr
    # The runner's bytecode, kept in the environment by the first task: later tasks do not compile it.
    user = pwd.getpwuid(os.getuid()).pw_name
    envs = tmp_path / "cache" / user / "hog-batch" / "envs"
    assert len(list(envs.glob("*/.hog-runner-*.pyc"))) == 1


HEAVY_FOR_VALIDATE = (
    "click",  # a plain validate or submit is read without it (launch.py)
    "tomllib",  # a plain `# /// script` block is read without it (pep723.plain_toml)
    "difflib",  # only a mistake's did-you-mean needs it
    "groundhog_batch.sweep_data",  # only chunks and rows files need it; the example has neither
    "typing",  # annotations name typing's types through type_names.py, never importing it
    "sqlite3",
    "subprocess",
    "tempfile",
    "shutil",
    "platform",
    "jsonschema",
    "packaging",
    "pandas",
    "pyarrow",
    "numpy",
    "plotly",
    "globus_compute_sdk",
    "groundhog_batch.ledger",
    "groundhog_batch.run_view",
    "groundhog_batch.render.runner",
    "groundhog_batch.backends.slurm",
    "groundhog_batch.backends.slurm_commands",
    "groundhog_batch.globus.kind",
    "groundhog_batch.executor",
    "groundhog_batch.api",
)

LOADED = """
import atexit, json, sys
atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))
sys.argv = ["hog-batch", *sys.argv[1:]]
from groundhog_batch.launch import main
main()
"""


def test_validate_loads_no_ledger_backend_runner_or_process_machinery(project):
    """`hog-batch validate` of a valid manifest (the shipped example) imports only what checking it needs."""
    example = Path(__file__).resolve().parent.parent / "configs" / "01-grid" / "sweep.yaml"
    done = subprocess.run(
        [sys.executable, "-c", LOADED, "validate", str(example)],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "valid (1 job(s), 8 call(s))" in done.stdout
    loaded = set(json.loads(done.stderr.strip().splitlines()[-1]))
    assert sorted(name for name in HEAVY_FOR_VALIDATE if name in loaded) == []


def test_a_local_submit_loads_no_module_it_does_not_use(project, tmp_path):
    """A submit of a plain local sweep imports no temp-file, uuid, socket, statistics or other backend's module:
    each cost milliseconds of every submit's start."""
    project.write("work.py", HEAD + "def f(x):\n    return x\n")
    project.manifest("script: work.py\nfunction: f\nsweep:\n  product:\n    x: [1]\n")
    done = subprocess.run(
        [sys.executable, "-c", LOADED, "submit", "sweep.yaml", "--local", "--run-dir", "run"],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HOG_BATCH_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stderr.strip().splitlines()[-1]))
    unused = (
        "click",
        "tomllib",
        "difflib",
        "typing",
        "tempfile",
        "shutil",
        "uuid",
        "platform",
        "socket",
        "statistics",
        "sysconfig",  # uv.find_uv_bin's import: the environment's own bin/uv is looked at first
        "jsonschema",
        "pandas",
        "pyarrow",
        "plotly",
        "globus_compute_sdk",
        "groundhog_batch.backends.slurm",
        "groundhog_batch.globus.kind",
        "groundhog_batch.estimate",  # local tasks are not sized by a call's time: no earlier run is read
        "groundhog_batch.retry_selection",  # a retry's dataclass (and an escalated attempt's, below)
        "groundhog_batch.escalation",
        "groundhog_batch.ledger_reads",
        "groundhog_batch.sweep_data",  # chunks and rows files: a plain product sweep has neither
        "groundhog_batch.run_view_records",  # failures grouped, a call's output: status and logs  # a window of calls, a task's times: read by results and reports
    )
    assert sorted(name for name in unused if name in loaded) == []


def test_the_uv_a_task_is_given_is_the_one_the_uv_package_finds():
    """find_uv looks in the virtual environment's bin without importing the uv package: same answer."""
    import uv

    from groundhog_batch.backends.local import find_uv

    assert find_uv() == uv.find_uv_bin()


def test_a_run_outside_git_starts_no_git_and_one_inside_records_the_commit(project, tmp_path):
    """run.json's provenance names the script's git commit; where no repository can be, git is not asked."""
    project.write("work.py", HEAD + "def f(x):\n    return x\n")
    project.manifest("script: work.py\nfunction: f\nsweep:\n  product:\n    x: [1]\n")
    bin_dir, log = logging_programs(tmp_path)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    outside = project.cli("submit", "sweep.yaml", "--local", "--run-dir", "outside", env=env)
    assert outside.returncode == 0, outside.stderr
    assert [line for line in started(log) if line.startswith("git ")] == []
    info = json.loads((project.root / "outside" / "run.json").read_text())
    assert [s["git_commit"] for s in info["provenance"]["scripts"].values()] == [None]

    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    for step in (["init", "-q"], ["add", "work.py"], ["commit", "-q", "-m", "work"]):
        subprocess.run([*git, *step], cwd=project.root, check=True, capture_output=True)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=project.root, capture_output=True, text=True
    ).stdout.strip()
    inside = project.cli("submit", "sweep.yaml", "--local", "--run-dir", "inside", env=env)
    assert inside.returncode == 0, inside.stderr
    info = json.loads((project.root / "inside" / "run.json").read_text())
    # sweep.yaml and the run folder outside are not committed: the commit is marked dirty
    assert [s["git_commit"] for s in info["provenance"]["scripts"].values()] == [f"{head}-dirty"]


def test_the_plain_python_specifiers_told_without_packaging_are_ones_packaging_accepts():
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    from groundhog_batch.manifest.loader import plainly_valid_python_specifier

    def packaging_accepts(text: str) -> bool:
        try:
            SpecifierSet(text)
        except InvalidSpecifier:
            return False
        return True

    plain = [">=3.10", "<4", ">=3.10, <3.13", "==3.12.*", "!=3.9.*", " >= 3.8 ", ">3", "==3.12.0.*"]
    other = [
        ">=3.10,",
        "~=3.10",
        ">=3.*",
        "3.10",
        "==3.12.*.1",
        ">=3.10 <4",
        "",
        ">=\u00a03.10",
        ">=\u0663",
    ]
    assert all(plainly_valid_python_specifier(text) for text in plain)
    assert all(packaging_accepts(text) for text in plain)
    assert not any(plainly_valid_python_specifier(text) for text in other)
    # every text of the alphabet the plain forms use, up to 5 characters: plain implies packaging accepts it
    import itertools

    alphabet = ["3", "1", ".", "*", ",", " ", ">=", "<", "==", "!="]
    for n in range(1, 5):
        for parts in itertools.product(alphabet, repeat=n):
            text = "".join(parts)
            if plainly_valid_python_specifier(text):
                assert packaging_accepts(text), text


def test_a_small_file_is_written_by_printf_and_a_large_one_from_a_heredoc(project):
    """printf of a quoted word costs no process, but bash reads a long word three times slower than a
    heredoc: a small script goes by printf; the payload (here of 5,000 calls) always by cat, and every
    call of it runs."""
    from groundhog_batch.render.renderer import file_writer

    assert file_writer('"$f"', "it's", "HOG_X_EOF") == "printf '%s\\n' 'it'\\''s' > \"$f\""
    large = file_writer('"$f"', "a\nHOG_X_EOF\n" + "b" * 20_000, "HOG_X_EOF")
    assert large.startswith("cat > \"$f\" <<'HOG_X_EOF_1'\n") and large.endswith("\nHOG_X_EOF_1")
    project.write("work.py", HEAD + "def f(x):\n    return x\n")
    project.manifest(
        "script: work.py\nfunction: f\ncalls_per_task: 5000\nsweep:\n  product:\n    x: {range: [0, 5000]}\n"
    )
    rendered = project.cli("plan", "sweep.yaml", "--local", "--render", "0")
    assert rendered.returncode == 0, rendered.stderr
    assert "cat > \"$hog_tmp/payload.b64\" <<'HOG_PAYLOAD_EOF'" in rendered.stdout
    done = project.cli("submit", "sweep.yaml", "--local", "--run-dir", "run", "-o", "out.csv")
    assert done.returncode == 0, done.stderr
    assert (project.root / "out.csv").read_text().count("\n") == 5001


PLAIN_BLOCKS = [
    "",
    "\n",
    "dependencies = []\n",
    'requires-python = ">=3.10"\ndependencies = []\n',
    ' \tdependencies=["numpy>=1.24", "pandas" , ]\t\n\nrequires-python =  "<4"',
    'dependencies = ["é ü", "a\u0085b", ""]\n',
]
TOMLLIB_BLOCKS = [
    "# a comment\ndependencies = []\n",
    "dependencies = []\ndependencies = []\n",
    'dependencies = ["a",\n  "b"]\n',
    'dependencies = ["a\\u0041"]\n',
    "dependencies = ['a']\n",
    'dependencies = ["a"]\r\n',
    'dependencies = ["a\tb"]\n',
    'dependencies = ["a\x7fb"]\n',
    'requires-python = "\x00"\n',
    'dependencies = ["\x1f"]\n',
    "dependencies = [,]\n",
    'dependencies = ["a" "b"]\n',
    'requires-python = [">=3"]\n',
    'dependencies = ">=3"\n',
    "[tool.uv]\nexclude-newer = 2024-01-01\n",
    '"dependencies" = []\n',
    "\x0c\n",
]


def test_a_plain_metadata_block_is_read_as_tomllib_reads_it_and_any_other_by_tomllib():
    """validate and submit read the usual `# /// script` block without importing tomllib (and typing with it):
    every block read that way is one tomllib reads the same; any other goes to tomllib, errors and all."""
    import tomllib
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from groundhog_batch.manifest.pep723 import plain_toml

    for block in PLAIN_BLOCKS:
        assert plain_toml(block) == tomllib.loads(block), block
    for block in TOMLLIB_BLOCKS:
        assert plain_toml(block) is None, block

    pieces = st.sampled_from(
        ["dependencies", "requires-python", "tool", " ", "\t", "=", "[", "]", ",", '"', "'", "a", ">=3.1",
         "\\", "\\n", "\n", "\r", "#", "\x00", "\x7f", "é", "\x85", "x = 1", '""', '"a"']
    )  # fmt: skip

    blank = st.sampled_from(["", " ", "\t", "  "])
    string = st.text(st.sampled_from('ab"\\\t\x00\x1f\x7fé\x85 ,[]='), max_size=4).map(
        lambda t: f'"{t}"'
    )
    value = st.one_of(
        string,
        st.lists(st.tuples(blank, string, blank), max_size=3).map(
            lambda items: "[" + ",".join(a + s + b for a, s, b in items) + "]"
        ),
    )
    line = st.tuples(
        blank, st.sampled_from(["dependencies", "requires-python"]), blank, blank, value, blank
    )
    structured = st.lists(line.map(lambda p: f"{p[0]}{p[1]}{p[2]}={p[3]}{p[4]}{p[5]}"), max_size=3)

    @settings(max_examples=1500, deadline=None, database=None)
    @given(st.one_of(st.lists(pieces, max_size=14).map("".join), structured.map("\n".join)))
    def read_alike(block):
        plain = plain_toml(block)
        if plain is not None:
            assert tomllib.loads(block) == plain

    read_alike()


def test_a_new_runs_ledger_is_on_disk_before_its_run_json_and_syncs_once(project, monkeypatch):
    """create_run: the ledger is created without syncs of its own (SQLite's switch to WAL and its checkpoint
    took seven), then its file is synced whole, before run.json, which marks the run complete, is written."""
    from groundhog_batch import api
    from groundhog_batch.manifest import load_manifest

    project.write("work.py", HEAD + "def f(x):\n    return x\n")
    manifest = project.manifest("script: work.py\nfunction: f\nsweep:\n  product:\n    x: [1, 2]\n")
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    run = api.create_run(load_manifest(str(manifest)), project.root / "run")
    assert [name for name in synced if not name.startswith(".")] == ["state.sqlite"]
    ledger_at, run_json_at = (
        synced.index("state.sqlite"),
        next(i for i, name in enumerate(synced) if name.startswith(".run.json.")),
    )
    assert ledger_at < run_json_at
    assert run.ledger.jobs() == {"f": 2}
    assert run.ledger.db.execute("PRAGMA synchronous").fetchone() == (
        1,
    )  # NORMAL once it is a run's
    run.ledger.close()
    from groundhog_batch.ledger import Ledger

    fresh = Ledger(project.root / "fresh.sqlite", create=True)
    assert fresh.db.execute("PRAGMA synchronous").fetchone() == (0,)  # OFF while it is being made
    fresh.close()
