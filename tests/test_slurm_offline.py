"""The Slurm kind without a cluster: its config (schema, precedence, located errors), its limits, what
``plan --render`` shows, and how the backend reads Slurm's answers (a stateful fake of the command seam)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SCRIPT_HEAD

from groundhog_batch.backends.base import (
    BackendContext,
    DictMeta,
    JobTarget,
    MetaSlice,
    TaskSubmission,
)
from groundhog_batch.backends.slurm import KIND, SlurmBackend, node_local
from groundhog_batch.backends.slurm_commands import (
    Element,
    ElementState,
    SlurmUnreachable,
    slurm_message,
)
from groundhog_batch.errors import ManifestErrors
from groundhog_batch.manifest import load_manifest
from groundhog_batch.manifest.endpoint_config import ResolvedEndpoint

SCRIPT = SCRIPT_HEAD.replace(
    "# ///\n",
    '# [tool.hog.cluster]\n# endpoint = "slurm"\n# partition = "script"\n'
    '# account = "script-account"\n# worker_init = "module load python"\n# ///\n',
) + ("def f(x):\n    return x\n")


def manifest(project, endpoint_lines: str, rest: str = "") -> Path:
    project.write("f.py", SCRIPT)
    return project.manifest(
        "script: f.py\nfunction: f\nendpoint: cluster\n"
        + endpoint_lines
        + rest
        + "sweep:\n  product:\n    x: {range: [0, 10]}\n"
    )


def config_of(path: Path, overrides=()) -> dict:
    return load_manifest(path, list(overrides)).jobs[0].endpoint.config


def test_a_groundhog_script_can_name_a_slurm_cluster_and_each_layer_overrides_the_one_below(
    project,
):
    path = manifest(
        project,
        "endpoints:\n  cluster:\n    partition: manifest\n    qos: manifest\n",
        "config:\n  qos: top\n  worker_init: export A=1\n",
    )
    spec = load_manifest(path)
    assert spec.jobs[0].endpoint.kind == "slurm"
    config = spec.jobs[0].endpoint.config
    assert (
        config["partition"] == "manifest"
        and config["account"] == "script-account"
        and config["qos"] == "top"
    )
    assert config["worker_init"] == "module load python\nexport A=1"  # joined, lower layers first
    assert config_of(path, ["config.partition=cli"])["partition"] == "cli"


def test_an_unknown_key_is_located_with_a_did_you_mean(project):
    path = manifest(project, "endpoints:\n  cluster:\n    partiton: debug\n")
    with pytest.raises(ManifestErrors) as caught:
        load_manifest(path)
    text = caught.value.render()
    assert "sweep.yaml:6" in text and "'partiton'" in text and "did you mean 'partition'?" in text


@pytest.mark.parametrize(
    "key, value, words",
    [
        ("walltime", '"30 minutes"', "not a Slurm time"),
        ("mem", '"4 gigs"', "not a Slurm memory size"),
        ("mem", "1.5G", "not a Slurm memory size"),  # sbatch: "Invalid --mem specification"
        ("cpus_per_task", "0", "cpus_per_task"),
        ("sbatch_args", '["--array=0-3"]', "hog-batch sets itself"),
        ("sbatch_args", '"--exclusive"', "must be a list"),
    ],
)
def test_a_malformed_value_is_a_located_error(project, key, value, words):
    path = manifest(project, f"endpoints:\n  cluster:\n    {key}: {value}\n")
    with pytest.raises(ManifestErrors) as caught:
        load_manifest(path)
    text = caught.value.render()
    assert "sweep.yaml:6" in text and words in text and "fix:" in text


def test_the_config_becomes_sbatch_options_and_tasks_never_outlive_the_walltime(project):
    path = manifest(
        project,
        'endpoints:\n  cluster:\n    walltime: "01:00:00"\n    cpus_per_task: 2\n    mem: 4G\n'
        "    gres: gpu:1\n    constraint: cpu\n    sbatch_args: [--exclusive]\n",
        "timeout: 60\n",
    )
    job = load_manifest(path).jobs[0]
    limits = KIND.limits(job.endpoint.config)
    assert limits.walltime_s == 3600 and limits.task_walltime
    wrapper = KIND.render_wrapper(job, "f-t0")
    for option in (
        "--partition=script",
        "--account=script-account",
        "--time=01:00:00",
        "--cpus-per-task=2",
        "--mem=4G",
        "--gres=gpu:1",
        "--constraint=cpu",
        "--exclusive",
        "--array=0-0%64",
        "--signal=B:TERM@180",
    ):
        assert option in wrapper
    from groundhog_batch.plan import Plan

    plan = Plan(load_manifest(path))
    per_task = plan.calls_per_task(job)
    assert (
        per_task * 63 <= 3600 - 120
    )  # auto: every call at its timeout (plus grace) fits, with a margin


def test_plan_render_prints_the_task_script_a_local_run_uses_and_the_array_wrapper_beside_it(
    project,
):
    manifest(project, "endpoints:\n  cluster:\n    partition: debug\n", "calls_per_task: 5\n")
    on_slurm = project.cli("plan", "sweep.yaml", "--render", "1")
    local = project.cli("plan", "sweep.yaml", "--render", "1", "--local")
    assert on_slurm.returncode == 0 and local.returncode == 0, on_slurm.stderr
    assert (
        on_slurm.stdout == local.stdout
    )  # byte for byte (no walltime set: the payloads are the same too)
    assert "#SBATCH" not in on_slurm.stdout and "sbatch --parsable --array=0-0%" in on_slurm.stderr
    assert (
        'setsid bash "$hog_dir/$hog_task.sh"' in on_slurm.stderr
        and "module load python" in on_slurm.stderr
    )


def test_sbatch_messages_lose_their_prefixes():
    text = "sbatch: error: invalid partition specified: nope\nsbatch: error: Batch job submission failed: Invalid partition name specified\n"
    assert (
        slurm_message(text)
        == "invalid partition specified: nope; Batch job submission failed: Invalid partition name specified"
    )


def test_a_run_directory_under_tmp_is_node_local(tmp_path):
    assert node_local(tmp_path) and node_local(Path("/dev/shm"))
    # A project folder on the root filesystem (not this checkout: a fresh clone may well sit under /tmp).
    assert not node_local(Path("/home/a-user/project"))


# --- the backend against a stateful fake of the command seam ---------------------------------------


class FakeSlurm:
    """Slurm as the backend sees it through ``SlurmCommands``: arrays, their elements' states, forgetting."""

    def __init__(self) -> None:
        self.states: dict[tuple[str, int], ElementState] = {}
        self.names: dict[str, str] = {}
        self.next_id = 100
        self.unreachable = False
        self.submitted: list[list[str]] = []
        self.cancelled: list[str] = []
        self.accounting: dict[tuple[str, int], ElementState] | None = (
            None  # None: "accounting storage is disabled"
        )

    def accounting_states(self, array_ids):
        if self.accounting is None:
            return None
        return {
            key: (state, "0:15") for key, state in self.accounting.items() if key[0] in array_ids
        }

    def max_array_size(self) -> int:
        return 1001

    def largest_node_memory_mib(self, partition=None) -> int | None:
        return 8000  # what `sinfo -N -o %m` says of the test cluster's node

    max_time_s: float | None = (
        None  # the partition's MaxTime (None: infinite, as the test cluster's)
    )

    def partition_max_time_s(self, partition=None) -> float | None:
        return self.max_time_s

    def sbatch(self, options, script, cwd=None, test_only=False) -> str:
        self.submitted.append(options)
        array_id = str(self.next_id)
        self.next_id += 1
        size = (
            int(
                next(o for o in options if o.startswith("--array="))
                .split("=", 1)[1]
                .split("-")[1]
                .split("%")[0]
            )
            + 1
        )
        self.names[array_id] = next(o for o in options if o.startswith("--job-name=")).split(
            "=", 1
        )[1]
        for index in range(size):
            self.states[(array_id, index)] = ElementState.PENDING
        return array_id

    def elements(self, user=None):
        if self.unreachable:
            raise SlurmUnreachable("squeue", "Unable to contact slurm controller (connect failure)")
        return [Element(a, i, state, self.names[a]) for (a, i), state in self.states.items()]

    def job(self, job_id):
        array_id, _, index = job_id.partition("_")
        state = self.states.get((array_id, int(index)))
        return None if state is None else {"JobState": state.value}

    def scancel(self, ids, signal=None):
        self.cancelled += list(ids)

    def forget(self, array_id: str) -> None:
        for key in [k for k in self.states if k[0] == array_id]:
            del self.states[key]


