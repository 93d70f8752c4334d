# syntax=docker/dockerfile:1
#
# grokkit for GPU clusters: one image for single runs (`docker run IMAGE fit --config ...`) and
# for W&B sweep agents (`docker run IMAGE wandb agent --forward-signals SWEEP_ID`).
# Build, run and deploy: docs/cluster.md.
#
#   docker build -t grokkit:latest .
#
# Base image: the official PyTorch runtime image (Ubuntu 22.04, conda Python 3.11, CUDA 12.4,
# cuDNN 9), pinned by exact tag. To use another PyTorch or CUDA, pass any pytorch/pytorch
# *-runtime tag with Python >= 3.11 (the dependency step reads pyproject.toml with tomllib):
#
#   docker build --build-arg BASE_IMAGE=pytorch/pytorch:2.6.0-cuda12.4-cudnn9-runtime -t grokkit .
#
# For a bit-for-bit reproducible base, append the digest: BASE_IMAGE=pytorch/pytorch:TAG@sha256:...
ARG BASE_IMAGE=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime
FROM ${BASE_IMAGE}

# Build-time only (ARG, not ENV): quiet, non-interactive apt and pip.
ARG DEBIAN_FRONTEND=noninteractive
ARG PIP_DISABLE_PIP_VERSION_CHECK=1
ARG PIP_ROOT_USER_ACTION=ignore

# tini runs as PID 1: it forwards SIGTERM/SIGINT to the run (or to `wandb agent`, which forwards
# them to its run) and reaps zombies. grokkit stops cleanly on SIGTERM: checkpoint, summary.json,
# exit 130. The version is pinned up to the distribution's revision suffix.
RUN apt-get update \
    && apt-get install -y --no-install-recommends "tini=0.19.0-*" \
    && rm -rf /var/lib/apt/lists/*

# A numeric non-root user; its home and caches are writable. They are also world-writable
# (sticky), so the image runs under another UID too (`docker run --user "$(id -u):$(id -g)"`,
# OpenShift-style random UIDs).
RUN groupadd --gid 10001 grokkit \
    && useradd --no-log-init --uid 10001 --gid 10001 --create-home \
        --home-dir /home/grokkit --shell /bin/bash grokkit \
    && mkdir -p /work/runs /home/grokkit/.cache/matplotlib /home/grokkit/.cache/wandb \
        /home/grokkit/.config/wandb \
    && chown -R 10001:10001 /work /home/grokkit \
    && chmod 1777 /work /work/runs /home/grokkit /home/grokkit/.cache \
        /home/grokkit/.cache/matplotlib /home/grokkit/.cache/wandb \
        /home/grokkit/.config /home/grokkit/.config/wandb

# USER/LOGNAME: getpass.getuser() (torch, wandb) works even under a UID with no passwd entry.
# WANDB_DIR holds the files of `wandb agent` itself; each grokkit run keeps its W&B files in its
# own run directory (runs/<name>/wandb/).
ENV HOME=/home/grokkit \
    USER=grokkit \
    LOGNAME=grokkit \
    XDG_CACHE_HOME=/home/grokkit/.cache \
    XDG_CONFIG_HOME=/home/grokkit/.config \
    MPLCONFIGDIR=/home/grokkit/.cache/matplotlib \
    WANDB_DIR=/home/grokkit \
    WANDB_CACHE_DIR=/home/grokkit/.cache/wandb \
    WANDB_CONFIG_DIR=/home/grokkit/.config/wandb \
    PYTHONUNBUFFERED=1

# Dependencies first, from pyproject.toml alone, so that editing grokkit's code does not
# reinstall them. torch is constrained to the base image's own (CUDA) build: pip keeps it.
WORKDIR /opt/grokkit
COPY pyproject.toml ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; open('/tmp/requirements.txt', 'w').write('\n'.join(deps) + '\n')" \
    && python -c "import torch; print(f'torch=={torch.__version__}')" > /tmp/constraints.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt -c /tmp/constraints.txt \
    && rm /tmp/requirements.txt /tmp/constraints.txt

# grokkit itself, from this repository. `grokkit --help` checks that the install imports (and
# builds matplotlib's font cache, handed to the user so runs do not rebuild it).
COPY README.md ./
COPY grokkit/ grokkit/
RUN pip install --no-cache-dir --no-deps . \
    && rm -rf build ./*.egg-info \
    && grokkit --help > /dev/null \
    && chown -R 10001:10001 /home/grokkit

# Runs start in /work: configs/ and sweeps/ from the repository, runs/ for run directories
# (mount a volume there to keep them). A W&B agent only needs the configs its sweep names;
# sweeps/ serves `grokkit sweep` (no server) inside the image.
WORKDIR /work
COPY configs/ configs/
COPY sweeps/ sweeps/
COPY --chmod=0755 docker/entrypoint.sh /usr/local/bin/grokkit-entrypoint

USER 10001:10001

# `docker run IMAGE fit|validate|test|report|sweep ...` runs grokkit; any other first argument is
# run as a command (`wandb agent ...`, `python ...`, `bash`).
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/grokkit-entrypoint"]
CMD ["--help"]
