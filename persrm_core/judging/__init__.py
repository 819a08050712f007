"""Judging: the personalized reward model's input, output and judges.

`judge_format` renders a pair into the judge's conversation and parses its verdict strictly;
`closing` decodes an unreadable verdict block again under the format; `rationale` writes the offline
SFT traces that weigh the evidence; `judge` holds the `Judge` protocol, the model judge and the
training-free baselines; `policy_reward` uses a trained judge as a TRL reward for a policy.
"""
