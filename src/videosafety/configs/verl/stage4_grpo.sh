#!/usr/bin/env bash
# VideoSafety-R1 stage 4 (safety-guided GRPO) on verl 0.9.1: one node, 8 GPUs.
#
#   MODEL        `videosafety export` of the stage-3 model (alarm tokens folded in, the chat
#                template places them; vLLM rollouts and FSDP actors need no custom code)
#   TRAIN_FILES  `videosafety train data --kind grpo --format verl --out grpo.parquet`
#   VAL_FILES    optional (default: TRAIN_FILES); validation is off unless test_freq is set
#
# The settings are the paper's (src/videosafety/configs/paper-grpo.yaml; tests check that they
# agree): 8 prompts x 6 completions per step, temperature 1.0, top_p 0.95, up to 768 new
# tokens, clip 0.2 both ways, k3 KL (verl: low_var_kl) to the frozen stage-3 model with
# beta 0.04 as a loss term, lr 1e-6 cosine with 3 % warm-up, one update per batch, one epoch,
# sequence-mean aggregation, vision tower frozen. The reward is videosafety's own
# (rewards/adapters.py:compute_score), so videosafety must be importable on every node.
# Differences from our trainer: verl normalises advantages with std + 1e-6 (ours 1e-4), its
# low_var_kl clamps the log-ratio at ±20 and the KL term at ±10 (paper-grpo: log-ratio ±10), and
# vLLM ignores the exported suppress_tokens (the alarm tokens are rarely sampled; see README).
# Any key=value after the script's name is passed on to verl and wins.
set -euo pipefail
MODEL=${MODEL:?set MODEL to the exported stage-3 checkpoint}
TRAIN_FILES=${TRAIN_FILES:?set TRAIN_FILES to the verl parquet of videosafety train data}
VAL_FILES=${VAL_FILES:-$TRAIN_FILES}
REWARD_FILE=$(python3 -c 'import videosafety.rewards.adapters as m; print(m.__file__)')

python3 -m verl.trainer.main_ppo \
    algorithm.adv_estimator=grpo \
    algorithm.norm_adv_by_std_in_grpo=True \
    algorithm.use_kl_in_reward=False \
    data.train_files="$TRAIN_FILES" \
    data.val_files="$VAL_FILES" \
    data.prompt_key=prompt \
    data.video_key=videos \
    data.train_batch_size=8 \
    data.max_prompt_length=4096 \
    data.max_response_length=768 \
    data.filter_overlong_prompts=True \
    data.truncation=error \
    actor_rollout_ref.model.path="$MODEL" \
    actor_rollout_ref.model.enable_gradient_checkpointing=True \
    actor_rollout_ref.model.use_remove_padding=True \
    actor_rollout_ref.actor.optim.lr=1e-6 \
    actor_rollout_ref.actor.optim.lr_warmup_steps_ratio=0.03 \
    actor_rollout_ref.actor.optim.lr_scheduler_type=cosine \
    actor_rollout_ref.actor.optim.weight_decay=0.01 \
    actor_rollout_ref.actor.grad_clip=5.0 \
    actor_rollout_ref.actor.ppo_mini_batch_size=8 \
    actor_rollout_ref.actor.ppo_epochs=1 \
    actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1 \
    actor_rollout_ref.actor.clip_ratio_low=0.2 \
    actor_rollout_ref.actor.clip_ratio_high=0.2 \
    actor_rollout_ref.actor.use_kl_loss=True \
    actor_rollout_ref.actor.kl_loss_coef=0.04 \
    actor_rollout_ref.actor.kl_loss_type=low_var_kl \
    actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-mean \
    actor_rollout_ref.actor.entropy_coeff=0 \
    actor_rollout_ref.actor.freeze_vision_tower=True \
    actor_rollout_ref.rollout.name=vllm \
    actor_rollout_ref.rollout.n=6 \
    actor_rollout_ref.rollout.temperature=1.0 \
    actor_rollout_ref.rollout.top_p=0.95 \
    actor_rollout_ref.rollout.tensor_model_parallel_size=2 \
    actor_rollout_ref.rollout.gpu_memory_utilization=0.5 \
    actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=4 \
    actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=4 \
    reward.reward_manager.name=naive \
    reward.custom_reward_function.path="$REWARD_FILE" \
    reward.custom_reward_function.name=compute_score \
    trainer.critic_warmup=0 \
    trainer.total_epochs=1 \
    trainer.nnodes=1 \
    trainer.n_gpus_per_node=8 \
    trainer.save_freq=50 \
    trainer.test_freq=-1 \
    trainer.val_before_train=False \
    trainer.logger='["console"]' \
    trainer.project_name=videosafety \
    trainer.experiment_name=stage4-grpo \
    "$@"
