"""Policies the domains fine-tune: the OpenVLA architecture (tiny and 7B) in ``vla_razor.policies.openvla``."""
