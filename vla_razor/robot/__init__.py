"""The robot domain: the embedded pick-can / drawer world, the OpenVLA policy, and the stages of the main job
(base pretraining, SFT, on-policy RL, evaluation). It adapts robot data to vla_razor.core and adds nothing
the core already has."""
