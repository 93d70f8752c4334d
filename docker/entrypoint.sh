#!/bin/sh
# Entrypoint of the grokkit image (started by tini, which runs as PID 1 and forwards signals).
#
#   IMAGE fit --config configs/quickstart.yaml    -> grokkit fit --config configs/quickstart.yaml
#   IMAGE --help                                  -> grokkit --help (also the default command)
#   IMAGE wandb agent --forward-signals SWEEP_ID  -> wandb agent --forward-signals SWEEP_ID
#   IMAGE bash                                    -> bash
#
# `exec` replaces this shell, so the signals tini forwards reach grokkit (or wandb) directly.
set -eu

case "${1:-}" in
    "" | fit | validate | test | report | sweep | agent | -*)
        exec grokkit "$@"
        ;;
esac
exec "$@"