def backend_for(tmp_path, fake: FakeSlurm, meta=None, walltime="00:01:00") -> SlurmBackend:
    endpoint = ResolvedEndpoint("cluster", "slurm", None, {"walltime": walltime})
    target = JobTarget("f", endpoint, "", KIND.limits(endpoint.config), 2)
    context = BackendContext(
        scratch_dir=tmp_path / "tasks",
        working_dir=tmp_path,
        meta=MetaSlice(meta or DictMeta(), "slurm_"),
        load_jobs=lambda: {"f": target},
    )
    return SlurmBackend(context, commands=fake)


def submit(backend, tmp_path, n_tasks=1, calls_per_task=3) -> dict[str, str]:
    tasks = [
        TaskSubmission(
            f"f-{i}", "f", list(range(i * calls_per_task, (i + 1) * calls_per_task)), "exit 0\n"
        )
        for i in range(n_tasks)
    ]
    given: dict[str, str] = {}
    backend.submit(tasks, lambda ids, group: given.update(ids))
    return given


def poll_all(backend, rounds=3):
    reports = []
    for _ in range(rounds):
        backend._next_check = 0.0
        reports += backend.poll(0)
    return reports


def test_a_job_slurm_forgot_that_left_no_records_runs_again_once_then_fails(tmp_path):
    fake, meta = FakeSlurm(), DictMeta()
    backend = backend_for(tmp_path, fake, meta)
    given = submit(backend, tmp_path)
    fake.forget(given["f-0"].split("_")[0])  # "Invalid job id specified", and no records
    [report] = poll_all(backend)
    assert report.finished and report.lost
    assert [r["call"] for r in report.records if r.get("deferred")] == [
        0,
        1,
        2,
    ]  # pending again, no attempt
    again = backend_for(tmp_path, fake, meta)
    given = submit(again, tmp_path)
    fake.forget(given["f-0"].split("_")[0])
    [report] = poll_all(again)
    assert (
        report.finished
        and report.lost
        and not report.records
        and "Invalid job id" in report.failure
    )


