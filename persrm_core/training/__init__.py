"""Training: SFT on reasoning traces, GRPO with a verifiable reward, the scalar-RM baseline.

`trainers` builds the SFT and GRPO datasets and runs TRL's trainers (resumable, fingerprinted work
dirs); `rewards` are the verifiable GRPO rewards; `teacher` writes SFT traces with a larger LLM and
rejection-samples them; `launch` and `train_entry` run training in its own process (`accelerate
launch`, DeepSpeed) reporting to Dagster through Pipes; `scalar_rm` trains the Bradley-Terry
reward-model baseline with TRL's RewardTrainer.
"""
