#!/usr/bin/env bash
# VideoSafety-R1 stage 4 on EasyR1 with stage4_grpo.yaml (beside this file): one node, 8 GPUs.
#   MODEL        `videosafety export` of the stage-3 model
#   TRAIN_FILES  `videosafety train data --kind grpo --format easyr1 --out grpo.parquet`
#   VAL_FILES    optional (default: TRAIN_FILES; validation is off in the recipe)
# Run it from EasyR1's checkout; videosafety must be importable there (the reward is its own).
# Any key=value after the script's name is passed on to EasyR1 and wins.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MODEL=${MODEL:?set MODEL to the exported stage-3 checkpoint}
TRAIN_FILES=${TRAIN_FILES:?set TRAIN_FILES to the easyr1 parquet of videosafety train data}
VAL_FILES=${VAL_FILES:-$TRAIN_FILES}
REWARD_FILE=$(python3 -c 'import videosafety.rewards.adapters as m; print(m.__file__)')

python3 -m verl.trainer.main \
    config="$HERE/stage4_grpo.yaml" \
    data.train_files="$TRAIN_FILES" \
    data.val_files="$VAL_FILES" \
    worker.actor.model.model_path="$MODEL" \
    worker.reward.reward_function="$REWARD_FILE:easyr1_compute_score" \
    "$@"