def test_where_accounting_works_it_says_how_a_forgotten_element_ended(tmp_path):
    fake = FakeSlurm()
    backend = backend_for(tmp_path, fake)
    given = submit(backend, tmp_path)
    array_id = given["f-0"].split("_")[0]
    (tmp_path / "tasks" / "f-0.out").write_text("__HOG_BATCH_RESULTS_V1__\n")
    fake.forget(array_id)
    fake.accounting = {(array_id, 0): ElementState.TIMEOUT}
    [report] = poll_all(backend)
    assert report.finished and not report.lost
    assert report.records[0]["error"].startswith("TimeoutError") and [
        r["call"] for r in report.records[1:]
    ] == [1, 2]


def test_a_controller_that_does_not_answer_is_waited_out(tmp_path):
    fake = FakeSlurm()
    backend = backend_for(tmp_path, fake)
    given = submit(backend, tmp_path)
    fake.unreachable = True
    assert poll_all(backend) == []  # nothing is taken for lost
    fake.unreachable = False
    fake.states[(given["f-0"].split("_")[0], 0)] = ElementState.COMPLETED
    (tmp_path / "tasks" / "f-0.exit").write_text("0\n")
    [report] = poll_all(backend)
    assert report.finished and report.returncode == 0


def test_an_element_at_its_time_limit_keeps_finished_calls_fails_the_running_one_and_defers_the_rest(
    tmp_path,
):
    fake = FakeSlurm()
    backend = backend_for(tmp_path, fake)
    given = submit(backend, tmp_path, calls_per_task=4)
    array_id = given["f-0"].split("_")[0]
    records = backend.records(tmp_path / "tasks")
    prefix = records.secret("f-0").encode() + b" "
    body = json.dumps(
        {"call": 0, "ok": True, "kind": "json", "value": 0, "t0": 1.0, "t1": 2.0}
    ).encode()
    (tmp_path / "tasks" / "f-0.records").write_bytes(
        prefix + str(len(body)).encode() + b" " + body + b"\n"
    )
    (tmp_path / "tasks" / "f-0.out").write_text("__HOG_BATCH_RESULTS_V1__\n")
    fake.states[(array_id, 0)] = ElementState.TIMEOUT
    (tmp_path / "tasks" / "f-0.exit").write_text("143\n")
    reports = poll_all(backend)
    finished = [r for r in reports if r.finished]
    assert len(finished) == 1
    lines = b"".join(r.lines for r in reports)
    assert json.loads(lines)["call"] == 0
    [timeout, *deferred] = finished[0].records
    assert (
        timeout["call"] == 1
        and timeout["error"].startswith("TimeoutError")
        and "00:01:00" in timeout["error"]
    )
    assert [r["call"] for r in deferred if r["deferred"]] == [2, 3]


