"""The Docker image, Slurm and Kubernetes templates, checked without Docker, Slurm or a cluster:
lint (hadolint, shellcheck), structure (dockerfile-parse, pyyaml), and the shell scripts run
against stand-in `grokkit` / `wandb` executables."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
SBATCH = ROOT / "deploy" / "slurm" / "sweep_agents.sbatch"
K8S_JOB = ROOT / "deploy" / "k8s" / "sweep-agents-job.yaml"


def _tool(name: str) -> str:
    """A linter binary from the dev extra (installed next to this Python) or on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    assert found, f"{name} not found: install the dev extra (pip install -e '.[dev]')"
    return found


def _stand_in(directory: Path, name: str, body: str) -> Path:
    """An executable shell script `name` in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


# --- Dockerfile --------------------------------------------------------------------------------


def test_hadolint_reports_nothing():
    result = subprocess.run(
        [_tool("hadolint"), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


@pytest.fixture(scope="module")
def dockerfile() -> DockerfileParser:
    return DockerfileParser(str(DOCKERFILE))


def _instructions(dockerfile: DockerfileParser, name: str) -> list[dict]:
    return [i for i in dockerfile.structure if i["instruction"] == name]


def test_base_image_is_a_pinned_cuda_pytorch_image(dockerfile):
    assert not dockerfile.is_multistage
    image = dockerfile.baseimage  # ARG defaults resolved
    name, _, tag = image.partition("@")[0].rpartition(":")
    assert "@sha256:" in image or (tag and tag != "latest" and "/" not in tag), image
    assert name == "pytorch/pytorch" and "cuda" in tag and tag.endswith("-runtime"), image


def test_runs_as_a_numeric_non_root_user(dockerfile):
    users = _instructions(dockerfile, "USER")
    assert users, "no USER: the image would run as root"
    uid, _, gid = users[-1]["value"].partition(":")
    assert uid.isdigit() and int(uid) != 0, users[-1]["value"]
    assert not gid or (gid.isdigit() and int(gid) != 0), users[-1]["value"]


def test_entrypoint_is_exec_form_behind_tini(dockerfile):
    (entrypoint,) = _instructions(dockerfile, "ENTRYPOINT")
    argv = json.loads(entrypoint["value"])  # exec form: a JSON array, no shell in between
    assert Path(argv[0]).name == "tini" and argv[1] == "--", argv
    script = argv[2]
    assert any(
        script in i["value"] and "docker/entrypoint.sh" in i["value"]
        for i in _instructions(dockerfile, "COPY")
    ), "entrypoint script is not copied in"
    (cmd,) = _instructions(dockerfile, "CMD")
    assert json.loads(cmd["value"]) == ["--help"]


def test_installs_this_repository_dependencies_first(dockerfile):
    steps = [
        (i["instruction"], i["value"])
        for i in dockerfile.structure
        if i["instruction"] in ("COPY", "ADD", "RUN")
    ]

    def index(predicate, what):
        hits = [n for n, step in enumerate(steps) if predicate(*step)]
        assert hits, f"no {what}"
        return hits[0]

    copy_pyproject = index(
        lambda k, v: k == "COPY" and v.split()[0] == "pyproject.toml",
        "COPY of pyproject.toml alone",
    )
    install_deps = index(
        lambda k, v: k == "RUN" and "pip install" in v and " -r " in v,
        "dependency install from pyproject.toml",
    )
    copy_source = index(lambda k, v: k == "COPY" and v.split()[0] == "grokkit/", "COPY of grokkit/")
    install_package = index(
        lambda k, v: k == "RUN" and "pip install" in v and " . " in f"{v} ",
        "pip install of the repository (.)",
    )
    assert copy_pyproject < install_deps < copy_source < install_package
    assert "--no-deps" in steps[install_package][1]
    assert all("--no-cache-dir" in v for k, v in steps if "pip install" in v)
    assert any(k == "COPY" and v.split()[0] == "configs/" for k, v in steps)


def test_no_remote_add_and_no_secrets(dockerfile):
    for add in _instructions(dockerfile, "ADD"):
        assert "://" not in add["value"], add["value"]
    text = DOCKERFILE.read_text()
    assert "WANDB_API_KEY" not in text


def test_caches_point_at_the_users_writable_home(dockerfile):
    env = dockerfile.envs
    for key in ("HOME", "WANDB_DIR", "WANDB_CACHE_DIR", "XDG_CACHE_HOME", "MPLCONFIGDIR"):
        assert env.get(key, "").startswith("/home/grokkit"), (key, env.get(key))
    workdirs = _instructions(dockerfile, "WORKDIR")
    assert workdirs[-1]["value"] == "/work"


def test_dockerignore_keeps_local_state_out():
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = {line.strip().rstrip("/") for line in lines if line.strip() and line[0] != "#"}
    assert {"runs", ".venv", "wandb", ".git", "**/*.ckpt", "**/__pycache__"} <= patterns
    for needed in ("pyproject.toml", "README.md", "grokkit", "configs", "docker"):
        assert needed not in patterns


# --- entrypoint --------------------------------------------------------------------------------


def test_shell_scripts_pass_shellcheck_and_syntax_checks():
    assert os.access(ENTRYPOINT, os.X_OK) and os.access(SBATCH, os.X_OK)
    subprocess.run(["sh", "-n", str(ENTRYPOINT)], check=True)
    subprocess.run(["bash", "-n", str(SBATCH)], check=True)
    result = subprocess.run(
        [_tool("shellcheck"), str(ENTRYPOINT), str(SBATCH)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["fit", "--config", "configs/quickstart.yaml"],
            "grokkit fit --config configs/quickstart.yaml",
        ),
        (["report", "runs/a b"], "grokkit report runs/a b"),
        (["--help"], "grokkit --help"),
        ([], "grokkit"),
        (["wandb", "agent", "--forward-signals", "e/p/id"], "wandb agent --forward-signals e/p/id"),
        (["echo", "hi"], "hi"),
    ],
)
def test_entrypoint_dispatch(tmp_path, argv, expected):
    for name in ("grokkit", "wandb"):
        _stand_in(tmp_path, name, f'echo {name} "$@"\n')
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run([str(ENTRYPOINT), *argv], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_entrypoint_passes_the_exit_status_through(tmp_path):
    _stand_in(tmp_path, "grokkit", "exit 130\n")
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    assert subprocess.run([str(ENTRYPOINT), "fit"], env=env).returncode == 130


# --- Slurm -------------------------------------------------------------------------------------


def _sbatch_directives() -> list[str]:
    return [
        line.split(None, 1)[1]
        for line in SBATCH.read_text().splitlines()
        if line.startswith("#SBATCH ")
    ]


def test_sbatch_directives():
    directives = _sbatch_directives()
    assert "--gres=gpu:1" in directives
    assert any(d.startswith("--array=") for d in directives)
    signal_opt = next(d for d in directives if d.startswith("--signal="))
    assert signal_opt.startswith("--signal=B:TERM@"), "the batch shell must get the signal"
    assert int(signal_opt.rsplit("@", 1)[1]) >= 60
    assert "--forward-signals" in SBATCH.read_text()


@pytest.fixture
def fake_venv(tmp_path) -> dict[str, str]:
    """A stand-in venv whose `wandb` records its arguments, says it started, and exits 130 on
    SIGTERM (like an agent whose run was interrupted); with FAKE_AGENT_WAIT it runs up to 10 s."""
    bin_dir = tmp_path / "venv" / "bin"
    _stand_in(bin_dir, "grokkit", "exit 0\n")
    _stand_in(
        bin_dir,
        "wandb",
        f'echo "$@" > "{tmp_path}/args"\n'
        f"trap 'echo TERM >> \"{tmp_path}/signals\"; exit 130' TERM\n"
        f'touch "{tmp_path}/started"\n'
        'if [ -n "$FAKE_AGENT_WAIT" ]; then\n'
        "  i=0; while [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done\n"
        "fi\n",
    )
    (tmp_path / "work").mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLURM_", "WANDB_", "SWEEP_ID", "AGENT_ARGS", "GROKKIT_"))
    }
    env.update(
        RUNTIME="venv",
        GROKKIT_VENV=str(tmp_path / "venv"),
        GROKKIT_WORKDIR=str(tmp_path / "work"),
        HOME=str(tmp_path),
        WANDB_API_KEY="0" * 40,
    )
    return env


def test_sbatch_requires_a_sweep_id_and_an_api_key(tmp_path, fake_venv):
    result = subprocess.run([str(SBATCH)], env=fake_venv, capture_output=True, text=True)
    assert result.returncode == 2 and "no sweep ID" in result.stderr, result.stderr
    no_key = {k: v for k, v in fake_venv.items() if k != "WANDB_API_KEY"}
    result = subprocess.run([str(SBATCH), "e/p/abc"], env=no_key, capture_output=True, text=True)
    assert result.returncode == 2 and "WANDB_API_KEY" in result.stderr, result.stderr
    assert not (tmp_path / "started").exists()


def test_sbatch_starts_the_agent_from_the_venv(tmp_path, fake_venv):
    env = {**fake_venv, "SWEEP_ID": "e/p/abc", "AGENT_ARGS": "--count 3"}
    result = subprocess.run([str(SBATCH)], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "args").read_text().split() == [
        "agent",
        "--forward-signals",
        "--count",
        "3",
        "e/p/abc",
    ]


def test_sbatch_forwards_sigterm_once_to_the_agent(tmp_path, fake_venv):
    env = {**fake_venv, "FAKE_AGENT_WAIT": "1"}
    proc = subprocess.Popen([str(SBATCH), "e/p/abc"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 5
        while not (tmp_path / "started").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "agent did not start"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)  # what Slurm's --signal=B:TERM@... does
        _, stderr = proc.communicate(timeout=5)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert (tmp_path / "signals").read_text().split() == ["TERM"]
    assert "forwarding to the agent" in stderr


# --- Kubernetes --------------------------------------------------------------------------------


def test_kubernetes_job():
    job = yaml.safe_load(K8S_JOB.read_text())
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    assert job["spec"]["parallelism"] >= 1 and job["spec"]["completions"] >= 1
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] in ("OnFailure", "Never")
    assert pod["terminationGracePeriodSeconds"] >= 60
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == 10001
    assert security["allowPrivilegeEscalation"] is False
    assert container["args"] == ["wandb", "agent", "--forward-signals", "$(SWEEP_ID)"]
    env = {e["name"]: e for e in container["env"]}
    assert "value" in env["SWEEP_ID"]
    assert "value" not in env["WANDB_API_KEY"]
    assert env["WANDB_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "wandb-api-key"
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/work/runs"]
    assert mount["name"] in {v["name"] for v in pod["volumes"]}
