"""Policies the domains fine-tune: the interface the robot code uses (``base``), the registry ``policy.type`` reads
(``registry``), and the OpenVLA architecture (tiny and 7B) in ``vla_razor.policies.openvla``."""