def test_a_submitter_that_died_around_sbatch_has_its_array_adopted_not_submitted_again(tmp_path):
    fake, meta = FakeSlurm(), DictMeta()
    backend = backend_for(tmp_path, fake, meta)
    lost_answer = []
    tasks = [TaskSubmission("f-0", "f", [0, 1], "exit 0\n")]
    backend.submit(
        tasks, lambda ids, group: lost_answer.append(ids)
    )  # the ledger write that never happened
    meta.values["slurm_submitting"] = {
        "name": fake.names["100"],
        "tasks": ["f-0"],
        "dir": str(tmp_path / "tasks"),
    }
    again = backend_for(tmp_path, fake, meta)
    [report] = again.reattach([("f-0", "f", None, [0, 1])])
    assert not report.finished and len(fake.submitted) == 1
    assert again.adopted_ids() == [("f-0", "100_0")]


def test_the_wrapper_carries_each_elements_records_secret_not_the_environment(tmp_path):
    fake = FakeSlurm()
    backend = backend_for(tmp_path, fake)
    submit(backend, tmp_path, n_tasks=2)
    [script] = list((tmp_path / "tasks").glob("*.sbatch"))
    text = script.read_text()
    assert backend.records(tmp_path / "tasks").secret("f-1") in text
    assert oct(script.stat().st_mode & 0o777) == "0o600"
    assert not any("SECRET" in option for option in fake.submitted[0])


def test_an_array_slurm_forgot_before_resume_found_it_is_taken_from_its_files_not_submitted_again(
    tmp_path,
):
    fake, meta = FakeSlurm(), DictMeta()
    backend = backend_for(tmp_path, fake, meta)
    backend.submit(
        [TaskSubmission("f-0", "f", [0, 1], "exit 0\n")], lambda ids, group: None
    )  # answer lost
    meta.values["slurm_submitting"] = {
        "name": fake.names["100"],
        "tasks": ["f-0"],
        "dir": str(tmp_path / "tasks"),
    }
    records = backend.records(tmp_path / "tasks")
    prefix = records.secret("f-0").encode() + b" "
    body = json.dumps(
        {"call": 0, "ok": True, "kind": "json", "value": 0, "t0": 1.0, "t1": 2.0}
    ).encode()
    (tmp_path / "tasks" / "f-0.records").write_bytes(
        prefix + str(len(body)).encode() + b" " + body + b"\n"
    )
    (tmp_path / "tasks" / "f-0.out").write_text("__HOG_BATCH_RESULTS_V1__\n")
    fake.forget("100")  # a day later: MinJobAge has passed
    [report] = backend_for(tmp_path, fake, meta).reattach([("f-0", "f", None, [0, 1])])
    assert report.finished and not report.lost and json.loads(report.lines)["call"] == 0
    assert len(fake.submitted) == 1


def test_no_sbatch_on_path_is_a_located_error_and_no_run_is_made(project):
    manifest(project, "endpoints:\n  cluster:\n    partition: debug\n")
    done = project.cli("submit", "sweep.yaml", "--run-dir", "run", env={"PATH": "/nonexistent"})
    assert done.returncode == 2
    assert (
        "sweep.yaml:3" in done.stderr
        and "sbatch is not on PATH" in done.stderr
        and "fix:" in done.stderr
    )
    assert not (project.root / "run").exists()


@pytest.mark.parametrize(
    "config",
    [
        {
            "partition": "debug",
            "walltime": "00:10:00",
            "mem": "4G",
            "sbatch_args": ["--exclusive"],
            "cpus_per_task": 2,
        },
        {"partition": ""},
        {"cpus_per_task": 0},
        {"cpus_per_task": "2"},
        {"qos": True},
        {"sbatch_args": [1]},
        {"sbatch_args": "--exclusive"},
        {"walltime": 30},
        {"endpoint": "slurm"},
        {"endpoint": "globus"},
        {"scratch": 3},
    ],
)
def test_the_check_agrees_with_the_published_schema(config):
    import jsonschema

    from groundhog_batch.backends.slurm_config import config_problems, schema

    ours = config_problems(config, lambda key, message, hint: message)
    theirs = list(jsonschema.Draft202012Validator(schema()).iter_errors(config))
    assert bool(ours) == bool(theirs), (ours, [e.message for e in theirs])


# --- memory: and escalated retries: what each array asks Slurm for -------------------------------


def option(options: list[str], flag: str) -> str | None:
    found = [o.split("=", 1)[1] for o in options if o.startswith(flag + "=")]
    assert len(found) <= 1, options
    return found[0] if found else None


def test_memory_is_asked_for_as_mem_in_whole_mib_and_without_it_slurm_s_default_applies(
    tmp_path,
):
    fake = FakeSlurm()
    backend = backend_for(tmp_path, fake)
    backend.submit(
        [
            TaskSubmission("f-0", "f", [0], "exit 0\n"),
            TaskSubmission("f-1", "f", [1], "exit 0\n", memory_mib=1536.25),
        ],
        lambda ids, group: None,
    )
    plain, with_memory = fake.submitted
    assert option(plain, "--mem") is None  # no `memory:`: the cluster's default
    assert option(with_memory, "--mem") == "1537M"  # rounded up: sbatch takes whole numbers
    assert option(plain, "--time") == option(with_memory, "--time") == "00:01:00"


def test_the_endpoint_s_mem_stays_when_it_is_more_than_memory():
    from groundhog_batch.backends.slurm_config import sbatch_options

    assert option(sbatch_options({"mem": "4G"}, memory_mib=1024), "--mem") == "4G"
    assert option(sbatch_options({"mem": "4G"}, memory_mib=8192), "--mem") == "8192M"
    assert option(sbatch_options({"mem": "4G"}), "--mem") == "4G"


def test_retries_whose_walltime_or_memory_grew_go_out_in_arrays_of_their_own_with_time_in_whole_minutes(
    tmp_path,
):
    fake = FakeSlurm()
    backend = backend_for(tmp_path, fake, walltime="00:01:00")
    given: dict[str, str] = {}
    backend.submit(
        [
            TaskSubmission("f-0", "f", [0], "exit 0\n", memory_mib=500),
            TaskSubmission("f-1", "f", [1], "exit 0\n", memory_mib=500),
            TaskSubmission("f-2", "f", [2], "exit 0\n", walltime_s=90, memory_mib=1000),
            TaskSubmission("f-3", "f", [3], "exit 0\n", walltime_s=120, memory_mib=1000),
            TaskSubmission("f-4", "f", [4], "exit 0\n", walltime_s=3 * 86400 + 1, memory_mib=500),
        ],
        lambda ids, group: given.update(ids),
    )
    asked = [
        (option(o, "--array"), option(o, "--time"), option(o, "--mem")) for o in fake.submitted
    ]
    assert asked == [
        ("0-1%2", "00:01:00", "500M"),  # first attempts: the endpoint's walltime, as written
        ("0-1%2", "00:02:00", "1000M"),  # 90 s and 120 s are both 2 minutes to Slurm: one array
        ("0-0%2", "3-00:01:00", "500M"),  # 3 days and a second: rounded up, never down
    ]
    assert len({element.split("_")[0] for element in given.values()}) == 3


def test_a_retry_whose_memory_grew_past_every_node_asks_for_the_largest_node_and_says_so(
    tmp_path, capsys
):
    fake = FakeSlurm()
    backend = backend_for(tmp_path, fake)
    backend.submit(
        [TaskSubmission("f-0", "f", [0], "exit 0\n", memory_mib=16000)], lambda ids, group: None
    )
    assert option(fake.submitted[0], "--mem") == "8000M"
    warning = capsys.readouterr().err
    assert "16000 MiB" in warning and "8000 MiB" in warning and "memory:" in warning


def test_a_retry_whose_walltime_grew_past_the_partition_s_max_time_asks_for_max_time_and_says_so(
    tmp_path, capsys
):
    fake = FakeSlurm()
    fake.max_time_s = 3600.0
    backend = backend_for(tmp_path, fake, walltime="00:40:00")
    backend.submit(
        [
            TaskSubmission("f-0", "f", [0], "exit 0\n", walltime_s=4800),  # attempt 2 of 2x
            TaskSubmission("f-1", "f", [1], "exit 0\n", walltime_s=3000),
        ],
        lambda ids, group: None,
    )
    assert [option(o, "--time") for o in fake.submitted] == ["01:00:00", "00:50:00"]
    warning = capsys.readouterr().err
    assert "--time=01:20:00" in warning and "MaxTime 01:00:00" in warning


def test_plan_render_shows_mem_and_what_each_escalated_retry_asks_slurm_for(project):
    manifest(
        project,
        'endpoints:\n  cluster:\n    walltime: "00:01:30"\n',
        "memory: 1500M\ntimeout: 5\n"
        "retries: {max: 2, on: [TimeoutError], walltime: 1.5x, memory: 2x}\n",
    )
    done = project.cli("plan", "sweep.yaml", "--render", "0")
    assert done.returncode == 0, done.stderr
    [sbatch] = [line for line in done.stderr.splitlines() if line.startswith("# sbatch ")]
    assert "--time=00:01:30" in sbatch and "--mem=1500M" in sbatch
    assert (
        "# a retry (attempt 2) goes out in an array of its own with --time=00:03:00 --mem=3000M"
        in (done.stderr)
    )  # 135 s, rounded up
    assert "(attempt 3) goes out in an array of its own with --time=00:04:00 --mem=6000M" in (
        done.stderr
    )  # 202.5 s


def test_without_memory_or_escalation_plan_render_asks_for_no_mem_and_no_retry_arrays(project):
    manifest(project, 'endpoints:\n  cluster:\n    walltime: "00:01:30"\n', "retries: 2\n")
    done = project.cli("plan", "sweep.yaml", "--render", "0")
    assert done.returncode == 0, done.stderr
    assert "--mem" not in done.stderr and "a retry" not in done.stderr
